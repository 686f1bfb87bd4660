"""`onchain ...`: human tables by default, --json/--csv for machines, one-line errors with exit
codes that mean something (1: a job of `run --once` failed, 2: bad input or unreachable RPC,
3: devnet failure, 4: `watch --fail-on` found a position at risk, 130: interrupted)."""

from __future__ import annotations

import json
import math
import os
import re
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from onchain.app.pipeline import ScanResult, checked_address, scan, watch_everywhere
from onchain.config import ChainConfig, Config, MarketConfig, load_config
from onchain.errors import ConfigError, InputError, OnchainError, RpcError, RpcUnavailable
from onchain.output import (
    advice_lines,
    breakdown_table,
    console,
    positions_csv,
    positions_json,
    positions_table,
    watch_table,
)
from onchain.protocols.base import MarketRef
from onchain.protocols.registry import ADAPTERS, DEFAULT_PROTOCOL
from onchain.rpc.client import RpcClient, redact_url
from onchain.rpc.endpoints import Budget, EndpointSet

app = typer.Typer(add_completion=False, no_args_is_help=True, help=__doc__)
devnet_app = typer.Typer(help="A local anvil chain with the real protocol contracts deployed.")
app.add_typer(devnet_app, name="devnet")
out = console(pipe_width=200)
err = console(stderr=True)


def _print_version(value: bool) -> None:
    if value:
        from importlib.metadata import version

        print(f"onchain {version('onchain')}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_print_version, is_eager=True, help="print the version and exit"
        ),
    ] = False,
) -> None:
    pass


RpcOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--rpc",
        help="JSON-RPC URL (or env ONCHAIN_RPC_URL); repeat for fallbacks, in order of preference",
    ),
]
ProtocolOpt = Annotated[
    str | None,
    typer.Option(
        "--protocol",
        help=f"protocol adapter ({', '.join(sorted(ADAPTERS))}); default: the config's, "
        f"else {DEFAULT_PROTOCOL}",
    ),
]
MarketOpt = Annotated[
    str | None,
    typer.Option(
        "--market",
        help="config name, deployment address (Aave: PoolAddressesProvider; Morpho Blue: the "
        "Morpho contract, every market) or a market id (0x + 64 hex) inside a deployment",
    ),
]
ChainOpt = Annotated[
    str | None, typer.Option("--chain", help="chain name from the config (when it has several)")
]
DeploymentOpt = Annotated[
    str | None,
    typer.Option(
        "--deployment",
        help="the protocol's contract when --market is a market id and no --config lists it",
    ),
]
MARKET_ID = re.compile(r"^0x[0-9a-fA-F]{64}$")
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
HorizonOpt = Annotated[
    str | None,
    typer.Option(
        "--horizon",
        help="risk horizon, e.g. 30m, 1h, 1d (default: the chain's confirmation latency)",
    ),
]
PriceHistoryOpt = Annotated[
    Path | None,
    typer.Option(
        "--price-history",
        help="CSV timestamp,asset,price or a folder of hourly OHLC files (shared/data/prices layout)",
    ),
]
NoRiskOpt = Annotated[
    bool, typer.Option("--no-risk", help="skip the risk assessment (health only)")
]


INTERRUPTED = 130  # the shell's code for SIGINT; never 0, so a cron job sees it


def main(argv: Sequence[str] | None = None) -> None:
    """Console entry point: map our errors to one line on stderr and an exit code."""
    try:
        code = app(args=argv, standalone_mode=False)
        _endpoint_notes()
    except KeyboardInterrupt:  # raised outside typer's own handler (e.g. while it unwinds)
        code = INTERRUPTED
    except OnchainError as exc:
        err.print(f"[red]error:[/] {escape(str(exc))}", highlight=False)
        sys.exit(exc.exit_code)
    except typer.Abort:  # end of input at a prompt
        err.print("aborted")
        sys.exit(INTERRUPTED)
    except (typer.BadParameter, typer.Exit) as exc:  # click usage errors
        if isinstance(exc, typer.Exit):
            sys.exit(exc.exit_code)
        err.print(f"[red]error:[/] {escape(str(exc))}")
        sys.exit(2)
    except Exception as exc:  # click's own usage errors carry exit_code
        code = getattr(exc, "exit_code", None)
        if code is not None and hasattr(exc, "format_message"):
            if type(exc).__name__ == "NoArgsIsHelpError":  # the help is already printed
                message = exc.format_message().strip()
                if message:
                    print(message)
                sys.exit(code)
            err.print(f"[red]error:[/] {escape(exc.format_message())}")
            sys.exit(code)
        raise
    # with standalone_mode=False typer *returns* what a command's typer.Exit carried, and 130
    # for a KeyboardInterrupt it caught: both must reach the shell
    if code == INTERRUPTED:
        interrupted()
    if isinstance(code, int) and not isinstance(code, bool) and code:
        sys.exit(code)


