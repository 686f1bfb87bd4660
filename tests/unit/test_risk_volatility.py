"""Volatility models and price loaders: EWMA is the RiskMetrics recursion, GARCH-t MLE recovers
known parameters, the drawdown law is Gaussian-free only when the data are."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from onchain.app.risk_io import (
    DEFAULT_START_TS,
    align_closes,
    load_long_price_csv,
    load_ohlc_csv,
    shared_data_dir,
)
from onchain.risk import volatility as vol


def simulate_garch_t(n: int, params: vol.GarchParams, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    nu = params.nu
    z = rng.standard_t(nu, size=n) / np.sqrt(nu / (nu - 2.0))
    r = np.empty(n)
    s2 = params.long_run_variance
    for t in range(n):
        r[t] = np.sqrt(s2) * z[t]
        s2 = params.omega + params.alpha * r[t] ** 2 + params.beta * s2
    return r


def test_ewma_is_the_riskmetrics_recursion() -> None:
    r = np.random.default_rng(1).normal(0, 0.01, 500)
    got = vol.ewma_variance(r, 0.94, init=1e-4)
    s2 = 1e-4
    for t in range(len(r)):
        assert got[t] == pytest.approx(s2)
        s2 = 0.94 * s2 + 0.06 * r[t] ** 2
    assert got[-1] == pytest.approx(s2)
    cov = vol.ewma_covariance(np.column_stack([r, 2 * r]), 0.94)
    assert cov[1, 1] == pytest.approx(4 * cov[0, 0]) and cov[0, 1] == pytest.approx(2 * cov[0, 0])


def test_garch_t_mle_recovers_parameters() -> None:
    true = vol.GarchParams(omega=1e-4 * (1 - 0.97), alpha=0.07, beta=0.90, nu=4.0)
    r = simulate_garch_t(20_000, true, seed=2)
    fit = vol.fit_garch_t(r)
    assert fit.alpha == pytest.approx(true.alpha, abs=0.02)
    assert fit.beta == pytest.approx(true.beta, abs=0.03)
    assert fit.nu == pytest.approx(true.nu, abs=0.8)
    # the variance path is the recursion with the fitted parameters
    path = vol.garch_variance(r[:50], fit, init=1e-4)
    assert path[1] == pytest.approx(fit.omega + fit.alpha * r[0] ** 2 + fit.beta * 1e-4)


def test_horizon_variance_is_the_sum_of_expected_variances() -> None:
    p = vol.GarchParams(omega=1e-6, alpha=0.05, beta=0.94, nu=5.0)
    s2 = 3 * p.long_run_variance
    want = 0.0
    e = s2
    for _ in range(24):
        want += e
        e = p.omega + (p.alpha + p.beta) * e
    assert vol.garch_horizon_variance(s2, p, 24) == pytest.approx(want)
    assert vol.garch_horizon_variance(s2, p, 0.25) == pytest.approx(0.25 * s2)


def test_drawdown_law_is_gaussian_for_brownian_paths_and_fat_for_jumpy_ones() -> None:
    rng = np.random.default_rng(5)
    steps, fine = 4, 64  # "candles" of 64 fine steps: the low is a near-continuous minimum
    n = 6000
    inc = rng.normal(0, 1 / np.sqrt(fine), size=(n, steps * fine))
    paths = np.cumsum(inc, axis=1)
    y = -np.minimum(paths.min(axis=1), 0.0) / np.sqrt(steps)
    scale, dof = vol.fit_drawdown_law(y)
    # ~0.93: 64 steps per candle still miss a little of the continuous minimum
    assert scale == pytest.approx(1.0, abs=0.1)
    assert dof > 8
    jumpy = inc * np.where(rng.random((n, 1)) < 0.1, 3.0, 0.8)  # a variance mixture
    yj = -np.minimum(np.cumsum(jumpy, axis=1).min(axis=1), 0.0) / np.sqrt(steps)
    assert vol.fit_drawdown_law(yj)[1] < 4


def test_model_with_assets_reindexes_and_holds_unknown_assets() -> None:
    model = vol.VolatilityModel(
        assets=("ETH", "BTC"),
        step_s=3600.0,
        sigma2_next=np.array([1e-4, 4e-5]),
        correlation=np.array([[1.0, 0.8], [0.8, 1.0]]),
        tail_steps=(1.0, 24.0),
        tail_scale=np.array([[1.2, 1.1], [1.5, 1.4]]),
        tail_dof=np.array([[3.0, 2.8], [4.0, 3.5]]),
    )
    book_order = model.with_assets(["USDC", "btc", "eth"])
    cov = book_order.horizon_covariance(7200.0)
    assert cov[0].tolist() == [0.0, 0.0, 0.0]
    assert cov[2, 2] == pytest.approx(2e-4) and cov[1, 2] == pytest.approx(
        0.8 * np.sqrt(2e-4 * 8e-5)
    )
    np.testing.assert_allclose(book_order.horizon_tail_dof(3600.0), [np.inf, 2.8, 3.0])
    np.testing.assert_allclose(book_order.horizon_tail_dof(60.0), [np.inf, 2.8, 3.0])  # clamped
    np.testing.assert_allclose(book_order.horizon_tail_scale(24 * 3600.0), [1.0, 1.4, 1.5])
    eff = book_order.effective_covariance(3600.0)
    assert eff[2, 2] == pytest.approx(1e-4 * 1.2**2)


def test_fit_volatility_model_on_real_prices() -> None:
    prices = shared_data_dir() / "prices"
    eth = load_ohlc_csv(prices / "eth_usdt_1h.csv").between(1_640_995_200, 1_704_067_200)
    btc = load_ohlc_csv(prices / "btc_usdt_1h.csv").between(1_640_995_200, 1_704_067_200)
    ts, close = align_closes([(eth.timestamp_s, eth.close), (btc.timestamp_s, btc.close)])
    _, low = align_closes([(eth.timestamp_s, eth.low), (btc.timestamp_s, btc.low)])
    model = vol.fit_volatility_model(close, ts, ["ETH", "BTC"], low=low)
    assert model.garch is not None and all(0.9 < p.persistence < 1.0 for p in model.garch)
    assert 0.6 < model.correlation[0, 1] < 0.95
    assert np.all(model.tail_scale > 1.0)  # hourly lows go deeper than close-to-close vol says
    assert np.all(model.tail_dof < 6.0)  # and the tails are fat
    hourly = np.sqrt(model.horizon_variance(3600.0))
    assert np.all((hourly > 0.001) & (hourly < 0.05))


def test_ohlc_loader_skips_pre_2018_and_the_btc_bad_tick() -> None:
    prices = shared_data_dir() / "prices"
    btc = load_ohlc_csv(prices / "btc_usdt_1h.csv")
    assert btc.timestamp_s[0] >= DEFAULT_START_TS
    assert np.all(np.diff(btc.timestamp_s) > 0)
    raw = load_ohlc_csv(prices / "btc_usdt_1h.csv", start_ts=None)
    assert raw.open[0] == pytest.approx(16199.91)  # the documented bad first tick is only there


def test_long_price_csv(tmp_path: Path) -> None:
    f = tmp_path / "p.csv"
    f.write_text(
        "timestamp,asset,price\n20,ETH,2.0\n10,ETH,1.0\n10,BTC,5.0\n20,BTC,6.0\n30,BTC,7.0\n"
    )
    data = load_long_price_csv(f)
    assert data["ETH"][0].tolist() == [10, 20] and data["ETH"][1].tolist() == [1.0, 2.0]
    ts, px = align_closes([data["ETH"], data["BTC"]])
    assert ts.tolist() == [10, 20] and px.tolist() == [[1.0, 5.0], [2.0, 6.0]]
    bad = tmp_path / "bad.csv"
    bad.write_text("time,asset,price\n")
    with pytest.raises(ValueError, match="missing columns"):
        load_long_price_csv(bad)


def test_hourly_closes_are_the_price_in_force_at_each_hour() -> None:
    """Prices published at irregular times (oracle rounds) become the hourly closes the model
    is validated on: the last value at or before each hour, on a grid ending at the block."""
    from onchain.risk.reactive import hourly_closes

    times = [1000, 1500, 4700, 4700 + 3 * 3600, 20_000]
    values = [10.0, 11.0, 12.0, 13.0, 14.0]
    grid, closes = hourly_closes(times[::-1], values[::-1], 19_000)
    np.testing.assert_array_equal(grid, [1000, 4600, 8200, 11_800, 15_400, 19_000])
    np.testing.assert_array_equal(closes, [10.0, 11.0, 12.0, 12.0, 12.0, 13.0])  # 20_000: later
    grid, closes = hourly_closes(times, values, 19_000, max_steps=2)
    np.testing.assert_array_equal(grid, [11_800, 15_400, 19_000])
    assert hourly_closes([], [], 19_000)[0].size == 0
    assert hourly_closes([20_000], [1.0], 19_000)[0].size == 0


def test_reactive_forecast_keeps_a_share_of_the_months_variance_after_a_calm_stretch() -> None:
    """A volatile month then two flat days: the fast, slow and trend EWMAs have decayed, and 5%
    of the forecast variance is the lookback's mean squared return (a crash can start from a
    calm week); without that share the forecast is the decayed estimates alone."""
    from onchain.risk.reactive import DEFAULT_MONTH_WEIGHT, reactive_volatility

    rng = np.random.default_rng(3)
    moves = np.concatenate([rng.normal(0.0, 0.02, (672, 2)), np.zeros((48, 2))])
    close = 2000.0 * np.exp(np.cumsum(np.vstack([np.zeros((1, 2)), moves]), axis=0))
    ts = 3600 * np.arange(close.shape[0])
    now = reactive_volatility(close, ts, ["ETH", "BTC"]).sigma2_next
    decayed = reactive_volatility(close, ts, ["ETH", "BTC"], month_weight=0.0).sigma2_next
    month = np.mean(moves * moves, axis=0)
    assert DEFAULT_MONTH_WEIGHT == 0.05
    np.testing.assert_allclose(now, 0.95 * decayed + 0.05 * month, rtol=1e-12)
    assert np.all(now > 1.15 * decayed)  # a fifth of the forecast after two flat days
