"""`onchain db|run|status|history|report`: the snapshot store and the daemon from the command
line. Human tables by default, --json for machines; bad input (a malformed database URL, a
broken config, a schema that is not at head) is one line on stderr and exit code 2, before
anything is written."""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table
from sqlalchemy.exc import SQLAlchemyError

from onchain.config import Config, load_config
from onchain.errors import InputError
from onchain.numbers import format_base as format_base
from onchain.numbers import format_wad
from onchain.output import console, strict_json
from onchain.store import queries
from onchain.store.db import (
    Store,
    StoreError,
    current_revision,
    downgrade,
    head_revision,
    make_engine,
    open_store,
    resolve_db_url,
    safe_url,
    upgrade,
)
from onchain.store.leases import WorkerStatus, worker_statuses

out = console(pipe_width=160)
err = console(stderr=True)

ConfigOpt = Annotated[
    Path | None, typer.Option("--config", help="TOML config (its \\[store] names the database)")
]
DbOpt = Annotated[
    str | None,
    typer.Option(
        "--db",
        help="database URL, e.g. sqlite:///onchain.sqlite or postgresql+psycopg://user@host/db "
        "(default: ONCHAIN_DB_URL, then the config's \\[store], then ./onchain.sqlite)",
    ),
]
JsonOpt = Annotated[bool, typer.Option("--json", help="machine-readable JSON")]
JOB_NAMES = ("discover", "refresh", "assess", "prune", "deliver")
SPARKS = "▁▂▃▄▅▆▇█"


def _config(path: Path | None) -> Config | None:
    return load_config(path) if path is not None else None


@contextmanager
def _store(db: str | None, config: Path | None) -> Iterator[Store]:
    """Open an existing, up-to-date store; database errors become one-line StoreErrors."""
    store = open_store(resolve_db_url(db, _config(config)))
    try:
        yield store
    except SQLAlchemyError as exc:
        inner = getattr(exc, "orig", None) or exc
        first = next((ln for ln in str(inner).splitlines() if ln.strip()), type(inner).__name__)
        raise StoreError(f"database {store.url}: {first.strip()}") from None
    finally:
        store.close()


def _quiet_alembic() -> None:
    logging.getLogger("alembic").setLevel(logging.WARNING)


# -- db ---------------------------------------------------------------------------------------


@contextmanager
def _migrating(url: Any) -> Iterator[None]:
    """Alembic and the database speak in tracebacks: an unknown revision is bad input, a
    refused write (a read-only file, a read-only role) one line naming the database."""
    from alembic.util.exc import CommandError

    try:
        yield
    except CommandError as exc:
        raise InputError(f"revision: {str(exc).splitlines()[0]}") from None
    except SQLAlchemyError as exc:
        inner = getattr(exc, "orig", None) or exc
        first = next((ln for ln in str(inner).splitlines() if ln.strip()), type(inner).__name__)
        raise StoreError(f"database {safe_url(url)}: {first.strip()}") from None
    except OSError as exc:
        raise StoreError(f"database {safe_url(url)}: {exc.strerror or exc}") from None


def db_upgrade(
    revision: Annotated[str, typer.Argument(help="target revision")] = "head",
    config: ConfigOpt = None,
    db: DbOpt = None,
) -> None:
    """Create the schema or migrate it to the newest revision (the only way it changes)."""
    _quiet_alembic()
    url = resolve_db_url(db, _config(config))
    with _migrating(url):
        engine = make_engine(url, create_sqlite_dir=True)
        try:
            before = current_revision(engine)
            after = upgrade(engine, revision)
        finally:
            engine.dispose()
    head = head_revision()
    note = " (head)" if after == head else ""
    err.print(f"database {safe_url(url)}: {before or 'empty'} -> {after}{note}", highlight=False)


