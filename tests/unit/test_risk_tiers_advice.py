"""Tiers with reasons, margin advice (applying it meets the target), and the one-call assess."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from onchain.risk import assess
from onchain.risk.advice import barrier_multiple, margin_advice, safe_health_factor
from onchain.risk.book import make_book
from onchain.risk.liquidity import DexDepth
from onchain.risk.oracle_lag import next_oracle_prices
from onchain.risk.probability import (
    first_passage_probability,
    liquidation_probability,
    oracle_barrier_shift,
)
from onchain.risk.tiers import (
    Reason,
    Tier,
    TierThresholds,
    classify,
    collateral_concentration,
    reason_names,
    tier_name,
)

PRICES = np.array([3000.0, 60000.0, 1.0])
LT = [0.8, 0.75, 0.85]
STABLE = [False, False, True]


def cov(sd_eth: float = 0.04) -> np.ndarray:
    sd = np.array([sd_eth, 0.8 * sd_eth, 0.0])
    corr = np.array([[1.0, 0.8, 0.0], [0.8, 1.0, 0.0], [0.0, 0.0, 1.0]])
    return corr * np.outer(sd, sd)


def test_classify_tiers_and_reasons() -> None:
    hf = np.array([0.9, 1.02, 1.05, 1.1, 1.2, 2.0, np.inf])
    p = np.array([1.0, 0.3, 0.25, 0.06, 0.02, 0.001, 0.0])
    pend = np.array([False, True, False, False, False, False, False])
    tier, reasons = classify(
        hf,
        p,
        pending_liquidatable=pend,
        nearest_move=np.array([0.0, 0.01, 0.03, 0.08, 0.15, 0.5, np.inf]),
        concentration=np.array([0, 0, 0, 0, 0, 0.3, 0]),
        low_liquidity=np.array([False, False, False, True, False, False, False]),
        bad_debt=np.array([10.0, 0, 0, 0, 0, 0, 0]),
        unprofitable=np.array([True, False, False, False, False, False, False]),
        thresholds=TierThresholds(
            critical_probability=0.2, high_probability=0.05, watch_probability=0.01
        ),
    )
    assert [tier_name(t) for t in tier] == [
        "LIQUIDATABLE",
        "PENDING",
        "CRITICAL",
        "HIGH",
        "WATCH",
        "SAFE",
        "SAFE",
    ]
    assert reason_names(reasons[0]) == [
        "HF_BELOW_1",
        "NEAR_LIQUIDATION_PRICE",
        "FULL_CLOSE_FACTOR",
        "BAD_DEBT",
        "UNPROFITABLE_LIQUIDATION",
    ]
    assert "ONE_ORACLE_UPDATE_AWAY" in reason_names(reasons[1])
    assert "PROB_GE_CRITICAL" in reason_names(reasons[2])
    assert reason_names(reasons[3]) == ["PROB_GE_HIGH", "LOW_POOL_LIQUIDITY"]
    assert reason_names(reasons[4]) == ["PROB_GE_WATCH"]
    assert reason_names(reasons[5]) == ["CONCENTRATED_COLLATERAL"]
    assert reason_names(reasons[6]) == ["NO_DEBT"]
    assert Tier.LIQUIDATABLE > Tier.PENDING > Tier.CRITICAL > Tier.SAFE
    assert int(reasons[0]) & Reason.HF_BELOW_1


def test_collateral_concentration() -> None:
    book = make_book([[1.0, 0, 0], [3.0, 0, 0], [0, 1.0, 0]], np.zeros((3, 3)), LT, PRICES)
    np.testing.assert_allclose(collateral_concentration(book), [0.25, 0.75, 1.0])


def test_safe_health_factor_moves_with_volatility_and_tails() -> None:
    k = barrier_multiple(0.01, np.inf)
    assert safe_health_factor(0.05, 0.01)[()] == pytest.approx(np.exp(k * 0.05))
    # at the safe HF the probability is exactly the target
    for dof in (np.inf, 3.0):
        hf = safe_health_factor(0.05, 0.01, dof)
        assert first_passage_probability(np.log(hf), 0.05, tail_dof=dof)[()] == pytest.approx(0.01)
    assert safe_health_factor(0.10, 0.01) > safe_health_factor(0.05, 0.01)  # more vol, more margin
    assert safe_health_factor(0.05, 0.01, 3.0) > safe_health_factor(0.05, 0.01)  # fat tails too
    hf_drift = safe_health_factor(0.05, 0.01, 3.0, drift="ito")
    p = first_passage_probability(np.log(hf_drift), 0.05, drift="ito", tail_dof=3.0)
    assert p[()] == pytest.approx(0.01, rel=1e-4)


def probability_sigma(book, covariance, dofs) -> np.ndarray:
    return liquidation_probability(book, covariance, tail_dof=dofs).sigma


def advice_book():
    """ETH/USDC at several HF, an ETH+BTC basket, ETH vs BTC debt, two debts, stable/stable."""
    c = [[1.0, 0, 0], [1.0, 0, 0], [0.5, 0.025, 0], [1.0, 0, 0], [1.0, 0, 500.0], [0, 0, 1000.0]]
    d = [
        [0, 0, 2300.0],
        [0, 0, 1800.0],
        [0, 0, 2200.0],
        [0, 0.036, 0],
        [0.1, 0, 2000.0],
        [0, 0, 800.0],
    ]
    return make_book(c, d, LT, PRICES, is_stable=STABLE)


@pytest.mark.parametrize(("dof", "steps"), [(np.inf, np.inf), (3.0, np.inf), (3.0, 6.0)])
def test_applying_advice_meets_the_target(dof: float, steps: float) -> None:
    """Every repay/top-up reaches the target and is the smallest that does, also when the
    probability counts only the prices the oracle publishes (``steps`` per horizon)."""
    book = advice_book()
    target = 0.01
    sigma_cov = cov(0.04)
    dofs = [dof, dof, np.inf]
    adv = margin_advice(
        book, sigma_cov, target_probability=target, tail_dof=dofs, oracle_steps=steps
    )
    before = liquidation_probability(book, sigma_cov, tail_dof=dofs, oracle_steps=steps).probability
    reused = margin_advice(
        book,
        sigma_cov,
        target_probability=target,
        tail_dof=dofs,
        probability=liquidation_probability(book, sigma_cov, tail_dof=dofs, oracle_steps=steps),
    )
    np.testing.assert_array_equal(reused.repay_units, adv.repay_units)
    safe = adv.safe_health_factor
    at_safe = first_passage_probability(
        np.log(safe) + oracle_barrier_shift(steps) * probability_sigma(book, sigma_cov, dofs),
        probability_sigma(book, sigma_cov, dofs),
        tail_dof=liquidation_probability(book, sigma_cov, tail_dof=dofs).tail_dof,
    )
    moves = (book.debt.sum(axis=1) > 0) & (probability_sigma(book, sigma_cov, dofs) > 0)
    assert moves.sum() >= 5
    np.testing.assert_allclose(at_safe[moves], target, rtol=1e-6)
    assert adv.already_safe.tolist() == list(before <= target)
    assert not adv.already_safe[:5].all()
    checked = 0
    for r in range(book.n_positions):
        for i in range(book.n_assets):
            t = adv.topup_units[r, i]
            if np.isfinite(t) and t > 0:
                c = book.collateral.copy()
                c[r, i] += t
                p = liquidation_probability(
                    replace(book, collateral=c).subset([r]),
                    sigma_cov,
                    tail_dof=dofs,
                    oracle_steps=steps,
                )
                assert p.probability[0] <= target * (1 + 1e-6), (r, i, p.probability)
                # and it is the smallest such amount: 1% less misses the target
                c[r, i] -= 0.01 * t
                p_less = liquidation_probability(
                    replace(book, collateral=c).subset([r]),
                    sigma_cov,
                    tail_dof=dofs,
                    oracle_steps=steps,
                )
                assert p_less.probability[0] > target
                checked += 1
            rep = adv.repay_units[r, i]
            if np.isfinite(rep) and rep > 0:
                d = book.debt.copy()
                d[r, i] -= rep
                p = liquidation_probability(
                    replace(book, debt=d).subset([r]), sigma_cov, tail_dof=dofs, oracle_steps=steps
                )
                assert p.probability[0] <= target * (1 + 1e-6), (r, i, p.probability)
                checked += 1
    assert checked >= 8
    # conventions: nothing to do when safe; NaN for an asset not owed
    safe_debts = adv.already_safe[:, None] & (book.debt > 0)
    assert np.all(adv.repay_units[safe_debts] == 0.0)
    assert np.isnan(adv.repay_units[0, 0])


def test_assess_runs_everything_and_chunks_agree() -> None:
    rng = np.random.default_rng(3)
    n = 3000
    c = np.zeros((n, 3))
    c[:, 0] = rng.uniform(0.5, 5, n)
    c[: n // 3, 1] = rng.uniform(0.01, 0.1, n // 3)
    hf = np.exp(rng.normal(np.log(1.3), 0.25, n))
    d = np.zeros((n, 3))
    d[:, 2] = (c @ (PRICES * LT)) / hf
    d[::50, 2] = 0.0
    book = make_book(c, d, LT, PRICES, is_stable=STABLE)
    pending = next_oracle_prices(PRICES * [0.99, 1.0, 1.0], PRICES, 0.005, 3600, 0)
    dex = DexDepth(
        np.array([5000.0, 200.0, np.inf]),
        np.array([1.5e7, 1.2e7, np.inf]),
        np.array([0.003, 0.003, 0.0]),
    )
    kw = dict(
        tail_dof=[3.0, 3.0, np.inf],
        pending=pending,
        dex=dex,
        gas_base=5.0,
        curve_drops=[0.0, 0.1, 0.3],
        pool_available=[1e5, 1e3, 1e8],
        pool_utilization=[0.5, 0.97, 0.8],
    )
    one = assess(book, cov(0.02), chunk_rows=n, workers=1, **kw)
    many = assess(book, cov(0.02), chunk_rows=700, workers=2, **kw)
    np.testing.assert_array_equal(one.tier, many.tier)
    np.testing.assert_array_equal(one.reasons, many.reasons)
    np.testing.assert_allclose(one.probability.probability, many.probability.probability)
    np.testing.assert_allclose(one.plan.net_profit_base, many.plan.net_profit_base)
    np.testing.assert_allclose(one.advice.topup_units, many.advice.topup_units, equal_nan=True)
    np.testing.assert_allclose(
        one.curve.collateral_at_risk_base, many.curve.collateral_at_risk_base
    )
    np.testing.assert_array_equal(one.liquidatable, one.health < 1)
    assert (one.tier == Tier.LIQUIDATABLE).sum() == one.liquidatable.sum()
    pend = one.pending.one_update_away
    assert pend.any() and np.all(one.tier[pend] == Tier.PENDING)
    planned = np.flatnonzero(one.liquidatable | pend)
    np.testing.assert_array_equal(one.plan_rows, planned)
    np.testing.assert_array_equal(many.plan_rows, planned)
    assert np.all(one.plan.eligible)
    ranked = one.targets()
    assert np.all(np.diff(one.plan.net_profit_base[np.searchsorted(one.plan_rows, ranked)]) <= 0)
    np.testing.assert_array_equal(one.advice_rows, many.advice_rows)
    assert np.all(one.probability.probability[one.advice_rows] > 0.01)
    assert one.curve.n_liquidatable[0] == one.liquidatable.sum()
    assert np.all(one.reasons[one.health >= 1e300] & Reason.NO_DEBT)
    assert np.any(one.reasons & Reason.LOW_POOL_LIQUIDITY)