def interrupted() -> None:
    """Ctrl-C: one line, exit 130, at once (no traceback, no wait for requests in flight)."""
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not print a traceback
    err.print("interrupted")
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(INTERRUPTED)


def _names_markets_by_id(protocol: str) -> bool:
    return bool(getattr(ADAPTERS.get(protocol), "markets_by_id", False))


def _endpoint(rpc: list[str] | str | None, chain: ChainConfig) -> EndpointSet:
    """The chain's endpoints in order of preference: --rpc (each), else ONCHAIN_RPC_URL, else
    the config's; with the chain's request budget."""
    urls = _flag_urls(rpc) or chain.resolve_rpc_urls()
    if not urls:
        raise InputError(f"no RPC URL for chain {chain.name}: pass --rpc or {chain.rpc_hint()}")
    return EndpointSet.of(urls, Budget(chain.rpc_max_rps, chain.rpc_max_batch))


def _flag_urls(rpc: list[str] | str | None) -> list[str]:
    if isinstance(rpc, str):
        rpc = [rpc]
    urls = [u for u in rpc or [] if u]
    if not urls and os.environ.get("ONCHAIN_RPC_URL"):
        urls = [os.environ["ONCHAIN_RPC_URL"]]
    return urls


def _market_ref(m: MarketConfig, market_id: str | None = None) -> MarketRef:
    configured = m.extra.get("market_id")
    return MarketRef(
        m.protocol,
        m.address,
        m.start_block,
        m.version,
        market_id or (str(configured) if configured else None),
    )


def _config_chain(cfg: Config, chain_name: str | None) -> ChainConfig:
    """The chain to work on: --chain, else the only chain the config lists markets for."""
    if chain_name is not None:
        if chain_name not in cfg.chains:
            known = ", ".join(sorted(cfg.chains)) or "none"
            raise ConfigError(f"chain {chain_name!r} is not in {cfg.path} (known: {known})")
        return cfg.chains[chain_name]
    used = sorted({m.chain for m in cfg.markets.values()})
    if len(used) != 1:
        raise InputError(
            f"{cfg.path} lists markets on {len(used)} chains ({', '.join(used) or 'none'}): "
            "pass --chain NAME"
        )
    return cfg.chains[used[0]]


def _config_deployment(
    cfg: Config, protocol: str | None, chain_name: str | None, *, market_id: str | None
) -> MarketConfig:
    """The one configured deployment a --protocol / market id refers to on the chain."""
    candidates = [
        m
        for m in cfg.markets.values()
        if (protocol is None or m.protocol == protocol)
        and (market_id is None or _names_markets_by_id(m.protocol))
        and (chain_name is None or m.chain == chain_name)
    ]
    if len(candidates) != 1:
        what = f"market id {market_id}" if market_id else f"--protocol {protocol}"
        names = ", ".join(sorted(m.name for m in candidates)) or "none"
        raise InputError(
            f"{what}: {len(candidates)} matching deployments in {cfg.path} ({names}); "
            "name one with --market NAME or --chain NAME"
        )
    return candidates[0]