def db_downgrade(
    revision: Annotated[
        str, typer.Argument(help="target revision: -1 (one step back), a revision id, or base")
    ],
    config: ConfigOpt = None,
    db: DbOpt = None,
    yes: Annotated[
        bool, typer.Option("--yes", help="do not ask: the tables dropped lose their data")
    ] = False,
) -> None:
    """Migrate the schema back (`base` drops every table: all stored data is lost). Asks first;
    without a terminal it refuses unless --yes is given."""
    if revision.startswith("--"):  # -1 is a revision, so unknown options arrive here
        raise InputError(f"no such option: {revision}")
    _quiet_alembic()
    url = resolve_db_url(db, _config(config))
    with _migrating(url):
        engine = make_engine(url)
        try:
            before = current_revision(engine)
            if not yes:
                _confirm_downgrade(safe_url(url), before, revision)
            after = downgrade(engine, revision)
        finally:
            engine.dispose()
    err.print(
        f"database {safe_url(url)}: {before or 'empty'} -> {after or 'base'}", highlight=False
    )


def _confirm_downgrade(url: str, before: str | None, revision: str) -> None:
    what = f"downgrade {url} from {before or 'empty'} to {revision}"
    if not sys.stdin.isatty():
        raise InputError(f"{what} drops tables and their data: pass --yes to confirm")
    if not typer.confirm(f"{what}? Dropped tables lose their data", default=False):
        raise InputError("downgrade cancelled: nothing changed")


def db_current(config: ConfigOpt = None, db: DbOpt = None) -> None:
    """Print the schema revision of the database and the one this code needs."""
    _quiet_alembic()
    url = resolve_db_url(db, _config(config))
    engine = make_engine(url)
    try:
        current = current_revision(engine)
    finally:
        engine.dispose()
    print(f"{current or 'empty'} (head: {head_revision()})")


# -- run --------------------------------------------------------------------------------------


def run_cmd(
    config: Annotated[Path, typer.Option("--config", help="TOML config: chains, markets, jobs")],
    db: DbOpt = None,
    once: Annotated[
        bool, typer.Option("--once", help="run each enabled job once, then exit")
    ] = False,
    job: Annotated[
        list[str] | None,
        typer.Option("--job", help=f"only this job (repeatable): {', '.join(JOB_NAMES)}"),
    ] = None,
    log_level: Annotated[str, typer.Option("--log-level", help="debug, info, warning")] = "info",
    metrics_port: Annotated[
        int | None,
        typer.Option(
            "--metrics-port",
            help="serve this process's Prometheus counters on http://127.0.0.1:PORT/metrics",
        ),
    ] = None,
    worker: Annotated[
        str | None,
        typer.Option(
            "--worker",
            help="run as the worker NAME, sharing the markets with the other workers of the "
            "same PostgreSQL database (leases; see README)",
        ),
    ] = None,
) -> None:
    """The scheduler daemon: discover, refresh, assess, prune until SIGINT/SIGTERM.

    Every run is recorded (see `onchain status`); a restart resumes from the stored cursors."""
    from onchain.jobs.daemon import job_context, run_daemon, run_once
    from onchain.jobs.workers import check_worker_store
    from onchain.protocols.registry import get_adapter

    unknown = sorted(set(job or []) - set(JOB_NAMES))
    if unknown:
        raise InputError(f"unknown job(s) {', '.join(unknown)} (known: {', '.join(JOB_NAMES)})")
    level = getattr(logging, log_level.upper(), None)
    if not isinstance(level, int):
        raise InputError(f"unknown log level {log_level!r}")
    cfg = load_config(config)
    cfg.alerts.check()  # alert channels: URLs and secrets usable, or one line and exit 2
    names = list(cfg.jobs.markets if cfg.jobs.markets is not None else cfg.markets)
    if not names:
        raise InputError(f"{config}: no [[markets]] to watch")
    for name in names:  # everything a job needs is checked before anything is written
        market = cfg.market(name)
        get_adapter(market.protocol)
        chain = cfg.chains[market.chain]
        if not chain.resolve_rpc_urls():
            raise InputError(f"{config}: no RPC URL for chain {chain.name} ({chain.rpc_hint()})")
    if metrics_port is not None and not 0 < metrics_port < 65536:
        raise InputError(f"--metrics-port must be 1..65535, got {metrics_port}")
    if once:  # no endpoint of a chain answers: exit 2, as for every other command
        from onchain.rpc.client import RpcClient

        for chain_name in sorted({cfg.market(n).chain for n in names}):
            chain = cfg.chains[chain_name]
            urls = chain.resolve_rpc_urls()
            RpcClient(urls, timeout_s=10.0, expected_chain_id=chain.chain_id).chain_id()
    db_url = resolve_db_url(db, cfg)
    store = open_store(db_url)
    if worker is not None:
        try:
            check_worker_store(store, worker)  # SQLite: one process, no workers (exit 2)
        except InputError:
            store.close()
            raise
    if metrics_port is not None:
        from onchain.jobs.metrics import serve_metrics

        try:
            serve_metrics(metrics_port)
        except OSError as exc:
            store.close()
            raise InputError(f"--metrics-port {metrics_port}: {exc.strerror}") from None
    logging.basicConfig(
        level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr
    )
    from onchain.log_redaction import redact_logs

    # urllib3 logs every request path at debug level: API keys must not reach the log
    rpc_urls = [u for n in names for u in cfg.chains[cfg.market(n).chain].resolve_rpc_urls()]
    redact_logs(rpc_urls, [db_url.password])
    logging.getLogger("apscheduler").setLevel(logging.DEBUG if level <= logging.DEBUG else 40)
    _quiet_alembic()
    try:
        with job_context(store, cfg, names, worker) as ctx:
            if once:
                outcomes = run_once(ctx, job)
                err.print(", ".join(f"{k}: {v}" for k, v in outcomes.items()), highlight=False)
                if any(v not in ("ok", "skipped") for v in outcomes.values()):
                    sys.exit(1)  # a job failed: cron and scripts must see it
                return
            run_daemon(ctx, job)
    except SQLAlchemyError as exc:
        raise StoreError(f"database {store.url}: {str(exc).splitlines()[0]}") from None
    finally:
        store.close()


