"""The liquidator's plan: close factor, seizure with bonus, fees, DEX slippage, gas, ranking."""

from __future__ import annotations

import numpy as np
import pytest

from onchain.protocols.aave_v3 import math as aave
from onchain.risk.book import CloseFactorRule, make_book
from onchain.risk.liquidator import close_factor, gas_cost_base, plan_liquidations
from onchain.risk.liquidity import DexDepth

PRICES = np.array([3000.0, 60000.0, 1.0])  # WETH, WBTC, USDC
LT = [0.8, 0.75, 0.85]


def test_close_factor_rules() -> None:
    rules = np.array([0, 0, 0, 1], dtype=np.int8)
    hf = np.array([0.99, 0.95, 0.5, 0.99])
    np.testing.assert_array_equal(close_factor(rules, hf), [0.5, 1.0, 1.0, 1.0])


def test_hand_computed_plan_half_close_factor() -> None:
    # 1 WETH (2,400 at LT) vs 2,500 USDC: HF 0.96 -> 50% of the USDC debt
    book = make_book([[1.0, 0, 0]], [[0, 0, 2500.0]], LT, PRICES, liquidation_bonus=0.05)
    plan = plan_liquidations(book, gas_base=10.0)
    assert plan.eligible[0] and plan.close_factor[0] == 0.5
    assert plan.collateral_index[0] == 0 and plan.debt_index[0] == 2
    assert plan.debt_repaid_base[0] == pytest.approx(1250.0)
    assert plan.debt_repaid_units[0] == pytest.approx(1250.0)
    assert plan.collateral_seized_base[0] == pytest.approx(1312.5)
    assert plan.collateral_seized_units[0] == pytest.approx(1312.5 / 3000)
    assert plan.bonus_base[0] == pytest.approx(62.5)
    assert plan.net_profit_base[0] == pytest.approx(52.5)


def test_plan_matches_aave_integer_math_when_collateral_caps_the_repay() -> None:
    # HF 0.8 -> 100% close factor, but the collateral (with bonus) covers less than the debt
    coll_weth, debt_usdc, bonus, fee = 0.5, 1500.0, 0.05, 0.10
    book = make_book(
        [[coll_weth, 0, 0]],
        [[0, 0, debt_usdc]],
        LT,
        PRICES,
        liquidation_bonus=bonus,
        protocol_fee=[fee, 0, 0],
    )
    plan = plan_liquidations(book)
    assert plan.close_factor[0] == 1.0
    seized_raw, debt_raw, fee_raw = aave.calculate_available_collateral_to_liquidate(
        collateral_price=3000 * 10**8,
        debt_asset_price=1 * 10**8,
        collateral_decimals=18,
        debt_asset_decimals=6,
        liquidation_bonus=10_500,
        debt_to_cover=int(debt_usdc * 10**6),
        user_collateral_balance=int(coll_weth * 10**18),
        liquidation_protocol_fee=1_000,
    )
    assert plan.debt_repaid_units[0] == pytest.approx(debt_raw / 1e6, rel=1e-9)
    assert plan.collateral_seized_units[0] == pytest.approx(seized_raw / 1e18, rel=1e-9)
    assert plan.protocol_fee_base[0] == pytest.approx(fee_raw / 1e18 * 3000, rel=1e-6)


def test_best_pair_and_full_rule() -> None:
    # two collaterals: WBTC pays a bigger bonus; two debts: the larger (USDC value) is repaid
    book = make_book(
        [[1.0, 0.05, 0], [1.0, 0.0, 0.0]],
        [[0.2, 0, 4200.0], [0, 0, 2900.0]],
        LT,
        PRICES,
        liquidation_bonus=[0.05, 0.08, 0.04],
        close_factor_rule=[CloseFactorRule.HALF_ABOVE_HF_0_95, CloseFactorRule.FULL],
    )
    plan = plan_liquidations(book)
    assert plan.debt_index.tolist() == [2, 2]
    # HF 4,650 / 4,800 = 0.97: half of the 4,200 USDC; WBTC (8%) beats WETH (5%)
    assert plan.collateral_index[0] == 1
    assert plan.debt_repaid_base[0] == pytest.approx(2100.0)
    assert plan.bonus_base[0] == pytest.approx(2100.0 * 0.08)
    assert plan.close_factor[1] == 1.0
    # FULL: repay limited only by the collateral: 3,000 / 1.05
    assert plan.debt_repaid_base[1] == pytest.approx(3000.0 / 1.05)
    assert plan.ranking(profitable_only=False).tolist() == [0, 1]  # 168 > 142.9


