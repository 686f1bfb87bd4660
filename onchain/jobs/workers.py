"""`onchain run --worker NAME`: one of several processes sharing the markets of one PostgreSQL
database. The keeper heartbeats and renews this worker's leases in its own thread (every third
of the lease time), takes free or expired markets up to its fair share and gives back the
surplus when more workers are live; the jobs then work only on the markets it holds, and each
block's write re-checks the lease inside its transaction (onchain.store.leases)."""

from __future__ import annotations

import logging
import threading
import zlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import Connection, event, text

from onchain.errors import InputError
from onchain.jobs import metrics
from onchain.store import leases
from onchain.store.crud import MarketInfo
from onchain.store.db import Store, safe_url

log = logging.getLogger("onchain.jobs.workers")

RUN_LOCK = zlib.crc32(b"onchain run")  # exclusive: one plain daemon; shared: workers
DELIVER_LOCK = zlib.crc32(b"onchain deliver")  # one worker sends the alerts outbox


def _worker_lock(name: str) -> int:
    return zlib.crc32(f"onchain worker {name}".encode())


class LeaseKeeper:
    """This worker's leases, as the last tick left them (market id -> epoch)."""

    def __init__(
        self,
        store: Store,
        name: str,
        markets: list[MarketInfo],
        lease_seconds: float,
        session: Connection | None = None,
    ) -> None:
        self.store = store
        self.name = name
        self.markets = markets
        self.lease_seconds = lease_seconds
        self._held: dict[int, int] = {}
        self._lock = threading.Lock()
        self._delivers = False
        self._session = session  # holds the worker's session advisory locks (worker_session)

    # -- what the jobs ask --------------------------------------------------------------------

    def held(self) -> dict[int, int]:
        with self._lock:
            return dict(self._held)

    def lease(self, market_id: int) -> leases.Lease | None:
        with self._lock:
            epoch = self._held.get(market_id)
        return None if epoch is None else leases.Lease(market_id, epoch)

    def lost(self, market_id: int) -> None:
        """A write found the lease gone: stop working on the market until a tick retakes it."""
        with self._lock:
            self._held.pop(market_id, None)

    def guard(
        self, market: MarketInfo, number: int, *, in_order: bool
    ) -> Callable[[Connection], None]:
        """What the write of block `number` runs first in its transaction: the lease is still
        ours at the epoch we took it (and is renewed); with `in_order`, the block follows the
        market's refresh cursor. Either failing rolls the write back."""
        lease = self.lease(market.id)
        if lease is None:
            raise leases.LeaseLost(f"worker {self.name} does not hold {market.name}")

        def check(conn: Connection) -> None:
            leases.check_lease(conn, market.id, self.name, lease, self.lease_seconds)
            if in_order:
                leases.check_next_block(conn, market.id, number)

        return check

    @property
    def delivers(self) -> bool:
        return self._delivers

    # -- the keeper itself --------------------------------------------------------------------

    def tick(self) -> leases.TickResult:
        ids = [m.id for m in self.markets]
        result = leases.tick(self.store, self.name, ids, self.lease_seconds)
        with self._lock:
            gone = sorted(set(self._held) - set(result.held))
            self._held = dict(result.held)
        names = {m.id: m.name for m in self.markets}
        lost = [m for m in gone if m not in result.released]
        for what, ids_ in (("took", result.taken), ("gave back", result.released)):
            if ids_:
                log.info(
                    "worker %s %s %s (share %d of %d market(s), %d live worker(s))",
                    self.name,
                    what,
                    ", ".join(names[m] for m in ids_),
                    result.share,
                    len(self.markets),
                    result.live_workers,
                )
        if lost:
            log.warning(
                "worker %s lost %s to another worker", self.name, ", ".join(names[m] for m in lost)
            )
        metrics.record_leases(
            [names[m] for m in result.held],
            [names[m] for m in gone],
            {"taken": len(result.taken), "released": len(result.released), "lost": len(lost)},
        )
        self._try_deliver_lock()
        return result

    def _try_deliver_lock(self) -> None:
        if self._delivers or self._session is None:
            return
        got = self._session.execute(
            text("SELECT pg_try_advisory_lock(:k)"), {"k": DELIVER_LOCK}
        ).scalar()
        self._session.commit()
        if got:
            self._delivers = True
            log.info("worker %s sends the alerts outbox", self.name)

    def keep(self, stop: threading.Event) -> None:
        """Tick every third of the lease time until `stop`; a failed tick (the database away)
        is logged and retried: the leases then expire and the other workers take over."""
        while not stop.wait(self.lease_seconds / 3):
            try:
                self.tick()
            except Exception as exc:
                log.error("worker %s: lease tick failed: %s", self.name, str(exc).splitlines()[0])

    @contextmanager
    def running(self, stop: threading.Event) -> Iterator[None]:
        """Register, take a first share, keep the leases in a thread; on the way out give
        every lease back so the other workers take over at once."""
        leases.register_worker(self.store, self.name, self.lease_seconds)
        leases.ensure_lease_rows(self.store, [m.id for m in self.markets])
        self.tick()
        thread = threading.Thread(target=self.keep, args=(stop,), name="leases", daemon=True)
        thread.start()
        try:
            yield
        finally:
            stop.set()
            thread.join(timeout=self.lease_seconds)
            with self._lock:
                self._held = {}
            try:
                leases.leave(self.store, self.name)
            except Exception as exc:  # the leases then expire on their own
                log.error("worker %s: could not give its leases back: %s", self.name, exc)


def name_connections(store: Store, name: str) -> None:
    """Every connection of this worker shows as `onchain worker NAME` in pg_stat_activity, so an
    operator (or a test) sees which worker holds which transaction."""

    def on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.execute(
            "SELECT set_config('application_name', %s, false)", [f"onchain worker {name}"[:63]]
        )
        dbapi_connection.commit()

    event.listen(store.engine, "connect", on_connect)
    store.engine.dispose()  # connections opened before this point go


@contextmanager
def worker_session(store: Store, name: str) -> Iterator[Connection]:
    """The worker's session locks, held by one connection for the life of the process: its
    name (two processes never run as the same worker) and a shared hold on the run lock (a
    plain `onchain run` cannot start beside workers, nor workers beside it)."""
    check_worker_store(store, name)
    name_connections(store, name)
    where = safe_url(store.engine.url)
    with store.engine.connect() as conn:
        if not conn.execute(
            text("SELECT pg_try_advisory_lock_shared(:k)"), {"k": RUN_LOCK}
        ).scalar():
            raise InputError(
                f"a single-process `onchain run` (without --worker) is using {where}: stop it "
                "before starting workers"
            )
        if not conn.execute(
            text("SELECT pg_try_advisory_lock(:k)"), {"k": _worker_lock(name)}
        ).scalar():
            conn.execute(text("SELECT pg_advisory_unlock_all()"))
            conn.commit()
            raise InputError(f"worker {name!r} is already running on {where}")
        conn.commit()
        try:
            yield conn
        finally:
            conn.execute(text("SELECT pg_advisory_unlock_all()"))
            conn.commit()


def check_worker_store(store: Store, name: str) -> None:
    """Workers share a PostgreSQL database; SQLite serves one `onchain run` (exit 2)."""
    if store.dialect != "postgresql":
        raise InputError(
            f"--worker {name}: several workers need PostgreSQL; {safe_url(store.engine.url)} is "
            f"{store.dialect} (run `onchain run` without --worker, one process per SQLite file)"
        )
    if not name or len(name) > 64 or not name.isprintable():
        raise InputError(f"--worker: a name of 1 to 64 printable characters, got {name!r}")