# -- status -----------------------------------------------------------------------------------


def _when(value: datetime | None) -> str:
    if value is None:
        return "-"
    seconds = (datetime.now(UTC) - value).total_seconds()
    if seconds < 120:
        ago = f"{seconds:.0f}s ago"
    elif seconds < 7200:
        ago = f"{seconds / 60:.0f}m ago"
    elif seconds < 172_800:
        ago = f"{seconds / 3600:.0f}h ago"
    else:
        ago = f"{seconds / 86400:.0f}d ago"
    return f"{value:%Y-%m-%d %H:%M:%S} ({ago})"


def _counts(counts: dict[str, Any]) -> str:
    shown = sorted((k, v) for k, v in counts.items() if v and k != "rpc_endpoints")
    return ", ".join(f"{k}={v}" for k, v in shown) or "-"


def _endpoints(jobs: list[queries.JobSummary]) -> list[dict[str, Any]]:
    """Each RPC endpoint's health as the newest run that used the chain left it."""
    runs = [j.last for j in jobs if isinstance(j.last.counts.get("rpc_endpoints"), dict)]
    rows: dict[tuple[str, str], dict[str, Any]] = {}
    for run in sorted(runs, key=lambda r: r.id):
        for chain, endpoints in run.counts["rpc_endpoints"].items():
            for e in endpoints:
                rows[(chain, e["endpoint"])] = {"chain": chain, **e, "run": run.id}
    return list(rows.values())


def _epoch(value: Any) -> str:
    """A Unix time from the endpoints' health; set-aside times may lie ahead."""
    if not isinstance(value, (int, float)):
        return str(value) if value else "-"
    when = datetime.fromtimestamp(value, UTC)
    ahead = (when - datetime.now(UTC)).total_seconds()
    return f"{when:%Y-%m-%d %H:%M:%S} (in {ahead:.0f}s)" if ahead > 0 else _when(when)


