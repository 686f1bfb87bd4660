"""Positions as scan, watch and the demo show them: the risk fields per position (tier,
probability within the horizon, reasons) and the scan table with its summary lines."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from onchain.cli.common import err, escape, out

if TYPE_CHECKING:
    from onchain.app.pipeline import ScanResult
    from onchain.rpc.client import RpcClient
    from onchain.rpc.endpoints import EndpointSet


def check_risk_flags(horizon: str | None, price_history: Path | None) -> None:
    """Bad risk flags fail before any chain read, one clear error."""
    from onchain.app.risk_context import parse_horizon
    from onchain.errors import InputError

    parse_horizon(horizon)
    if price_history is not None and not price_history.exists():
        raise InputError(f"price history not found: {price_history}")


def _market_snapshots(
    client: RpcClient, block: Any, states: Sequence[tuple[str, Any]]
) -> list[Any]:
    """Reserve liquidity from every adapter that can report it (no extra reads for Aave)."""
    from onchain.app.pipeline import market_snapshot

    found = (market_snapshot(client, protocol, state, block) for protocol, state in states)
    return [s for s in found if s is not None]


def risk_fields(
    client: RpcClient,
    block: Any,
    positions: list[Any],
    config: Path | None,
    horizon: str | None,
    price_history: Path | None,
    say_sources: bool,
    states: Sequence[tuple[str, Any]] = (),
) -> list[dict[str, Any]] | None:
    """Risk fields per position (same order); stderr says which inputs and defaults were used.
    `states`: (protocol, market state) pairs whose reserve liquidity feeds the pool reasons."""
    from onchain.app.risk_context import RiskSettings, assess_positions, parse_horizon
    from onchain.config import load_config
    from onchain.jobs.assess import floored

    if not positions:
        return []
    cfg = load_config(config) if config is not None else None
    settings = cfg.risk_settings if cfg is not None else RiskSettings()
    report = assess_positions(
        client,
        block,
        positions,
        settings,
        horizon_s=parse_horizon(horizon),
        price_history=price_history,
        market_snapshots=_market_snapshots(client, block, states),
    )
    if say_sources:
        for note in report.sources:
            err.print(f"[dim]{escape(note)}[/]", highlight=False)
    rows = [report.fields(i) for i in range(len(positions))]
    floors = cfg.health_floors if cfg is not None else None
    for position, fields in zip(positions, rows, strict=True):
        if not position.liquidatable:  # [risk.tiers]: a health factor floor under the tier
            fields["tier"], fields["reasons"] = floored(
                fields["tier"], fields["reasons"], position.health_factor, False, floors
            )
    return rows


def riskiest_first(positions: list[Any]) -> list[Any]:
    return sorted(positions, key=lambda p: (p.health_factor is None, p.health_factor or 0))


def print_scan(
    result: ScanResult,
    positions: list[Any],
    limit: int,
    url: str | EndpointSet,
    risk: list[dict[str, Any]] | None = None,
    name: str | None = None,
) -> None:
    """`name`: the market's config name, shown before the address."""
    from onchain.output import positions_table
    from onchain.rpc.client import redact_url

    state = result.market_state
    liquidatable = sum(p.liquidatable for p in positions)
    below_1_1 = sum(
        1 for p in positions if p.health_factor is not None and p.health_factor < 11 * 10**17
    )
    shown = positions if limit <= 0 else positions[:limit]
    where = state.description
    where = f"{name} ({where})" if name else where
    title = (
        f"{result.positions[0].protocol if result.positions else ''} {where} "
        f"(rules {state.version}) at block {result.block.number} {result.block.hash[:12]}… via {redact_url(url)}"
    )
    out.print(positions_table(shown, title, None if risk is None else risk[: len(shown)]))
    hidden = len(result.positions) - len(positions)
    out.print(
        f"{len(positions)} positions with debt ({hidden} discovered accounts without debt hidden); "
        f"[bold red]{liquidatable} liquidatable now[/], {below_1_1} below 1.10"
        + (f"; showing {len(shown)} (--limit 0 for all)" if len(shown) < len(positions) else "")
    )
    if risk:
        counts: dict[str, int] = {}
        for fields in risk:
            counts[fields["tier"]] = counts.get(fields["tier"], 0) + 1
        order = ["LIQUIDATABLE", "PENDING", "CRITICAL", "HIGH", "WATCH", "SAFE"]
        out.print(
            f"risk tiers within {risk[0]['horizon_s']:.0f}s: "
            + ", ".join(f"{t} {counts[t]}" for t in order if t in counts)
        )


def named_fields(
    risk: Sequence[dict[str, Any]] | None,
    chains: Sequence[str | None],
    market_names: Sequence[str | None],
) -> list[dict[str, Any]]:
    """What JSON and CSV add to each position: its risk fields, and the config's names of its
    chain and market (`chain`, `market_name`; null without a config)."""
    fields = [dict(f) for f in risk] if risk is not None else [{} for _ in chains]
    for row, chain, name in zip(fields, chains, market_names, strict=True):
        row["chain"], row["market_name"] = chain, name
    return fields


def configured_names(
    config: Path | None, ref: Any, chain_id: int | None
) -> tuple[str | None, str | None]:
    """(chain, market name) of the configured market `ref` reads, on the chain with `chain_id`
    when several chains list the same address; (None, None) when no config names it."""
    from onchain.config import load_config

    if config is None:
        return None, None
    cfg = load_config(config)
    for m in cfg.markets.values():
        same = m.protocol == ref.protocol and m.address.lower() == ref.address.lower()
        if same and (chain_id is None or cfg.chains[m.chain].chain_id == chain_id):
            return m.chain, m.name
    return None, None
