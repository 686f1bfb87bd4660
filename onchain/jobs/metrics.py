"""The daemon's own counters for Prometheus (`onchain run --metrics-port N` serves them on
127.0.0.1): job runs by outcome, their durations, and per market the chain head the refresh saw,
the block it stored last and how far behind the head that is. In-process figures: the store
keeps the history, `onchain serve`'s /metrics reads it."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

REGISTRY = CollectorRegistry()
JOB_RUNS = Counter(
    "onchain_daemon_job_runs", "Job runs of this process by outcome", ["job", "outcome"],
    registry=REGISTRY,
)  # fmt: skip
JOB_SECONDS = Histogram(
    "onchain_daemon_job_duration_seconds",
    "Wall time of this process's job runs",
    ["job"],
    buckets=(0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0),
    registry=REGISTRY,
)
HEAD_BLOCK = Gauge(
    "onchain_daemon_head_block", "Chain head seen by the last refresh", ["market"],
    registry=REGISTRY,
)  # fmt: skip
REFRESHED_BLOCK = Gauge(
    "onchain_daemon_refreshed_block", "Newest block the refresh stored", ["market"],
    registry=REGISTRY,
)  # fmt: skip
LAG_BLOCKS = Gauge(
    "onchain_daemon_lag_blocks", "Blocks between the chain head and the newest stored block",
    ["market"], registry=REGISTRY,
)  # fmt: skip

RECONCILIATIONS = Counter(
    "onchain_daemon_reconciliations", "Full reads that checked the kept incremental state",
    ["market"], registry=REGISTRY,
)  # fmt: skip
RECONCILE_REPAIRS = Counter(
    "onchain_daemon_reconcile_repairs",
    "Accounts whose kept incremental state differed from a full read (repaired; should stay 0)",
    ["market"], registry=REGISTRY,
)  # fmt: skip


def record_reconciliation(market: str, repairs: int) -> None:
    RECONCILIATIONS.labels(market).inc()
    RECONCILE_REPAIRS.labels(market).inc(repairs)


LEASED = Gauge(
    "onchain_daemon_leased", "1 where this worker (run --worker) holds the market's lease",
    ["market"], registry=REGISTRY,
)  # fmt: skip
LEASE_CHANGES = Counter(
    "onchain_daemon_lease_changes", "Markets this worker took, gave back or lost to another",
    ["change"], registry=REGISTRY,
)  # fmt: skip


def record_leases(held: list[str], released: list[str], changes: dict[str, int]) -> None:
    """A worker's leases after a tick: held markets 1, given-back or lost ones 0."""
    for market in held:
        LEASED.labels(market).set(1)
    for market in released:
        LEASED.labels(market).set(0)
    for change, n in changes.items():
        if n:
            LEASE_CHANGES.labels(change).inc(n)


def record_run(job: str, outcome: str, seconds: float) -> None:
    JOB_RUNS.labels(job, outcome).inc()
    JOB_SECONDS.labels(job).observe(seconds)


def record_head(market: str, head: int, refreshed: int | None) -> None:
    HEAD_BLOCK.labels(market).set(head)
    if refreshed is not None:
        REFRESHED_BLOCK.labels(market).set(refreshed)
        LAG_BLOCKS.labels(market).set(max(0, head - refreshed))


def serve_metrics(port: int) -> None:
    """The registry on http://127.0.0.1:PORT/metrics, in a background thread."""
    from prometheus_client import start_http_server

    start_http_server(port, addr="127.0.0.1", registry=REGISTRY)
