"""Alerts from the real daemon (`onchain run` as a subprocess) over the devnet, delivered to a
webhook receiver on 127.0.0.1 that checks every signature. One borrower (WETH collateral, DAI
debt: its health factor moves with the WETH oracle price) is watched with a rule that fires
below HF 1.10 and re-arms above 1.15:
- prices cross 1.10, then 1.0, and come back: exactly enter, escalate, recover, with the fields
  the contract promises and the exact health factor the Pool reports;
- prices wobble around 1.10 for 50 blocks: one alert, no storm;
- the receiver answers 500 for a while: retried, delivered once it answers, same id;
- kill -9 with undelivered alerts: delivered after the restart, none lost, none new;
- a real liquidationCall on the Pool: reported once, as `liquidated`."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from onchain.alerts import outbox
from onchain.alerts.messages import hf_text
from onchain.devnet.build import DevnetInfo
from onchain.devnet.chain import DevChain
from onchain.devnet.config_file import risk_section
from onchain.devnet.control import set_prices
from onchain.store import crud
from onchain.store.db import Store, open_store
from tests.helpers.aave_oracle import pool_account_data
from tests.helpers.alert_receiver import Receiver
from tests.helpers.cli_support import run as run_cli
from tests.helpers.daemon_support import Daemon, upgrade_db, wait_for
from tests.helpers.store_db import empty_database

WAD = 10**18
SECRET = "daemon-test-secret"
BORROWER = "0x5D40dE08230C7171537a9494E0F394C09E1Bb94e"  # WETH collateral, DAI debt; seed 7
FIELDS = (
    "id", "kind", "account", "protocol", "market", "chain_id", "block_number", "block_hash",
    "tier", "previous_tier", "health_factor", "reasons", "liquidation_probability",
    "horizon_s", "liquidation_price", "advice", "text",
)  # fmt: skip


@pytest.fixture
def sqlite_url(tmp_path: Path, request: pytest.FixtureRequest) -> str:
    return empty_database("sqlite", request.config, tmp_path)


def write_config(tmp_path: Path, info: DevnetInfo, db_url: str, hook_url: str) -> Path:
    path = tmp_path / "alerts-daemon.toml"
    path.write_text(
        f'[chains.devnet]\nchain_id = {info.chain_id}\nrpc_url = "{info.rpc_url}"\n\n'
        f'[[markets]]\nname = "aave-v3-devnet"\nprotocol = "aave-v3"\nchain = "devnet"\n'
        f'address = "{info.aave.addresses_provider}"\n\n'
        f'[store]\nurl = "{db_url}"\n\n'
        '[jobs.refresh]\nat = "each-block"\nevery_s = 0.2\nmax_blocks_per_run = 50\n\n'
        "[jobs.discover]\nevery_s = 30\n\n[jobs.assess]\nenabled = false\n\n"
        "[jobs.prune]\nenabled = false\n\n[jobs.deliver]\nevery_s = 0.2\n\n"
        f'[[alerts.rules]]\nname = "borrower"\naccounts = ["{BORROWER}"]\n'
        "below_hf = 1.10\nrearm_hf = 1.15\ncooldown_s = 0\n\n"
        f'[[alerts.channels]]\nname = "hook"\nurl = "{hook_url}"\n'
        'secret_env = "ONCHAIN_ALERT_SECRET"\n\n'
        "[alerts.delivery]\nretry_base_s = 0.2\nretry_max_s = 1\n" + risk_section(info)
    )
    return path


class Run:
    """The daemon with the secret in its environment."""

    def __init__(self, config: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setenv("ONCHAIN_ALERT_SECRET", SECRET)
        self.daemon = Daemon(config)

    def __enter__(self) -> Daemon:
        return self.daemon

    def __exit__(self, *_exc: object) -> None:
        self.daemon.ensure_dead()


def price_for(chain: DevChain, info: DevnetInfo, hf: float) -> float:
    """The WETH price that puts the borrower at this health factor (HF is linear in it)."""
    block = chain.block_number()
    weth = chain.rpc("eth_call", [{"to": info.aave.oracle, "data": _price_call(info)}, hex(block)])
    now = int(weth, 16) / 10**8
    (data,) = pool_account_data(chain, info.aave.pool, [BORROWER], block)
    return now * hf * WAD / data[5]


def _price_call(info: DevnetInfo) -> str:
    from onchain.devnet.chain import calldata

    return "0x" + calldata("getAssetPrice(address)", info.aave.tokens["WETH"]).hex()


def move_to(chain: DevChain, info: DevnetInfo, store: Store, hf: float) -> int:
    """Set the WETH oracle so the borrower's HF is `hf`; wait until the daemon stored it."""
    block = set_prices(info.rpc_url, info.aave, {"WETH": price_for(chain, info, hf)})
    wait_for(lambda: stored(store, block), 30, f"the daemon to store block {block}")
    return block


