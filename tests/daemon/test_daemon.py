"""`onchain run` as a real subprocess over a moving devnet (prices change every few blocks), on
SQLite and on PostgreSQL: one complete snapshot per block with the health factors the Pool
itself reports; kill -9 in the middle of refreshes never leaves a partial or duplicate block and
the daemon catches up after each restart; a reorg made on anvil replaces the orphaned blocks."""

from __future__ import annotations

import json
import random
import sqlite3
import subprocess
import threading
import time
from collections import Counter
from itertools import pairwise
from pathlib import Path
from typing import Any

import psycopg
import pytest
from sqlalchemy import func, select

from onchain.config import load_config
from onchain.devnet.build import DevnetInfo
from onchain.devnet.chain import DevChain, calldata
from onchain.devnet.control import set_prices
from onchain.jobs import daemon
from onchain.jobs.context import JobContext
from onchain.jobs.refresh import refresh_job
from onchain.rpc import redact_url
from onchain.store import crud
from onchain.store.db import Store, make_engine, open_store, parse_db_url, upgrade
from tests.helpers.daemon_support import (
    ONCHAIN,
    Daemon,
    Mover,
    assert_exact,
    upgrade_db,
    wait_for,
)

BORROWERS = 300
KILLS = 5  # per database: 10 kill -9s in all


def write_config(
    tmp_path: Path, info: DevnetInfo, db_url: str, every_s: float = 0.2, confirmations: int = 0
) -> Path:
    """`confirmations = 1` where the chain is mined while the daemon reads: anvil can answer a
    read of its newest block with the next block's state while mining it (README, the devnet)."""
    path = tmp_path / "daemon.toml"
    path.write_text(
        f'[chains.devnet]\nchain_id = {info.chain_id}\nrpc_url = "{info.rpc_url}"\n\n'
        f'[[markets]]\nname = "aave-v3-devnet"\nprotocol = "aave-v3"\nchain = "devnet"\n'
        f'address = "{info.aave.addresses_provider}"\n\n'
        f'[store]\nurl = "{db_url}"\n\n'
        f'[jobs.refresh]\nat = "each-block"\nevery_s = {every_s}\nmax_blocks_per_run = 50\n'
        + (f"confirmations = {confirmations}\n" if confirmations else "")
        + "\n"
        "[jobs.discover]\nevery_s = 5\n\n[jobs.assess]\nevery_s = 1\n\n"
        "[jobs.prune]\nenabled = false\n"
    )
    return path


def stored_snapshots(store: Store) -> list[Any]:
    s = crud.T_SNAPSHOTS
    with store.read() as conn:
        return conn.execute(
            select(
                s.c.id, s.c.block_number, s.c.block_hash, s.c.positions, s.c.asset_rows
            ).order_by(s.c.block_number)
        ).all()


def assert_consistent(store: Store) -> list[Any]:
    """No partial block (every snapshot holds all its rows, as its header counts them, each
    with the header's block), no duplicate block, and the refresh cursor is never ahead of the
    stored data. Returns the snapshots."""
    snapshots = stored_snapshots(store)
    numbers = [s.block_number for s in snapshots]
    assert len(numbers) == len(set(numbers)), "a block is stored twice"
    p, a = crud.T_POSITIONS, crud.T_ASSET_POSITIONS
    with store.read() as conn:
        positions = dict(
            conn.execute(select(p.c.snapshot_id, func.count()).group_by(p.c.snapshot_id)).all()
        )
        assets = dict(
            conn.execute(select(a.c.snapshot_id, func.count()).group_by(a.c.snapshot_id)).all()
        )
        hashes = dict(
            conn.execute(
                select(p.c.snapshot_id, func.max(p.c.block_hash))
                .group_by(p.c.snapshot_id)
                .having(func.count(p.c.block_hash.distinct()) == 1)
            ).all()
        )
        cursor = conn.execute(
            select(crud.T_CURSORS.c.block_number, crud.T_CURSORS.c.block_hash).where(
                crud.T_CURSORS.c.kind == "refresh"
            )
        ).first()
    for s in snapshots:
        assert s.positions == BORROWERS == positions.get(s.id), f"partial block {s.block_number}"
        assert s.asset_rows == assets.get(s.id) and s.asset_rows > BORROWERS
        assert hashes.get(s.id) == s.block_hash
    if snapshots:
        assert cursor is not None and (cursor.block_number, cursor.block_hash) == (
            snapshots[-1].block_number,
            snapshots[-1].block_hash,
        )
    return snapshots


