"""Stress: hand-computed small books under a shock, the curve, and the historical table."""

from __future__ import annotations

import numpy as np
import pytest

from onchain.risk.book import make_book
from onchain.risk.stress import (
    HISTORICAL_MOVES,
    apply_shock,
    historical_scenarios,
    liquidation_curve,
    run_scenarios,
    scenario_prices,
    shock_grid,
)

SYMBOLS = ("WETH", "WBTC", "USDC")
PRICES = np.array([3000.0, 60000.0, 1.0])


def small_book():
    """A: 1 WETH / 2,000 USDC (HF 1.2); B: 0.1 WBTC / 4,000 USDC (HF 1.125); C: 2,000 USDC /
    0.5 WETH (short ETH, HF 1.133); D: 1 WETH / 2,900 USDC (HF 0.83, liquidatable now)."""
    c = [[1.0, 0, 0], [0, 0.1, 0], [0, 0, 2000.0], [1.0, 0, 0]]
    d = [[0, 0, 2000.0], [0, 0, 4000.0], [0.5, 0, 0], [0, 0, 2900.0]]
    return make_book(
        c,
        d,
        [0.8, 0.75, 0.85],
        PRICES,
        is_stable=[False, False, True],
        liquidation_bonus=0.05,
        symbols=SYMBOLS,
    )


def test_apply_shock_hand_computed() -> None:
    book = small_book()
    prices = scenario_prices(book, {"ETH": 0.25, "BTC": 0.20})
    np.testing.assert_allclose(prices, [2250.0, 48000.0, 1.0])
    res = apply_shock(book, prices)
    assert res.liquidatable.tolist() == [True, True, False, True]
    assert res.n_liquidatable == 3
    # A: HF 0.9 -> 100%: repay 2,000, seize 2,100 of WETH; B: repay 4,000, seize 4,200 of WBTC;
    # D: collateral-capped: seize all 2,250 of WETH for 2,250/1.05 of debt
    assert res.debt_repaid_base == pytest.approx(2000 + 4000 + 2250 / 1.05)
    assert res.collateral_seized_base == pytest.approx(2100 + 4200 + 2250)
    np.testing.assert_allclose(
        res.collateral_seized_units_by_asset, [2100 / 2250 + 1.0, 4200 / 48000, 0.0]
    )
    np.testing.assert_allclose(
        res.debt_repaid_units_by_asset, [0.0, 0.0, 2000 + 4000 + 2250 / 1.05]
    )
    np.testing.assert_allclose(res.bad_debt_base, [0, 0, 0, 650.0])
    np.testing.assert_allclose(res.bad_debt_by_asset_base, [0, 0, 650.0])
    assert res.total_bad_debt_base == pytest.approx(650.0)
    assert res.collateral_at_risk_base == pytest.approx(2250 + 4800 + 2250)
    assert res.debt_at_risk_base == pytest.approx(2000 + 4000 + 2900)


def test_liquidation_curve_agrees_with_apply_shock() -> None:
    book = small_book()
    drops = shock_grid(0.5, 0.05)
    curve = liquidation_curve(book, drops)
    for k, dr in enumerate(drops):
        res = apply_shock(book, PRICES * np.where(book.is_stable, 1.0, 1.0 - dr))
        assert curve.n_liquidatable[k] == res.n_liquidatable
        assert curve.collateral_at_risk_base[k] == pytest.approx(res.collateral_at_risk_base)
        assert curve.debt_at_risk_base[k] == pytest.approx(res.debt_at_risk_base)
        assert curve.bad_debt_base[k] == pytest.approx(res.total_bad_debt_base)
    # thresholds by hand: B (11.1%) then A (16.7%); C never; D always
    assert curve.n_liquidatable[[0, 2, 3, 4]].tolist() == [1, 1, 2, 3]
    # at unshocked prices the collateral at risk only grows with the drop
    assert np.all(np.diff(curve.collateral_at_risk_base / (1 - drops)) >= -1e-6)


