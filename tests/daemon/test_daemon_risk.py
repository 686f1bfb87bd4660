"""The daemon stores the risk module's tiers, not health-factor thresholds: on the devnet, on
SQLite and PostgreSQL, each snapshot row carries tier, reason codes, probability of liquidation
within the horizon and health at the next oracle price, exactly as `onchain.app.risk_context` gives
them at that block; the contract's verdict decides LIQUIDATABLE; a DEX price below the oracle
makes positions PENDING; `onchain report --json` carries it all; a failing risk assessment falls
back to the thresholds, visibly; and migration 0002 goes down and up without losing rows."""

from __future__ import annotations

import json
import subprocess
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from sqlalchemy import func, inspect, select

from onchain.alerts.outbox import T_OUTBOX
from onchain.app.pipeline import load_market, market_snapshot, read_positions
from onchain.app.risk_context import RiskSettings
from onchain.config import load_config
from onchain.devnet.build import DevnetInfo
from onchain.devnet.chain import DevChain
from onchain.devnet.config_file import risk_section
from onchain.devnet.control import set_prices
from onchain.jobs import daemon
from onchain.jobs.assess import assess, risk_tiers, tier_of
from onchain.jobs.context import JobContext
from onchain.jobs.maintenance import assess_job
from onchain.jobs.refresh import refresh_job
from onchain.protocols.base import MarketRef
from onchain.rpc.client import RpcClient
from onchain.store import crud
from onchain.store.db import Store, downgrade, make_engine, open_store, upgrade
from onchain.store.models import TIERS
from tests.helpers.aave_oracle import pool_account_data
from tests.helpers.daemon_support import ONCHAIN, upgrade_db
from tests.helpers.uniswap_support import _pool_weth_price_usd, _swap_weth_for_usdc

WAD = 10**18
# HTTP requests one block's risk assessment sends, whatever its number of positions: 12 measured
# with the feeds' events read from the start, 4 with them cached (a per-position read shows)
RISK_REQUESTS = 16
RISK_COLUMNS = ("risk_reasons", "liquidation_probability", "pending_health_factor", "horizon_s")


@pytest.fixture
def devchain(devnet: DevnetInfo) -> Any:
    """The module's devnet, put back as it was after each test (prices, pool, blocks)."""
    chain = DevChain(devnet.rpc_url)
    checkpoint = chain.rpc("evm_snapshot")
    yield chain
    assert chain.rpc("evm_revert", [checkpoint]) is True


# alerts are the outbox's: one rule from WATCH on, printed by a console channel
ALERTS = (
    '\n[[alerts.rules]]\nname = "tiers"\nfrom_tier = "WATCH"\ncooldown_s = 0\n'
    '\n[[alerts.channels]]\nname = "screen"\nurl = "console://"\n'
)


def write_config(tmp_path: Path, info: DevnetInfo, db_url: str, risk: str | None = None) -> Path:
    """The Aave market of the devnet, its store, and [risk] as `onchain devnet` writes it (the
    Uniswap pools as reference prices), unless `risk` replaces it."""
    path = tmp_path / "risk.toml"
    path.write_text(
        f'[chains.devnet]\nchain_id = {info.chain_id}\nrpc_url = "{info.rpc_url}"\n\n'
        f'[[markets]]\nname = "aave-v3-devnet"\nprotocol = "aave-v3"\nchain = "devnet"\n'
        f'address = "{info.aave.addresses_provider}"\n\n'
        f'[store]\nurl = "{db_url}"\n\n[jobs.refresh]\nat = "each-block"\n\n'
        "[jobs.prune]\nenabled = false\n" + (risk_section(info) if risk is None else risk) + ALERTS
    )
    return path


def stored_rows(store: Store, block: int) -> list[Any]:
    p = crud.T_POSITIONS
    with store.read() as conn:
        return conn.execute(
            select(
                crud.T_ACCOUNTS.c.address.label("account"),
                p.c.health_factor,
                p.c.liquidatable,
                p.c.total_debt_base,
                p.c.risk_tier,
                p.c.risk_reason,
                *(p.c[c] for c in RISK_COLUMNS),
            )
            .join(crud.T_ACCOUNTS, crud.T_ACCOUNTS.c.id == p.c.account_id)
            .where(p.c.block_number == block)
            .order_by(crud.T_ACCOUNTS.c.address)
        ).all()


def alerts(store: Store) -> list[Any]:
    """The alerts the rules queued in the outbox, oldest first (digests have no account)."""
    o = T_OUTBOX
    with store.read() as conn:
        return conn.execute(
            select(o.c.account.label("address"), o.c.kind, o.c.previous_tier, o.c.tier)
            .where(o.c.account.is_not(None))
            .order_by(o.c.id)
        ).all()


def runs(store: Store, job: str) -> list[Any]:
    r = crud.T_JOB_RUNS
    with store.read() as conn:
        return conn.execute(select(r).where(r.c.job == job).order_by(r.c.id)).all()


