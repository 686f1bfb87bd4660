"""Market leases for several workers over one PostgreSQL database. PostgreSQL does all the
coordination: a worker's heartbeat is a row, a market's lease is a row taken with
`SELECT ... FOR UPDATE SKIP LOCKED` (two workers never take the same free market; a market
whose write is in flight is skipped), and every time comes from the database clock
(`clock_timestamp()`), so the workers' own clocks never matter.

A lease carries an `epoch` that grows at each takeover. A worker writes a block only inside a
transaction that first re-checks holder and epoch on the lease row (and locks it, which also
renews it): a worker that lost the market meanwhile writes nothing. Leases are a PostgreSQL
feature; SQLite runs one `onchain run`."""

from __future__ import annotations

import math
import os
import socket
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import Connection, TextClause, bindparam, text

from onchain.errors import OnchainError
from onchain.store.db import Store

NOW = "clock_timestamp()"


class LeaseLost(OnchainError):
    """This worker no longer holds the market (it expired and another worker took it, or it was
    released): the block is not written."""


class OutOfOrder(OnchainError):
    """The block is not the one after the market's refresh cursor: writing it would skip a
    block or write one twice."""


@dataclass(frozen=True)
class Lease:
    market_id: int
    epoch: int


@dataclass(frozen=True)
class TickResult:
    """A worker's leases after one tick, and how the tick changed them."""

    held: dict[int, int]  # market id -> epoch
    live_workers: int
    share: int
    taken: list[int]
    released: list[int]


def fair_share(markets: int, live_workers: int) -> int:
    """The most markets one worker holds: ceil(markets / live workers)."""
    return math.ceil(markets / max(1, live_workers)) if markets else 0


def register_worker(store: Store, name: str, lease_seconds: float) -> None:
    """The worker's row, fresh: this process, its lease time, a heartbeat now."""
    with store.write() as conn:
        conn.execute(
            text(
                "INSERT INTO workers (name, host, pid, lease_seconds, started_at, heartbeat_at) "
                f"VALUES (:name, :host, :pid, :lease, {NOW}, {NOW}) "
                "ON CONFLICT (name) DO UPDATE SET host = excluded.host, pid = excluded.pid, "
                "lease_seconds = excluded.lease_seconds, started_at = excluded.started_at, "
                "heartbeat_at = excluded.heartbeat_at"
            ),
            {
                "name": name,
                "host": socket.gethostname()[:255],
                "pid": os.getpid(),
                "lease": lease_seconds,
            },
        )


def ensure_lease_rows(store: Store, market_ids: Sequence[int]) -> None:
    """One lease row per market (free until a worker takes it)."""
    if not market_ids:
        return
    with store.write() as conn:
        conn.execute(
            text(
                "INSERT INTO market_leases (market_id, epoch) VALUES (:m, 0) "
                "ON CONFLICT (market_id) DO NOTHING"
            ),
            [{"m": m} for m in sorted(market_ids)],
        )


def _ids(statement: str) -> TextClause:
    """A statement whose `:ids` is a list (an IN over every market id)."""
    return text(statement).bindparams(bindparam("ids", expanding=True))


def tick(store: Store, name: str, market_ids: Sequence[int], lease_seconds: float) -> TickResult:
    """One heartbeat and one pass over the leases, in one transaction: renew what this worker
    holds, give back what exceeds its fair share (the lowest-numbered markets are kept), and
    take free or expired markets up to it. Another worker's live lease is never touched."""
    ids = sorted(set(market_ids))
    lease = {"lease": lease_seconds}
    with store.write() as conn:
        conn.execute(
            text(f"UPDATE workers SET heartbeat_at = {NOW} WHERE name = :name"), {"name": name}
        )
        conn.execute(  # workers gone for a day, holding nothing, leave `status`
            text(
                f"DELETE FROM workers WHERE heartbeat_at < {NOW} - interval '1 day' "
                "AND name NOT IN (SELECT holder FROM market_leases WHERE holder IS NOT NULL)"
            )
        )
        live = conn.execute(
            text(
                "SELECT count(*) FROM workers WHERE heartbeat_at > "
                f"{NOW} - make_interval(secs => lease_seconds)"
            )
        ).scalar_one()
        share = fair_share(len(ids), int(live))
        held: dict[int, int] = {}
        if ids:
            rows = conn.execute(
                _ids(
                    "UPDATE market_leases SET expires_at = "
                    f"{NOW} + make_interval(secs => :lease) "
                    "WHERE holder = :name AND market_id IN :ids RETURNING market_id, epoch"
                ),
                {"name": name, "ids": ids, **lease},
            ).all()
            held = {int(m): int(e) for m, e in rows}
        released = sorted(held)[share:]
        if released:
            release(conn, name, released)
            for m in released:
                del held[m]
        taken: list[int] = []
        wanted = share - len(held)
        if wanted > 0 and ids:
            free = (
                conn.execute(
                    _ids(
                        "SELECT market_id FROM market_leases WHERE market_id IN :ids "
                        f"AND (holder IS NULL OR expires_at IS NULL OR expires_at < {NOW}) "
                        "ORDER BY market_id LIMIT :n FOR UPDATE SKIP LOCKED"
                    ),
                    {"ids": ids, "n": wanted},
                )
                .scalars()
                .all()
            )
            if free:
                rows = conn.execute(
                    _ids(
                        "UPDATE market_leases SET holder = :name, epoch = epoch + 1, "
                        f"acquired_at = {NOW}, expires_at = {NOW} + make_interval(secs => :lease) "
                        "WHERE market_id IN :ids RETURNING market_id, epoch"
                    ),
                    {"name": name, "ids": list(free), **lease},
                ).all()
                for m, e in rows:
                    held[int(m)] = int(e)
                    taken.append(int(m))
    return TickResult(held, int(live), share, sorted(taken), released)


