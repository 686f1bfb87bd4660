"""`onchain ...`: human tables by default, --json/--csv for machines, one-line errors with exit
codes that mean something (2: bad input or unreachable RPC, 3: devnet failure)."""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from onchain.config import load_config
from onchain.errors import InputError, OnchainError
from onchain.output import breakdown_table, positions_csv, positions_json, positions_table
from onchain.pipeline import ScanResult, checked_address, scan
from onchain.protocols.base import MarketRef
from onchain.rpc.client import RpcClient, redact_url

app = typer.Typer(add_completion=False, no_args_is_help=True, help=__doc__)
devnet_app = typer.Typer(help="A local anvil chain with the real protocol contracts deployed.")
app.add_typer(devnet_app, name="devnet")
out = Console(width=None if sys.stdout.isatty() else 160)
err = Console(stderr=True, soft_wrap=True)

RpcOpt = Annotated[str | None, typer.Option("--rpc", help="JSON-RPC URL (or env ONCHAIN_RPC_URL)")]
ProtocolOpt = Annotated[str, typer.Option("--protocol", help="protocol adapter, e.g. aave-v3")]
MarketOpt = Annotated[
    str | None,
    typer.Option("--market", help="market address (Aave: PoolAddressesProvider) or config name"),
]
BlockOpt = Annotated[
    int | None, typer.Option("--block", help="block number to read at (default: latest)")
]
ConfigOpt = Annotated[
    Path | None, typer.Option("--config", help="TOML config naming chains and markets")
]
ChainIdOpt = Annotated[
    int | None, typer.Option("--chain-id", help="refuse an endpoint on another chain")
]
TimeoutOpt = Annotated[float, typer.Option("--timeout", help="seconds per RPC request")]


def main() -> None:
    """Console entry point: map our errors to one line on stderr and an exit code."""
    try:
        app(standalone_mode=False)
    except OnchainError as exc:
        err.print(f"[red]error:[/] {exc}", highlight=False)
        sys.exit(exc.exit_code)
    except typer.Abort:
        err.print("aborted")
        sys.exit(130)
    except (typer.BadParameter, typer.Exit) as exc:  # click usage errors
        if isinstance(exc, typer.Exit):
            sys.exit(exc.exit_code)
        err.print(f"[red]error:[/] {exc}")
        sys.exit(2)
    except Exception as exc:  # click's own usage errors carry exit_code
        code = getattr(exc, "exit_code", None)
        if code is not None and hasattr(exc, "format_message"):
            err.print(f"[red]error:[/] {exc.format_message()}")
            sys.exit(code)
        raise


def _resolve(
    rpc: str | None, protocol: str, market: str | None, config: Path | None, chain_id: int | None
) -> tuple[str, MarketRef, int | None]:
    """The endpoint, the market and the chain id to insist on, from flags and config."""
    if config is not None:
        cfg = load_config(config)
        if market is None:
            raise InputError("--market is required (a market name from the config or an address)")
        if market in cfg.markets:
            m = cfg.market(market)
            chain = cfg.chains[m.chain]
            url = rpc or os.environ.get("ONCHAIN_RPC_URL") or chain.resolve_rpc_url()
            if not url:
                raise InputError(
                    f"no RPC URL for chain {chain.name}: pass --rpc or set {chain.rpc_url_env}"
                )
            return (
                url,
                MarketRef(m.protocol, m.address, m.start_block, m.version),
                chain_id or chain.chain_id,
            )
    url = rpc or os.environ.get("ONCHAIN_RPC_URL")
    if not url:
        raise InputError("no RPC endpoint: pass --rpc URL (or set ONCHAIN_RPC_URL)")
    if market is None:
        raise InputError("--market is required")
    return url, MarketRef(protocol, checked_address(market, "market address")), chain_id


@contextmanager
def _progress(enabled: bool) -> Iterator[Callable[[str], Callable[[int, int], None]]]:
    """Progress bars on stderr for long discovery/reads; silent when not a terminal."""
    if not enabled or not err.is_terminal:
        yield lambda _label: lambda _done, _total: None
        return
    columns = [
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
    ]
    with Progress(*columns, console=err, transient=True) as bar:
        tasks: dict[str, Any] = {}

        def factory(label: str) -> Callable[[int, int], None]:
            def update(done: int, total: int) -> None:
                if label not in tasks:
                    tasks[label] = bar.add_task(label, total=total)
                bar.update(tasks[label], completed=done, total=total)

            return update

        yield factory


