"""`onchain report`: positions at risk now (each market's newest snapshot), by tier and by
market, with totals."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any

import typer

from onchain.cli.common import (
    CsvOpt,
    DbOpt,
    JsonOpt,
    LazyConsole,
    StoreConfigOpt,
    check_output_flags,
    emit,
    err,
)
from onchain.cli.stored import format_hf, no_book, opened_store, select_market, when

out = LazyConsole(pipe_width=160)

if TYPE_CHECKING:
    from onchain.store import queries


def _tiers_json(tiers: dict[str, queries.TierTotals]) -> dict[str, Any]:
    return {
        k: {
            "positions": v.positions,
            "collateral_base": str(v.collateral_base),
            "debt_base": str(v.debt_base),
        }
        for k, v in tiers.items()
    }


# --csv: one row per position at risk, with its market's block (every market's newest snapshot)
BOOK_FIELDS = ("market", "market_key", "chain", "protocol", "block_number", "block_hash")
CSV_FIELDS = (
    *BOOK_FIELDS,
    "block_timestamp",
    "base_currency_decimals",
    "account",
    "health_factor",
    "liquidatable",
    "tier",
    "reason",
    "liquidation_probability",
    "horizon_s",
    "pending_health_factor",
    "total_collateral_base",
    "total_debt_base",
)


def at_risk_rows(documents: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [
        {**{k: book[k] for k in (*BOOK_FIELDS, "block_timestamp", "base_currency_decimals")}, **a}
        for book in documents
        for a in book["at_risk"]
    ]


NARROW = 130  # columns under which `report` lists positions as lines, not a table


def report_cmd(
    config: StoreConfigOpt = None,
    db: DbOpt = None,
    market: Annotated[str | None, typer.Option("--market", help="only this market")] = None,
    limit: Annotated[int, typer.Option("--limit", help="at-risk rows listed (0: all)")] = 25,
    as_json: JsonOpt = False,
    as_csv: CsvOpt = False,
) -> None:
    """Positions at risk now (each market's newest snapshot): by tier, by market, with totals."""
    from rich.table import Table

    from onchain.numbers import format_base
    from onchain.store import queries
    from onchain.store.models import TIERS

    check_output_flags(as_json, as_csv, limit)
    with opened_store(db, config) as store:
        name, key = select_market(store, market)
        books = queries.at_risk_report(store, market=name)
        if key is not None:
            books = [b for b in books if b.market_key.lower() == key]
            if not books:
                raise no_book(store, key)
    documents = [
        {
            "market": b.market,
            "market_key": b.market_key,
            "chain": b.chain,
            "protocol": b.protocol,
            "block_number": b.block_number,
            "block_hash": b.block_hash,
            "block_timestamp": b.block_timestamp,
            "base_currency_decimals": b.base_currency_decimals,
            "positions": b.positions,
            "with_debt": b.with_debt,
            "total_collateral_base": str(b.total_collateral_base),
            "total_debt_base": str(b.total_debt_base),
            "tiers": _tiers_json(b.tiers),
            "at_risk": [
                {
                    "account": a.account,
                    "health_factor": None if a.health_factor is None else str(a.health_factor),
                    "liquidatable": a.liquidatable,
                    "risk_tier": a.risk_tier,
                    "tier": a.risk_tier,  # the key scan/watch/targets use
                    "reason": a.risk_reason,
                    "reasons": a.risk_reasons,
                    "liquidation_probability": a.liquidation_probability,
                    "horizon_s": a.horizon_s,
                    "pending_health_factor": a.pending_health_factor,
                    "total_collateral_base": str(a.total_collateral_base),
                    "total_debt_base": str(a.total_debt_base),
                }
                for a in b.at_risk
            ],
        }
        for b in books
    ]
    if emit(as_json, as_csv, documents, at_risk_rows(documents), CSV_FIELDS):
        return
    if not books:
        err.print(f"no snapshots in {store.url} yet: run `onchain run`", highlight=False)
        return
    by_market = Table(title="at risk now, by market (amounts in each market's base currency)")
    for col in ("market", "block", "written", "with debt", *TIERS[:-1], "debt at risk", "debt"):
        by_market.add_column(
            col, justify="left" if col in ("market", "written") else "right", overflow="fold"
        )
    for b in books:
        risky_debt = sum(t.debt_base for k, t in b.tiers.items() if k != "SAFE")
        by_market.add_row(
            b.label,
            str(b.block_number),
            when(b.taken_at),
            str(b.with_debt),
            *(str(b.tiers[t].positions) for t in TIERS[:-1]),
            format_base(risky_debt, b.base_currency_decimals),
            format_base(b.total_debt_base, b.base_currency_decimals),
        )
    out.print(by_market)
    by_tier = Table(title="by tier (positions with debt)")
    for col in ("market", "tier", "positions", "collateral", "debt"):
        by_tier.add_column(
            col,
            justify="right" if col in ("positions", "collateral", "debt") else "left",
            overflow="fold",
        )
    for b in books:
        for tier in TIERS:
            t = b.tiers[tier]
            by_tier.add_row(
                b.label,
                tier,
                str(t.positions),
                format_base(t.collateral_base, b.base_currency_decimals),
                format_base(t.debt_base, b.base_currency_decimals),
            )
        by_tier.add_row(
            b.label,
            "[bold]total[/]",
            str(b.with_debt),
            format_base(sum(t.collateral_base for t in b.tiers.values()), b.base_currency_decimals),
            format_base(sum(t.debt_base for t in b.tiers.values()), b.base_currency_decimals),
            end_section=True,
        )
    out.print(by_tier)
    risky = sorted(
        (a for b in books for a in b.at_risk), key=queries._rank
    )  # riskiest first across markets
    shown = risky if limit <= 0 else risky[:limit]
    if shown and out.width < NARROW:  # a table would squeeze its columns to nothing
        decimals = {b.label: b.base_currency_decimals for b in books}
        out.print(f"positions at risk ({len(shown)} of {len(risky)}), riskiest first")
        for a in shown:
            chance = (
                "-" if a.liquidation_probability is None else f"{a.liquidation_probability:.2%}"
            )
            out.print(f"{a.account}  {a.label}", highlight=False)
            out.print(
                f"  health {format_hf(a.health_factor)}  {a.risk_tier}  P {chance}  collateral "
                f"{format_base(a.total_collateral_base, decimals[a.label])}  debt "
                f"{format_base(a.total_debt_base, decimals[a.label])}  {a.risk_reason}",
                highlight=False,
            )
    elif shown:
        decimals = {b.label: b.base_currency_decimals for b in books}
        table = Table(title=f"positions at risk ({len(shown)} of {len(risky)}), riskiest first")
        columns = ("market", "account", "health factor", "tier", "P(liq.)", "collateral", "debt")
        for col in (*columns, "why"):
            table.add_column(
                col,
                justify="right" if col in ("P(liq.)", "collateral", "debt") else "left",
                no_wrap=col in ("account", "health factor"),
                overflow="fold",  # a narrow terminal folds figures onto more lines, never cuts
            )
        for a in shown:
            table.add_row(
                a.label,
                a.account,
                format_hf(a.health_factor),
                a.risk_tier,
                "-" if a.liquidation_probability is None else f"{a.liquidation_probability:.2%}",
                format_base(a.total_collateral_base, decimals[a.label]),
                format_base(a.total_debt_base, decimals[a.label]),
                a.risk_reason,
            )
        out.print(table)
    else:
        out.print("no position at risk")
