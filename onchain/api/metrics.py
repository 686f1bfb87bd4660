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
from datetime import UTC
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

from onchain.rpc.endpoints import redact_url
from onchain.store import api_queries as Q
from onchain.store.crud import T_ALERT_DELIVERIES, T_ALERT_OUTBOX, T_JOB_RUNS
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


def rpc_metrics(store: Store) -> Iterator[Metric]:
    """Per RPC endpoint, as the newest discover/refresh run that used its chain left it
    (job_runs.counts["rpc_endpoints"]): the daemon's cumulative counters since it started.
    Labels carry the redacted URL only (`redact_url`, again here: never a key in a label)."""
    labels = ["chain", "endpoint"]
    requests = CounterMetricFamily(
        "onchain_rpc_requests", "JSON-RPC requests sent to an endpoint", labels=labels
    )
    errors = CounterMetricFamily(
        "onchain_rpc_errors",
        "Failed requests to an endpoint by fault kind (silent, transient, behind, endpoint, "
        "wrong_chain)",
        labels=[*labels, "kind"],
    )
    latency = HistogramMetricFamily(
        "onchain_rpc_request_duration_seconds",
        "Wall time of requests to an endpoint, answered or not",
        labels=labels,
    )
    up = GaugeMetricFamily(
        "onchain_rpc_endpoint_up",
        "1 when the endpoint is in use, 0 while it is set aside (or serves another chain)",
        labels=labels,
    )
    for (chain, endpoint), health in _endpoint_health(store).items():
        key = [chain, endpoint]
        requests.add_metric(key, int(health.get("requests") or 0))
        for kind, n in sorted((health.get("errors_by_kind") or {}).items()):
            errors.add_metric([*key, str(kind)], int(n))
        timing = health.get("latency_s")
        if isinstance(timing, dict):
            buckets = [(str(float(b)), int(n)) for b, n in timing.get("buckets") or []]
            buckets.append(("+Inf", int(timing.get("count") or 0)))
            latency.add_metric(key, buckets, float(timing.get("sum") or 0.0))
        aside = health.get("set_aside_until")
        up.add_metric(key, 0 if aside == "for good" or _ahead(aside) else 1)
    yield from (requests, errors, latency, up)


def _ahead(value: Any) -> bool:
    return isinstance(value, (int, float)) and value > time.time()


def _endpoint_health(store: Store) -> dict[tuple[str, str], dict[str, Any]]:
    """(chain, redacted endpoint) -> the health the newest run that used that chain recorded."""
    r = T_JOB_RUNS
    newest = (
        select(func.max(r.c.id))
        .where(r.c.job.in_(("discover", "refresh")) & (r.c.outcome != "running"))
        .group_by(r.c.job)
    )
    with store.read() as conn:
        rows = conn.execute(select(r.c.id, r.c.counts).where(r.c.id.in_(newest))).all()
    out: dict[tuple[str, str], dict[str, Any]] = {}
    for _id, counts in sorted(rows, key=lambda row: row[0]):
        chains = (counts or {}).get("rpc_endpoints")
        if not isinstance(chains, dict):
            continue
        for chain, endpoints in chains.items():
            for health in endpoints or []:
                if isinstance(health, dict) and health.get("endpoint"):
                    out[(str(chain), redact_url(str(health["endpoint"])))] = health
    return out


def channel_metrics(store: Store) -> Iterator[Metric]:
    """Per alert channel, from the outbox's deliveries: delivered, failed for good, pending,
    and the age of the oldest pending alert."""
    d, o = T_ALERT_DELIVERIES, T_ALERT_OUTBOX
    deliveries = CounterMetricFamily(
        "onchain_alert_deliveries",
        "Alert deliveries per channel by state (delivered, failed, pending)",
        labels=["channel", "state"],
    )
    oldest = GaugeMetricFamily(
        "onchain_alert_oldest_pending_age_seconds",
        "Seconds since the oldest alert still pending on a channel was queued",
        labels=["channel"],
    )
    now = time.time()
    with store.read() as conn:
        counts = conn.execute(
            select(d.c.channel, d.c.state, func.count()).group_by(d.c.channel, d.c.state)
        ).all()
        ages = conn.execute(
            select(d.c.channel, func.min(o.c.created_at))
            .join(o, o.c.id == d.c.outbox_id)
            .where(d.c.state == "pending")
            .group_by(d.c.channel)
        ).all()
    seen: dict[str, dict[str, int]] = {}
    for channel, state, n in counts:
        seen.setdefault(channel, {})[state] = int(n)
    for channel, states in sorted(seen.items()):
        for state in sorted({"delivered", "failed", "pending", *states}):
            deliveries.add_metric([channel, state], states.get(state, 0))
    for channel, created in ages:
        if created is not None:
            when = created if created.tzinfo else created.replace(tzinfo=UTC)
            oldest.add_metric([channel], max(0.0, now - when.timestamp()))
    yield from (deliveries, oldest)


def alert_metrics(store: Store) -> Iterator[Metric]:
    """Alerts the rules queued in the outbox, by tier (digests have none), and how many still
    wait for a channel."""
    o, d = T_ALERT_OUTBOX, T_ALERT_DELIVERIES
    recorded = CounterMetricFamily(
        "onchain_alerts_recorded", "Alerts queued in the outbox, by tier", labels=["tier"]
    )
    with store.read() as conn:
        for tier, n in conn.execute(select(o.c.tier, func.count()).group_by(o.c.tier)):
            recorded.add_metric([tier or "none"], int(n))
        pending = conn.execute(
            select(func.count(func.distinct(d.c.outbox_id))).where(d.c.state == "pending")
        ).scalar_one()
    yield recorded
    undelivered = GaugeMetricFamily(
        "onchain_alerts_undelivered", "Alerts with a delivery still pending on some channel"
    )
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
        sources = (book_metrics, job_metrics, alert_metrics, rpc_metrics, channel_metrics)
        for source in (*sources, *STORE_METRICS):
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