OUTCOME_STYLE = {"ok": "green", "error": "red", "crashed": "red", "interrupted": "yellow"}


def _outcome(outcome: str) -> str:
    style = OUTCOME_STYLE.get(outcome, "cyan")
    return f"[{style}]{outcome}[/]"


def _expires(value: datetime | None) -> str:
    if value is None:
        return "-"
    ahead = (value - datetime.now(UTC)).total_seconds()
    return f"in {ahead:.0f}s" if ahead >= 0 else f"expired {-ahead:.0f}s ago"


def _worker_json(w: WorkerStatus) -> dict[str, Any]:
    return {
        "worker": w.name,
        "live": w.live,
        "host": w.host,
        "pid": w.pid,
        "started_at": w.started_at.isoformat(),
        "heartbeat_at": w.heartbeat_at.isoformat(),
        "lease_seconds": w.lease_seconds,
        "markets": [
            {"market": name, "epoch": epoch, "expires_at": at.isoformat() if at else None}
            for name, epoch, at in w.markets
        ],
    }


def _run_json(run: queries.RunRow) -> dict[str, Any]:
    return {
        "id": run.id,
        "job": run.job,
        "started_at": run.started_at.isoformat(),
        "finished_at": run.finished_at.isoformat() if run.finished_at else None,
        "seconds": run.seconds,
        "outcome": run.outcome,
        "counts": run.counts,
        "error": run.error,
    }


def _mark_crashed(store: Store) -> None:
    """Runs left 'running' by a process that is gone (kill -9) are shown, and kept, as crashed;
    a database that refuses the write (read-only) is shown as it is."""
    from onchain.store import crud

    with suppress(SQLAlchemyError):
        crud.mark_crashed_runs(store)