def _client(url: str, chain_id: int | None, timeout: float) -> RpcClient:
    client = RpcClient(url, timeout_s=timeout, expected_chain_id=chain_id)
    client.chain_id()  # fail fast: unreachable endpoint or wrong chain, before any work
    return client


@app.command("scan")
def scan_cmd(
    rpc: RpcOpt = None,
    protocol: ProtocolOpt = "aave-v3",
    market: MarketOpt = None,
    block: BlockOpt = None,
    config: ConfigOpt = None,
    chain_id: ChainIdOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="machine-readable JSON")] = False,
    as_csv: Annotated[bool, typer.Option("--csv", help="CSV, one row per account")] = False,
    show_all: Annotated[bool, typer.Option("--all", help="include accounts without debt")] = False,
    limit: Annotated[int, typer.Option("--limit", help="rows in the human table (0: all)")] = 50,
    timeout: TimeoutOpt = 10.0,
) -> None:
    """List every discovered position of a market at one pinned block, riskiest first."""
    url, market_ref, expected = _resolve(rpc, protocol, market, config, chain_id)
    client = _client(url, expected, timeout)
    with _progress(not (as_json or as_csv)) as progress:
        result = scan(
            client,
            market_ref,
            block_number=block,
            discovery_progress=progress("discovering accounts (blocks)"),
            read_progress=progress("reading positions"),
        )
    positions = _riskiest_first([p for p in result.positions if show_all or p.has_debt])
    if as_json:
        print(positions_json(positions))
    elif as_csv:
        sys.stdout.write(positions_csv(positions))
    else:
        _print_scan(result, positions, limit, url)


def _riskiest_first(positions: list[Any]) -> list[Any]:
    return sorted(positions, key=lambda p: (p.health_factor is None, p.health_factor or 0))


def _print_scan(result: ScanResult, positions: list[Any], limit: int, url: str) -> None:
    state = result.market_state
    liquidatable = sum(p.liquidatable for p in positions)
    below_1_1 = sum(
        1 for p in positions if p.health_factor is not None and p.health_factor < 11 * 10**17
    )
    shown = positions if limit <= 0 else positions[:limit]
    title = (
        f"{result.positions[0].protocol if result.positions else ''} market {state.addresses_provider} "
        f"(rules {state.version}) at block {result.block.number} {result.block.hash[:12]}… via {redact_url(url)}"
    )
    out.print(positions_table(shown, title))
    hidden = len(result.positions) - len(positions)
    out.print(
        f"{len(positions)} positions with debt ({hidden} discovered accounts without debt hidden); "
        f"[bold red]{liquidatable} liquidatable now[/], {below_1_1} below 1.10"
        + (f"; showing {len(shown)} (--limit 0 for all)" if len(shown) < len(positions) else "")
    )


@app.command("watch")
def watch_cmd(
    wallets: Annotated[list[str], typer.Argument(help="wallet addresses to watch")],
    rpc: RpcOpt = None,
    protocol: ProtocolOpt = "aave-v3",
    market: MarketOpt = None,
    block: BlockOpt = None,
    config: ConfigOpt = None,
    chain_id: ChainIdOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="machine-readable JSON")] = False,
    timeout: TimeoutOpt = 10.0,
) -> None:
    """Show your wallets' positions with the per-asset breakdown and how far prices may fall."""
    checked = [checked_address(w, "wallet address") for w in wallets]
    url, market_ref, expected = _resolve(rpc, protocol, market, config, chain_id)
    client = _client(url, expected, timeout)
    result = scan(client, market_ref, block_number=block, accounts=checked)
    if as_json:
        print(positions_json(result.positions))
        return
    for position in result.positions:
        if not position.assets:
            out.print(
                f"{position.account}: no position in this market at block {result.block.number}"
            )
            continue
        out.print(breakdown_table(position))


