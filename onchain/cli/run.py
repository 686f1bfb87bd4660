"""`onchain run`: the scheduler daemon (discover, refresh, assess, prune, deliver) from the
command line; everything it needs is checked before anything is written."""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Annotated

import typer

from onchain.cli.common import DbOpt, err
from onchain.cli.log_setup import configure, hide_secrets
from onchain.errors import InputError

JOB_NAMES = ("discover", "refresh", "assess", "prune", "deliver")


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
    log_level: Annotated[
        str | None,
        typer.Option(
            "--log-level", help="debug, info, warning (default: info; -v debug, -q errors)"
        ),
    ] = None,
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
    from sqlalchemy.exc import SQLAlchemyError

    from onchain.config import load_config
    from onchain.jobs.daemon import job_context, run_daemon, run_once
    from onchain.jobs.workers import check_worker_store
    from onchain.protocols.registry import get_adapter
    from onchain.store.db import StoreError, open_store, resolve_db_url

    unknown = sorted(set(job or []) - set(JOB_NAMES))
    if unknown:
        raise InputError(f"unknown job(s) {', '.join(unknown)} (known: {', '.join(JOB_NAMES)})")
    level = None if log_level is None else getattr(logging, log_level.upper(), None)
    if log_level is not None and not isinstance(level, int):
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
    # the daemon's log is its output: INFO unless -v/-q/--log-level say otherwise; urllib3 logs
    # every request path at debug level, so no endpoint, database or alert secret may reach it
    configure(base_level=logging.INFO, level=level)
    rpc_urls = [u for n in names for u in cfg.chains[cfg.market(n).chain].resolve_rpc_urls()]
    channels = cfg.alerts.channels.values()
    hide_secrets(
        urls=[*rpc_urls, *(c.url for c in channels)],
        secrets=[db_url.password, *(c.secret for c in channels)],
    )
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