def assert_reserves_match_the_chain(store: Store, info: DevnetInfo, number: int) -> None:
    """The market snapshot: each reserve's oracle price, liquidity and debt at the block."""
    chain = DevChain(info.rpc_url)
    r = crud.T_RESERVES
    with store.read() as conn:
        rows = conn.execute(
            select(
                crud.T_ASSETS.c.symbol,
                r.c.price_base,
                r.c.available_liquidity_raw,
                r.c.total_debt_raw,
                r.c.utilization,
            )
            .join(crud.T_ASSETS, crud.T_ASSETS.c.id == r.c.asset_id)
            .join(crud.T_SNAPSHOTS, crud.T_SNAPSHOTS.c.id == r.c.snapshot_id)
            .where(crud.T_SNAPSHOTS.c.block_number == number)
        ).all()
    assert {row.symbol for row in rows} == set(info.aave.tokens)
    at = hex(number)
    for row in rows:
        token = info.aave.tokens[row.symbol]
        price = chain.rpc(
            "eth_call",
            [
                {
                    "to": info.aave.oracle,
                    "data": "0x" + calldata("getAssetPrice(address)", token).hex(),
                },
                at,
            ],
        )
        held = chain.rpc(
            "eth_call",
            [
                {
                    "to": token,
                    "data": "0x"
                    + calldata("balanceOf(address)", info.aave.atokens[row.symbol]).hex(),
                },
                at,
            ],
        )
        assert row.price_base == int(price, 16)
        assert row.available_liquidity_raw == int(held, 16)
        assert row.total_debt_raw > 0 and 0 < row.utilization < 1


def refresh_cursor(store: Store) -> int | None:
    with store.read() as conn:
        return conn.execute(
            select(crud.T_CURSORS.c.block_number).where(crud.T_CURSORS.c.kind == "refresh")
        ).scalar()


def refresh_running_in(store: Store, pid: int) -> bool:
    r = crud.T_JOB_RUNS
    with store.read() as conn:
        return (
            conn.execute(
                select(func.count()).where(
                    (r.c.job == "refresh") & (r.c.outcome == "running") & (r.c.pid == pid)
                )
            ).scalar_one()
            > 0
        )


def in_write_transaction(db_url: str) -> bool:
    """Whether some connection holds an open transaction that has written: SQLite's write lock
    is taken (BEGIN IMMEDIATE fails at once), or a PostgreSQL backend has a transaction id."""
    if db_url.startswith("sqlite"):
        conn = sqlite3.connect(db_url.split(":///", 1)[1], timeout=0)
        try:
            conn.execute("BEGIN IMMEDIATE")
            conn.rollback()
            return False
        except sqlite3.OperationalError:
            return True
        finally:
            conn.close()
    with psycopg.connect(db_url.replace("+psycopg", ""), autocommit=True) as conn:
        row = conn.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
            "AND backend_xid IS NOT NULL AND pid <> pg_backend_pid()"
        ).fetchone()
        return bool(row and row[0])


