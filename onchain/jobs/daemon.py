"""`onchain run`: the jobs on APScheduler 3. No job overlaps itself (max_instances=1), missed
runs collapse into one (coalesce), every run is recorded in job_runs, and SIGINT/SIGTERM stop it
gracefully: running jobs finish the block they are writing, then the process exits. A kill -9
loses at most the block being written, which its transaction rolls back."""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from types import FrameType
from typing import Any

from onchain.alerts.delivery import deliver_job
from onchain.config import Config
from onchain.errors import InputError
from onchain.jobs import metrics
from onchain.jobs.context import Counts, JobContext
from onchain.jobs.discover import discover_job, one_line
from onchain.jobs.maintenance import assess_job, prune_job
from onchain.jobs.refresh import refresh_job
from onchain.jobs.workers import RUN_LOCK, LeaseKeeper, worker_session
from onchain.store import crud
from onchain.store.db import Store, safe_url

log = logging.getLogger("onchain.jobs.daemon")

JobFn = Callable[[JobContext, Counts], list[str]]
JOBS: dict[str, JobFn] = {
    "discover": discover_job,
    "refresh": refresh_job,
    "assess": assess_job,
    "prune": prune_job,
    "deliver": deliver_job,  # the alerts outbox
}


def run_recorded(ctx: JobContext, name: str) -> str:
    """Run one job and record it: start, end, outcome (ok, error, interrupted), counts."""
    if name == "deliver" and ctx.keeper is not None and not ctx.keeper.delivers:
        return "skipped"  # another worker sends the outbox
    counts: Counts = Counter()
    started = time.monotonic()
    try:
        run_id = crud.start_run(ctx.store, name)
    except Exception as exc:  # the store is unreachable: nothing to record into
        log.error("%s: cannot record the run: %s", name, one_line(exc))
        metrics.record_run(name, "error", time.monotonic() - started)
        return "error"
    errors: list[str] = []
    try:
        errors = JOBS[name](ctx, counts)
    except Exception as exc:
        errors = [one_line(exc)]
    health = ctx.endpoint_health()
    if health and name in (
        "discover",
        "refresh",
    ):  # the endpoints' health as this run leaves it, for `onchain status`
        # job_runs.counts is JSON: the health list rides with the numbers (Counter says int)
        counts["rpc_endpoints"] = health  # type: ignore[assignment]
    if errors:
        outcome = "error"
    elif counts.pop("stopped_early", 0):
        outcome = "interrupted"
    else:
        outcome = "ok"
    for line in errors:
        log.error("%s: %s", name, line)
    try:
        crud.finish_run(ctx.store, run_id, outcome, counts, "; ".join(errors) or None)
    except Exception as exc:
        log.error("%s: cannot record the end of run %d: %s", name, run_id, one_line(exc))
    metrics.record_run(name, outcome, time.monotonic() - started)
    return outcome


MAX_BACKOFF_S = 300.0


@dataclass
class Backoff:
    """A job that keeps failing (the RPC is down) waits longer after each failure: its interval
    doubles up to MAX_BACKOFF_S, and the first success brings it back."""

    every_s: float
    failures: int = 0
    next_try: float = 0.0

    def due(self) -> bool:
        return time.monotonic() >= self.next_try

    def record(self, name: str, outcome: str) -> None:
        if outcome != "error":
            if self.failures:
                log.info("%s: working again after %d failed run(s)", name, self.failures)
            self.failures, self.next_try = 0, 0.0
            return
        self.failures += 1
        wait = min(self.every_s * 2**self.failures, max(MAX_BACKOFF_S, self.every_s))
        self.next_try = time.monotonic() + wait
        log.warning("%s: %d failed run(s) in a row; next try in %.0fs", name, self.failures, wait)


def run_backing_off(ctx: JobContext, name: str, backoff: Backoff) -> str:
    """What the scheduler calls: a job whose backoff has not elapsed is skipped (not recorded)."""
    if not backoff.due():
        return "skipped"
    outcome = run_recorded(ctx, name)
    backoff.record(name, outcome)
    return outcome