def onchain(*args: str) -> subprocess.CompletedProcess[str]:
    done = subprocess.run([*ONCHAIN, *args], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return done


def report(config: Path) -> dict[str, Any]:
    (book,) = json.loads(onchain("report", "--config", str(config), "--json").stdout)
    return dict(book)


def test_onchain_run_stores_the_risk_modules_tiers_and_the_contracts_verdict(
    devnet: DevnetInfo, devchain: DevChain, db_url: str, tmp_path: Path
) -> None:
    config = write_config(tmp_path, devnet, db_url)
    upgrade_db(config)
    onchain("run", "--config", str(config), "--once")
    block = set_prices(devnet.rpc_url, devnet.aave, {"WETH": 2700.0})  # ETH -10%: liquidations
    onchain("run", "--config", str(config), "--once")
    store = open_store(db_url)
    try:
        rows = stored_rows(store, block)
        assert len(rows) == 300
        truth = pool_account_data(devchain, devnet.aave.pool, [r.account for r in rows], block)
        liquidatable = {r.account for r, t in zip(rows, truth, strict=True) if t[5] < WAD}
        assert len(liquidatable) >= 3
        # the contract's verdict decides LIQUIDATABLE, both ways
        assert {r.account for r in rows if r.risk_tier == "LIQUIDATABLE"} == liquidatable
        for r in rows:
            assert r.risk_tier in TIERS and isinstance(r.risk_reasons, list)
            assert 0.0 <= r.liquidation_probability <= 1.0 and r.horizon_s > 0
            if r.total_debt_base > 0:  # the devnet's [risk.references]: pending health is known
                assert r.pending_health_factor is not None
            if r.account in liquidatable:
                assert "HF_BELOW_1" in r.risk_reasons and r.risk_reason.startswith("liquidatable")
            elif r.risk_tier != "SAFE":
                assert r.risk_reasons and "P(liquidation within" in r.risk_reason

        # exactly what the risk module says at that block, and not what the thresholds say
        cfg = load_config(config)
        client = RpcClient(devnet.rpc_url)
        pinned = client.pin_block(block)
        ref = MarketRef("aave-v3", devnet.aave.addresses_provider)
        state = load_market(client, ref, pinned)
        positions = read_positions(client, "aave-v3", state, [r.account for r in rows], pinned)
        snapshot = market_snapshot(client, "aave-v3", state, pinned)
        sent = client.requests_sent
        expected, risk = risk_tiers(
            client, pinned, positions, RiskSettings.from_config(cfg.risk), snapshot
        )
        # the reserves' interest rates moved the barrier of positions with debt (the drift)
        assert risk is not None and risk.assessment.probability.log_drift is not None
        assert np.count_nonzero(risk.assessment.probability.log_drift < 0) >= 100
        risk_requests = client.requests_sent - sent
        assert [(r.risk_tier, r.risk_reasons, r.risk_reason) for r in rows] == [
            (e.tier, e.reasons, e.reason) for e in expected
        ]
        assert [r.liquidation_probability for r in rows] == pytest.approx(
            [e.probability for e in expected], rel=1e-12, abs=1e-15
        )
        by_threshold = assess(positions, cfg.tiers)
        assert sum(e.tier != t.tier for e, t in zip(expected, by_threshold, strict=True)) >= 5

        # what the block's risk costs is counted, not timed (the model's speed is
        # bench/bench_risk.py's): one book for the 300 positions, a few requests for the prices'
        # past and the references, none per position
        assert risk_requests <= RISK_REQUESTS
        # the runs say how each block was tiered: one block of 300 positions per run
        refreshes = runs(store, "refresh")
        assert all(r.outcome == "ok" and "risk_fallback_blocks" not in r.counts for r in refreshes)
        assert sum(r.counts.get("risk_blocks", 0) for r in refreshes) == 2
        assert [r.counts.get("positions") for r in refreshes] == [300, 300]
        with store.read() as conn:
            details = conn.execute(
                select(crud.T_SNAPSHOTS.c.details).where(crud.T_SNAPSHOTS.c.block_number == block)
            ).scalar_one()
        assert details["risk"]["horizon_s"] == rows[0].horizon_s
        assert any("pending health: reference prices" in s for s in details["risk"]["sources"])
        assert (
            "interest: supply and borrow rates at the block for every reserve"
            in (details["risk"]["sources"])
        )

        # the outbox's rule alerted each liquidatable account, LIQUIDATABLE last; every alert
        # names the tier its account was last reported in
        recorded = alerts(store)
        for account in liquidatable:
            assert [a.tier for a in recorded if a.address == account][-1] == "LIQUIDATABLE"
        last: dict[str, str] = {}
        for a in recorded:
            assert a.previous_tier == last.get(a.address, "SAFE"), a
            last[a.address] = a.tier
        onchain("run", "--config", str(config), "--once", "--job", "assess")
        assert alerts(store) == recorded  # re-tiering decides no alert

        # `onchain report --json`: tiers, reasons and probabilities from the store
        book = report(config)
        assert book["block_number"] == block and set(book["tiers"]) == set(TIERS)
        counted = Counter(r.risk_tier for r in rows if r.total_debt_base > 0)
        assert {k: v["positions"] for k, v in book["tiers"].items()} == {
            t: counted.get(t, 0) for t in TIERS
        }
        at_risk = {a["account"]: a for a in book["at_risk"]}
        assert {r.account for r in rows if r.risk_tier != "SAFE"} == set(at_risk)
        for r in rows:
            if r.account in at_risk:
                shown = at_risk[r.account]
                assert shown["risk_tier"] == r.risk_tier and shown["reasons"] == r.risk_reasons
                assert shown["liquidation_probability"] == r.liquidation_probability
                assert shown["horizon_s"] == r.horizon_s
        human = onchain("report", "--config", str(config)).stdout
        assert "PENDING" in human and "P(liq.)" in human
    finally:
        store.close()


def test_a_dex_price_below_the_oracle_is_stored_pending_and_alerted(
    devnet: DevnetInfo, devchain: DevChain, store: Store, tmp_path: Path
) -> None:
    cfg = load_config(write_config(tmp_path, devnet, store.engine.url.render_as_string(False)))
    ctx = JobContext(cfg, store, crud.sync_markets(store, cfg))
    oracle_weth = 3000.0
    for _ in range(40):  # sell WETH into the real pool: 3% below the oracle (deviation 0.5%)
        if _pool_weth_price_usd(devnet) <= oracle_weth * 0.97:
            break
        _swap_weth_for_usdc(devnet, 300 * 10**18)
    assert _pool_weth_price_usd(devnet) <= oracle_weth * 0.97
    counts: Counter[str] = Counter()
    assert refresh_job(ctx, counts) == [] and assess_job(ctx, counts) == []
    assert counts["risk_blocks"] == 1 and counts["risk_fallback_blocks"] == 0
    rows = stored_rows(store, devchain.block_number())
    pending = [r for r in rows if r.risk_tier == "PENDING"]
    assert len(pending) >= 3
    for r in pending:  # healthy at the oracle price, exactly; not at the price it will publish
        assert not r.liquidatable and r.health_factor >= WAD
        assert "ONE_ORACLE_UPDATE_AWAY" in r.risk_reasons and r.pending_health_factor < 1.0
        assert "at the next oracle price" in r.risk_reason
    alerted = {a.address for a in alerts(store) if a.tier == "PENDING"}
    assert alerted == {r.account for r in pending}
    by_tier = crud.latest_health(store, ctx.markets[0].id)
    assert by_tier is not None
    assert sum(s.risk_tier == "PENDING" for s in by_tier.stored) == len(pending)


def test_a_failing_risk_assessment_falls_back_to_thresholds_and_says_so(
    devnet: DevnetInfo, devchain: DevChain, store: Store, tmp_path: Path
) -> None:
    """A reference 'pool' with no code: the risk module cannot price it, the block is still
    stored whole with health-factor tiers, and the run, the snapshot and the log say why."""
    broken = (
        '\n[risk.references.WETH]\npool = "0x000000000000000000000000000000000000dEaD"\n'
        'quote = "USDC"\n'
    )
    url = store.engine.url.render_as_string(False)
    cfg = load_config(write_config(tmp_path, devnet, url, risk="\n[risk]\n" + broken))
    ctx = JobContext(cfg, store, crud.sync_markets(store, cfg))
    assert daemon.run_recorded(ctx, "refresh") == "ok"  # degraded, not lost
    (run,) = runs(store, "refresh")
    assert run.counts["risk_fallback_blocks"] == 1 and run.counts["risk_fallback_reason"]
    rows = stored_rows(store, devchain.block_number())
    assert len(rows) == 300
    for r in rows:
        fallback = tier_of(r.health_factor, r.liquidatable, cfg.tiers)
        assert (r.risk_tier, r.risk_reason) == (fallback.tier, fallback.reason)
        assert all(getattr(r, c) is None for c in RISK_COLUMNS)
    with store.read() as conn:
        details = conn.execute(select(crud.T_SNAPSHOTS.c.details)).scalar_one()
    assert details["risk"]["fallback"] == run.counts["risk_fallback_reason"]
    counts: Counter[str] = Counter()
    assert assess_job(ctx, counts) == [] and counts["tiers_changed"] == 0

    # migration 0002 goes down and up again on a store holding this block: no row is lost
    p, a = crud.T_POSITIONS, crud.T_ASSET_POSITIONS
    with store.read() as conn:
        before = [conn.execute(select(func.count()).select_from(t)).scalar_one() for t in (p, a)]
    engine = make_engine(store.engine.url)
    try:
        assert downgrade(engine, "0001") == "0001"
        columns = {c["name"] for c in inspect(engine).get_columns("position_snapshots")}
        assert not columns & set(RISK_COLUMNS)
        with engine.connect() as conn:
            after = [conn.execute(select(func.count()).select_from(t)).scalar_one() for t in (p, a)]
        assert after == before and before[1] > 300
        upgrade(engine)
    finally:
        engine.dispose()
    with store.read() as conn:
        again = [conn.execute(select(func.count()).select_from(t)).scalar_one() for t in (p, a)]
    assert again == before