def status_cmd(
    config: ConfigOpt = None,
    db: DbOpt = None,
    runs: Annotated[int, typer.Option("--runs", help="recent runs to list")] = 10,
    as_json: JsonOpt = False,
) -> None:
    """What ran, when, and how it ended; how far each market's cursors got."""
    with _store(db, config) as store:
        _mark_crashed(store)
        jobs = queries.job_summaries(store)
        markets = queries.market_statuses(store)
        recent = queries.recent_runs(store, runs)
        workers = worker_statuses(store)
    if as_json:
        print(
            strict_json(
                {
                    "database": store.url,
                    "jobs": [
                        {
                            "job": j.job,
                            "last": _run_json(j.last),
                            "last_ok_at": j.last_ok_at.isoformat() if j.last_ok_at else None,
                            "runs_24h": j.runs_24h,
                            "failed_24h": j.failed_24h,
                        }
                        for j in jobs
                    ],
                    "markets": [
                        {
                            "market": m.name,
                            "chain": m.chain,
                            "protocol": m.protocol,
                            "tracked_accounts": m.tracked_accounts,
                            "discover_cursor": m.discover_cursor,
                            "refresh_cursor": m.refresh_cursor,
                            "snapshots": m.snapshots,
                            "newest_block": m.newest_block,
                            "newest_taken_at": m.newest_taken_at.isoformat()
                            if m.newest_taken_at
                            else None,
                        }
                        for m in markets
                    ],
                    "workers": [_worker_json(w) for w in workers],
                    "endpoints": _endpoints(jobs),
                    "recent_runs": [_run_json(r) for r in recent],
                },
            )
        )
        return
    out.print(f"database {store.url}", highlight=False)
    if not jobs:
        out.print("no job has run yet: start `onchain run --config ...`")
    else:
        table = Table(title="jobs")
        for col in ("job", "last run", "took", "outcome", "did", "last ok", "24h runs/failed"):
            table.add_column(col)
        for j in jobs:
            took = f"{j.last.seconds:.2f}s" if j.last.seconds is not None else "-"
            table.add_row(
                j.job,
                _when(j.last.started_at),
                took,
                _outcome(j.last.outcome),
                _counts(j.last.counts) + (f"\n[red]{j.last.error}[/]" if j.last.error else ""),
                _when(j.last_ok_at),
                f"{j.runs_24h}/{j.failed_24h}",
            )
        out.print(table)
    if markets:
        table = Table(title="markets")
        for col in ("market", "chain", "accounts", "discovered to", "refreshed to", "snapshots"):
            table.add_column(col)
        table.add_column("newest snapshot")
        for m in markets:
            table.add_row(
                m.name,
                m.chain,
                str(m.tracked_accounts),
                str(m.discover_cursor if m.discover_cursor is not None else "-"),
                str(m.refresh_cursor if m.refresh_cursor is not None else "-"),
                str(m.snapshots),
                f"block {m.newest_block}, written {_when(m.newest_taken_at)}"
                if m.newest_block is not None
                else "-",
            )
        out.print(table)
    if workers:
        table = Table(title="workers")
        for col in ("worker", "host/pid", "heartbeat", "markets (lease expires)"):
            table.add_column(col)
        for w in workers:
            table.add_row(
                w.name if w.live else f"[red]{escape(w.name)} (gone)[/]",
                f"{w.host}/{w.pid}",
                _when(w.heartbeat_at),
                "\n".join(f"{name} ({_expires(at)})" for name, _epoch, at in w.markets) or "-",
            )
        out.print(table)
    endpoints = _endpoints(jobs)
    if endpoints:
        table = Table(title="RPC endpoints")
        for col in ("chain", "endpoint", "requests", "errors", "last error", "set aside until"):
            table.add_column(col)
        for e in endpoints:
            table.add_row(
                e["chain"],
                e["endpoint"],
                str(e["requests"]),
                str(e["errors"]),
                escape(str(e["last_error"] or "-")) + f"\n{_epoch(e['last_error_at'])}"
                if e["last_error"]
                else "-",
                _epoch(e["set_aside_until"]),
            )
        out.print(table)
    if recent:
        table = Table(title=f"last {len(recent)} runs")
        for col in ("#", "job", "started", "took", "outcome", "did / error"):
            table.add_column(col)
        for r in recent:
            table.add_row(
                str(r.id),
                r.job,
                f"{r.started_at:%Y-%m-%d %H:%M:%S}",
                f"{r.seconds:.2f}s" if r.seconds is not None else "-",
                _outcome(r.outcome),
                f"[red]{r.error}[/]" if r.error else _counts(r.counts),
            )
        out.print(table)


# -- history ----------------------------------------------------------------------------------

MARKET_ID = re.compile(r"^0x[0-9a-fA-F]{64}$")


def _select_market(store: Store, market: str | None) -> tuple[str | None, str | None]:
    """--market of history/report as (market name, book key): a config name the store knows,
    or a market id (0x + 64 hex: one Morpho book); anything else is an error naming them."""
    if market is None:
        return None, None
    names = queries.market_names(store)
    if market in names:
        return market, None
    if MARKET_ID.match(market):
        return None, market.lower()
    raise InputError(
        f"market {market!r} is not in {store.url} (known: {', '.join(names) or 'none yet'}; "
        "or a market id, 0x + 64 hex)"
    )


def _no_book(store: Store, key: str) -> InputError:
    names = ", ".join(queries.market_names(store)) or "none yet"
    return InputError(f"no stored book with market id {key} in {store.url} (markets: {names})")


