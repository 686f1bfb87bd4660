"""assess and prune: the jobs that work on what is stored, without the chain."""

from __future__ import annotations

import logging

from onchain.jobs.assess import assess_stored
from onchain.jobs.context import Counts, JobContext
from onchain.jobs.discover import one_line
from onchain.store import crud

log = logging.getLogger("onchain.jobs")
DAY_S = 86_400


def assess_job(ctx: JobContext, counts: Counts) -> list[str]:
    """Re-tier each market's newest snapshot: tiers the risk module gave at refresh are kept;
    rows tiered by the health-factor fallback (or written before it) are re-tiered with the
    configured thresholds, which catches threshold changes. It decides no alert: alerts are the
    outbox's, written by the refresh in the snapshot's transaction (onchain.alerts.outbox)."""
    errors = []
    for market in ctx.active_markets():
        try:
            latest = crud.latest_health(ctx.store, market.id)
            if latest is None:
                continue
            assessed = assess_stored(latest.stored, ctx.config.tiers)
            changed = crud.apply_assessment(ctx.store, latest, assessed)
            counts["positions"] += len(latest.stored)
            counts["tiers_changed"] += changed
            if changed:
                log.info(
                    "%s block %d: %d tier(s) re-assessed", market.name, latest.block_number, changed
                )
        except Exception as exc:
            errors.append(f"{market.name}: {one_line(exc)}")
    return errors


def prune_job(ctx: JobContext, counts: Counts) -> list[str]:
    """Retention: full resolution for `full_days`, then one snapshot per `downsample_s`."""
    cfg = ctx.config.jobs.prune
    errors = []
    for market in ctx.active_markets():
        if ctx.stop.is_set():
            break
        try:
            counts["snapshots_deleted"] += crud.prune_market(
                ctx.store,
                market.id,
                full_s=cfg.full_days * DAY_S,
                downsample_s=cfg.downsample_s,
                keep_s=cfg.keep_days * DAY_S,
            )
        except Exception as exc:
            errors.append(f"{market.name}: {one_line(exc)}")
    try:
        counts["job_runs_deleted"] += crud.prune_job_runs(ctx.store, cfg.job_runs_days)
    except Exception as exc:
        errors.append(f"job runs: {one_line(exc)}")
    return errors