def test_daemon_stores_one_complete_exact_snapshot_per_block_of_a_moving_chain(
    devnet: DevnetInfo, db_url: str, tmp_path: Path
) -> None:
    config = write_config(tmp_path, devnet, db_url, confirmations=1)
    upgrade_db(config)
    store = open_store(db_url)
    mover = Mover(devnet, seed=1)
    mover.chain.mine(1)  # the first block read has a child (a reloaded devnet has no older state)
    start = DevChain(devnet.rpc_url).block_number()
    daemon = Daemon(config)
    try:
        wait_for(lambda: stored_snapshots(store), 30, "the first snapshot")
        for _ in range(12):
            head = mover.step()
            time.sleep(0.25)
        mover.chain.mine(1)  # one confirmation for the last moved block
        wait_for(lambda: refresh_cursor(store) == head, 30, f"the daemon to reach block {head}")
        # how many runs fit in the moves above depends on the machine's load: wait for them
        wait_for(lambda: _ok_runs(store, "refresh") >= 5, 30, "five finished refresh runs")
        wait_for(lambda: _ok_runs(store, "assess") >= 1, 30, "a finished assess run")
        assert daemon.stop() == 0, daemon.log.read_text()
    finally:
        daemon.ensure_dead()
    snapshots = assert_consistent(store)
    numbers = [s.block_number for s in snapshots]
    assert numbers[0] <= start + 1 and numbers == list(range(numbers[0], head + 1))
    assert_exact(store, devnet, numbers)
    assert_reserves_match_the_chain(store, devnet, numbers[-1])
    runs = Counter((r.job, r.outcome) for r in _runs(store))
    assert runs[("refresh", "ok")] >= 5 and runs[("discover", "ok")] >= 1
    assert runs[("assess", "ok")] >= 1
    assert not any(outcome in ("running", "error", "crashed") for _job, outcome in runs)
    status = subprocess.run(
        [*ONCHAIN, "status", "--config", str(config), "--json"], capture_output=True, text=True
    )
    assert status.returncode == 0, status.stderr
    assert f'"refresh_cursor": {head}' in status.stdout
    assert "rpc_url" not in daemon.log.read_text()
    # The endpoint appears only in the endpoints' health, as scheme://host:port.
    shown = json.loads(status.stdout)
    assert [e["endpoint"] for e in shown.pop("endpoints")] == [redact_url(devnet.rpc_url)]
    for run in [j["last"] for j in shown["jobs"]] + shown["recent_runs"]:
        for health in run["counts"].pop("rpc_endpoints", {}).values():
            assert [e["endpoint"] for e in health] == [redact_url(devnet.rpc_url)]
    assert devnet.rpc_url not in json.dumps(shown)
    store.close()


def _runs(store: Store) -> list[Any]:
    with store.read() as conn:
        return conn.execute(select(crud.T_JOB_RUNS)).all()


def _ok_runs(store: Store, job: str) -> int:
    return sum(1 for r in _runs(store) if r.job == job and r.outcome == "ok")


def test_kill_9_in_the_middle_of_refreshes_never_leaves_a_partial_block(
    devnet: DevnetInfo, db_url: str, tmp_path: Path
) -> None:
    config = write_config(tmp_path, devnet, db_url, every_s=0.1)
    upgrade_db(config)
    store = open_store(db_url)
    once = subprocess.run(
        [*ONCHAIN, "run", "--config", str(config), "--once"], capture_output=True, text=True
    )
    assert once.returncode == 0, once.stderr  # the cursors start here; no backfill before
    first = assert_consistent(store)[0].block_number
    mover = Mover(devnet, seed=2)
    rng = random.Random(3)
    mid_refresh = mid_write = 0
    for _ in range(KILLS):
        for _ in range(4):  # a backlog: the next refresh run writes several blocks
            mover.step()
        daemon = Daemon(config)
        try:
            wait_for(lambda d=daemon: refresh_running_in(store, d.pid), 30, "a refresh run")
            time.sleep(rng.uniform(0.0, 0.15))
            try:  # strike while a block is being written, if one is
                wait_for(lambda: in_write_transaction(db_url), 1.0, "a write", poll_s=0.002)
                mid_write += 1
            except AssertionError:
                pass
            mid_refresh += refresh_running_in(store, daemon.pid)
            daemon.kill9()
        finally:
            daemon.ensure_dead()
        assert_consistent(store)
    head = mover.step()
    daemon = Daemon(config)
    try:
        wait_for(lambda: refresh_cursor(store) == head, 60, f"the daemon to catch up to {head}")
        assert daemon.stop() == 0, daemon.log.read_text()
    finally:
        daemon.ensure_dead()
    snapshots = assert_consistent(store)
    numbers = [s.block_number for s in snapshots]
    assert numbers == list(range(first, head + 1)), "a block was skipped"
    assert_exact(store, devnet, [numbers[0], *rng.sample(numbers[1:-1], 2), head])
    outcomes = Counter(r.outcome for r in _runs(store))
    assert outcomes["running"] == 0 and outcomes["crashed"] >= KILLS  # marked at each restart
    assert mid_refresh >= KILLS - 1, f"only {mid_refresh} kills landed during a refresh run"
    assert mid_write >= KILLS // 2, f"only {mid_write} kills landed during a write transaction"
    store.close()