def test_historical_scenarios_come_from_the_table_with_sources() -> None:
    day = {s.date: s for s in historical_scenarios("24h")}
    hour = {s.date: s for s in historical_scenarios("1h")}
    assert day["2020-03-12"].drops["ETH"] == pytest.approx(0.536)
    assert day["2020-03-12"].drops["LINK"] == pytest.approx(0.459)
    assert hour["2021-05-19"].drops == {"ETH": 0.28, "BTC": 0.16}
    assert day["2023-03-10"].drops["USDC/USD"] == pytest.approx(0.12)  # depeg: 24 h only
    assert "USDC/USD" not in hour["2023-03-10"].drops
    assert day["2022-06-13"].drops["stETH/ETH"] == pytest.approx(0.068)
    assert set(day) >= {"2020-03-12", "2021-05-19", "2022-11-08", "2024-08-05", "2025-10-10"}
    eth_rows = [
        m for m in HISTORICAL_MOVES if m.asset == "ETH" and m.kind == "computed_from_hourly_ohlc"
    ]
    assert all("computed from Binance hourly ETHUSDT" in m.source for m in eth_rows)
    assert all("shared/data/prices/eth_usdt_1h.csv" in m.source for m in eth_rows)
    assert all(m.source for m in HISTORICAL_MOVES)
    with pytest.raises(ValueError):
        historical_scenarios("2h")


def test_scenario_prices_aliases_lst_discount_and_unmapped_assets() -> None:
    book = make_book(
        np.zeros((1, 5)),
        np.zeros((1, 5)),
        0.8,
        [3000.0, 3500.0, 100.0, 1.0, 1.0],
        is_stable=[False, False, False, True, True],
        symbols=("WETH", "wstETH", "AAVE", "USDC", "DAI"),
    )
    drops = {"ETH": 0.2, "BTC": 0.3, "stETH/ETH": 0.05, "USDC/USD": 0.1}
    got = scenario_prices(book, drops)
    np.testing.assert_allclose(got, [2400.0, 3500 * 0.8 * 0.95, 70.0, 0.9, 1.0])
    held = scenario_prices(book, drops, unmapped_volatile="hold")
    assert held[2] == 100.0
    results = run_scenarios(small_book(), historical_scenarios("24h"))
    black_thursday = next(r for s, r in results if s.date == "2020-03-12")
    assert black_thursday.n_liquidatable == 3  # A, B, D; C (short ETH) gains


def test_liquidation_curve_matches_brute_force_on_a_random_book() -> None:
    rng = np.random.default_rng(11)
    n = 400
    c = rng.uniform(0, 2, (n, 3)) * (rng.random((n, 3)) < 0.6) * [1.0, 0.05, 3000.0]
    d = rng.uniform(0, 1, (n, 3)) * (rng.random((n, 3)) < 0.5) * [1.0, 0.05, 3000.0]
    book = make_book(c, d, [0.8, 0.75, 0.85], PRICES, is_stable=[False, False, True])
    drops = rng.permutation(np.linspace(0.0, 0.95, 40))
    curve = liquidation_curve(book, drops)
    for k, dr in enumerate(drops):
        prices = PRICES * np.where(book.is_stable, 1.0, 1.0 - dr)
        w, dv, cv = book.collateral_lt @ prices, book.debt @ prices, book.collateral @ prices
        liq = (dv > 0) & (w < dv)
        assert curve.n_liquidatable[k] == liq.sum()
        assert curve.collateral_at_risk_base[k] == pytest.approx(cv[liq].sum())
        np.testing.assert_allclose(
            curve.collateral_at_risk_by_asset_base[k],
            (book.collateral[liq] * prices).sum(axis=0),
            atol=1e-9,
        )
        assert curve.debt_at_risk_base[k] == pytest.approx(dv[liq].sum())
        assert curve.bad_debt_base[k] == pytest.approx(np.maximum(dv - cv, 0).sum(), abs=1e-9)
