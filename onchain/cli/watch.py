"""`onchain watch`: your wallets' positions, in one market or in every configured market of the
chain at one block; --follow keeps reading, --fail-on makes a position at risk an exit code."""

from __future__ import annotations

import json
import sys
import time
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
    escape,
    market_ref,
    open_client,
    out,
    resolve_market,
    warn_skipped,
)
from onchain.cli.positions import check_risk_flags, configured_names, named_fields, risk_fields
from onchain.errors import InputError, RpcError

FAIL_EXIT = 4  # `watch --fail-on`: a position is at or worse than the tier given
TIER_ORDER = ("LIQUIDATABLE", "PENDING", "CRITICAL", "HIGH", "WATCH", "SAFE")  # worst first


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
    as_csv: Annotated[
        bool, typer.Option("--csv", help="CSV, one row per position (with --follow: rows per read)")
    ] = False,
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
    """Your wallets' positions: with --config and no --market, in EVERY configured market of
    every chain the config lists (or --chain; all protocols, one block per chain) in one table;
    else in one market, asset by asset."""
    check_output_flags(as_json, as_csv)
    check_risk_flags(horizon, price_history)
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
            "as_csv": as_csv,
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
        if out.is_terminal and not (as_json or as_csv):
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
    from onchain.app.pipeline import checked_address

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
    from onchain.config import load_config

    cfg = load_config(config)
    used = {m.chain for m in cfg.markets.values()}
    times = [c.block_time_s for name, c in cfg.chains.items() if name in used]
    return min(times) if times else 12.0


def _tiers(held: list[Any], risk: list[dict[str, Any]] | None, config: Path | None) -> list[str]:
    """Each position's tier as printed: the risk module's under the exact verdict, or with
    --no-risk the health-factor thresholds ([risk.tiers] or their defaults)."""
    from onchain.config import TierThresholds, load_config
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


def _print_machine(
    held: list[Any], fields: list[dict[str, Any]], as_csv: bool, follow: bool
) -> None:
    """JSON (with --follow one document per line and read: JSON lines) or CSV (with --follow
    the header once, then each read's rows), flushed at once."""
    from onchain.output import positions_csv, positions_json

    if as_csv:
        text = positions_csv(held, fields)
        if follow and _CSV_HEADER_SENT:
            text = text.split("\n", 1)[1]
        _CSV_HEADER_SENT.append(True)
        sys.stdout.write(text)
        sys.stdout.flush()
        return
    text = positions_json(held, fields)
    print(json.dumps(json.loads(text), separators=(",", ":")) if follow else text, flush=True)


_CSV_HEADER_SENT: list[bool] = []  # --follow --csv: the header went out with the first read


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
    as_csv: bool = False,
) -> tuple[list[Any], list[dict[str, Any]] | None]:
    """One market, asset by asset; returns what it printed (positions, risk fields)."""
    from onchain.app.pipeline import scan
    from onchain.output import advice_lines, breakdown_table

    url, market_ref, expected = resolve_market(
        rpc, protocol, market, config, chain_id, chain, deployment
    )
    client = open_client(url, expected, timeout)
    result = scan(client, market_ref, block_number=block, accounts=checked)
    held = [p for p in result.positions if p.assets]
    states = [(market_ref.protocol, result.market_state)]
    risk = (
        None
        if no_risk
        else risk_fields(
            client,
            result.block,
            held,
            config,
            horizon,
            price_history,
            not (as_json or as_csv),
            states,
        )
    )
    if as_json or as_csv:
        chain_name, market_name = configured_names(config, market_ref, expected)
        n = len(held)
        _print_machine(
            held, named_fields(risk, [chain_name] * n, [market_name] * n), as_csv, one_line
        )
        return held, risk
    warn_skipped([result.market_state])
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
    chains: list[str] | None = None,
) -> None:
    """One table; on a narrow terminal one per wallet, the full address in its title."""
    from onchain.output import watch_table

    if out.width >= WIDE or not held:
        out.print(watch_table(held, title, risk, names, chains=chains))
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
                chains=None if chains is None else [chains[i] for i in rows],
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
    as_csv: bool = False,
) -> tuple[list[Any], list[dict[str, Any]] | None]:
    """Every market the config lists on every chain (or --chain), every protocol, one pinned
    block per chain, one table (a chain column when there are several); returns what it
    printed (positions, risk fields)."""
    from onchain.app.pipeline import watch_everywhere
    from onchain.config import load_config
    from onchain.output import advice_lines

    cfg = load_config(config)
    chains = config_chains(cfg, chain_name)
    if len(chains) > 1 and (block is not None or rpc or chain_id is not None):
        raise InputError("--block, --rpc and --chain-id are for one chain: pass --chain NAME")
    check_endpoints(rpc, chains)
    held: list[Any] = []
    risk: list[dict[str, Any]] | None = None if no_risk else []
    on_chain: list[str] = []
    at: list[str] = []
    for chain in chains:
        markets = [m for m in cfg.markets.values() if m.chain == chain.name]
        client = open_client(chain_endpoint(rpc, chain), chain_id or chain.chain_id, timeout)
        result = watch_everywhere(
            client, [market_ref(m) for m in markets], wallets, block_number=block
        )
        mine = [p for p in result.positions if p.assets]
        states = [(ref.protocol, state) for ref, state in result.market_states]
        if risk is not None:
            risk += (
                risk_fields(
                    client,
                    result.block,
                    mine,
                    config,
                    horizon,
                    price_history,
                    not (as_json or as_csv),
                    states,
                )
                or []
            )
        if not (as_json or as_csv):
            warn_skipped([state for _ref, state in result.market_states])
        held += mine
        on_chain += [chain.name] * len(mine)
        at.append(f"{chain.name} at block {result.block.number} {result.block.hash[:12]}…")
    names = [_market_name(p, cfg, c) for p, c in zip(held, on_chain, strict=True)]
    if as_json or as_csv:
        _print_machine(held, named_fields(risk, on_chain, names), as_csv, one_line)
        return held, risk
    title = f"{len(wallets)} wallet(s) in {len(cfg.markets)} configured market(s) on " + "; ".join(
        at
    )
    by_address = {m.address.lower(): m.name for m in cfg.markets.values()}
    _print_watch(held, title, risk, by_address, on_chain if len(chains) > 1 else None)
    for line in advice_lines(held, risk or [{}] * len(held)):
        out.print(line)
    for wallet in wallets:
        if not any(p.account == wallet for p in held):
            out.print(f"{wallet}: no position in these markets ({'; '.join(at)})")
    liquidatable = sum(p.liquidatable for p in held)
    out.print(f"{len(held)} positions; [bold red]{liquidatable} liquidatable now[/]")
    return held, risk


def _market_name(position: Any, cfg: Any, chain: str) -> str | None:
    """The config name of the market a position is in: the chain's one deployment of its
    protocol, or the one at its market address."""
    mine = [m for m in cfg.markets.values() if m.chain == chain and m.protocol == position.protocol]
    if len(mine) == 1:
        return str(mine[0].name)
    return next((m.name for m in mine if m.address.lower() == position.market.lower()), None)