def test_a_reorg_replaces_the_orphaned_blocks_snapshots(
    devnet: DevnetInfo, store: Store, tmp_path: Path
) -> None:
    cfg = load_config(write_config(tmp_path, devnet, store.engine.url.render_as_string(False)))
    ctx = JobContext(cfg, store, crud.sync_markets(store, cfg))
    chain = DevChain(devnet.rpc_url)

    def refresh() -> Counter[str]:
        counts: Counter[str] = Counter()
        assert refresh_job(ctx, counts) == []
        return counts

    def canonical(numbers: list[int]) -> dict[int, str]:
        return {n: chain.rpc("eth_getBlockByNumber", [hex(n), False])["hash"] for n in numbers}

    refresh()
    base = chain.block_number()
    checkpoint = chain.rpc("evm_snapshot")
    set_prices(devnet.rpc_url, devnet.aave, {"WETH": 2600.0})
    chain.mine(2)
    refresh()
    orphans = crud.snapshot_hashes(ctx.store, ctx.markets[0].id, base + 1)
    assert sorted(orphans) == [base + 1, base + 2, base + 3]

    assert chain.rpc("evm_revert", [checkpoint]) is True  # another branch from `base`, longer
    set_prices(devnet.rpc_url, devnet.aave, {"WETH": 3300.0})
    chain.mine(3)
    counts = refresh()
    assert counts["blocks_orphaned"] == 3 and counts["blocks_replaced"] == 3
    assert counts["blocks_written"] == 1
    stored = crud.snapshot_hashes(ctx.store, ctx.markets[0].id, base + 1)
    assert stored == canonical([base + 1, base + 2, base + 3, base + 4])
    assert all(stored[n] != orphans[n] for n in orphans)
    assert_consistent(store)
    assert_exact(store, devnet, [base + 1, base + 4])

    # a reorg to a SHORTER chain: the blocks past the new head are dropped, then refilled
    checkpoint = chain.rpc("evm_snapshot")
    chain.mine(3)
    refresh()
    assert chain.rpc("evm_revert", [checkpoint]) is True
    set_prices(devnet.rpc_url, devnet.aave, {"WETH": 2900.0})  # one block: base + 5
    counts = refresh()
    assert counts["blocks_orphaned"] == 3 and counts["blocks_replaced"] == 1
    assert max(crud.snapshot_hashes(ctx.store, ctx.markets[0].id)) == base + 5
    assert refresh_cursor(store) == base + 5
    chain.mine(2)
    refresh()
    stored = crud.snapshot_hashes(ctx.store, ctx.markets[0].id, base + 1)
    assert stored == canonical(list(range(base + 1, base + 8)))
    assert_consistent(store)
    assert_exact(store, devnet, [base + 5, base + 7])


