"""Three `onchain run --worker` processes over one PostgreSQL database and six markets of the
devnet (Aave V3.0.2, Aave V3.6 and the four Morpho Blue markets, each its own market), while
blocks are mined and prices move: the markets spread two per worker; kill -9 strikes a worker
in the middle of a write, twice (the first time the others take its markets over, the second
time a replacement starts). Afterwards every market holds every block of its range exactly
once, each complete (every tracked account, every asset row), the Aave V3.0.2 positions equal
the Pool's getUserAccountData, and `onchain status` shows the workers and their leases."""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path
from typing import Any

import psycopg
import pytest
from sqlalchemy import func, select

from onchain.devnet.build import DevnetInfo
from onchain.store import crud
from onchain.store.db import Store, open_store
from tests.helpers.daemon_support import ONCHAIN, Daemon, Mover, assert_exact, upgrade_db, wait_for

pytestmark = pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)
LEASE_S = 3.0
N_MARKETS = 6


def write_config(tmp_path: Path, info: DevnetInfo, db_url: str) -> Path:
    """Six markets: Aave V3.0.2, Aave V3.6 and each of the four Morpho Blue markets."""
    assert info.aave36 is not None and info.morpho is not None
    text = (
        f'[chains.devnet]\nchain_id = {info.chain_id}\nrpc_url = "{info.rpc_url}"\n'
        f'\n[[markets]]\nname = "aave-3.0"\nprotocol = "aave-v3"\nchain = "devnet"\n'
        f'address = "{info.aave.addresses_provider}"\nversion = "3.0.2"\n'
        f'\n[[markets]]\nname = "aave-3.6"\nprotocol = "aave-v3"\nchain = "devnet"\n'
        f'address = "{info.aave36.addresses_provider}"\nversion = "{info.aave36.version}"\n'
        f"start_block = {info.aave36.deploy_block}\n"
    )
    for m in info.morpho.markets:
        text += (
            f'\n[[markets]]\nname = "morpho-{m.key}"\nprotocol = "morpho-blue"\n'
            f'chain = "devnet"\naddress = "{info.morpho.morpho}"\n'
            f'start_block = {info.morpho.deploy_block}\nmarket_id = "{m.id}"\n'
        )
    text += (
        f'\n[store]\nurl = "{db_url}"\n\n[daemon]\nlease_seconds = {LEASE_S}\n'
        '\n[jobs.refresh]\nat = "each-block"\nevery_s = 0.2\nmax_blocks_per_run = 20\n'
        "confirmations = 1\n"  # the chain is mined while workers read (README, the devnet)
        "\n[jobs.discover]\nevery_s = 5\n\n[jobs.assess]\nevery_s = 2\n"
        "\n[jobs.prune]\nenabled = false\n"
    )
    path = tmp_path / "workers.toml"
    path.write_text(text)
    return path


class Worker(Daemon):
    """`onchain run --worker NAME` in its own process, with its own log."""

    def __init__(self, config: Path, name: str) -> None:
        self.name = name
        super().__init__(config, "--worker", name, log=config.with_name(f"{name}.log"))


def pg(db_url: str, sql: str, *params: Any) -> list[tuple[Any, ...]]:
    with psycopg.connect(db_url.replace("+psycopg", ""), autocommit=True) as conn:
        return conn.execute(sql, params).fetchall()  # type: ignore[arg-type]


def held(db_url: str) -> dict[str, list[str]]:
    """Worker -> the markets whose lease it holds now."""
    rows = pg(
        db_url,
        "SELECT l.holder, m.name FROM market_leases l JOIN markets m ON m.id = l.market_id "
        "WHERE l.holder IS NOT NULL AND l.expires_at > clock_timestamp()",
    )
    out: dict[str, list[str]] = {}
    for holder, market in rows:
        out.setdefault(holder, []).append(market)
    return out


def writing(db_url: str, worker: str) -> bool:
    """The worker's connection is inside a transaction that has written a block's rows."""
    return bool(
        pg(
            db_url,
            "SELECT 1 FROM pg_stat_activity WHERE application_name = %s "
            "AND backend_xid IS NOT NULL AND query NOT ILIKE '%%workers%%' "
            "AND query NOT ILIKE '%%market_leases%%'",
            f"onchain worker {worker}",
        )
    )


def cursors(store: Store) -> dict[int, int]:
    c = crud.T_CURSORS
    with store.read() as conn:
        rows = conn.execute(select(c.c.market_id, c.c.block_number).where(c.c.kind == "refresh"))
        return {m: n for m, n in rows}