def test_slippage_and_optimal_size() -> None:
    book = make_book([[10.0, 0, 0]], [[0, 0, 40_000.0]], LT, PRICES, liquidation_bonus=0.05)
    dex = DexDepth(
        np.array([50.0, np.inf, np.inf]),
        np.array([150_000.0, np.inf, np.inf]),
        np.array([0.003, 0, 0]),
    )
    plan = plan_liquidations(book, dex=dex, gas_base=5.0)
    a = plan.collateral_seized_units[0]
    assert 0 < a < 0.5 * 40_000 * 1.05 / 3000  # shallower than the close factor allows

    def profit(units: float) -> float:
        proceeds = 150_000 * units * 0.997 / (50 + units * 0.997)
        return proceeds - units * 3000 / 1.05 - 5.0

    grid = np.linspace(0.01, 7.0, 2000)
    assert plan.net_profit_base[0] == pytest.approx(profit(a), rel=1e-9)
    assert plan.net_profit_base[0] >= max(profit(u) for u in grid) - 1e-6
    assert plan.slippage_base[0] > 0
    full = plan_liquidations(book, dex=dex, gas_base=5.0, optimize_size=False)
    assert full.net_profit_base[0] < plan.net_profit_base[0]


def test_not_eligible_and_gas() -> None:
    book = make_book([[1.0, 0, 0], [1.0, 0, 0]], [[0, 0, 1000.0], [0, 0, 0]], LT, PRICES)
    plan = plan_liquidations(book)
    assert not plan.eligible.any()
    assert plan.collateral_index.tolist() == [-1, -1]
    assert plan.ranking().size == 0
    assert gas_cost_base(300_000, 20e9, 3000.0) == pytest.approx(18.0)


POSITION_RULE = CloseFactorRule.HALF_OF_POSITION_ABOVE_HF_0_95
PRICES4 = np.array([3000.0, 60000.0, 1.0, 1.0])  # WETH, WBTC, USDC, DAI
LT4 = [0.83, 0.78, 0.78, 0.0]


def _plan4(collateral: list[float], debt: list[float], rule: int) -> object:
    book = make_book([collateral], [debt], LT4, PRICES4, close_factor_rule=rule)
    return plan_liquidations(book)


def test_position_rule_repays_small_debts_whole() -> None:
    # $1,550 of WETH vs 1,300 USDC + 100 DAI: HF 0.92; under $2,000 -> all the USDC debt
    plan = _plan4([1550 / 3000, 0, 0, 0], [0, 0, 1300.0, 100.0], POSITION_RULE)
    assert plan.debt_repaid_base[0] == pytest.approx(1300.0) and plan.close_factor[0] == 1.0
    old = _plan4([1550 / 3000, 0, 0, 0], [0, 0, 1300.0, 100.0], CloseFactorRule.HALF_ABOVE_HF_0_95)
    assert old.debt_repaid_base[0] == pytest.approx(1300.0)  # HF < 0.95: both rules whole
    # $1,650 of WETH at HF 0.978 > 0.95: 3.0.2's half vs the position rule's whole
    plan = _plan4([1650 / 3000, 0, 0, 0], [0, 0, 1300.0, 100.0], POSITION_RULE)
    old = _plan4([1650 / 3000, 0, 0, 0], [0, 0, 1300.0, 100.0], CloseFactorRule.HALF_ABOVE_HF_0_95)
    assert (plan.debt_repaid_base[0], old.debt_repaid_base[0]) == pytest.approx((1300.0, 650.0))


def test_position_rule_caps_large_positions_at_half_the_total_debt() -> None:
    # $10,000 of WETH vs 8,400 USDC + 100 DAI: HF 0.976 -> 50% of $8,500
    plan = _plan4([10_000 / 3000, 0, 0, 0], [0, 0, 8400.0, 100.0], POSITION_RULE)
    assert plan.debt_repaid_base[0] == pytest.approx(4250.0)
    assert plan.close_factor[0] == pytest.approx(4250.0 / 8400.0)


def test_position_rule_leaves_no_dust() -> None:
    # $4,900 of WETH vs 2,100 USDC + 2,000 DAI: HF 0.99; the cap (2,050) would leave $50 of
    # USDC debt: the call shrinks to leave $1,000
    plan = _plan4([4900 / 3000, 0, 0, 0], [0, 0, 2100.0, 2000.0], POSITION_RULE)
    assert plan.debt_repaid_base[0] == pytest.approx(1100.0)