def _resolve(
    rpc: list[str] | str | None,
    protocol: str | None,
    market: str | None,
    config: Path | None,
    chain_id: int | None,
    chain_name: str | None = None,
    deployment: str | None = None,
) -> tuple[EndpointSet, MarketRef, int | None]:
    """The endpoint, the market and the chain id to insist on, from flags and config.

    --market is a config name, a deployment's address, or a market id (0x + 64 hex) inside a
    deployment named by --deployment or found in the config."""
    is_id = market is not None and MARKET_ID.match(market) is not None
    if config is not None:
        cfg = load_config(config)
        if chain_name is not None:
            _config_chain(cfg, chain_name)  # an unknown chain is an error of its own
        if market is not None and market in cfg.markets:
            m = cfg.market(market)
            chain = cfg.chains[m.chain]
            return _endpoint(rpc, chain), _market_ref(m), chain_id or chain.chain_id
        if is_id or (market is None and protocol is not None):
            m = _config_deployment(cfg, protocol, chain_name, market_id=market if is_id else None)
            chain = cfg.chains[m.chain]
            ref = _market_ref(m, market if is_id else None)
            return _endpoint(rpc, chain), ref, chain_id or chain.chain_id
        if market is None:
            raise InputError("--market is required (a market name from the config or an address)")
        if not market.lower().startswith("0x"):
            cfg.market(market)  # not a name in the config: the error lists the names
    urls = _flag_urls(rpc)
    if not urls:
        raise InputError("no RPC endpoint: pass --rpc URL (or set ONCHAIN_RPC_URL)")
    url = EndpointSet.of(urls)
    if market is None:
        raise InputError("--market is required")
    if is_id:
        takes_ids = sorted(n for n in ADAPTERS if _names_markets_by_id(n))
        if protocol is None and len(takes_ids) == 1:
            protocol = takes_ids[0]
        if protocol is None or not _names_markets_by_id(protocol):
            raise InputError(
                f"{protocol or DEFAULT_PROTOCOL} does not name markets by id; "
                f"market ids are for: {', '.join(takes_ids)}"
            )
        if deployment is None:
            raise InputError(
                "--market is a market id: name its deployment with --deployment ADDRESS "
                "(or use --config FILE that lists it)"
            )
        ref = MarketRef(
            protocol, checked_address(deployment, "deployment address"), market_id=market
        )
        return url, ref, chain_id
    return (
        url,
        MarketRef(protocol or DEFAULT_PROTOCOL, checked_address(market, "market address")),
        chain_id,
    )


def resolve_markets(
    rpc: list[str] | None,
    protocol: str | None,
    market: str | None,
    config: Path | None,
    chain_id: int | None,
    chain: str | None,
    deployment: str | None,
) -> tuple[EndpointSet, list[MarketRef], int | None]:
    """The endpoint, the markets and the chain id to insist on: with --config and neither
    --market nor --protocol, every market the config lists on the chain; else the one named."""
    if config is not None and market is None and protocol is None:
        cfg = load_config(config)
        chain_cfg = _config_chain(cfg, chain)
        refs = [_market_ref(m) for m in cfg.markets.values() if m.chain == chain_cfg.name]
        return _endpoint(rpc, chain_cfg), refs, chain_id or chain_cfg.chain_id
    url, ref, expected = _resolve(rpc, protocol, market, config, chain_id, chain, deployment)
    return url, [ref], expected


def _warn_skipped(states: list[Any]) -> None:
    """Markets a deployment lists but that cannot be valued at this block (e.g. their oracle
    reverts) are left out of the figures; say so once, on stderr."""
    for state in states:
        skipped = getattr(state, "skipped_markets", ())
        if skipped:
            listed = "; ".join(f"{mid[:10]}… ({why})" for mid, why in skipped)
            err.print(f"[yellow]warning:[/] skipped {len(skipped)} market(s): {listed}")


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


_CLIENTS: list[RpcClient] = []


def _client(url: str | EndpointSet, chain_id: int | None, timeout: float) -> RpcClient:
    client = RpcClient(url, timeout_s=timeout, expected_chain_id=chain_id)
    client.chain_id()  # fail fast: unreachable endpoint or wrong chain, before any work
    _CLIENTS.append(client)
    return client


def _endpoint_notes() -> None:
    """After a command that succeeded: one line per endpoint that failed on the way (set aside,
    wrong chain), so a degraded fallback does not go unnoticed."""
    for client in _CLIENTS:
        for line in client.set_aside_notes():
            err.print(f"[yellow]warning:[/] {escape(line)}", highlight=False)