def stored(store: Store, block: int) -> bool:
    s = crud.T_SNAPSHOTS
    with store.read() as conn:
        return conn.execute(select(s.c.id).where(s.c.block_number == block)).first() is not None


def queued(store: Store) -> list[Any]:
    o = outbox.T_OUTBOX
    with store.read() as conn:
        return conn.execute(select(o).order_by(o.c.id)).all()


def deliveries(store: Store) -> list[Any]:
    d = outbox.T_DELIVERIES
    with store.read() as conn:
        return conn.execute(select(d).order_by(d.c.outbox_id)).all()


def all_delivered(store: Store, n: int) -> bool:
    rows = deliveries(store)
    return len(rows) == n and all(r.state == "delivered" for r in rows)


def test_crossing_1_10_and_1_0_and_back_gives_enter_escalate_recover(
    devnet: DevnetInfo, devchain: DevChain, db_url: str, tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    with Receiver(SECRET) as hook:
        config = write_config(tmp_path, devnet, db_url, hook.url)
        upgrade_db(config)
        store = open_store(db_url)
        try:
            with Run(config, monkeypatch) as daemon:
                blocks = {h: move_to(devchain, devnet, store, h)
                          for h in (1.20, 1.07, 0.97, 1.04, 1.12, 1.18)}  # fmt: skip
                wait_for(lambda: all_delivered(store, 3), 30, "three alerts delivered")
                assert daemon.stop() == 0
        finally:
            store.close()
    assert all(d.signed for d in hook.requests)
    got = [d.json for d in hook.delivered]
    assert [g["kind"] for g in got] == ["enter", "escalate", "recover"], daemon.log.read_text()
    assert [g["block_number"] for g in got] == [blocks[1.07], blocks[0.97], blocks[1.18]]
    enter, escalate, recover = got
    for g in got:
        assert set(FIELDS) <= set(g)
        assert g["account"] == BORROWER and g["market"] == "aave-v3-devnet"
        assert g["chain_id"] == devnet.chain_id and g["protocol"] == "aave-v3"
        (truth,) = pool_account_data(devchain, devnet.aave.pool, [BORROWER], g["block_number"])
        assert int(g["health_factor"]) == truth[5]  # the Pool's own number, exactly
        assert g["block_hash"] == devchain.rpc("eth_getBlockByNumber",
                                               [hex(g["block_number"]), False])["hash"]  # fmt: skip
        assert g["liquidation_price"][0]["symbol"] == "WETH"
        assert f"Block {g['block_number']}" in g["text"] and "history" in g["text"]
    assert enter["previous_tier"] == "SAFE" and enter["tier"] != "LIQUIDATABLE"
    assert f"HF {hf_text(int(enter['health_factor']))} < 1.1000" in enter["text"]
    assert 0 <= enter["liquidation_probability"] <= 1
    assert enter["horizon_s"] > 0 and enter["advice"] is not None and "Do:" in enter["text"]
    assert escalate["tier"] == "LIQUIDATABLE" and escalate["previous_tier"] == enter["tier"]
    assert recover["previous_tier"] == "LIQUIDATABLE" and "RECOVERED" in recover["text"]
    assert len({g["id"] for g in got}) == 3

    # `onchain alerts list`: what was sent and how it went, with no secret in the environment
    monkeypatch.delenv("ONCHAIN_ALERT_SECRET")
    listed = run_cli("alerts", "list", "--config", str(config), "--json")
    assert listed.returncode == 0, listed.stderr
    rows = json.loads(listed.stdout)
    assert [r["id"] for r in rows] == [g["id"] for g in reversed(got)]
    assert all(d["state"] == "delivered" and d["channel"] == "hook" for r in rows
               for d in r["deliveries"])  # fmt: skip
    human = run_cli("alerts", "list", "--config", str(config)).stdout
    assert "escalate" in human and "hook: delivered (1 attempt(s))" in human


def test_a_wobble_around_the_threshold_for_50_blocks_is_one_alert(
    devnet: DevnetInfo, devchain: DevChain, sqlite_url: str, tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    with Receiver(SECRET) as hook:
        config = write_config(tmp_path, devnet, sqlite_url, hook.url)
        upgrade_db(config)
        store = open_store(sqlite_url)
        try:
            with Run(config, monkeypatch) as daemon:
                move_to(devchain, devnet, store, 1.09)
                prices = [price_for(devchain, devnet, h) for h in (1.095, 1.105, 1.14, 1.09)]
                last = 0
                for i in range(50):
                    last = set_prices(devnet.rpc_url, devnet.aave, {"WETH": prices[i % 4]})
                wait_for(lambda: stored(store, last), 60, "the daemon to catch up")
                wait_for(lambda: all_delivered(store, 1), 30, "the alert delivered")
                time.sleep(1)  # a storm would show by now
                assert daemon.stop() == 0
            snapshots = len(crud.snapshot_hashes(store, 1))
        finally:
            store.close()
    assert snapshots >= 51
    assert [d.json["kind"] for d in hook.delivered] == ["enter"], daemon.log.read_text()


def test_a_receiver_that_answers_500_gets_the_same_alert_until_it_takes_it(
    devnet: DevnetInfo, devchain: DevChain, sqlite_url: str, tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    with Receiver(SECRET, status=500) as hook:
        config = write_config(tmp_path, devnet, sqlite_url, hook.url)
        upgrade_db(config)
        store = open_store(sqlite_url)
        try:
            with Run(config, monkeypatch) as daemon:
                move_to(devchain, devnet, store, 1.05)
                wait_for(lambda: len(hook.requests) >= 3, 30, "three failed attempts")
                hook.status = 200
                wait_for(lambda: all_delivered(store, 1), 30, "the alert delivered")
                assert daemon.stop() == 0
            (row,) = deliveries(store)
            attempts = outbox.T_ATTEMPTS
            with store.read() as conn:
                tries = conn.execute(select(attempts).order_by(attempts.c.id)).all()
        finally:
            store.close()
    ids = {d.json["id"] for d in hook.requests}
    assert len(ids) == 1 and len(hook.delivered) == 1
    assert row.attempts == len(hook.requests) == len(tries) >= 4
    assert [t.ok for t in tries] == [False] * (len(tries) - 1) + [True]
    assert all(t.status == 500 and t.error == "HTTP 500" for t in tries[:-1])
    assert "attempt 1 failed (HTTP 500)" in daemon.log.read_text()
    assert SECRET not in daemon.log.read_text() and hook.url not in daemon.log.read_text()


def test_kill_9_with_undelivered_alerts_delivers_them_after_restart_none_lost_none_new(
    devnet: DevnetInfo, devchain: DevChain, db_url: str, tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    with Receiver(SECRET, status=503) as hook:
        config = write_config(tmp_path, devnet, db_url, hook.url)
        upgrade_db(config)
        store = open_store(db_url)
        try:
            with Run(config, monkeypatch) as daemon:
                for h in (1.07, 0.97):  # enter, escalate
                    move_to(devchain, devnet, store, h)
                wait_for(lambda: len(queued(store)) == 2, 30, "two alerts queued")
                wait_for(lambda: len(hook.requests) >= 1, 30, "a failed attempt")
                daemon.kill9()
            before = queued(store)
            assert all(r.state == "pending" for r in deliveries(store))
            hook.status = 200
            with Run(config, monkeypatch) as again:
                wait_for(lambda: all_delivered(store, 2), 30, "both delivered after the restart")
                time.sleep(1)
                assert again.stop() == 0
            after = queued(store)
        finally:
            store.close()
    assert [r.uid for r in after] == [r.uid for r in before]  # none new
    got = [d.json for d in hook.delivered]
    assert [g["id"] for g in got] == [r.uid for r in before]  # none lost, same ids
    assert [g["kind"] for g in got] == ["enter", "escalate"]


def test_a_real_liquidation_is_reported_once(
    devnet: DevnetInfo, devchain: DevChain, sqlite_url: str, tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    from onchain.devnet.chain import calldata
    from tests.helpers.aave_liquidator import LIQUIDATOR, _fund_liquidator
    from tests.helpers.aave_oracle import UINT256_MAX

    _fund_liquidator(devchain, devnet)
    with Receiver(SECRET) as hook:
        config = write_config(tmp_path, devnet, sqlite_url, hook.url)
        upgrade_db(config)
        store = open_store(sqlite_url)
        try:
            with Run(config, monkeypatch) as daemon:
                move_to(devchain, devnet, store, 0.97)  # enter, liquidatable
                data = calldata(
                    "liquidationCall(address,address,address,uint256,bool)",
                    devnet.aave.tokens["WETH"], devnet.aave.tokens["DAI"], BORROWER,
                    UINT256_MAX, False,
                )  # fmt: skip
                receipt = devchain.send(LIQUIDATOR, devnet.aave.pool, data, gas=5_000_000)
                assert int(receipt["status"], 16) == 1
                liquidated_at = int(receipt["blockNumber"], 16)
                devchain.mine(5)
                wait_for(lambda: stored(store, devchain.block_number()), 30, "the daemon")
                wait_for(lambda: all_delivered(store, 2), 30, "two alerts delivered")
                time.sleep(1)
                assert daemon.stop() == 0
        finally:
            store.close()
    got = [d.json for d in hook.delivered]
    assert [g["kind"] for g in got] == ["enter", "liquidated"], daemon.log.read_text()
    assert got[1]["block_number"] == liquidated_at and "LIQUIDATED" in got[1]["text"]
    (truth,) = pool_account_data(devchain, devnet.aave.pool, [BORROWER], liquidated_at)
    assert int(got[1]["total_debt_base"]) == truth[1]  # what is left, as the Pool says


def test_the_demo_shows_alerts_arriving_on_its_signed_webhook(
    devnet: DevnetInfo, devchain: DevChain, monkeypatch: pytest.MonkeyPatch
) -> None:
    from rich.console import Console

    from onchain.alerts.demo import SECRET_ENV, demo_alerts

    monkeypatch.setenv(SECRET_ENV, "")  # restored after the test; the demo sets its own
    set_prices(devnet.rpc_url, devnet.aave, {"WETH": 2790.0})  # the demo's -7%
    console = Console(record=True, width=200)
    demo_alerts(devnet, console)
    shown = console.export_text()
    counted = [int(w) for w in shown.split("received ")[1].split()[:1]]
    assert counted and counted[0] >= 3, shown
    assert f"({counted[0]} signature(s) verified, 0 not delivered)" in shown
    assert "AT RISK LIQUIDATABLE" in shown and "Liquidatable now" in shown