@devnet_app.callback(invoke_without_command=True)
def devnet_cmd(
    ctx: typer.Context,
    borrowers: Annotated[int, typer.Option("--borrowers", help="number of seeded borrowers")] = 300,
    seed: Annotated[int, typer.Option("--seed", help="seed for the borrowers")] = 7,
    keep_running: Annotated[
        bool, typer.Option("--keep-running", help="serve until Ctrl-C")
    ] = False,
    rebuild: Annotated[bool, typer.Option("--rebuild", help="ignore the cached state")] = False,
    write_config: Annotated[
        Path | None, typer.Option("--write-config", help="write a TOML config for this devnet")
    ] = None,
) -> None:
    """Start anvil with a real Aave V3 market and seeded borrowers; print its URL and addresses."""
    if ctx.invoked_subcommand is not None:
        return
    from onchain.devnet.build import running_devnet

    with running_devnet(borrowers, seed, rebuild=rebuild) as info:
        how = "loaded from cache" if info.loaded_from_cache else "built (cold deploy + seed)"
        err.print(f"devnet {how} in {info.build_seconds:.2f}s: {len(info.borrowers)} borrowers")
        print(json.dumps(info.to_json(), indent=1))
        if write_config:
            from onchain.devnet.config_file import write_devnet_config

            write_devnet_config(write_config, info)
            err.print(f"wrote {write_config}")
        if keep_running:
            err.print(f"serving on {info.rpc_url}; Ctrl-C stops it")
            try:
                while True:
                    time.sleep(3600)
            except KeyboardInterrupt:
                pass


@devnet_app.command("set-price")
def devnet_set_price(
    prices: Annotated[list[str], typer.Argument(help="SYMBOL=USD pairs, e.g. WETH=2500")],
    rpc: Annotated[str, typer.Option("--rpc", help="the devnet's URL")],
    borrowers: Annotated[int, typer.Option("--borrowers")] = 300,
    seed: Annotated[int, typer.Option("--seed")] = 7,
) -> None:
    """Publish new oracle prices on a running devnet (one block)."""
    from onchain.devnet.build import cached_deployment
    from onchain.devnet.control import set_prices

    parsed: dict[str, float] = {}
    for item in prices:
        symbol, _, value = item.partition("=")
        try:
            parsed[symbol.upper()] = float(value)
        except ValueError:
            raise InputError(f"expected SYMBOL=USD, got {item!r}") from None
    block = set_prices(rpc, cached_deployment(borrowers, seed), parsed)
    err.print(f"prices set in block {block}")


@devnet_app.command("mine")
def devnet_mine(
    blocks: Annotated[int, typer.Argument(help="blocks to mine")] = 1,
    rpc: Annotated[str, typer.Option("--rpc", help="the devnet's URL")] = "",
) -> None:
    """Mine blocks on a running devnet."""
    from onchain.devnet.control import mine

    if not rpc:
        raise InputError("--rpc is required")
    err.print(f"head is now block {mine(rpc, blocks)}")


@app.command("demo")
def demo_cmd(
    borrowers: Annotated[int, typer.Option("--borrowers")] = 300,
    eth_drop: Annotated[
        float, typer.Option("--eth-drop", help="WETH price move applied, in %")
    ] = -7.0,
) -> None:
    """The whole path on the local devnet: start it, move ETH, scan the market, watch one wallet."""
    from onchain.devnet.build import running_devnet
    from onchain.devnet.control import set_prices

    with running_devnet(borrowers, 7) as info:
        how = "loaded from cache" if info.loaded_from_cache else "built (cold deploy + seed)"
        err.print(f"devnet {how} in {info.build_seconds:.2f}s on {info.rpc_url}")
        new_price = 3000.0 * (1 + eth_drop / 100)
        block = set_prices(info.rpc_url, info.aave, {"WETH": new_price})
        err.print(f"WETH oracle moved {eth_drop:+.1f}% to ${new_price:,.2f} in block {block}")
        client = _client(info.rpc_url, info.chain_id, 10.0)
        started = time.monotonic()
        result = scan(client, MarketRef("aave-v3", info.aave.addresses_provider))
        elapsed = time.monotonic() - started
        positions = _riskiest_first([p for p in result.positions if p.has_debt])
        _print_scan(result, positions, 25, info.rpc_url)
        out.print(
            f"scan: {len(result.accounts)} accounts in {elapsed:.2f}s, {client.requests_sent} RPC requests"
        )
        for position in positions[:1] + [p for p in positions if not p.liquidatable][:1]:
            out.print(breakdown_table(position))


if __name__ == "__main__":
    main()