def release(conn: Connection, name: str, market_ids: Sequence[int]) -> None:
    """Give markets back at once (free for the next worker's tick)."""
    if market_ids:
        conn.execute(
            _ids(
                "UPDATE market_leases SET holder = NULL, expires_at = NULL "
                "WHERE holder = :name AND market_id IN :ids"
            ),
            {"name": name, "ids": sorted(market_ids)},
        )


def leave(store: Store, name: str) -> None:
    """A graceful stop: every lease back, and the worker no longer counts as live."""
    with store.write() as conn:
        conn.execute(
            text("UPDATE market_leases SET holder = NULL, expires_at = NULL WHERE holder = :name"),
            {"name": name},
        )
        conn.execute(text("DELETE FROM workers WHERE name = :name"), {"name": name})


def check_lease(
    conn: Connection, market_id: int, name: str, lease: Lease, lease_seconds: float
) -> None:
    """Inside a write transaction: the lease is still this worker's at this epoch. The row is
    locked until the transaction ends (no takeover can slip in) and renewed; LeaseLost
    otherwise, which rolls the whole write back."""
    ours = conn.execute(
        text(
            "UPDATE market_leases SET expires_at = GREATEST(expires_at, "
            f"{NOW} + make_interval(secs => :lease)) "
            "WHERE market_id = :m AND holder = :name AND epoch = :epoch RETURNING 1"
        ),
        {"m": market_id, "name": name, "epoch": lease.epoch, "lease": lease_seconds},
    ).first()
    if ours is None:
        raise LeaseLost(f"worker {name} no longer holds market {market_id} (epoch {lease.epoch})")


def check_next_block(conn: Connection, market_id: int, number: int) -> None:
    """Inside a write transaction: `number` follows the market's refresh cursor (or starts
    it), so no block is skipped or written twice."""
    cursor = conn.execute(
        text("SELECT block_number FROM cursors WHERE market_id = :m AND kind = 'refresh'"),
        {"m": market_id},
    ).scalar()
    if cursor is not None and int(cursor) != number - 1:
        raise OutOfOrder(
            f"market {market_id}: block {number} does not follow the refresh cursor {cursor}"
        )


@dataclass(frozen=True)
class WorkerStatus:
    name: str
    host: str
    pid: int
    started_at: datetime
    heartbeat_at: datetime
    lease_seconds: float
    live: bool
    markets: list[tuple[str, int, datetime | None]]  # market name, epoch, lease expiry


def worker_statuses(store: Store) -> list[WorkerStatus]:
    """Every worker the database knows, live first, with the markets it holds (none on
    SQLite, which runs no workers)."""
    if store.dialect != "postgresql":
        return []
    with store.read() as conn:
        workers = conn.execute(
            text(
                "SELECT name, host, pid, started_at, heartbeat_at, lease_seconds, "
                f"heartbeat_at > {NOW} - make_interval(secs => lease_seconds) AS live "
                "FROM workers ORDER BY name"
            )
        ).all()
        leases = conn.execute(
            text(
                "SELECT l.holder, m.name, l.epoch, l.expires_at FROM market_leases l "
                "JOIN markets m ON m.id = l.market_id WHERE l.holder IS NOT NULL ORDER BY m.name"
            )
        ).all()
    held: dict[str, list[tuple[str, int, datetime | None]]] = {}
    for holder, market, epoch, expires in leases:
        held.setdefault(holder, []).append((market, int(epoch), _utc(expires)))
    out = [
        WorkerStatus(
            w.name,
            w.host,
            int(w.pid),
            _utc(w.started_at) or w.started_at,
            _utc(w.heartbeat_at) or w.heartbeat_at,
            float(w.lease_seconds),
            bool(w.live),
            held.get(w.name, []),
        )
        for w in workers
    ]
    return sorted(out, key=lambda s: (not s.live, s.name))


def _utc(value: datetime | None) -> datetime | None:
    if value is None:
        return None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
