"""`onchain scan`: every discovered position of a market at one pinned block, riskiest first."""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from onchain.cli.common import (
    BlockOpt,
    ChainIdOpt,
    ChainOpt,
    ConfigOpt,
    DeploymentOpt,
    HorizonOpt,
    MarketOpt,
    NoRiskOpt,
    PriceHistoryOpt,
    ProtocolOpt,
    RpcOpt,
    TimeoutOpt,
    check_output_flags,
    open_client,
    progress_bars,
    resolve_market,
    warn_skipped,
)
from onchain.cli.positions import check_risk_flags, print_scan, risk_fields, riskiest_first


def scan_cmd(
    rpc: RpcOpt = None,
    protocol: ProtocolOpt = None,
    market: MarketOpt = None,
    block: BlockOpt = None,
    config: ConfigOpt = None,
    chain_id: ChainIdOpt = None,
    chain: ChainOpt = None,
    deployment: DeploymentOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="machine-readable JSON")] = False,
    as_csv: Annotated[bool, typer.Option("--csv", help="CSV, one row per account")] = False,
    show_all: Annotated[bool, typer.Option("--all", help="include accounts without debt")] = False,
    limit: Annotated[
        int, typer.Option("--limit", help="rows in the human table (0: all; JSON/CSV: all)")
    ] = 50,
    timeout: TimeoutOpt = 10.0,
    horizon: HorizonOpt = None,
    price_history: PriceHistoryOpt = None,
    no_risk: NoRiskOpt = False,
) -> None:
    """List every discovered position of a market at one pinned block, riskiest first, with its
    risk tier and probability of liquidation within the horizon."""
    from onchain.app.pipeline import scan
    from onchain.output import positions_csv, positions_json

    check_output_flags(as_json, as_csv, limit)
    check_risk_flags(horizon, price_history)
    url, market_ref, expected = resolve_market(
        rpc, protocol, market, config, chain_id, chain, deployment
    )
    client = open_client(url, expected, timeout)
    with progress_bars(not (as_json or as_csv)) as progress:
        result = scan(
            client,
            market_ref,
            block_number=block,
            discovery_progress=progress("discovering accounts (blocks)"),
            read_progress=progress("reading positions"),
        )
    positions = riskiest_first([p for p in result.positions if show_all or p.has_debt])
    warn_skipped([result.market_state])
    risk = (
        None
        if no_risk
        else risk_fields(
            client,
            result.block,
            positions,
            config,
            horizon,
            price_history,
            not (as_json or as_csv),
            [(market_ref.protocol, result.market_state)],
        )
    )
    if as_json:
        print(positions_json(positions, risk))
    elif as_csv:
        sys.stdout.write(positions_csv(positions, risk))
    else:
        named = market if config is not None and market and not market.startswith("0x") else None
        print_scan(result, positions, limit, url, risk, named)
