"""What every `onchain` command shares: its options, where it prints, how it finds the market and
the endpoint from flags and config, which output format it writes, and how an error becomes one
line on stderr and an exit code.

Nothing heavy at import time (no numpy, SQLAlchemy, web3, the adapters or the config loader):
`onchain --help` and every command's start pay only for what the command uses."""

from __future__ import annotations

import csv
import io
import json
import logging
import os
import re
import sys
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from onchain.errors import ConfigError, InputError, OnchainError
from onchain.protocols.catalog import ADAPTER_NAMES, DEFAULT_ADAPTER

if TYPE_CHECKING:
    from rich.console import Console

    from onchain.config import ChainConfig, Config, MarketConfig
    from onchain.protocols.base import MarketRef
    from onchain.rpc.client import RpcClient
    from onchain.rpc.endpoints import EndpointSet

log = logging.getLogger("onchain.cli")


# -- where commands print ----------------------------------------------------------------------


class LazyConsole:
    """A rich Console made on first use (rich costs a noticeable part of a bare start).
    `quiet` (-q) silences notes and warnings; `force` prints errors regardless."""

    def __init__(self, *, stderr: bool = False, pipe_width: int = 160) -> None:
        self.stderr, self.pipe_width = stderr, pipe_width
        self._console: Console | None = None

    @property
    def console(self) -> Console:
        if self._console is None:
            self._console = make_console(stderr=self.stderr, pipe_width=self.pipe_width)
        return self._console

    def __getattr__(self, name: str) -> Any:
        return getattr(self.console, name)

    @property
    def quiet(self) -> bool:
        return bool(self.console.quiet)

    @quiet.setter
    def quiet(self, value: bool) -> None:
        self.console.quiet = value

    def force(self, *objects: Any, **kwargs: Any) -> None:
        """Print even under -q (errors, the interrupted line)."""
        quiet, self.console.quiet = self.console.quiet, False
        try:
            self.console.print(*objects, **kwargs)
        finally:
            self.console.quiet = quiet


def make_console(*, stderr: bool = False, pipe_width: int = 160) -> Console:
    """stdout tables at the terminal's width (`pipe_width` when piped), or stderr messages
    unwrapped. NO_COLOR (any value) drops every style, bold too."""
    from rich.console import Console

    plain = bool(os.environ.get("NO_COLOR"))
    if stderr:
        return Console(stderr=True, soft_wrap=True, color_system=None if plain else "auto")
    width = None if sys.stdout.isatty() else pipe_width
    return Console(width=width, color_system=None if plain else "auto")


out = LazyConsole(pipe_width=200)
err = LazyConsole(stderr=True)


def escape(text: str) -> str:
    """Rich markup escaped (square brackets in user text are not styles)."""
    from rich.markup import escape as rich_escape

    return rich_escape(text)


# -- shared options ----------------------------------------------------------------------------

RpcOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--rpc",
        metavar="URL",
        help="JSON-RPC URL (or env ONCHAIN_RPC_URL); repeat for fallbacks, in order of preference",
    ),
]
ProtocolOpt = Annotated[
    str | None,
    typer.Option(
        "--protocol",
        help=f"protocol adapter ({', '.join(ADAPTER_NAMES)}); default: the config's, "
        f"else {DEFAULT_ADAPTER}",
    ),
]
MarketOpt = Annotated[
    str | None,
    typer.Option(
        "--market",
        help="config name, deployment address (the adapter's entry contract: every market "
        "it holds) or a market id (0x + 64 hex) inside a deployment",
    ),
]
ChainOpt = Annotated[
    str | None,
    typer.Option("--chain", help="chain name from the config (default: every chain it lists)"),
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
StoreConfigOpt = Annotated[
    Path | None, typer.Option("--config", help="TOML config (its [store] names the database)")
]
DbOpt = Annotated[
    str | None,
    typer.Option(
        "--db",
        help="database URL, e.g. sqlite:///onchain.sqlite or postgresql+psycopg://user@host/db "
        "(default: ONCHAIN_DB_URL, then the config's [store], then ./onchain.sqlite)",
    ),
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
JsonOpt = Annotated[bool, typer.Option("--json", help="machine-readable JSON")]
CsvOpt = Annotated[bool, typer.Option("--csv", help="CSV with a header row, one row per item")]


# -- output formats ----------------------------------------------------------------------------


def check_output_flags(as_json: bool, as_csv: bool, limit: int | None = None) -> None:
    """One output format at a time; a negative --limit is a mistake, not "all" (that is 0)."""
    if as_json and as_csv:
        raise InputError("give --json or --csv, not both")
    if limit is not None and limit < 0:
        raise InputError(f"--limit must be 0 (all) or more, got {limit}")


def csv_cell(value: Any) -> Any:
    """Booleans as true/false (as in JSON), nothing as an empty cell, lists joined by '; ',
    tables as JSON."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return ""
    if isinstance(value, dict):
        return json.dumps(value, sort_keys=True)
    if isinstance(value, list | tuple):
        return "; ".join(str(csv_cell(v)) for v in value)
    return value


def write_csv(rows: Iterable[Mapping[str, Any]], fields: Sequence[str]) -> None:
    """A header row, then one row per item (keys outside `fields` are left out)."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(fields), extrasaction="ignore")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: csv_cell(row.get(k)) for k in fields})
    sys.stdout.write(buffer.getvalue())


def emit(
    as_json: bool,
    as_csv: bool,
    document: Any,
    rows: Iterable[Mapping[str, Any]],
    fields: Sequence[str],
) -> bool:
    """The output tail the store commands share: --json prints the whole document, --csv its
    rows under `fields`. True when one was written, so the caller skips its tables."""
    if as_json:
        from onchain.output import strict_json

        print(strict_json(document))
        return True
    if as_csv:
        write_csv(rows, fields)
        return True
    return False


def check_writable(path: Path, flag: str) -> None:
    """A file we are asked to write: its folder exists and takes files, and it is not a folder."""
    folder = path.parent if str(path.parent) else Path(".")
    if path.is_dir():
        raise InputError(f"{flag} {path}: is a folder")
    if not folder.is_dir():
        raise InputError(f"{flag} {path}: folder {folder} does not exist")
    if not os.access(folder, os.W_OK) or (path.exists() and not os.access(path, os.W_OK)):
        raise InputError(f"{flag} {path}: not writable")


# -- errors and exit codes ---------------------------------------------------------------------

INTERRUPTED = 130  # the shell's code for SIGINT; never 0, so a cron job sees it


def run(build: Callable[[], Callable[..., Any]], argv: Sequence[str] | None) -> None:
    """Build the command tree and run it: our errors become one line on stderr and their exit
    code; usage errors exit 2; Ctrl-C (even while the tree is built) exits 130 with one line."""
    try:
        code = build()(args=argv, prog_name="onchain", standalone_mode=False)
        endpoint_notes()
    except KeyboardInterrupt:  # raised outside typer's own handler (e.g. while it unwinds)
        code = INTERRUPTED
    except OnchainError as exc:
        err.force(f"[red]error:[/] {escape(str(exc))}", highlight=False)
        sys.exit(exc.exit_code)
    except typer.Abort:  # end of input at a prompt
        err.force("aborted")
        sys.exit(INTERRUPTED)
    except (typer.BadParameter, typer.Exit) as exc:  # click usage errors
        if isinstance(exc, typer.Exit):
            sys.exit(exc.exit_code)
        err.force(f"[red]error:[/] {escape(str(exc))}")
        sys.exit(2)
    except Exception as exc:  # click's own usage errors carry exit_code
        code = getattr(exc, "exit_code", None)
        if code is not None and hasattr(exc, "format_message"):
            if type(exc).__name__ == "NoArgsIsHelpError":  # the help is already printed
                message = exc.format_message().strip()
                if message:
                    print(message)
                sys.exit(code)
            err.force(f"[red]error:[/] {escape(exc.format_message())}")
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
    err.force("interrupted")
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(INTERRUPTED)


# -- endpoints and markets ---------------------------------------------------------------------


def names_markets_by_id(protocol: str) -> bool:
    from onchain.protocols.registry import ADAPTERS

    return bool(getattr(ADAPTERS.get(protocol), "markets_by_id", False))


def chain_endpoint(rpc: list[str] | str | None, chain: ChainConfig) -> EndpointSet:
    """The chain's endpoints in order of preference: --rpc (each), else ONCHAIN_RPC_URL, else
    the config's; with the chain's request budget."""
    from onchain.rpc.endpoints import Budget, EndpointSet

    urls = flag_urls(rpc) or chain.resolve_rpc_urls()
    if not urls:
        raise InputError(f"no RPC URL for chain {chain.name}: pass --rpc or {chain.rpc_hint()}")
    return EndpointSet.of(urls, Budget(chain.rpc_max_rps, chain.rpc_max_batch))


def check_endpoints(rpc: list[str] | str | None, chains: Sequence[ChainConfig]) -> None:
    """Several chains: each needs an endpoint before any is read (no partial table); the
    error names every chain without one, and --chain to read fewer."""
    if len(chains) < 2 or flag_urls(rpc):
        return
    missing = [f"{c.name} ({c.rpc_hint()})" for c in chains if not c.resolve_rpc_urls()]
    if missing:
        raise InputError(
            f"no RPC URL for chain(s) {'; '.join(missing)}: set them, or pass --chain NAME "
            "to read only the chains you have endpoints for"
        )


def flag_urls(rpc: list[str] | str | None) -> list[str]:
    if isinstance(rpc, str):
        rpc = [rpc]
    urls = [u for u in rpc or [] if u]
    if not urls and os.environ.get("ONCHAIN_RPC_URL"):
        urls = [os.environ["ONCHAIN_RPC_URL"]]
    return urls


def market_ref(m: MarketConfig, market_id: str | None = None) -> MarketRef:
    from onchain.protocols.base import MarketRef

    configured = m.extra.get("market_id")
    return MarketRef(
        m.protocol,
        m.address,
        m.start_block,
        m.version,
        market_id or (str(configured) if configured else None),
    )


def config_chain(cfg: Config, chain_name: str | None) -> ChainConfig:
    """The chain to work on: --chain, else the only chain the config lists markets for."""
    if chain_name is not None:
        return known_chain(cfg, chain_name)
    used = sorted({m.chain for m in cfg.markets.values()})
    if len(used) != 1:
        raise InputError(
            f"{cfg.path} lists markets on {len(used)} chains ({', '.join(used) or 'none'}): "
            "pass --chain NAME"
        )
    return cfg.chains[used[0]]


def known_chain(cfg: Config, chain_name: str) -> ChainConfig:
    if chain_name not in cfg.chains:
        known = ", ".join(sorted(cfg.chains)) or "none"
        raise ConfigError(f"chain {chain_name!r} is not in {cfg.path} (known: {known})")
    return cfg.chains[chain_name]


def config_chains(cfg: Config, chain_name: str | None) -> list[ChainConfig]:
    """--chain, else every chain the config lists markets for (in the config's order)."""
    if chain_name is not None:
        return [known_chain(cfg, chain_name)]
    used = {m.chain for m in cfg.markets.values()}
    chains = [c for name, c in cfg.chains.items() if name in used]
    if not chains:
        raise InputError(f"{cfg.path} lists no [[markets]]")
    return chains


def config_deployment(
    cfg: Config, protocol: str | None, chain_name: str | None, *, market_id: str | None
) -> MarketConfig:
    """The one configured deployment a --protocol / market id refers to on the chain."""
    candidates = [
        m
        for m in cfg.markets.values()
        if (protocol is None or m.protocol == protocol)
        and (market_id is None or names_markets_by_id(m.protocol))
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


def resolve_market(
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
    from onchain.app.pipeline import checked_address
    from onchain.config import load_config
    from onchain.protocols.base import MarketRef
    from onchain.rpc.endpoints import EndpointSet

    is_id = market is not None and MARKET_ID.match(market) is not None
    if config is not None:
        cfg = load_config(config)
        if chain_name is not None:
            known_chain(cfg, chain_name)  # an unknown chain is an error of its own
        if market is not None and market in cfg.markets:
            m = cfg.market(market)
            chain = cfg.chains[m.chain]
            return chain_endpoint(rpc, chain), market_ref(m), chain_id or chain.chain_id
        if is_id or (market is None and protocol is not None):
            m = config_deployment(cfg, protocol, chain_name, market_id=market if is_id else None)
            chain = cfg.chains[m.chain]
            ref = market_ref(m, market if is_id else None)
            return chain_endpoint(rpc, chain), ref, chain_id or chain.chain_id
        if market is None:
            raise InputError("--market is required (a market name from the config or an address)")
        if not market.lower().startswith("0x"):
            cfg.market(market)  # not a name in the config: the error lists the names
    urls = flag_urls(rpc)
    if not urls:
        raise InputError("no RPC endpoint: pass --rpc URL (or set ONCHAIN_RPC_URL)")
    url = EndpointSet.of(urls)
    if market is None:
        raise InputError("--market is required")
    if is_id:
        from onchain.protocols.registry import ADAPTERS

        takes_ids = sorted(n for n in ADAPTERS if names_markets_by_id(n))
        if protocol is None and len(takes_ids) == 1:
            protocol = takes_ids[0]
        if protocol is None or not names_markets_by_id(protocol):
            raise InputError(
                f"{protocol or DEFAULT_ADAPTER} does not name markets by id; "
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
        MarketRef(protocol or DEFAULT_ADAPTER, checked_address(market, "market address")),
        chain_id,
    )


def resolve_markets(
    rpc: list[str] | str | None,
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
        from onchain.config import load_config

        cfg = load_config(config)
        chain_cfg = config_chain(cfg, chain)
        refs = [market_ref(m) for m in cfg.markets.values() if m.chain == chain_cfg.name]
        return chain_endpoint(rpc, chain_cfg), refs, chain_id or chain_cfg.chain_id
    url, ref, expected = resolve_market(rpc, protocol, market, config, chain_id, chain, deployment)
    return url, [ref], expected


# -- reading -----------------------------------------------------------------------------------

CLIENTS: list[RpcClient] = []


def open_client(url: str | EndpointSet, chain_id: int | None, timeout: float) -> RpcClient:
    """An RPC client that has answered eth_chainId (unreachable endpoint or wrong chain fail
    here, before any work); its URLs' secrets are hidden from every log line."""
    from onchain.cli.log_setup import hide_secrets
    from onchain.rpc.client import RpcClient, redact_url

    hide_secrets(urls=[url] if isinstance(url, str) else [e.url for e in url.endpoints])
    client = RpcClient(url, timeout_s=timeout, expected_chain_id=chain_id)
    answered = client.chain_id()
    log.info("endpoint %s serves chain id %s", redact_url(url), answered)
    CLIENTS.append(client)
    return client


def endpoint_notes() -> None:
    """After a command that succeeded: one line per endpoint that failed on the way (set aside,
    wrong chain), so a degraded fallback does not go unnoticed; the request count at -v."""
    for client in CLIENTS:
        for line in client.set_aside_notes():
            err.print(f"[yellow]warning:[/] {escape(line)}", highlight=False)
        log.info("%d RPC requests sent", client.requests_sent)


def warn_skipped(states: Iterable[Any]) -> None:
    """Markets a deployment lists but that cannot be valued at this block (e.g. their oracle
    reverts) are left out of the figures; say so once, on stderr."""
    for state in states:
        skipped = getattr(state, "skipped_markets", ())
        if skipped:
            listed = "; ".join(f"{mid[:10]}… ({why})" for mid, why in skipped)
            err.print(f"[yellow]warning:[/] skipped {len(skipped)} market(s): {listed}")


@contextmanager
def progress_bars(enabled: bool) -> Iterator[Callable[[str], Callable[[int, int], None]]]:
    """Progress bars on stderr for long discovery/reads; silent when not a terminal or -q."""
    if not enabled or not err.is_terminal or err.quiet:
        yield lambda _label: lambda _done, _total: None
        return
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
    )

    columns = [
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
    ]
    with Progress(*columns, console=err.console, transient=True) as bar:
        tasks: dict[str, Any] = {}

        def factory(label: str) -> Callable[[int, int], None]:
            def update(done: int, total: int) -> None:
                if label not in tasks:
                    tasks[label] = bar.add_task(label, total=total)
                bar.update(tasks[label], completed=done, total=total)

            return update

        yield factory