@app.command("scan")
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
    _check_output_flags(as_json, as_csv, limit)
    _check_risk_flags(horizon, price_history)
    url, market_ref, expected = _resolve(rpc, protocol, market, config, chain_id, chain, deployment)
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
    _warn_skipped([result.market_state])
    risk = (
        None
        if no_risk
        else _risk(
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
        _print_scan(result, positions, limit, url, risk, named)


def _check_output_flags(as_json: bool, as_csv: bool, limit: int | None = None) -> None:
    """One output format at a time; a negative --limit is a mistake, not "all" (that is 0)."""
    if as_json and as_csv:
        raise InputError("give --json or --csv, not both")
    if limit is not None and limit < 0:
        raise InputError(f"--limit must be 0 (all) or more, got {limit}")


def _check_risk_flags(horizon: str | None, price_history: Path | None) -> None:
    """Bad risk flags fail before any chain read, one clear error."""
    from onchain.app.risk_context import parse_horizon

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


def _risk(
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


def _riskiest_first(positions: list[Any]) -> list[Any]:
    return sorted(positions, key=lambda p: (p.health_factor is None, p.health_factor or 0))


def _print_scan(
    result: ScanResult,
    positions: list[Any],
    limit: int,
    url: str | EndpointSet,
    risk: list[dict[str, Any]] | None = None,
    name: str | None = None,
) -> None:
    """`name`: the market's config name, shown before the address."""
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


FAIL_EXIT = 4  # `watch --fail-on`: a position is at or worse than the tier given
TIER_ORDER = ("LIQUIDATABLE", "PENDING", "CRITICAL", "HIGH", "WATCH", "SAFE")  # worst first


@app.command("watch")
def watch_cmd(
    wallets: Annotated[
        list[str] | None,
        typer.Argument(help="wallet addresses to watch (or --wallets-from FILE)"),
    ] = None,
    rpc: RpcOpt = None,
    protocol: ProtocolOpt = None,
    market: MarketOpt = None,
    block: BlockOpt = None,
    config: ConfigOpt = None,
    chain_id: ChainIdOpt = None,
    chain: ChainOpt = None,
    deployment: DeploymentOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="machine-readable JSON")] = False,
    timeout: TimeoutOpt = 10.0,
    horizon: HorizonOpt = None,
    price_history: PriceHistoryOpt = None,
    no_risk: NoRiskOpt = False,
    follow: Annotated[
        bool,
        typer.Option(
            "--follow",
            help="keep watching: read again every --interval seconds until Ctrl-C (with --json "
            "one JSON document per line and read)",
        ),
    ] = False,
    interval: Annotated[
        float | None,
        typer.Option(
            "--interval",
            help="seconds between reads with --follow (default: the config's block time, else 12)",
        ),
    ] = None,
    fail_on: Annotated[
        str | None,
        typer.Option(
            "--fail-on",
            help=f"exit {FAIL_EXIT} when a position is at or worse than this tier "
            f"({', '.join(TIER_ORDER[:-1])}); with --follow, as soon as one is",
        ),
    ] = None,
    wallets_from: Annotated[
        Path | None,
        typer.Option("--wallets-from", help="a file of wallet addresses, one a line ('-': stdin)"),
    ] = None,
) -> None:
    """Your wallets' positions: with --config and no --market, in EVERY configured market of the
    chain (all protocols) in one table at one block; else in one market, asset by asset."""
    _check_risk_flags(horizon, price_history)
    fail_tier = None if fail_on is None else _tier_name(fail_on)
    if follow and block is not None:
        raise InputError("--follow reads each new head: it cannot be pinned with --block")
    if interval is not None and not (follow and interval > 0):
        raise InputError("--interval needs --follow and a number of seconds > 0")
    checked = _wallet_list(wallets or [], wallets_from)

    def read_once() -> list[str]:
        common: dict[str, Any] = {
            "block": block,
            "as_json": as_json,
            "timeout": timeout,
            "horizon": horizon,
            "price_history": price_history,
            "no_risk": no_risk,
            "one_line": follow,
        }
        if config is not None and market is None and protocol is None:
            held, risk = _watch_everywhere(checked, rpc, config, chain, chain_id, **common)
        else:
            held, risk = _watch_market(
                checked, rpc, protocol, market, config, chain_id, chain, deployment, **common
            )
        return _tiers(held, risk, config)

    if not follow:
        _fail_on(fail_tier, read_once())
        return
    every = interval or (_block_time(config) if config is not None else 12.0)
    while True:
        if out.is_terminal and not as_json:
            out.clear()
        try:
            tiers = read_once()
        except RpcError as exc:  # one failed read does not end the watch
            err.print(f"[yellow]warning:[/] {escape(str(exc))}; next read in {every:g}s")
            tiers = []
        _fail_on(fail_tier, tiers)
        time.sleep(every)


def _tier_name(value: str) -> str:
    tier = value.upper()
    if tier not in TIER_ORDER[:-1]:
        raise InputError(f"--fail-on {value}: expected one of {', '.join(TIER_ORDER[:-1])}")
    return tier


def _wallet_list(wallets: list[str], source: Path | None) -> list[str]:
    """Arguments, then the file's (or stdin's) lines; blank lines and # comments skipped; each
    wallet once, checksummed."""
    given = list(wallets)
    if source is not None:
        try:
            text = sys.stdin.read() if str(source) == "-" else source.read_text()
        except (OSError, UnicodeDecodeError) as exc:
            raise InputError(
                f"--wallets-from {source}: cannot be read ({type(exc).__name__})"
            ) from None
        for number, line in enumerate(text.splitlines(), 1):
            entry = line.split("#", 1)[0].strip()
            if entry:
                try:
                    given.append(checked_address(entry, "wallet address"))
                except InputError as exc:
                    raise InputError(f"--wallets-from {source} line {number}: {exc}") from None
    if not given:
        raise InputError("no wallet to watch: give addresses or --wallets-from FILE")
    return list(dict.fromkeys(checked_address(w, "wallet address") for w in given))


def _block_time(config: Path) -> float:
    cfg = load_config(config)
    used = {m.chain for m in cfg.markets.values()}
    times = [c.block_time_s for name, c in cfg.chains.items() if name in used]
    return min(times) if times else 12.0


def _tiers(held: list[Any], risk: list[dict[str, Any]] | None, config: Path | None) -> list[str]:
    """Each position's tier as printed: the risk module's under the exact verdict, or with
    --no-risk the health-factor thresholds ([risk.tiers] or their defaults)."""
    from onchain.config import TierThresholds
    from onchain.jobs.assess import tier_of
    from onchain.output import verdict_tier

    if risk is not None:
        return [verdict_tier(p, fields) for p, fields in zip(held, risk, strict=True)]
    floors = (load_config(config).health_floors if config is not None else None) or TierThresholds()
    return [tier_of(p.health_factor, p.liquidatable, floors).tier for p in held]


def _fail_on(tier: str | None, tiers: list[str]) -> None:
    if tier is None:
        return
    hits = [t for t in tiers if TIER_ORDER.index(t) <= TIER_ORDER.index(tier)]
    if hits:
        worst = min(hits, key=TIER_ORDER.index)
        err.print(f"{len(hits)} position(s) at or worse than {tier} (worst: {worst})")
        sys.stdout.flush()
        sys.exit(FAIL_EXIT)


def _print_json(text: str, one_line: bool) -> None:
    """The JSON document; with --follow one line per read (JSON lines), flushed at once."""
    print(json.dumps(json.loads(text), separators=(",", ":")) if one_line else text, flush=True)


def _watch_market(
    checked: list[str],
    rpc: list[str] | str | None,
    protocol: str | None,
    market: str | None,
    config: Path | None,
    chain_id: int | None,
    chain: str | None,
    deployment: str | None,
    block: int | None,
    as_json: bool,
    timeout: float,
    horizon: str | None,
    price_history: Path | None,
    no_risk: bool,
    *,
    one_line: bool = False,
) -> tuple[list[Any], list[dict[str, Any]] | None]:
    """One market, asset by asset; returns what it printed (positions, risk fields)."""
    url, market_ref, expected = _resolve(rpc, protocol, market, config, chain_id, chain, deployment)
    client = _client(url, expected, timeout)
    result = scan(client, market_ref, block_number=block, accounts=checked)
    held = [p for p in result.positions if p.assets]
    states = [(market_ref.protocol, result.market_state)]
    risk = (
        None
        if no_risk
        else _risk(client, result.block, held, config, horizon, price_history, not as_json, states)
    )
    if as_json:
        _print_json(positions_json(held, risk), one_line)
        return held, risk
    _warn_skipped([result.market_state])
    if held:
        _print_watch(held, f"at block {result.block.number} {result.block.hash[:12]}…", risk)
        for line in advice_lines(held, risk or [{}] * len(held)):
            out.print(line)
    for wallet in checked:
        mine = [p for p in held if p.account == wallet]
        if not mine:
            out.print(f"{wallet}: no position in this market at block {result.block.number}")
        for position in mine:
            out.print(breakdown_table(position))
    return held, risk


WIDE = 170  # columns a one-table watch needs without folding a cell


def _print_watch(
    held: list[Any],
    title: str,
    risk: list[dict[str, Any]] | None,
    names: dict[str, str] | None = None,
) -> None:
    """One table; on a narrow terminal one per wallet, the full address in its title."""
    if out.width >= WIDE or not held:
        out.print(watch_table(held, title, risk, names))
        return
    out.print(title, highlight=False)
    for wallet in dict.fromkeys(p.account for p in held):
        rows = [i for i, p in enumerate(held) if p.account == wallet]
        out.print(
            watch_table(
                [held[i] for i in rows],
                f"wallet {wallet}",
                None if risk is None else [risk[i] for i in rows],
                names,
                wallet_column=False,
            )
        )


def _watch_everywhere(
    wallets: list[str],
    rpc: list[str] | None,
    config: Path,
    chain_name: str | None,
    chain_id: int | None,
    block: int | None,
    as_json: bool,
    timeout: float,
    horizon: str | None = None,
    price_history: Path | None = None,
    no_risk: bool = False,
    *,
    one_line: bool = False,
) -> tuple[list[Any], list[dict[str, Any]] | None]:
    """Every market the config lists on the chain, every protocol, one pinned block; returns
    what it printed (positions, risk fields)."""
    cfg = load_config(config)
    chain = _config_chain(cfg, chain_name)
    refs = [_market_ref(m) for m in cfg.markets.values() if m.chain == chain.name]
    client = _client(_endpoint(rpc, chain), chain_id or chain.chain_id, timeout)
    result = watch_everywhere(client, refs, wallets, block_number=block)
    held = [p for p in result.positions if p.assets]
    states = [(ref.protocol, state) for ref, state in result.market_states]
    risk = (
        None
        if no_risk
        else _risk(client, result.block, held, config, horizon, price_history, not as_json, states)
    )
    if as_json:
        _print_json(positions_json(held, risk), one_line)
        return held, risk
    _warn_skipped([state for _ref, state in result.market_states])
    title = (
        f"{len(wallets)} wallet(s) in {len(refs)} configured market(s) on {chain.name} "
        f"at block {result.block.number} {result.block.hash[:12]}…"
    )
    names = {m.address.lower(): m.name for m in cfg.markets.values()}
    _print_watch(held, title, risk, names)
    for line in advice_lines(held, risk or [{}] * len(held)):
        out.print(line)
    for wallet in wallets:
        if not any(p.account == wallet for p in held):
            out.print(f"{wallet}: no position in these markets at block {result.block.number}")
    liquidatable = sum(p.liquidatable for p in held)
    out.print(f"{len(held)} positions; [bold red]{liquidatable} liquidatable now[/]")
    return held, risk


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
    """Start anvil with real Aave V3 and Morpho Blue deployments and seeded borrowers; print its
    URL and addresses."""
    if ctx.invoked_subcommand is not None:
        return
    from onchain.devnet.build import running_devnet

    if write_config is not None:  # refuse before minutes of building, not after
        _check_writable(write_config, "--write-config")

    with running_devnet(borrowers, seed, rebuild=rebuild) as info:
        how = "loaded from cache" if info.loaded_from_cache else "built (cold deploy + seed)"
        extra = ""
        if info.aave36 is not None:
            extra = f"; Aave {info.aave36.version}: {len(info.aave36.all_borrowers)} borrowers"
        err.print(
            f"devnet {how} in {info.build_seconds:.2f}s: {len(info.borrowers)} borrowers{extra}"
        )
        if write_config:  # before the JSON: whoever reads it may open the config at once
            from onchain.devnet.config_file import write_devnet_config

            try:
                write_devnet_config(write_config, info, with_aave36=True)
            except OSError as exc:
                raise InputError(f"--write-config {write_config}: {exc.strerror}") from None
            err.print(f"wrote {write_config}")
        if keep_running:
            import signal

            def stop(_signum: int, _frame: Any) -> None:
                raise KeyboardInterrupt  # SIGTERM stops anvil too, like Ctrl-C

            # SIGINT too, before anyone can read the URL and send it: a program started in the
            # background (no job control) inherits SIGINT ignored, and Python leaves it so
            signal.signal(signal.SIGINT, stop)
            signal.signal(signal.SIGTERM, stop)
        try:
            print(json.dumps(info.to_json(), indent=1), flush=True)
            if keep_running:
                err.print(f"serving on {info.rpc_url}; Ctrl-C stops it")
                while True:
                    time.sleep(3600)
        except KeyboardInterrupt:
            if not keep_running:
                raise


def _check_writable(path: Path, flag: str) -> None:
    """A file we are asked to write: its folder exists and takes files, and it is not a folder."""
    folder = path.parent if str(path.parent) else Path(".")
    if path.is_dir():
        raise InputError(f"{flag} {path}: is a folder")
    if not folder.is_dir():
        raise InputError(f"{flag} {path}: folder {folder} does not exist")
    if not os.access(folder, os.W_OK) or (path.exists() and not os.access(path, os.W_OK)):
        raise InputError(f"{flag} {path}: not writable")


@devnet_app.command("set-price")
def devnet_set_price(
    prices: Annotated[list[str], typer.Argument(help="SYMBOL=USD pairs, e.g. WETH=2500")],
    rpc: Annotated[str, typer.Option("--rpc", help="the devnet's URL")],
    borrowers: Annotated[
        int, typer.Option("--borrowers", help="borrowers the devnet was built with")
    ] = 300,
    seed: Annotated[int, typer.Option("--seed", help="seed the devnet was built with")] = 7,
) -> None:
    """Publish new oracle prices on a running devnet (one block)."""
    from onchain.devnet.build import cached_deployment
    from onchain.devnet.control import set_prices
    from onchain.devnet.morpho import cached_morpho, set_prices_everywhere

    parsed: dict[str, float] = {}
    for item in prices:
        symbol, _, value = item.partition("=")
        try:
            parsed[symbol.upper()] = float(value)
        except ValueError:
            raise InputError(f"expected SYMBOL=USD, got {item!r}") from None
        if not (math.isfinite(parsed[symbol.upper()]) and parsed[symbol.upper()] > 0):
            raise InputError(f"{item}: a price must be a positive number of USD")
    aave, morpho = cached_deployment(borrowers, seed), cached_morpho(borrowers, seed)
    with _devnet_answers(rpc):
        if morpho is None:
            block = set_prices(rpc, aave, parsed)
        else:  # every protocol's oracles move together, in one block
            spelled = {s.upper(): s for s in [*morpho.tokens, *aave.price_feeds]}
            block = set_prices_everywhere(
                rpc, aave, morpho, {spelled.get(k, k): v for k, v in parsed.items()}
            )
    err.print(f"prices set in block {block}")


@contextmanager
def _devnet_answers(rpc: str) -> Iterator[None]:
    """A --rpc that is not a running devnet is one line (exit 2), not a requests traceback."""
    import requests

    try:
        yield
    except requests.RequestException as exc:
        raise RpcUnavailable(
            f"no devnet answers at {redact_url(rpc)} ({type(exc).__name__}): start one with "
            "`onchain devnet --keep-running`"
        ) from None


@devnet_app.command("mine")
def devnet_mine(
    blocks: Annotated[int, typer.Argument(help="blocks to mine (at least 1)")] = 1,
    rpc: Annotated[str, typer.Option("--rpc", help="the devnet's URL")] = "",
) -> None:
    """Mine blocks on a running devnet."""
    from onchain.devnet.control import mine

    if not rpc:
        raise InputError("--rpc is required")
    if blocks < 1:
        raise InputError(f"blocks to mine must be at least 1, got {blocks}")
    with _devnet_answers(rpc):
        head = mine(rpc, blocks)
    err.print(f"head is now block {head}")


@app.command("demo")
def demo_cmd(
    borrowers: Annotated[int, typer.Option("--borrowers", help="number of seeded borrowers")] = 300,
    eth_drop: Annotated[
        float, typer.Option("--eth-drop", help="WETH price move applied, in %")
    ] = -7.0,
) -> None:
    """The whole path on the local devnet: start it, move ETH, scan the market, watch one wallet."""
    from onchain.devnet.build import running_devnet
    from onchain.devnet.control import set_prices
    from onchain.devnet.morpho import set_prices_everywhere

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
        client = _client(info.rpc_url, info.chain_id, 10.0)
        started = time.monotonic()
        first = MarketRef(DEFAULT_PROTOCOL, info.aave.addresses_provider)
        result = scan(client, first)
        elapsed = time.monotonic() - started
        positions = _riskiest_first([p for p in result.positions if p.has_debt])
        out.print(
            f"scan: {len(result.accounts)} accounts in {elapsed:.2f}s, {client.requests_sent} RPC requests"
        )
        import tempfile

        from onchain.devnet.config_file import write_devnet_config

        with tempfile.TemporaryDirectory() as folder:
            config = Path(folder) / "devnet.toml"
            write_devnet_config(config, info)  # names the devnet's Uniswap pools as references
            risk = _risk(
                client,
                result.block,
                positions,
                config,
                "1h",
                None,
                True,
                [(first.protocol, result.market_state)],
            )
        _print_scan(result, positions, 25, info.rpc_url, risk)
        for position in positions[:1] + [p for p in positions if not p.liquidatable][:1]:
            out.print(breakdown_table(position))
        _demo_other_markets(info, first)
        __import__("onchain.alerts.demo").alerts.demo.demo_alerts(info, out)  # alerts arrive


def _demo_other_markets(info: Any, first: MarketRef) -> None:
    """The rest of the devnet's configured markets (other protocols): scan each, count what a
    refresh of its positions costs, then watch wallets that borrow in several protocols."""
    import tempfile

    from onchain.app.pipeline import read_markets
    from onchain.devnet.config_file import write_devnet_config

    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "devnet.toml"
        write_devnet_config(path, info, with_aave36=True)
        cfg = load_config(path)
    chain = _config_chain(cfg, None)
    named = [(m.name, _market_ref(m)) for m in cfg.markets.values() if m.chain == chain.name]
    risky: list[str] = []
    refs: list[MarketRef] = []
    for name, ref in named:
        if ref.address.lower() == first.address.lower():
            refs.append(ref)
            continue  # scanned above
        out.print(f"\n[bold]{name}[/] (version {ref.version or 'from the chain'})")
        client = _client(info.rpc_url, info.chain_id, 10.0)
        started = time.monotonic()
        try:
            result = scan(client, ref)
        except OnchainError as exc:  # e.g. a Pool revision the Aave math does not follow yet
            out.print(f"{name}: not scanned: {exc}")
            continue
        refs.append(ref)
        elapsed = time.monotonic() - started
        positions = _riskiest_first([p for p in result.positions if p.has_debt])
        _print_scan(result, positions, 15, info.rpc_url)
        refresh = _client(info.rpc_url, info.chain_id, 10.0)
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
        client = _client(info.rpc_url, info.chain_id, 10.0)
        watched = watch_everywhere(client, refs, wallets)
        held = [p for p in watched.positions if p.assets]
        states = [(ref.protocol, state) for ref, state in watched.market_states]
        with tempfile.TemporaryDirectory() as folder:
            path = Path(folder) / "devnet.toml"
            write_devnet_config(path, info)
            risk = _risk(client, watched.block, held, path, "1h", None, False, states)
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


from onchain.cli_store import register as _register_store  # noqa: E402

_register_store(app)
__import__("onchain.cli_targets").cli_targets.register(app)  # `onchain targets`
__import__("onchain.cli_stress").cli_stress.register(app)  # `onchain stress`
__import__("onchain.cli_alerts").cli_alerts.register(app)  # `onchain alerts`
__import__("onchain.cli_serve").cli_serve.register(app)  # `onchain serve`
__import__("onchain.cli_backtest").cli_backtest.register(app)  # `onchain backtest`

if __name__ == "__main__":
    main()
