"""Oracle lag (the next published price and pending health) and confirmation latency."""

from __future__ import annotations

import numpy as np
import pytest

from onchain.risk.book import make_book
from onchain.risk.latency import confirmation_horizon_s, estimate_chain_latency, next_base_fee
from onchain.risk.oracle_lag import next_oracle_prices, pending_health

ORACLE = np.array([3000.0, 60000.0, 1.0])


def test_next_oracle_price_deviation_heartbeat_and_missing_reference() -> None:
    ref = np.array([2980.0, 60030.0, np.nan])  # ETH -0.667% (> 0.5%), BTC +0.05%, no USDC ref
    pend = next_oracle_prices(
        ref, ORACLE, [0.005, 0.005, 0.001], [3600, 3600, 86400], [100, 3000, 10]
    )
    np.testing.assert_allclose(pend.price_base, [2980.0, 60030.0, 1.0])
    np.testing.assert_allclose(pend.eta_s, [0.0, 600.0, np.inf])
    assert pend.deviation_triggered.tolist() == [True, False, False]
    # a horizon shorter than the heartbeat keeps BTC at the oracle price
    soon = next_oracle_prices(ref, ORACLE, 0.005, 3600, [100, 3000, 10], horizon_s=300)
    np.testing.assert_allclose(soon.price_base, [2980.0, 60000.0, 1.0])
    # exactly the threshold triggers (>=)
    exact = next_oracle_prices(np.array([3015.0]), np.array([3000.0]), 0.005, 3600, 0)
    assert exact.deviation_triggered[0] and exact.eta_s[0] == 0.0
    # an overdue heartbeat is due now
    assert (
        next_oracle_prices(np.array([3001.0]), np.array([3000.0]), 0.005, 3600, 4000).eta_s[0] == 0
    )


def test_pending_health_flags_positions_one_update_away() -> None:
    # HF at oracle: 1.004, 1.05, 0.98 (already liquidatable), no debt
    c = np.array([[1.0, 0, 0], [1.0, 0, 0], [1.0, 0, 0], [1.0, 0, 0]])
    d = np.array([[0, 0, 2400 / 1.004], [0, 0, 2400 / 1.05], [0, 0, 2400 / 0.98], [0, 0, 0]])
    book = make_book(c, d, [0.8, 0.8, 0.8], ORACLE, is_stable=[False, False, True])
    pend = next_oracle_prices(np.array([2980.0, 60000.0, 1.0]), ORACLE, 0.005, 3600, 0)
    ph = pending_health(book, pend)
    np.testing.assert_allclose(ph.health_now[:3], [1.004, 1.05, 0.98])
    np.testing.assert_allclose(ph.health_pending[:3], np.array([1.004, 1.05, 0.98]) * 2980 / 3000)
    assert ph.one_update_away.tolist() == [True, False, False, False]
    assert ph.eta_s.tolist() == [0.0] * 4  # all hold ETH, whose update is due now


def test_confirmation_horizon_and_block_estimator() -> None:
    assert confirmation_horizon_s(30.0, 3, 12.0) == pytest.approx(66.0)
    rng = np.random.default_rng(0)
    ts = np.cumsum(np.full(200, 12))
    limit = np.full(200, 30e6)
    used = np.where(rng.random(200) < 0.25, 30e6, 14e6)  # a quarter of the blocks full
    fee = 20e9 * 1.01 ** np.arange(200)  # +1% a block
    est = estimate_chain_latency(ts, used, limit, fee)
    assert est.block_time_s == 12.0
    p_full = float(np.mean(used >= 0.95 * limit))
    assert est.p_full == pytest.approx(p_full)
    assert est.expected_blocks == pytest.approx(1 / (1 - p_full))
    assert est.blocks_at_confidence == int(np.ceil(np.log(0.05) / np.log(p_full)))
    assert est.base_fee_trend_per_block == pytest.approx(0.01, rel=1e-6)
    assert not est.fee_cap_at_risk  # 2x cap lasts ~70 blocks at +1%/block
    assert est.horizon_s(60.0) == pytest.approx(60 + 12 * est.blocks_at_confidence)
    # empty blocks: next block
    calm = estimate_chain_latency(ts, np.full(200, 1e6), limit)
    assert calm.blocks_at_confidence == 1 and calm.expected_blocks == 1.0
    # steep fee rise: a 1.2x cap is priced out before inclusion
    hot = estimate_chain_latency(
        ts, np.full(200, 30e6), limit, 20e9 * 1.125 ** np.arange(200), fee_cap_multiple=1.2
    )
    assert hot.fee_cap_at_risk
    # EIP-1559 update rule
    assert next_base_fee(100.0, 30e6, 30e6) == pytest.approx(112.5)
    assert next_base_fee(100.0, 15e6, 30e6) == pytest.approx(100.0)