def assert_every_block_once_and_complete(store: Store, head: int) -> dict[str, list[int]]:
    """Per market: the snapshots are first..head, one each; each holds every account tracked
    by its block and every asset row its header counts. Returns the block numbers."""
    s, p, a, ma = crud.T_SNAPSHOTS, crud.T_POSITIONS, crud.T_ASSET_POSITIONS, crud.T_MARKET_ACCOUNTS
    out = {}
    with store.read() as conn:
        markets = dict(conn.execute(select(crud.T_MARKETS.c.id, crud.T_MARKETS.c.name)).all())
        positions = dict(
            conn.execute(select(p.c.snapshot_id, func.count()).group_by(p.c.snapshot_id)).all()
        )
        assets = dict(
            conn.execute(select(a.c.snapshot_id, func.count()).group_by(a.c.snapshot_id)).all()
        )
        seen = conn.execute(select(ma.c.market_id, ma.c.first_seen_block)).all()
        for market_id, name in markets.items():
            rows = conn.execute(
                select(s.c.id, s.c.block_number, s.c.positions, s.c.asset_rows)
                .where(s.c.market_id == market_id)
                .order_by(s.c.block_number)
            ).all()
            numbers = [r.block_number for r in rows]
            assert numbers and numbers == list(range(numbers[0], head + 1)), (
                f"{name}: blocks {numbers} are not each block once up to {head}"
            )
            for r in rows:
                tracked = sum(1 for m, b in seen if m == market_id and b <= r.block_number)
                assert r.positions == positions.get(r.id, 0) == tracked > 0, (
                    f"{name} block {r.block_number}: {positions.get(r.id)} of {tracked} positions"
                )
                assert r.asset_rows == assets.get(r.id, 0) >= tracked
            out[name] = numbers
    return out


def move(mover: Mover, blocks: int, pause_s: float = 0.4) -> int:
    head = 0
    for _ in range(blocks):
        head = mover.step()
        time.sleep(pause_s)
    return head


def test_three_workers_share_six_markets_and_survive_two_kill_9s_mid_write(
    devnet: DevnetInfo, db_url: str, tmp_path: Path
) -> None:
    config = write_config(tmp_path, devnet, db_url)
    upgrade_db(config)
    store = open_store(db_url)
    mover = Mover(devnet, seed=11)
    mover.chain.mine(1)  # the first block read has a child (a reloaded devnet has no older state)
    workers = {n: Worker(config, n) for n in ("w1", "w2", "w3")}
    started = time.monotonic()
    try:
        wait_for(lambda: len(cursors(store)) == N_MARKETS, 90, "a first block of every market")
        wait_for(
            lambda: sorted(len(v) for v in held(db_url).values()) == [2, 2, 2],
            30,
            "the markets to spread two per worker",
        )
        victims = []
        for strike in range(2):
            move(mover, 4)
            live = [w for w in workers.values() if w.process.poll() is None]
            victim = max(live, key=lambda w: len(held(db_url).get(w.name, [])))
            lost = held(db_url)[victim.name]
            wait_for(lambda v=victim: writing(db_url, v.name), 30, "a write", poll_s=0.002)
            victim.kill9()
            victims.append(victim.name)
            if strike == 1:  # a replacement joins and gets its share
                workers["w4"] = Worker(config, "w4")
            wait_for(
                lambda v=victim, gone=lost: (
                    v.name not in held(db_url)
                    and set(gone) <= {m for ms in held(db_url).values() for m in ms}
                ),
                4 * LEASE_S + 10,
                f"{victim.name}'s markets to be taken over",
            )
            move(mover, 3)
        head = move(mover, 1, 0)
        mover.chain.mine(1)  # one confirmation for the last moved block
        wait_for(
            lambda: set(cursors(store).values()) == {head}, 120, f"every market at block {head}"
        )
        wait_for(  # the replacement got its share
            lambda: sorted(len(v) for v in held(db_url).values()) == [3, 3], 15, "three each"
        )
        status = subprocess.run(
            [*ONCHAIN, "status", "--config", str(config), "--json"], capture_output=True, text=True
        )
        assert status.returncode == 0, status.stderr
        shown = {w["worker"]: w for w in json.loads(status.stdout)["workers"]}
        survivors = {"w1", "w2", "w3", "w4"} - set(victims)
        assert {n for n, w in shown.items() if w["live"]} == survivors
        assert all(not shown[v]["markets"] for v in victims if v in shown)
        assert sum(len(w["markets"]) for w in shown.values()) == N_MARKETS
        assert all(m["expires_at"] for w in shown.values() for m in w["markets"])
        for w in workers.values():
            if w.process.poll() is None:
                assert w.stop(60) == 0, w.log.read_text()[-3000:]
    except BaseException:
        for w in workers.values():
            print(f"--- {w.name} ---\n{w.log.read_text()[-4000:]}")
        raise
    finally:
        for w in workers.values():
            w.ensure_dead()
    numbers = assert_every_block_once_and_complete(store, head)
    aave = numbers["aave-3.0"]
    assert_exact(store, devnet, [aave[0], aave[len(aave) // 2], head], "aave-3.0")
    assert pg(db_url, "SELECT count(*) FROM market_leases WHERE holder IS NOT NULL") == [(0,)]
    epochs = [e for (e,) in pg(db_url, "SELECT epoch FROM market_leases")]
    assert sum(epochs) >= N_MARKETS + 4  # takeovers: at least two markets per kill
    print(f"{len(aave)} blocks per market in {time.monotonic() - started:.0f}s")
    store.close()
