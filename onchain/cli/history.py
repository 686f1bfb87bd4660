"""`onchain history`: one account's health factor over time, per market, from the store."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Annotated, Any

import typer

from onchain.cli.common import (
    CsvOpt,
    DbOpt,
    JsonOpt,
    LazyConsole,
    StoreConfigOpt,
    check_output_flags,
    emit,
)
from onchain.cli.stored import format_hf, opened_store, select_market
from onchain.errors import InputError

out = LazyConsole(pipe_width=160)

SPARKS = "▁▂▃▄▅▆▇█"
# --csv: one row per stored snapshot of the account
CSV_FIELDS = (
    "market",
    "market_key",
    "protocol",
    "account",
    "base_currency_decimals",
    "block_number",
    "block_hash",
    "block_timestamp",
    "health_factor",
    "liquidatable",
    "tier",
    "total_collateral_base",
    "total_debt_base",
)


def point_rows(documents: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [
        {**{k: v for k, v in h.items() if k != "points"}, **p}
        for h in documents
        for p in h["points"]
    ]


def sparkline(values: Sequence[float | None], width: int = 80) -> str:
    """Health over time in one line. Buckets keep their LOWEST value (risk is in the dips).
    The scale starts at 1 (liquidation) or lower and spans at least 0.5, capped at 3 (higher is
    all safe alike), so a flat line shows its distance from liquidation, not noise. Points
    below 1 are red; no debt is a dot."""
    if len(values) > width:
        step = len(values) / width
        buckets = [values[int(i * step) : int((i + 1) * step)] for i in range(width)]
        values = [
            min((v for v in b if v is not None), default=None) if b else None for b in buckets
        ]
    finite = [min(v, 3.0) for v in values if v is not None]
    if not finite:
        return "·" * len(values)
    lo = min(1.0, min(finite))
    hi = max(max(finite), lo + 0.5)
    chars = []
    for v in values:
        if v is None:
            chars.append("·")
            continue
        level = 0 if hi == lo else round((min(v, 3.0) - lo) / (hi - lo) * (len(SPARKS) - 1))
        char = SPARKS[level]
        chars.append(f"[red]{char}[/]" if v < 1 else char)
    return "".join(chars)


def history_cmd(
    account: Annotated[str, typer.Argument(help="the account (wallet) address")],
    config: StoreConfigOpt = None,
    db: DbOpt = None,
    market: Annotated[str | None, typer.Option("--market", help="only this market")] = None,
    limit: Annotated[int, typer.Option("--limit", help="newest snapshots per market")] = 500,
    rows: Annotated[int, typer.Option("--rows", help="rows in the table")] = 12,
    as_json: JsonOpt = False,
    as_csv: CsvOpt = False,
) -> None:
    """One account's health factor over time, per market: a sparkline and the latest rows."""
    from rich.table import Table

    from onchain.app.pipeline import checked_address
    from onchain.app.stored_book import rebuild_account
    from onchain.numbers import format_base
    from onchain.store import queries

    check_output_flags(as_json, as_csv)
    address = checked_address(account, "account address")
    if limit < 1:
        raise InputError("--limit must be at least 1")
    with opened_store(db, config) as store:
        name, key = select_market(store, market)
        histories = queries.account_history(
            store, address, market=name, limit=limit, rebuild=rebuild_account
        )
        if key is not None:
            histories = [h for h in histories if h.market_key.lower() == key]
        if not histories:
            where = f" in market {market}" if market else ""
            raise InputError(
                f"no snapshots of {address}{where} in {store.url} (an account the daemon "
                "never tracked, or a market it is not in)"
            )
    documents = [
        {
            "market": h.market,
            "market_key": h.market_key,
            "protocol": h.protocol,
            "account": h.account,
            "base_currency_decimals": h.base_currency_decimals,
            "points": [
                {
                    "block_number": p.block_number,
                    "block_hash": p.block_hash,
                    "block_timestamp": p.block_timestamp,
                    "health_factor": None if p.health_factor is None else str(p.health_factor),
                    "liquidatable": p.liquidatable,
                    "risk_tier": p.risk_tier,
                    "tier": p.risk_tier,  # the key scan/watch/targets use
                    "total_collateral_base": str(p.total_collateral_base),
                    "total_debt_base": str(p.total_debt_base),
                }
                for p in h.points
            ],
        }
        for h in histories
    ]
    if emit(as_json, as_csv, documents, point_rows(documents), CSV_FIELDS):
        return
    for h in histories:
        points = h.points
        hfs = [p.health_factor_float for p in points]
        finite = [v for v in hfs if v is not None]
        out.print(
            f"[bold]{h.label}[/] ({h.protocol}) {h.account}: {len(points)} snapshots, "
            f"blocks {points[0].block_number}..{points[-1].block_number}",
            highlight=False,
        )
        span = (
            f"min {format_hf(min(p.health_factor for p in points if p.health_factor is not None))}"
            f" max {format_hf(max(p.health_factor for p in points if p.health_factor is not None))}"
            if finite
            else "no debt throughout"
        )
        out.print(f"  health {sparkline(hfs)}  {span}, now {format_hf(points[-1].health_factor)}")
        table = Table()
        for col in ("block", "block time (UTC)", "health factor", "tier", "collateral", "debt"):
            table.add_column(col, justify="right" if col != "tier" else "left")
        for p in points[-rows:] if rows > 0 else points:
            table.add_row(
                str(p.block_number),
                f"{datetime.fromtimestamp(p.block_timestamp, UTC):%Y-%m-%d %H:%M:%S}",
                format_hf(p.health_factor),
                p.risk_tier,
                format_base(p.total_collateral_base, h.base_currency_decimals),
                format_base(p.total_debt_base, h.base_currency_decimals),
            )
        out.print(table)