def test_refresh_at_the_latest_block_and_at_a_safe_block(
    devnet: DevnetInfo, store: Store, tmp_path: Path
) -> None:
    url = store.engine.url.render_as_string(False)
    path = write_config(tmp_path, devnet, url)
    path.write_text(path.read_text().replace('at = "each-block"', 'at = "latest"'))
    cfg = load_config(path)
    ctx = JobContext(cfg, store, crud.sync_markets(store, cfg))
    chain = DevChain(devnet.rpc_url)
    chain.mine(1)
    counts: Counter[str] = Counter()
    assert refresh_job(ctx, counts) == [] and counts["blocks_written"] == 1
    assert refresh_cursor(store) == chain.block_number()
    again: Counter[str] = Counter()
    assert refresh_job(ctx, again) == []  # no new block: nothing read, nothing written
    assert again["blocks_unchanged"] == 1 and again["positions"] == 0
    assert again["rpc_requests"] <= 3

    path.write_text(path.read_text().replace('at = "latest"', 'at = "safe"\nconfirmations = 3'))
    ctx.config = load_config(path)
    chain.mine(5)
    assert refresh_job(ctx, Counter()) == []
    assert refresh_cursor(store) == chain.block_number() - 3
    assert_consistent(store)

    # more confirmations put the safe block below the newest stored one: nothing is written there
    newest = refresh_cursor(store)
    path.write_text(path.read_text().replace("confirmations = 3", "confirmations = 6"))
    ctx.config = load_config(path)
    chain.mine(1)
    below: Counter[str] = Counter()
    assert refresh_job(ctx, below) == []
    assert below["blocks_below_stored"] == 1 and below["positions"] == 0
    assert refresh_cursor(store) == newest


def test_an_unreachable_endpoint_is_a_recorded_error_that_never_shows_its_key(
    tmp_path: Path,
) -> None:
    db = tmp_path / "store.sqlite"
    config = tmp_path / "daemon.toml"
    config.write_text(
        '[chains.c]\nchain_id = 1\nrpc_url = "http://127.0.0.1:1/v2/SECRETKEY123"\n\n'
        '[[markets]]\nname = "m"\nprotocol = "aave-v3"\nchain = "c"\n'
        'address = "0x5FbDB2315678afecb367f032d93F642f64180aa3"\n\n'
        f'[store]\npath = "{db}"\n[jobs.prune]\nenabled = false\n[jobs.assess]\nenabled = false\n'
    )
    upgrade_db(config)
    once = subprocess.run(
        [*ONCHAIN, "run", "--config", str(config), "--once"], capture_output=True, text=True
    )
    # checked before any job runs: exit 2 like every command, and nothing recorded
    assert once.returncode == 2, once.stderr
    assert "did not answer" in once.stderr and "SECRETKEY123" not in once.stderr
    status = subprocess.run(
        [*ONCHAIN, "status", "--config", str(config), "--json"], capture_output=True, text=True
    )
    assert status.returncode == 0 and json.loads(status.stdout)["jobs"] == []


def test_a_job_never_overlaps_itself_and_every_run_is_recorded(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A job slower than its interval: runs never overlap, late runs collapse into one."""
    url = f"sqlite:///{tmp_path / 'store.sqlite'}"
    engine = make_engine(parse_db_url(url), create_sqlite_dir=True)
    upgrade(engine)
    engine.dispose()
    store = open_store(url)
    path = tmp_path / "c.toml"
    path.write_text(
        '[chains.c]\nchain_id = 1\nrpc_url = "http://127.0.0.1:1"\n\n'
        '[[markets]]\nname = "m"\nprotocol = "aave-v3"\nchain = "c"\n'
        'address = "0x5FbDB2315678afecb367f032d93F642f64180aa3"\n\n'
        "[jobs.assess]\nevery_s = 0.05\n"
    )
    ctx = JobContext(load_config(path), store, [])
    lock = threading.Lock()
    running = [0, 0]  # now, most at once

    def slow(_ctx: JobContext, counts: Counter[str]) -> list[str]:
        with lock:
            running[0] += 1
            running[1] = max(running)
        time.sleep(0.25)
        counts["slept"] += 1
        with lock:
            running[0] -= 1
        return []

    monkeypatch.setitem(daemon.JOBS, "assess", slow)
    scheduler = daemon.build_scheduler(ctx, ["assess"])
    scheduler.start()
    time.sleep(1.2)
    ctx.stop.set()
    scheduler.shutdown(wait=True)
    runs = sorted(_runs(store), key=lambda r: r.id)
    assert running[1] == 1  # never two at once
    assert 3 <= len(runs) <= 6  # about 1.2 s / 0.25 s: missed runs were not queued up
    assert all(r.outcome == "ok" and r.counts == {"slept": 1} for r in runs)
    assert all(a.finished_at <= b.started_at for a, b in pairwise(runs))
    store.close()
