"""`onchain scan`: every discovered position of a market at one pinned block, riskiest first."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Any

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
    chain_endpoint,
    check_endpoints,
    check_output_flags,
    config_chains,
    err,
    market_ref,
    open_client,
    out,
    progress_bars,
    resolve_market,
    warn_skipped,
)
from onchain.cli.positions import (
    check_risk_flags,
    configured_names,
    named_fields,
    print_scan,
    risk_fields,
    riskiest_first,
)


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
    risk tier and probability of liquidation within the horizon. With --config and neither
    --market nor --protocol: every market the config lists, on every chain (or --chain), in
    one table with a chain column."""
    from onchain.app.pipeline import scan
    from onchain.output import positions_csv, positions_json

    check_output_flags(as_json, as_csv, limit)
    check_risk_flags(horizon, price_history)
    if config is not None and market is None and protocol is None:
        every = Everywhere(rpc, config, chain, chain_id, block, timeout, show_all)
        every.scan(horizon, price_history, no_risk, as_json or as_csv)
        every.print(as_json, as_csv, limit)
        return
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
    chain_name, market_name = configured_names(config, market_ref, expected)
    names = named_fields(risk, [chain_name] * len(positions), [market_name] * len(positions))
    if as_json:
        print(positions_json(positions, names))
    elif as_csv:
        sys.stdout.write(positions_csv(positions, names))
    else:
        named = market if config is not None and market and not market.startswith("0x") else None
        print_scan(result, positions, limit, url, risk, named)


class Everywhere:
    """Every configured market on every chain asked for: per chain one client and one pinned
    block, every market read at it; rows riskiest first across all of them."""

    def __init__(
        self,
        rpc: list[str] | None,
        config: Path,
        chain: str | None,
        chain_id: int | None,
        block: int | None,
        timeout: float,
        show_all: bool,
    ) -> None:
        from onchain.config import load_config
        from onchain.errors import InputError

        self.cfg = load_config(config)
        self.config, self.rpc, self.chain_id, self.timeout = config, rpc, chain_id, timeout
        self.chains = config_chains(self.cfg, chain)
        if block is not None and len(self.chains) > 1:
            raise InputError("--block is a block of one chain: pass --chain NAME with it")
        if (rpc or chain_id is not None) and len(self.chains) > 1:
            raise InputError("--rpc and --chain-id are for one chain: pass --chain NAME with them")
        check_endpoints(rpc, self.chains)
        self.block, self.show_all = block, show_all
        self.rows: list[tuple[Any, dict[str, Any] | None, str, str]] = []
        self.blocks: dict[str, Any] = {}

    def scan(
        self, horizon: str | None, price_history: Path | None, no_risk: bool, machine: bool
    ) -> None:
        from onchain.app.pipeline import scan

        for chain in self.chains:
            markets = [m for m in self.cfg.markets.values() if m.chain == chain.name]
            url = chain_endpoint(self.rpc, chain)
            client = open_client(url, self.chain_id or chain.chain_id, self.timeout)
            pinned = client.pin_block(self.block)
            self.blocks[chain.name] = pinned
            found: list[tuple[Any, str]] = []
            states = []
            with progress_bars(not machine) as progress:
                for m in markets:
                    result = scan(
                        client,
                        market_ref(m),
                        block_number=pinned.number,
                        discovery_progress=progress(f"{m.name}: discovering accounts (blocks)"),
                        read_progress=progress(f"{m.name}: reading positions"),
                    )
                    warn_skipped([result.market_state])
                    states.append((m.protocol, result.market_state))
                    found += [(p, m.name) for p in result.positions if self.show_all or p.has_debt]
            held = [p for p, _name in found]
            risk = (
                None
                if no_risk
                else risk_fields(
                    client, pinned, held, self.config, horizon, price_history, not machine, states
                )
            )
            for i, (position, name) in enumerate(found):
                self.rows.append((position, None if risk is None else risk[i], chain.name, name))
        order = riskiest_first([row[0] for row in self.rows])
        rank = {id(p): i for i, p in enumerate(order)}
        self.rows.sort(key=lambda row: rank[id(row[0])])

    def print(self, as_json: bool, as_csv: bool, limit: int) -> None:
        from onchain.output import positions_csv, positions_json, positions_table

        positions = [row[0] for row in self.rows]
        risk = None if any(row[1] is None for row in self.rows) else [row[1] for row in self.rows]
        chains, names = [row[2] for row in self.rows], [row[3] for row in self.rows]
        if as_json or as_csv:
            fields = named_fields(risk, chains, names)  # type: ignore[arg-type]
            if as_json:
                print(positions_json(positions, fields))
            else:
                sys.stdout.write(positions_csv(positions, fields))
            return
        shown = positions if limit <= 0 else positions[:limit]
        at = ", ".join(f"{c} block {b.number}" for c, b in self.blocks.items())
        title = f"{len(self.cfg.markets)} configured market(s) at {at}"
        n = len(shown)
        out.print(
            positions_table(
                shown,
                title,
                None if risk is None else risk[:n],  # type: ignore[arg-type]
                chains=chains[:n],
                market_names=names[:n],
            )
        )
        liquidatable = sum(p.liquidatable for p in positions)
        out.print(
            f"{len(positions)} positions in {len(self.blocks)} chain(s); "
            f"[bold red]{liquidatable} liquidatable now[/]"
            + (f"; showing {n} (--limit 0 for all)" if n < len(positions) else "")
        )
        if not positions:
            err.print("no position with debt in the configured markets")
