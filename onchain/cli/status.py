"""`onchain status`: what the daemon ran, when, and how it ended; each market's cursors and
each RPC endpoint's health."""

from __future__ import annotations

from contextlib import suppress
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Annotated, Any

import typer

from onchain.cli.common import (
    DbOpt,
    JsonOpt,
    LazyConsole,
    StoreConfigOpt,
    check_output_flags,
    emit,
    escape,
)
from onchain.cli.stored import opened_store, when

out = LazyConsole(pipe_width=160)

if TYPE_CHECKING:
    from onchain.store import queries
    from onchain.store.db import Store
    from onchain.store.leases import WorkerStatus


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
    moment = datetime.fromtimestamp(value, UTC)
    ahead = (moment - datetime.now(UTC)).total_seconds()
    return f"{moment:%Y-%m-%d %H:%M:%S} (in {ahead:.0f}s)" if ahead > 0 else when(moment)


OUTCOME_STYLE = {"ok": "green", "error": "red", "crashed": "red", "interrupted": "yellow"}


def _outcome(outcome: str) -> str:
    style = OUTCOME_STYLE.get(outcome, "cyan")
    return f"[{style}]{outcome}[/]"


RUN_FIELDS = ("id", "job", "started_at", "finished_at", "seconds", "outcome", "error", "counts")


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
    from sqlalchemy.exc import SQLAlchemyError

    from onchain.store import crud

    with suppress(SQLAlchemyError):
        crud.mark_crashed_runs(store)


def _status_json(
    store: Store,
    jobs: list[queries.JobSummary],
    markets: list[queries.MarketStatus],
    workers: list[WorkerStatus],
    recent: list[queries.RunRow],
) -> dict[str, Any]:
    """Everything `status` knows, for --json."""
    return {
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
                "newest_taken_at": m.newest_taken_at.isoformat() if m.newest_taken_at else None,
            }
            for m in markets
        ],
        "workers": [_worker_json(w) for w in workers],
        "endpoints": _endpoints(jobs),
        "recent_runs": [_run_json(r) for r in recent],
    }


def status_cmd(
    config: StoreConfigOpt = None,
    db: DbOpt = None,
    runs: Annotated[int, typer.Option("--runs", help="recent runs to list")] = 10,
    as_json: JsonOpt = False,
    as_csv: Annotated[
        bool, typer.Option("--csv", help="CSV of the recent runs (JSON has everything)")
    ] = False,
) -> None:
    """What ran, when, and how it ended; how far each market's cursors got."""
    from rich.table import Table

    from onchain.store import queries
    from onchain.store.leases import worker_statuses

    check_output_flags(as_json, as_csv)
    with opened_store(db, config) as store:
        _mark_crashed(store)
        jobs = queries.job_summaries(store)
        markets = queries.market_statuses(store)
        recent = queries.recent_runs(store, runs)
        workers = worker_statuses(store)
    document = _status_json(store, jobs, markets, workers, recent)
    if emit(as_json, as_csv, document, [_run_json(r) for r in recent], RUN_FIELDS):
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
                when(j.last.started_at),
                took,
                _outcome(j.last.outcome),
                _counts(j.last.counts) + (f"\n[red]{j.last.error}[/]" if j.last.error else ""),
                when(j.last_ok_at),
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
                f"block {m.newest_block}, written {when(m.newest_taken_at)}"
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
                when(w.heartbeat_at),
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
