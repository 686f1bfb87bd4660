"""`onchain stress`: the current book under historical extreme moves or given drops, and its
liquidation curve, and the liquidation cascade through the configured reference pools
([risk.references]). Human tables by default, --json for machines, --chart PATH.png for the curve.
Bad input (unknown scenario, malformed --drop, unwritable chart path) is one line and exit 2,
before any RPC call."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from onchain.cli.common import (
    LazyConsole,
    check_output_flags,
    check_writable,
    open_client,
    resolve_markets,
    warn_skipped,
    write_csv,
)
from onchain.errors import InputError
from onchain.protocols.catalog import ADAPTER_NAMES

out = LazyConsole(pipe_width=160)


def _money(value: float | None) -> str:
    if value is None:
        return "n/a"
    return f"{value:,.0f}" if abs(value) >= 100 else f"{value:,.2f}"


def _moves(drops: dict[str, float]) -> str:
    return ", ".join(f"{k} {-v * 100:+.1f}%" for k, v in drops.items())


_FIGURES = ("collateral_at_risk", "debt_at_risk", "collateral_seized", "debt_repaid", "bad_debt")
CSV_FIELDS = (
    "scenario",
    "event",
    "moves",
    "market",
    "label",
    "protocol",
    "base_currency",
    "positions",
    "positions_liquidatable",
    *(f"{name}_{unit}" for name in _FIGURES for unit in ("base", "usd")),
)


def scenario_market_rows(report: dict[str, Any]) -> list[dict[str, Any]]:
    """--csv: the scenarios' figures per market, one row each (the curve and the cascade are
    in the JSON and the tables)."""
    return [
        {"scenario": s["name"], "event": s["event"], "moves": _moves(s["drops"]), **m}
        for s in report["scenarios"]
        for m in s["by_market"]
    ]


def print_report(report: dict[str, Any], chart: Path | None) -> None:
    """Scenario totals, then per market and per asset (rows with something liquidated), then
    the liquidation curve."""
    from rich.table import Table

    out.print(
        f"book: {report['positions']} positions with debt in {len(report['markets'])} market(s) "
        f"at block {report['block']['number']} {report['block']['hash'][:12]}…"
    )
    summary = Table(title="Scenarios (USD; one liquidation call per position)")
    for col in ("scenario", "moves", "liquidatable", "coll. seized", "debt repaid", "bad debt"):
        summary.add_column(col, justify="left" if col in ("scenario", "moves") else "right")
    summary.add_column("coll. at risk", justify="right")
    for s in report["scenarios"]:
        t = s["totals"]
        summary.add_row(
            s["name"],
            _moves(s["drops"]),
            str(t["positions_liquidatable"]),
            _money(t["collateral_seized_usd"]),
            _money(t["debt_repaid_usd"]),
            _money(t["bad_debt_usd"]),
            _money(t["collateral_at_risk_usd"]),
        )
    out.print(summary)
    unpriced = [m["label"] for m in report["markets"] if m["usd_per_base"] is None]
    if unpriced:
        out.print(
            f"USD figures leave out {', '.join(unpriced)}: no USD price for its base currency "
            "in this book (see the per-market table, in base units)"
        )
    markets = Table(title="By market (base currency after the move)")
    for col in ("scenario", "market", "base", "liq.", "coll. seized", "debt repaid", "bad debt"):
        markets.add_column(
            col, justify="left" if col in ("scenario", "market", "base") else "right"
        )
    assets = Table(title="By asset")
    for col in ("scenario", "asset", "price", "seized (units)", "seized USD", "repaid (units)"):
        assets.add_column(col, justify="left" if col in ("scenario", "asset") else "right")
    assets.add_column("bad debt USD", justify="right")
    for s in report["scenarios"]:
        for m in s["by_market"]:
            if m["positions_liquidatable"] or m["bad_debt_base"] > 0:
                markets.add_row(
                    s["name"],
                    m["label"],
                    m["base_currency"],
                    f"{m['positions_liquidatable']}/{m['positions']}",
                    _money(m["collateral_seized_base"]),
                    _money(m["debt_repaid_base"]),
                    _money(m["bad_debt_base"]),
                )
        for a in s["by_asset"]:
            if a["collateral_seized_units"] or a["debt_repaid_units"] or a["bad_debt_usd"]:
                assets.add_row(
                    s["name"],
                    a["symbol"],
                    f"{(a['price_factor'] - 1) * 100:+.1f}%",
                    f"{a['collateral_seized_units']:,.4f}",
                    _money(a["collateral_seized_usd"]),
                    f"{a['debt_repaid_units']:,.4f}",
                    _money(a["bad_debt_usd"]),
                )
    out.print(markets if markets.row_count else "no position liquidatable under these scenarios")
    if assets.row_count:
        out.print(assets)
    curve = report["curve"]
    table = Table(title="Liquidation curve: uniform drop of volatile assets (stables held), USD")
    for col in ("drop", "liquidatable", "collateral at risk", "debt at risk", "bad debt"):
        table.add_column(col, justify="right")
    for i, d in enumerate(curve["drops"]):
        table.add_row(
            f"-{d * 100:.0f}%",
            str(curve["positions_liquidatable"][i]),
            _money(curve["collateral_at_risk_usd"][i]),
            _money(curve["debt_at_risk_usd"][i]),
            _money(curve["bad_debt_usd"][i]),
        )
    out.print(table)
    print_cascade(report.get("cascade"))
    if chart is not None:
        out.print(f"chart written to {chart}")


def print_cascade(cascade: dict[str, Any] | None) -> None:
    """Per symbol and initial drop: the drop once seized collateral is sold into its pool."""
    from rich.table import Table

    if not cascade:
        return
    if not cascade["by_symbol"]:
        out.print(f"no liquidation cascade: {cascade['reason']}")
        return
    table = Table(
        title="Liquidation cascade: one symbol drops, its seized collateral is sold into its "
        "reference pool, the price falls further (fixed point)"
    )
    for col in ("symbol", "drop", "final drop", "seized (units)", "seized USD", "iter.", "note"):
        table.add_column(col, justify="left" if col in ("symbol", "note") else "right")
    for s in cascade["by_symbol"]:
        for step in s["steps"]:
            note = "wiped out" if step["wiped_out"] else ""
            if step["seized_units"] and not step["within_range"]:
                note = (note + " " if note else "") + "beyond the pool range: impact a lower bound"
            table.add_row(
                s["symbol"],
                f"-{step['initial_drop'] * 100:.0f}%",
                f"-{step['final_drop'] * 100:.1f}%",
                f"{step['seized_units']:,.4f}",
                _money(step["seized_value_usd"]),
                str(step["iterations"]),
                note,
            )
    out.print(table)
    for s in cascade["by_symbol"]:
        edge = "unknown" if s["range_drop"] is None else f"-{s['range_drop'] * 100:.1f}%"
        out.print(
            f"{s['symbol']}: pool {s['pool']} ({s['symbol']}/{s['quote']}, fee "
            f"{s['fee'] * 100:g}%), virtual reserve {s['virtual_reserve_units']:,.2f} "
            f"{s['symbol']}, current range ends at {edge}; {s['positions']} positions in "
            f"{', '.join(s['markets'])}"
        )
    for skip in cascade["skipped"]:
        out.print(f"{skip['symbol']}: no cascade ({skip['reason']})")


def stress_cmd(
    scenario: Annotated[
        list[str] | None,
        typer.Option(
            "--scenario",
            help="historical scenario DATE or DATE/WINDOW (1h, 4h, 24h), repeatable; "
            "default: every event's worst 1h and 24h moves",
        ),
    ] = None,
    drop: Annotated[
        list[str] | None,
        typer.Option(
            "--drop",
            help="a move of your own, signed: ETH=-30% is a 30% fall, ETH=+10% a rise (repeatable)",
        ),
    ] = None,
    rpc: Annotated[str | None, typer.Option("--rpc", help="JSON-RPC URL")] = None,
    protocol: Annotated[
        str | None,
        typer.Option("--protocol", help=f"protocol adapter ({', '.join(ADAPTER_NAMES)})"),
    ] = None,
    market: Annotated[
        str | None,
        typer.Option("--market", help="one market (default with --config: all of the chain)"),
    ] = None,
    block: Annotated[int | None, typer.Option("--block", help="block (default latest)")] = None,
    config: Annotated[Path | None, typer.Option("--config", help="TOML config")] = None,
    chain_id: Annotated[
        int | None, typer.Option("--chain-id", help="refuse an endpoint on another chain")
    ] = None,
    chain: Annotated[str | None, typer.Option("--chain", help="chain name from the config")] = None,
    deployment: Annotated[
        str | None,
        typer.Option("--deployment", help="the protocol's contract when --market is an id"),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="machine-readable JSON")] = False,
    as_csv: Annotated[
        bool, typer.Option("--csv", help="CSV: one row per scenario and market (base and USD)")
    ] = False,
    chart: Annotated[
        Path | None, typer.Option("--chart", help="write the liquidation curve as a PNG")
    ] = None,
    curve_max: Annotated[
        float, typer.Option("--curve-max", help="largest drop of the curve, %")
    ] = 60.0,
    curve_step: Annotated[float, typer.Option("--curve-step", help="curve step, %")] = 5.0,
    timeout: Annotated[float, typer.Option("--timeout", help="seconds per request")] = 10.0,
) -> None:
    """Positions liquidated, collateral seized, debt repaid and bad debt under historical
    moves (or --drop), per market and per asset, the liquidation curve, and the cascade
    (seized collateral sold into the config's reference pools, fed back into the drop)."""
    from onchain.config import load_config
    from onchain.output import strict_json

    check_output_flags(as_json, as_csv)
    if scenario and drop:
        raise InputError("give --scenario or --drop, not both")
    # imported here: numpy/scipy/matplotlib would slow every other command's start
    from onchain.app.stress_report import (
        book_cascade,
        no_cascade,
        parse_drops,
        read_book_positions,
        select_scenarios,
        stress_book,
        stress_chosen,
        write_curve_chart,
    )
    from onchain.risk.stress import MIN_CURVE_STEP_PCT

    custom = parse_drops(drop) if drop else None
    chosen = [custom] if custom is not None else select_scenarios(scenario or [])
    if not (MIN_CURVE_STEP_PCT <= curve_step <= curve_max <= 100):
        raise InputError(
            f"--curve-step and --curve-max must satisfy {MIN_CURVE_STEP_PCT} <= step <= max"
            f" <= 100 (percent), got step {curve_step:g}, max {curve_max:g}"
        )
    if chart is not None:
        if chart.suffix.lower() != ".png":
            raise InputError(f"--chart {chart}: expected a .png path")
        if not chart.parent.is_dir():
            raise InputError(f"--chart {chart}: folder {chart.parent} does not exist")
        check_writable(chart, "--chart")
    references: tuple[Any, ...] = ()
    if config is not None:
        references = load_config(config).risk_settings.references
    url, refs, expected = resolve_markets(
        rpc, protocol, market, config, chain_id, chain, deployment
    )
    client = open_client(url, expected, timeout)
    pinned, positions, states = read_book_positions(client, refs, block)
    warn_skipped(states)
    sb = stress_book(pinned, positions)
    report = stress_chosen(sb, chosen, custom, curve_max_pct=curve_max, curve_step_pct=curve_step)
    report["cascade"] = (
        book_cascade(client, sb, references)
        if config is not None
        else no_cascade("no config: reference pools come from [risk.references] (--config)")
    )
    if chart is not None:
        try:
            write_curve_chart(report, chart)
        except OSError as exc:
            raise InputError(f"--chart {chart}: {exc.strerror or exc}") from None
        report["chart"] = str(chart)
    report.setdefault("block_number", report["block"]["number"])  # as in every other JSON
    if as_json:
        print(strict_json(report))
    elif as_csv:
        write_csv(scenario_market_rows(report), CSV_FIELDS)
    else:
        print_report(report, chart)
