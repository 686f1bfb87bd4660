"""Probability of liquidation within a horizon: the closed form agrees with Monte Carlo of the
full multi-asset positions, and its pieces behave as the reflection principle says."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import special

from onchain.risk.book import make_book
from onchain.risk.probability import (
    first_passage_probability,
    interest_drift,
    liquidation_probability,
    log_health_weights,
    monte_carlo_probability,
    position_tail_dof,
)

PRICES = np.array([3000.0, 60000.0, 1.0])  # ETH, BTC, USDC
LT = [0.8, 0.8, 0.85]


def grid_book(health_factors: np.ndarray):
    """Per health factor: ETH/USDC, ETH+BTC basket/USDC, ETH collateral / BTC debt."""
    rows_c, rows_d = [], []
    for hf in health_factors:
        rows_c += [[1.0, 0, 0], [0.5, 0.025, 0], [1.0, 0, 0]]
        rows_d += [[0, 0, 2400 / hf], [0, 0, 2400 / hf], [0, 2400 / hf / 60000, 0]]
    return make_book(rows_c, rows_d, LT, PRICES, is_stable=[False, False, True])


def cov_for(sd_eth: float) -> np.ndarray:
    sd = np.array([sd_eth, 0.8 * sd_eth, 0.0])
    corr = np.array([[1.0, 0.8, 0.0], [0.8, 1.0, 0.0], [0.0, 0.0, 1.0]])
    return corr * np.outer(sd, sd)


YEAR_S = 365 * 86_400


@pytest.mark.parametrize("tail_dof", [np.inf, 3.0])
@pytest.mark.parametrize("annual_vol", [0.6, 1.2])
@pytest.mark.parametrize("horizon_s", [3_600, 86_400])
def test_closed_form_matches_monte_carlo(
    horizon_s: int, annual_vol: float, tail_dof: float
) -> None:
    """Grid of health x volatility x horizon x tails, multi-asset positions, within 0.01."""
    book = grid_book(np.array([1.01, 1.03, 1.08, 1.2]))
    cov = cov_for(annual_vol * np.sqrt(horizon_s / YEAR_S))
    closed = liquidation_probability(book, cov, tail_dof=tail_dof).probability
    mc = monte_carlo_probability(book, cov, n_paths=40_000, n_steps=8, tail_dof=tail_dof, seed=3)
    assert np.max(np.abs(closed - mc.probability)) < 0.01, (closed, mc.probability)
    assert np.all(mc.standard_error < 0.0026)  # so 0.01 is ~4 standard errors


def test_weights_are_collateral_share_minus_debt_share() -> None:
    book = grid_book(np.array([1.5]))
    w = log_health_weights(book)
    np.testing.assert_allclose(w[0], [1.0, 0.0, -1.0])  # the stable debt has zero variance
    np.testing.assert_allclose(w[1], [0.5, 0.5, -1.0])
    np.testing.assert_allclose(w[2], [1.0, -1.0, 0.0])


def test_reflection_formula_and_conventions() -> None:
    b, s = np.log(1.1), 0.05
    assert first_passage_probability(b, s)[()] == pytest.approx(2 * special.ndtr(-b / s))
    # with drift mu: the textbook formula
    mu = -0.01
    want = special.ndtr((-b - mu) / s) + np.exp(-2 * mu * b / s**2) * special.ndtr((-b + mu) / s)
    assert first_passage_probability(b, s, drift=mu)[()] == pytest.approx(want)
    # "ito" = -sigma^2/2: slightly more likely than driftless
    assert first_passage_probability(b, s, drift="ito")[()] > first_passage_probability(b, s)[()]
    # fat tails: more likely far from the barrier, less likely close to it
    far, near = np.log(1.3), np.log(1.01)
    assert first_passage_probability(far, s, tail_dof=3.0) > first_passage_probability(far, s)
    assert first_passage_probability(near, s, tail_dof=3.0) < first_passage_probability(near, s)
    # the quadrature used with a drift reproduces the exact t formula at zero drift
    hfs = np.log(np.array([1.001, 1.02, 1.1, 1.3, 2.0]))
    np.testing.assert_allclose(
        first_passage_probability(hfs, s, drift=0.0, tail_dof=3.0),
        first_passage_probability(hfs, s, tail_dof=3.0),
        rtol=1e-4,
        atol=1e-9,
    )
    # liquidatable now -> 1, no debt -> 0, zero variance -> 0
    out = first_passage_probability(
        np.array([-0.1, 0.0, np.inf, 0.1]), np.array([0.05, 0.05, 0.05, 0.0])
    )
    np.testing.assert_array_equal(out, [1.0, 1.0, 0.0, 0.0])


def test_large_arrays_use_the_tabulated_t_cdf_accurately() -> None:
    b = np.linspace(1e-4, 0.5, 50_000)
    big = first_passage_probability(b, 0.03, tail_dof=2.7)
    small = np.concatenate(
        [
            first_passage_probability(b[i : i + 1000], 0.03, tail_dof=2.7)
            for i in range(0, b.size, 1000)
        ]
    )
    np.testing.assert_allclose(big, small, rtol=1e-4, atol=1e-12)


def test_position_tail_dof_takes_the_fattest_asset_that_matters() -> None:
    w = np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.98, 0.02, 0.0], [0.0, 0.0, 0.0]])
    dof = position_tail_dof(w, np.array([0.05, 0.05, 0.0]), np.array([5.0, 3.0, np.inf]))
    np.testing.assert_array_equal(dof, [5.0, 3.0, 5.0, np.inf])


def test_stable_only_position_has_zero_probability_when_healthy() -> None:
    book = make_book([[0, 0, 1000.0]], [[0, 0, 500.0]], LT, PRICES, is_stable=[False, False, True])
    lp = liquidation_probability(book, cov_for(0.05), tail_dof=3.0)
    assert lp.probability[0] == 0.0 and lp.sigma[0] == 0.0


@pytest.mark.parametrize("tail_dof", [np.inf, 4.0])
def test_oracle_steps_match_a_discretely_monitored_monte_carlo(tail_dof: float) -> None:
    """With n published prices per horizon the probability is the one of a path seen only at
    those n points (the Broadie-Glasserman-Kou barrier shift): far nearer to a Monte Carlo of
    the discretely seen path than the continuous first passage, which overstates it."""
    rng = np.random.default_rng(11)
    n, sd, paths = 6, 0.05, 200_000
    scale = np.ones(paths)
    if np.isfinite(tail_dof):  # unit-variance Student-t: one variance draw per path
        scale = np.sqrt((tail_dof - 2.0) / rng.chisquare(tail_dof, paths))
    steps = rng.standard_normal((paths, n)) * (sd / np.sqrt(n)) * scale[:, None]
    low = np.cumsum(steps, axis=1).min(axis=1)
    b = np.log(np.array([1.005, 1.01, 1.02, 1.04, 1.07, 1.1]))
    seen = (low[None, :] <= -b[:, None]).mean(axis=1)
    book = make_book(
        [[1.0, 0, 0]] * b.size,
        [[0, 0, 2400 / np.exp(x)] for x in b],
        LT,
        PRICES,
        is_stable=[False, False, True],
    )
    cov = np.diag([sd**2, 0.0, 0.0])
    stepped = liquidation_probability(book, cov, tail_dof=tail_dof, oracle_steps=n)
    continuous = liquidation_probability(book, cov, tail_dof=tail_dof)
    assert stepped.barrier_shift == pytest.approx(0.5826 / np.sqrt(n))
    assert np.all(stepped.probability < continuous.probability)
    err = np.abs(stepped.probability - seen)
    assert np.all(err <= 0.3 * np.abs(continuous.probability - seen) + 0.002), (err, seen)
    assert err.max() < 0.05
    # one published price per horizon at most: never more than one step's shift; liquidatable
    # now stays certain
    assert liquidation_probability(book, cov, oracle_steps=0.1).barrier_shift == pytest.approx(
        0.5826
    )
    under = make_book([[1.0, 0, 0]], [[0, 0, 2500.0]], LT, PRICES, is_stable=[False, False, True])
    assert liquidation_probability(under, cov, oracle_steps=n).probability[0] == 1.0


def test_interest_drift_is_the_share_weighted_rates_and_liquidates_still_positions() -> None:
    """ETH collateral earning 2%/yr against USDC debt at 80%/yr: ln HF drifts by 2% - 80% a year.
    With zero variance (a correlated pair the oracle prices together) a position a few basis
    points above 1 is certain to be liquidated by interest alone within a day, and one further
    away is not; interest never lowers a probability."""
    book = make_book(
        [[1.0, 0, 0], [1.0, 0, 0], [0.5, 0.025, 0]],
        [[0, 0, 2400 / 1.0005], [0, 0, 2400 / 1.01], [0, 0, 2400 / 1.0005]],
        LT,
        PRICES,
        is_stable=[False, False, True],
    )
    supply = np.array([0.02, 0.0, 0.0]) / YEAR_S
    borrow = np.array([0.0, 0.0, 0.80]) / YEAR_S
    drift = interest_drift(book, supply, borrow)
    np.testing.assert_allclose(drift * YEAR_S, [0.02 - 0.80, 0.02 - 0.80, 0.01 - 0.80])
    still = np.zeros((3, 3))
    day = drift * 86_400  # -0.0022: below ln 1.0005, above -ln 1.01
    p = liquidation_probability(book, still, log_drift=day).probability
    np.testing.assert_array_equal(p, [1.0, 0.0, 1.0])
    assert np.all(liquidation_probability(book, still).probability == 0.0)
    cov = cov_for(0.6 * np.sqrt(86_400 / YEAR_S))
    moving = liquidation_probability(book, cov, log_drift=day).probability
    assert np.all(moving >= liquidation_probability(book, cov).probability)
    assert np.all(
        liquidation_probability(book, cov, log_drift=-day).probability
        == pytest.approx(liquidation_probability(book, cov).probability)
    )


def test_interest_drift_bounds_a_monte_carlo_with_growing_debt() -> None:
    """Debt growing at its rate is the debt asset's price drifting up: the closed form with the
    drift taken whole at the start is an upper bound of the Monte Carlo, within 0.05 of it at the
    borrow rate of a fully used market (80%/yr; the most right at the barrier, HF 1.002)."""
    book = grid_book(np.array([1.002, 1.01, 1.03]))
    horizon = 6 * 3600
    cov = cov_for(0.3 * np.sqrt(horizon / YEAR_S))
    rate = np.array([0.0, 0.0, 0.8]) / YEAR_S
    drift = interest_drift(book, np.zeros(3), rate) * horizon
    closed = liquidation_probability(book, cov, log_drift=drift).probability
    mc = monte_carlo_probability(book, cov, n_paths=40_000, n_steps=8, log_drift=rate * horizon)
    assert np.all(closed >= mc.probability - 3 * mc.standard_error), (closed, mc.probability)
    assert np.max(closed - mc.probability) < 0.05, (closed, mc.probability)