def format_hf(value: int | None) -> str:
    """Four decimals, truncated: 0.99999 must never print as 1.0000."""
    if value is None:
        return "∞ (no debt)"
    return format_wad(value, 4, trim=False)


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
    config: ConfigOpt = None,
    db: DbOpt = None,
    market: Annotated[str | None, typer.Option("--market", help="only this market")] = None,
    limit: Annotated[int, typer.Option("--limit", help="newest snapshots per market")] = 500,
    rows: Annotated[int, typer.Option("--rows", help="rows in the table")] = 12,
    as_json: JsonOpt = False,
) -> None:
    """One account's health factor over time, per market: a sparkline and the latest rows."""
    from onchain.app.pipeline import checked_address

    address = checked_address(account, "account address")
    if limit < 1:
        raise InputError("--limit must be at least 1")
    with _store(db, config) as store:
        name, key = _select_market(store, market)
        histories = queries.account_history(store, address, market=name, limit=limit)
        if key is not None:
            histories = [h for h in histories if h.market_key.lower() == key]
        if not histories:
            where = f" in market {market}" if market else ""
            raise InputError(
                f"no snapshots of {address}{where} in {store.url} (an account the daemon "
                "never tracked, or a market it is not in)"
            )
    if as_json:
        print(
            strict_json(
                [
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
                                "health_factor": None
                                if p.health_factor is None
                                else str(p.health_factor),
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
                ],
            )
        )
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


# -- report -----------------------------------------------------------------------------------


def _tiers_json(tiers: dict[str, queries.TierTotals]) -> dict[str, Any]:
    return {
        k: {
            "positions": v.positions,
            "collateral_base": str(v.collateral_base),
            "debt_base": str(v.debt_base),
        }
        for k, v in tiers.items()
    }


NARROW = 130  # columns under which `report` lists positions as lines, not a table


