"""`onchain demo`: the whole path on the local devnet, for a first look."""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from onchain.cli.common import config_chain, err, market_ref, open_client, out
from onchain.cli.positions import print_scan, risk_fields, riskiest_first
from onchain.errors import InputError, OnchainError
from onchain.protocols.catalog import DEFAULT_ADAPTER

if TYPE_CHECKING:
    from onchain.protocols.base import MarketRef


def demo_cmd(
    borrowers: Annotated[int, typer.Option("--borrowers", help="number of seeded borrowers")] = 300,
    eth_drop: Annotated[
        float, typer.Option("--eth-drop", help="WETH price move applied, in %")
    ] = -7.0,
) -> None:
    """The whole path on the local devnet: start it, move ETH, scan the market, watch one wallet."""
    from onchain.app.pipeline import scan
    from onchain.devnet.build import running_devnet
    from onchain.devnet.control import set_prices
    from onchain.devnet.morpho import set_prices_everywhere
    from onchain.output import breakdown_table
    from onchain.protocols.base import MarketRef

    if not -95 <= eth_drop <= 200:
        raise InputError(f"--eth-drop must be between -95 and 200 (percent), got {eth_drop}")
    with running_devnet(borrowers, 7) as info:
        how = "loaded from cache" if info.loaded_from_cache else "built (cold deploy + seed)"
        err.print(f"devnet {how} in {info.build_seconds:.2f}s on {info.rpc_url}")
        new_price = 3000.0 * (1 + eth_drop / 100)
        if info.morpho is not None:  # both protocols' oracles move in the same block
            block = set_prices_everywhere(info.rpc_url, info.aave, info.morpho, {"WETH": new_price})
        else:
            block = set_prices(info.rpc_url, info.aave, {"WETH": new_price})
        err.print(f"WETH oracle moved {eth_drop:+.1f}% to ${new_price:,.2f} in block {block}")
        client = open_client(info.rpc_url, info.chain_id, 10.0)
        started = time.monotonic()
        first = MarketRef(DEFAULT_ADAPTER, info.aave.addresses_provider)
        result = scan(client, first)
        elapsed = time.monotonic() - started
        positions = riskiest_first([p for p in result.positions if p.has_debt])
        out.print(
            f"scan: {len(result.accounts)} accounts in {elapsed:.2f}s, {client.requests_sent} RPC requests"
        )
        import tempfile

        from onchain.devnet.config_file import write_devnet_config

        with tempfile.TemporaryDirectory() as folder:
            config = Path(folder) / "devnet.toml"
            write_devnet_config(config, info)  # names the devnet's Uniswap pools as references
            risk = risk_fields(
                client,
                result.block,
                positions,
                config,
                "1h",
                None,
                True,
                [(first.protocol, result.market_state)],
            )
        print_scan(result, positions, 25, info.rpc_url, risk)
        for position in positions[:1] + [p for p in positions if not p.liquidatable][:1]:
            out.print(breakdown_table(position))
        _demo_other_markets(info, first)
        from onchain.alerts.demo import demo_alerts

        demo_alerts(info, out.console)  # alerts arrive


def _demo_other_markets(info: Any, first: MarketRef) -> None:
    """The rest of the devnet's configured markets (other protocols): scan each, count what a
    refresh of its positions costs, then watch wallets that borrow in several protocols."""
    import tempfile

    from onchain.app.pipeline import read_markets, scan, watch_everywhere
    from onchain.config import load_config
    from onchain.devnet.config_file import write_devnet_config
    from onchain.output import advice_lines, watch_table

    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "devnet.toml"
        write_devnet_config(path, info, with_aave36=True)
        cfg = load_config(path)
    chain = config_chain(cfg, None)
    named = [(m.name, market_ref(m)) for m in cfg.markets.values() if m.chain == chain.name]
    risky: list[str] = []
    refs: list[MarketRef] = []
    for name, ref in named:
        if ref.address.lower() == first.address.lower():
            refs.append(ref)
            continue  # scanned above
        out.print(f"\n[bold]{name}[/] (version {ref.version or 'from the chain'})")
        client = open_client(info.rpc_url, info.chain_id, 10.0)
        started = time.monotonic()
        try:
            result = scan(client, ref)
        except OnchainError as exc:  # e.g. a Pool revision the Aave math does not follow yet
            out.print(f"{name}: not scanned: {exc}")
            continue
        refs.append(ref)
        elapsed = time.monotonic() - started
        positions = riskiest_first([p for p in result.positions if p.has_debt])
        print_scan(result, positions, 15, info.rpc_url)
        refresh = open_client(info.rpc_url, info.chain_id, 10.0)
        before = refresh.requests_sent
        again = read_markets(refresh, [ref], accounts=result.accounts).positions
        out.print(
            f"scan: {len(result.accounts)} accounts in {elapsed:.2f}s, {client.requests_sent} RPC "
            f"requests; a refresh of all {len(again)} positions: "
            f"{refresh.requests_sent - before} RPC requests"
        )
        risky += [p.account for p in positions if p.account in set(info.borrowers)]
    wallets = list(dict.fromkeys(risky))[:3]
    if wallets:
        client = open_client(info.rpc_url, info.chain_id, 10.0)
        watched = watch_everywhere(client, refs, wallets)
        held = [p for p in watched.positions if p.assets]
        states = [(ref.protocol, state) for ref, state in watched.market_states]
        with tempfile.TemporaryDirectory() as folder:
            path = Path(folder) / "devnet.toml"
            write_devnet_config(path, info)
            risk = risk_fields(client, watched.block, held, path, "1h", None, False, states)
        out.print(
            watch_table(
                held,
                f"watch {len(wallets)} wallets across {len(refs)} markets at block "
                f"{watched.block.number} (one table, every protocol; risk within 1 h)",
                risk,
            )
        )
        for line in advice_lines(held, risk or [{}] * len(held)):
            out.print(line)