@contextmanager
def exclusive(store: Store) -> Iterator[None]:
    """One single-process `onchain run` per database: a second one would write the same blocks
    and move the same cursors. SQLite: an flock on a file beside the database; PostgreSQL: an
    advisory lock held by one connection for the life of the process (workers hold it shared,
    so neither starts beside the other)."""
    refused = InputError(
        f"another `onchain run` (or `onchain run --worker`) is using the database "
        f"{safe_url(store.engine.url)}: stop it first (one daemon per database, or only workers)"
    )
    if store.engine.dialect.name == "sqlite":
        import fcntl

        path = f"{store.engine.url.database}.run.lock"
        with open(path, "a+") as handle:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise refused from None
            handle.seek(0)
            handle.truncate()
            handle.write(f"{os.getpid()}\n")
            handle.flush()
            yield
        return
    from sqlalchemy import text

    key = RUN_LOCK
    with store.engine.connect() as conn:
        if not conn.execute(text("SELECT pg_try_advisory_lock(:k)"), {"k": key}).scalar():
            raise refused
        conn.commit()
        try:
            yield
        finally:
            conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": key})
            conn.commit()


@contextmanager
def job_context(
    store: Store, config: Config, names: list[str], worker: str | None = None
) -> Iterator[JobContext]:
    """The context the jobs run in, for the life of the run: one process alone (exclusive), or
    the worker `worker` holding its session locks and keeping its leases, given back at the end."""
    if worker is None:
        with exclusive(store):
            yield JobContext(config, store, crud.sync_markets(store, config, names))
        return
    with worker_session(store, worker) as session:
        markets = crud.sync_markets(store, config, names)
        keeper = LeaseKeeper(store, worker, markets, config.daemon.lease_seconds, session)
        ctx = JobContext(config, store, markets, keeper=keeper)
        with keeper.running(ctx.stop):
            yield ctx


def enabled_jobs(ctx: JobContext, only: list[str] | None = None) -> list[str]:
    names = [n for n in JOBS if getattr(ctx.config.jobs, n).enabled]
    return [n for n in names if only is None or n in only]


def run_once(ctx: JobContext, only: list[str] | None = None) -> dict[str, str]:
    """Each enabled job once, in order (for cron, tests, and a first catch-up)."""
    crud.mark_crashed_runs(ctx.store)
    return {name: run_recorded(ctx, name) for name in enabled_jobs(ctx, only)}


def build_scheduler(ctx: JobContext, names: list[str]) -> Any:
    """APScheduler 3 with one interval job per name, each recorded by `run_recorded` and backing
    off while it fails (`Backoff`): never two runs of a job at once (max_instances=1), missed
    runs collapsed into one (coalesce), a late run still runs (no misfire limit); jobs of
    different names run in parallel threads."""
    from apscheduler.executors.pool import ThreadPoolExecutor
    from apscheduler.schedulers.background import BackgroundScheduler

    scheduler = BackgroundScheduler(
        timezone=UTC,
        executors={"default": ThreadPoolExecutor(max_workers=max(1, len(names)))},
        job_defaults={"coalesce": True, "max_instances": 1, "misfire_grace_time": None},
    )
    now = datetime.now(UTC)
    for name in names:
        every_s = getattr(ctx.config.jobs, name).every_s
        scheduler.add_job(
            run_backing_off,
            "interval",
            seconds=every_s,
            args=[ctx, name, Backoff(every_s)],
            id=name,
            name=name,
            next_run_time=now,
        )
    return scheduler


def run_daemon(ctx: JobContext, only: list[str] | None = None) -> None:
    """Schedule the enabled jobs and block until SIGINT/SIGTERM, then stop gracefully."""
    crashed = crud.mark_crashed_runs(ctx.store)
    if crashed:
        log.warning("%d run(s) of an earlier process ended without finishing", crashed)
    names = enabled_jobs(ctx, only)
    scheduler = build_scheduler(ctx, names)

    def _stop(signum: int, _frame: FrameType | None) -> None:
        log.info("%s: stopping after the running jobs finish", signal.Signals(signum).name)
        ctx.stop.set()
        for sig in (signal.SIGINT, signal.SIGTERM):  # a second signal ends it at once
            signal.signal(sig, signal.SIG_DFL)

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGINT, _stop)
        signal.signal(signal.SIGTERM, _stop)
    scheduler.start()
    log.info(
        "running %s for %d market(s)%s; store %s",
        ", ".join(f"{n} every {getattr(ctx.config.jobs, n).every_s:g}s" for n in names),
        len(ctx.markets),
        f" as worker {ctx.keeper.name}" if ctx.keeper is not None else "",
        ctx.store.url,
    )
    try:
        while not ctx.stop.wait(0.5):
            pass
    finally:
        ctx.stop.set()
        scheduler.shutdown(wait=True)
        log.info("stopped")
