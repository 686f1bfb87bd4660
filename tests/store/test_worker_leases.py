"""Market leases on a real PostgreSQL server: workers contending for the same markets get
disjoint shares (SKIP LOCKED), a dead worker's markets are taken over once its lease expires,
a worker that lost a market cannot write it (the check runs inside the write's transaction),
a block that does not follow the cursor is refused, a write in flight is never taken over, and
a new worker gets its fair share. SQLite refuses --worker with one clear line."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text

from onchain.config import TierThresholds, load_config
from onchain.errors import ConfigError, InputError
from onchain.jobs import metrics
from onchain.jobs.assess import assess
from onchain.jobs.context import JobContext
from onchain.jobs.daemon import exclusive
from onchain.jobs.workers import LeaseKeeper, worker_session
from onchain.store import crud, leases
from onchain.store.db import Store
from tests.helpers.cli_support import assert_one_clear_error
from tests.helpers.cli_support import run as run_cli
from tests.helpers.store_rows import account, block, counts, market_snapshot, position

PG = pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)  # leases: PostgreSQL
WAD = 10**18
N_MARKETS = 6


def markets(store: Store, tmp_path: Path, n: int = N_MARKETS) -> list[crud.MarketInfo]:
    path = tmp_path / "workers.toml"
    body = '[chains.devnet]\nchain_id = 31337\nrpc_url = "http://127.0.0.1:1"\n'
    for i in range(n):
        body += (
            f'\n[[markets]]\nname = "m{i}"\nprotocol = "aave-v3"\nchain = "devnet"\n'
            f'address = "{account(800 + i)}"\n'
        )
    path.write_text(body)
    return crud.sync_markets(store, load_config(path))


def start(store: Store, name: str, ms: list[crud.MarketInfo], lease_s: float = 30.0) -> Any:
    leases.register_worker(store, name, lease_s)
    leases.ensure_lease_rows(store, [m.id for m in ms])
    return LeaseKeeper(store, name, ms, lease_s)


def write(store: Store, market: crud.MarketInfo, number: int, guard: Any) -> str:
    blk = block(number)
    positions = [position(i, blk, 2 * WAD) for i in range(5)]
    assessed = assess(positions, TierThresholds())
    return crud.write_snapshot(
        store, market, blk, positions, assessed, market_snapshot(), guard=guard
    ).outcome


def holders(store: Store) -> dict[int, tuple[str | None, int]]:
    with store.read() as conn:
        rows = conn.execute(text("SELECT market_id, holder, epoch FROM market_leases")).all()
    return {m: (h, e) for m, h, e in rows}


@PG
def test_two_workers_ticking_at_once_share_the_markets_without_overlap(
    store: Store, tmp_path: Path
) -> None:
    ms = markets(store, tmp_path)
    a, b = start(store, "a", ms), start(store, "b", ms)
    barrier = threading.Barrier(2)
    results: dict[str, Any] = {}

    def tick(keeper: LeaseKeeper) -> None:
        barrier.wait()
        results[keeper.name] = keeper.tick()

    threads = [threading.Thread(target=tick, args=(k,)) for k in (a, b)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    got_a, got_b = set(a.held()), set(b.held())
    assert results["a"].live_workers == results["b"].live_workers == 2
    assert len(got_a) == len(got_b) == N_MARKETS // 2, (got_a, got_b)
    assert got_a.isdisjoint(got_b) and got_a | got_b == {m.id for m in ms}
    stored = holders(store)
    assert {m for m, (h, _e) in stored.items() if h == "a"} == got_a
    assert all(e == 1 for _h, e in stored.values())  # each market taken once


@PG
def test_a_new_worker_gets_its_fair_share_from_a_busy_one(store: Store, tmp_path: Path) -> None:
    ms = markets(store, tmp_path)
    a = start(store, "a", ms)
    assert len(a.tick().held) == N_MARKETS  # alone: every market
    b, c = start(store, "b", ms), start(store, "c", ms)
    assert b.tick().taken == []  # nothing free yet: a's leases are live
    released = metrics.REGISTRY.get_sample_value(
        "onchain_daemon_lease_changes_total", {"change": "released"}
    )
    first = a.tick()  # three live workers: a keeps its share and gives the rest back
    assert first.share == 2 and len(first.released) == N_MARKETS - 2
    assert (
        metrics.REGISTRY.get_sample_value(
            "onchain_daemon_lease_changes_total", {"change": "released"}
        )
        == (released or 0) + N_MARKETS - 2
    )
    assert len(b.tick().taken) == 2 and len(c.tick().taken) == 2
    shares = [set(k.held()) for k in (a, b, c)]
    assert sorted(len(s) for s in shares) == [2, 2, 2]
    assert set().union(*shares) == {m.id for m in ms}
    assert a.tick().released == [] and b.tick().taken == []  # stable once spread


@PG
def test_a_dead_workers_markets_are_taken_over_once_its_lease_expires(
    store: Store, tmp_path: Path
) -> None:
    ms = markets(store, tmp_path)
    dead = start(store, "dead", ms, lease_s=1.0)
    dead.tick()
    assert len(dead.held()) == N_MARKETS
    alive = start(store, "alive", ms, lease_s=1.0)
    assert alive.tick().taken == []  # two live workers, but every lease is live
    before = holders(store)
    time.sleep(1.2)  # `dead` stops ticking: its heartbeat and its leases run out
    result = alive.tick()
    assert result.live_workers == 1 and result.taken == sorted(m.id for m in ms)
    after = holders(store)
    assert all(after[m] == ("alive", before[m][1] + 1) for m in after)  # a new epoch each


@PG
def test_a_worker_that_lost_its_lease_cannot_write_and_leaves_nothing(
    store: Store, tmp_path: Path
) -> None:
    ms = markets(store, tmp_path, 1)
    market = ms[0]
    slow = start(store, "slow", ms, lease_s=1.0)
    slow.tick()
    stale_guard = slow.guard(market, 100, in_order=True)
    assert write(store, market, 100, stale_guard) == "written"  # the lease is ours: it writes
    fast = start(store, "fast", ms, lease_s=1.0)
    time.sleep(1.2)  # `slow` stalls (a long GC pause, a lost network) past its lease
    assert fast.tick().taken == [market.id]
    before = counts(store)
    with pytest.raises(leases.LeaseLost):
        write(store, market, 101, slow.guard(market, 101, in_order=True))
    assert counts(store) == before  # nothing of block 101, and the cursor did not move
    assert crud.get_cursor(store, market.id, "refresh").block_number == 100  # type: ignore[union-attr]
    assert write(store, market, 101, fast.guard(market, 101, in_order=True)) == "written"


@PG
def test_a_block_that_does_not_follow_the_cursor_is_refused(store: Store, tmp_path: Path) -> None:
    market = markets(store, tmp_path, 1)[0]
    keeper = start(store, "w", [market])
    keeper.tick()
    assert write(store, market, 50, keeper.guard(market, 50, in_order=True)) == "written"
    before = counts(store)
    for number in (52, 50, 49):  # a skip, the same block again, one behind
        with pytest.raises(leases.OutOfOrder):
            write(store, market, number, keeper.guard(market, number, in_order=True))
    assert counts(store) == before
    assert write(store, market, 51, keeper.guard(market, 51, in_order=True)) == "written"


@PG
def test_a_write_in_flight_is_never_taken_over_even_past_expiry(
    store: Store, tmp_path: Path
) -> None:
    """The write's transaction holds the lease row: the other worker's SKIP LOCKED passes it by
    (and takes the free market)."""
    ms = markets(store, tmp_path, 2)
    writer = start(store, "writer", ms[:1], lease_s=1.0)
    writer.tick()
    lease = writer.lease(ms[0].id)
    assert lease is not None
    other = start(store, "other", ms, lease_s=1.0)
    with store.write() as conn:  # a block being written
        leases.check_lease(conn, ms[0].id, "writer", lease, 1.0)
        time.sleep(1.1)  # expired and the writer's heartbeat stale, but the row is locked
        result = other.tick()
        assert result.taken == [ms[1].id]  # the free one only
    assert holders(store)[ms[0].id] == ("writer", lease.epoch)


def test_worker_on_sqlite_is_one_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "one.toml"
    path.write_text(
        '[chains.devnet]\nchain_id = 31337\nrpc_url = "http://127.0.0.1:1"\n\n'
        f'[[markets]]\nname = "m"\nprotocol = "aave-v3"\nchain = "devnet"\n'
        f'address = "{account(800)}"\n'
    )
    db = f"sqlite:///{tmp_path / 'one.sqlite'}"
    assert run_cli("db", "upgrade", "--db", db).returncode == 0
    done = run_cli("run", "--config", str(path), "--db", db, "--worker", "w1")
    assert_one_clear_error(done, "several workers need PostgreSQL")


@PG
def test_a_worker_name_runs_once_and_a_plain_daemon_never_beside_workers(store: Store) -> None:
    def refused(session: Any, match: str) -> None:
        with pytest.raises(InputError, match=match), session:
            pass

    with worker_session(store, "a"):
        refused(worker_session(store, "a"), "worker 'a' is already running")
        with worker_session(store, "b"):  # another name joins
            refused(exclusive(store), "only workers")
    with exclusive(store):  # all workers gone: a plain daemon may run, and then no worker
        refused(worker_session(store, "c"), "without --worker")


def test_daemon_lease_seconds_is_read_and_checked(tmp_path: Path) -> None:
    base = '[chains.devnet]\nchain_id = 31337\nrpc_url = "http://127.0.0.1:1"\n'
    path = tmp_path / "c.toml"
    path.write_text(base)
    assert load_config(path).daemon.lease_seconds == 30.0  # the default
    path.write_text(base + "[daemon]\nlease_seconds = 7.5\n")
    assert load_config(path).daemon.lease_seconds == 7.5
    for bad, words in (
        ("lease_seconds = 0", "'lease_seconds' must be a number >= 1"),
        ('lease_seconds = "30"', "'lease_seconds' must be a number"),
        ("lease_second = 30", "did you mean 'lease_seconds'"),
    ):
        path.write_text(base + f"[daemon]\n{bad}\n")
        with pytest.raises(ConfigError, match=words):
            load_config(path)


@PG
def test_what_a_worker_keeps_of_a_market_is_dropped_when_it_loses_or_retakes_it(
    store: Store, tmp_path: Path
) -> None:
    ms = markets(store, tmp_path, 2)
    keeper = start(store, "w", ms)
    keeper.tick()
    cfg = load_config(tmp_path / "workers.toml")
    ctx = JobContext(cfg, store, ms, keeper=keeper)
    assert [m.id for m in ctx.active_markets()] == [m.id for m in ms]
    ctx.discovery_notes.update({m.id: f"notes of {m.name}" for m in ms})
    ctx.active_markets()
    assert len(ctx.discovery_notes) == 2  # still held under the same lease: kept
    keeper.lost(ms[0].id)  # a write found the lease gone
    assert [m.id for m in ctx.active_markets()] == [ms[1].id]
    assert list(ctx.discovery_notes) == [ms[1].id]
    with store.write() as conn:  # another worker held it meanwhile and gave it back
        leases.release(conn, "w", [ms[1].id])
    keeper.tick()  # both held again, under new epochs
    assert len(ctx.active_markets()) == 2 and ctx.discovery_notes == {}
