"""/metrics for Prometheus, read from the store at each scrape (the daemon and the server may
be separate processes; the daemon's own counters are `onchain run --metrics-port`'s).

Families: positions with debt per tier and book, collateral and debt at risk per tier in USD,
the newest stored block per market with its age, refresh backlog in blocks, job runs per
outcome and job durations as histograms, alerts recorded and not yet delivered.

Hook: `STORE_METRICS` is a list of functions `(store) -> iterable of metric families`; a module
that keeps its own tables (alert deliveries per channel, RPC requests and errors per endpoint)
appends one and its figures appear here."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from fastapi import FastAPI
from fastapi.responses import Response
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from sqlalchemy import func, select
from sqlalchemy.exc import SQLAlchemyError

from onchain.store import api_queries as Q
from onchain.store.crud import T_ALERTS, T_JOB_RUNS
from onchain.store.db import Store
from onchain.store.models import TIERS

log = logging.getLogger("onchain.api.metrics")

DURATION_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0)
STORE_METRICS: list[Callable[[Store], Iterable[Metric]]] = []


def book_metrics(store: Store) -> Iterator[Metric]:
    positions = GaugeMetricFamily(
        "onchain_positions",
        "Positions with debt at the newest stored block, per tier",
        labels=["market", "book", "tier"],
    )
    collateral = GaugeMetricFamily(
        "onchain_collateral_at_risk_usd",
        "Collateral of positions in a tier other than SAFE at the newest stored block, USD",
        labels=["market", "book", "tier"],
    )
    debt = GaugeMetricFamily(
        "onchain_debt_at_risk_usd",
        "Debt of positions in a tier other than SAFE at the newest stored block, USD",
        labels=["market", "book", "tier"],
    )
    block = GaugeMetricFamily(
        "onchain_latest_block", "Newest stored (refreshed) block", labels=["market"]
    )
    age = GaugeMetricFamily(
        "onchain_latest_block_age_seconds",
        "Seconds between the newest stored block's timestamp and now",
        labels=["market"],
    )
    written = GaugeMetricFamily(
        "onchain_latest_snapshot_written_age_seconds",
        "Seconds since the newest snapshot was written",
        labels=["market"],
    )
    now = time.time()
    for m in Q.markets(store):
        if m.head is None:
            continue
        block.add_metric([m.name], m.head.block_number)
        age.add_metric([m.name], max(0.0, now - m.head.block_timestamp))
        written.add_metric([m.name], max(0.0, now - m.head.taken_at.timestamp()))
        for book in Q.tier_series(store, m.name, limit=1, exact=False):
            point = book.points[-1]
            for tier in TIERS:
                positions.add_metric([m.name, book.label, tier], point.tiers.get(tier, 0))
            rate = point.usd_per_unit
            if rate is None:
                continue  # no USD price for this base currency in the store
            scale = 10.0**book.base_currency_decimals
            for tier in TIERS[:-1]:
                coll, owed = point.at_risk_by_tier.get(tier, (0, 0))
                collateral.add_metric([m.name, book.label, tier], coll / scale * rate)
                debt.add_metric([m.name, book.label, tier], owed / scale * rate)
    yield from (positions, collateral, debt, block, age, written)


def job_metrics(store: Store) -> Iterator[Metric]:
    r = T_JOB_RUNS
    runs = CounterMetricFamily(
        "onchain_job_runs", "Recorded daemon job runs by outcome", labels=["job", "outcome"]
    )
    with store.read() as conn:
        for job, outcome, n in conn.execute(
            select(r.c.job, r.c.outcome, func.count()).group_by(r.c.job, r.c.outcome)
        ):
            runs.add_metric([job, outcome], int(n))
        durations: dict[str, list[float]] = {}
        for job, started, finished in conn.execute(
            select(r.c.job, r.c.started_at, r.c.finished_at).where(r.c.finished_at.is_not(None))
        ):
            durations.setdefault(job, []).append((finished - started).total_seconds())
        behind = conn.execute(
            select(r.c.counts)
            .where((r.c.job == "refresh") & (r.c.outcome != "running"))
            .order_by(r.c.id.desc())
            .limit(1)
        ).scalar()
    yield runs
    histogram = HistogramMetricFamily(
        "onchain_job_duration_seconds",
        "Durations of recorded daemon job runs (refresh: one run reads and writes every new block)",
        labels=["job"],
    )
    for job, values in sorted(durations.items()):
        buckets = [(str(b), sum(1 for v in values if v <= b)) for b in DURATION_BUCKETS]
        buckets.append(("+Inf", len(values)))
        histogram.add_metric([job], buckets, sum(values))
    yield histogram
    lag = GaugeMetricFamily(
        "onchain_refresh_blocks_behind",
        "Blocks the last refresh run left for the next one (its backlog behind the head)",
    )
    lag.add_metric([], float((behind or {}).get("blocks_behind", 0)))
    yield lag


def alert_metrics(store: Store) -> Iterator[Metric]:
    a = T_ALERTS
    recorded = CounterMetricFamily(
        "onchain_alerts_recorded", "Tier changes recorded as alerts", labels=["tier"]
    )
    with store.read() as conn:
        for tier, n in conn.execute(select(a.c.tier, func.count()).group_by(a.c.tier)):
            recorded.add_metric([tier], int(n))
        pending = conn.execute(select(func.count()).where(a.c.delivered_at.is_(None))).scalar_one()
    yield recorded
    undelivered = GaugeMetricFamily("onchain_alerts_undelivered", "Alerts not delivered yet")
    undelivered.add_metric([], int(pending))
    yield undelivered


class StoreCollector:
    """Reads every family from the store at scrape time; a store error is a scrape error
    metric, not a failed scrape."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def collect(self) -> Iterator[Metric]:
        up = GaugeMetricFamily("onchain_store_up", "1 when the store answered this scrape")
        ok = 1
        for source in (book_metrics, job_metrics, alert_metrics, *STORE_METRICS):
            try:
                yield from list(source(self.store))
            except SQLAlchemyError as exc:
                log.error("metrics: %s: %s", source.__name__, type(exc).__name__)
                ok = 0
        up.add_metric([], ok)
        yield up


def mount_metrics(app: FastAPI, store: Store) -> None:
    registry = CollectorRegistry()
    registry.register(StoreCollector(store))

    @app.get("/metrics", tags=["health"], response_class=Response)
    def metrics() -> Any:
        """Prometheus text exposition, read from the store now."""
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)
