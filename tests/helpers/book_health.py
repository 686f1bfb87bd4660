"""The figures a whole-book exact recompute (`BookHealth`) gives per row, and the same figures
read off Position objects, as comparable tuples."""

from __future__ import annotations

from onchain.protocols.base import BookHealth, Position

Figures = tuple[str, str, int | None, int, int, bool]


def position_figures(p: Position) -> Figures:
    return (p.account, p.market, p.health_factor, p.total_collateral_base, p.total_debt_base,
            p.liquidatable)  # fmt: skip


def book_rows(health: BookHealth) -> list[Figures]:
    columns = (health.accounts, health.markets, health.health_factor,
               health.total_collateral_base, health.total_debt_base)  # fmt: skip
    verdicts = [bool(v) for v in health.liquidatable]
    return list(zip(*columns, verdicts, strict=True))