def report_cmd(
    config: ConfigOpt = None,
    db: DbOpt = None,
    market: Annotated[str | None, typer.Option("--market", help="only this market")] = None,
    limit: Annotated[int, typer.Option("--limit", help="at-risk rows listed (0: all)")] = 25,
    as_json: JsonOpt = False,
) -> None:
    """Positions at risk now (each market's newest snapshot): by tier, by market, with totals."""
    from onchain.store.models import TIERS

    if limit < 0:
        raise InputError(f"--limit must be 0 (all) or more, got {limit}")
    with _store(db, config) as store:
        name, key = _select_market(store, market)
        books = queries.at_risk_report(store, market=name)
        if key is not None:
            books = [b for b in books if b.market_key.lower() == key]
            if not books:
                raise _no_book(store, key)
    if as_json:
        print(
            strict_json(
                [
                    {
                        "market": b.market,
                        "market_key": b.market_key,
                        "chain": b.chain,
                        "protocol": b.protocol,
                        "block_number": b.block_number,
                        "block_hash": b.block_hash,
                        "block_timestamp": b.block_timestamp,
                        "base_currency_decimals": b.base_currency_decimals,
                        "positions": b.positions,
                        "with_debt": b.with_debt,
                        "total_collateral_base": str(b.total_collateral_base),
                        "total_debt_base": str(b.total_debt_base),
                        "tiers": _tiers_json(b.tiers),
                        "at_risk": [
                            {
                                "account": a.account,
                                "health_factor": None
                                if a.health_factor is None
                                else str(a.health_factor),
                                "liquidatable": a.liquidatable,
                                "risk_tier": a.risk_tier,
                                "tier": a.risk_tier,  # the key scan/watch/targets use
                                "reason": a.risk_reason,
                                "reasons": a.risk_reasons,
                                "liquidation_probability": a.liquidation_probability,
                                "horizon_s": a.horizon_s,
                                "pending_health_factor": a.pending_health_factor,
                                "total_collateral_base": str(a.total_collateral_base),
                                "total_debt_base": str(a.total_debt_base),
                            }
                            for a in b.at_risk
                        ],
                    }
                    for b in books
                ],
            )
        )
        return
    if not books:
        err.print(f"no snapshots in {store.url} yet: run `onchain run`", highlight=False)
        return
    by_market = Table(title="at risk now, by market (amounts in each market's base currency)")
    for col in ("market", "block", "written", "with debt", *TIERS[:-1], "debt at risk", "debt"):
        by_market.add_column(
            col, justify="left" if col in ("market", "written") else "right", overflow="fold"
        )
    for b in books:
        risky_debt = sum(t.debt_base for k, t in b.tiers.items() if k != "SAFE")
        by_market.add_row(
            b.label,
            str(b.block_number),
            _when(b.taken_at),
            str(b.with_debt),
            *(str(b.tiers[t].positions) for t in TIERS[:-1]),
            format_base(risky_debt, b.base_currency_decimals),
            format_base(b.total_debt_base, b.base_currency_decimals),
        )
    out.print(by_market)
    by_tier = Table(title="by tier (positions with debt)")
    for col in ("market", "tier", "positions", "collateral", "debt"):
        by_tier.add_column(
            col,
            justify="right" if col in ("positions", "collateral", "debt") else "left",
            overflow="fold",
        )
    for b in books:
        for tier in TIERS:
            t = b.tiers[tier]
            by_tier.add_row(
                b.label,
                tier,
                str(t.positions),
                format_base(t.collateral_base, b.base_currency_decimals),
                format_base(t.debt_base, b.base_currency_decimals),
            )
        by_tier.add_row(
            b.label,
            "[bold]total[/]",
            str(b.with_debt),
            format_base(sum(t.collateral_base for t in b.tiers.values()), b.base_currency_decimals),
            format_base(sum(t.debt_base for t in b.tiers.values()), b.base_currency_decimals),
            end_section=True,
        )
    out.print(by_tier)
    risky = sorted(
        (a for b in books for a in b.at_risk), key=queries._rank
    )  # riskiest first across markets
    shown = risky if limit <= 0 else risky[:limit]
    if shown and out.width < NARROW:  # a table would squeeze its columns to nothing
        decimals = {b.label: b.base_currency_decimals for b in books}
        out.print(f"positions at risk ({len(shown)} of {len(risky)}), riskiest first")
        for a in shown:
            chance = (
                "-" if a.liquidation_probability is None else f"{a.liquidation_probability:.2%}"
            )
            out.print(f"{a.account}  {a.label}", highlight=False)
            out.print(
                f"  health {format_hf(a.health_factor)}  {a.risk_tier}  P {chance}  collateral "
                f"{format_base(a.total_collateral_base, decimals[a.label])}  debt "
                f"{format_base(a.total_debt_base, decimals[a.label])}  {a.risk_reason}",
                highlight=False,
            )
    elif shown:
        decimals = {b.label: b.base_currency_decimals for b in books}
        table = Table(title=f"positions at risk ({len(shown)} of {len(risky)}), riskiest first")
        columns = ("market", "account", "health factor", "tier", "P(liq.)", "collateral", "debt")
        for col in (*columns, "why"):
            table.add_column(
                col,
                justify="right" if col in ("P(liq.)", "collateral", "debt") else "left",
                no_wrap=col in ("account", "health factor"),
                overflow="fold",  # a narrow terminal folds figures onto more lines, never cuts
            )
        for a in shown:
            table.add_row(
                a.label,
                a.account,
                format_hf(a.health_factor),
                a.risk_tier,
                "-" if a.liquidation_probability is None else f"{a.liquidation_probability:.2%}",
                format_base(a.total_collateral_base, decimals[a.label]),
                format_base(a.total_debt_base, decimals[a.label]),
                a.risk_reason,
            )
        out.print(table)
    else:
        out.print("no position at risk")


def register(app: typer.Typer) -> None:
    """Add the store and daemon commands to the `onchain` app."""
    db_app = typer.Typer(help="The snapshot database: create or migrate its schema (Alembic).")
    db_app.command("upgrade")(db_upgrade)
    # `db downgrade -1`: a negative revision is an argument, not an unknown option
    db_app.command("downgrade", context_settings={"ignore_unknown_options": True})(db_downgrade)
    db_app.command("current")(db_current)
    app.add_typer(db_app, name="db")
    app.command("run")(run_cmd)
    app.command("status")(status_cmd)
    app.command("history")(history_cmd)
    app.command("report")(report_cmd)
