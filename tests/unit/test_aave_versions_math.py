"""Aave V3 3.1 ... 3.6 rules beside 3.0.2: the release table, each new rounding and formula on
hand-built vectors, and the cases measured on a real 3.6.0 market (AAVE-VERSIONS notes):
the 3.5 HF near 1, the 3.6 LT-0 eMode collateral, the 3.3 close factor, dust and deficit."""

from __future__ import annotations

import random
from dataclasses import replace

import pytest

from onchain.errors import InputError, UnknownProtocolVersion
from onchain.protocols.aave_v3 import math as am
from onchain.protocols.aave_v3.liquidation_price import PricedAsset, liquidation_price
from onchain.protocols.aave_v3.rules import REVISIONS, V3_0_2, V3_6, rules_for
from tests.helpers.aave_configs import USDC_CFG, WETH_CFG, make_config, reserve

E8 = 10**8
WAD = 10**18
RAY = 10**27
V3_2, V3_3, V3_4, V3_5 = REVISIONS[5], REVISIONS[7], REVISIONS[8], REVISIONS[9]


# -- the release table ------------------------------------------------------------------------


def test_each_known_revision_names_its_release_and_switches() -> None:
    assert {r: v.version for r, v in REVISIONS.items()} == {
        1: "3.0.2",
        4: "3.1",
        5: "3.2",
        6: "3.2.1",
        7: "3.3",
        8: "3.4",
        9: "3.5",
        10: "3.6",
    }
    assert not any([V3_0_2.emode_bitmaps, V3_0_2.liquidation_33, V3_0_2.directional_rounding])
    assert REVISIONS[4].virtual_balance and REVISIONS[4].stable_debt
    assert not REVISIONS[4].emode_bitmaps
    assert V3_2.emode_bitmaps and not V3_2.stable_debt and not V3_2.liquidation_33
    assert V3_3.liquidation_33 and not V3_3.no_self_liquidation
    assert V3_4.no_self_liquidation and V3_4.compounded_interest_34
    assert not V3_4.directional_rounding
    assert V3_5.directional_rounding and not V3_5.lt_zero_collateral
    assert V3_6.lt_zero_collateral and V3_6.ltvzero_bitmap


@pytest.mark.parametrize("revision", [0, 2, 3, 11, 12, 99])
def test_an_unknown_revision_is_refused_with_its_number(revision: int) -> None:
    with pytest.raises(UnknownProtocolVersion, match=f"revision {revision} at 0xabc"):
        rules_for(revision, market="0xabc")
    assert issubclass(UnknownProtocolVersion, InputError)  # exit 2 at the CLI


def test_a_version_pin_names_the_release_and_must_agree_with_the_pool() -> None:
    assert rules_for(10, "3.6.0") is V3_6
    assert rules_for(10, "3.6") is V3_6
    assert rules_for(1, "3.0.2") is V3_0_2
    assert rules_for(None, "3.3").version == "3.3"  # a fork without POOL_REVISION
    with pytest.raises(
        UnknownProtocolVersion, match=r"pins Aave V3 3\.6 .* revision 1 \(3\.0\.2\)"
    ):
        rules_for(1, "3.6")
    with pytest.raises(UnknownProtocolVersion, match=r"'3\.7'"):
        rules_for(10, "3.7")
    with pytest.raises(UnknownProtocolVersion, match="no POOL_REVISION"):
        rules_for(None)


# -- 3.5 roundings --------------------------------------------------------------------------------


def test_floor_and_ceil_variants_round_the_way_their_names_say() -> None:
    rng = random.Random(35)
    for _ in range(2_000):
        a, b = rng.getrandbits(rng.randint(1, 120)), rng.getrandbits(rng.randint(1, 100)) + 1
        exact = a * b
        assert am.ray_mul_floor(a, b) == exact // RAY
        assert am.ray_mul_ceil(a, b) == exact // RAY + (exact % RAY != 0)
        assert am.ray_div_floor(a, b) == a * RAY // b
        assert am.ray_div_ceil(a, b) == a * RAY // b + (a * RAY % b != 0)
        pct = rng.randint(1, 20_000)
        assert am.percent_mul_floor(a, pct) == a * pct // 10_000
        assert am.percent_mul_ceil(a, pct) == a * pct // 10_000 + (a * pct % 10_000 != 0)
        assert am.percent_div_ceil(a, pct) == a * 10_000 // pct + (a * 10_000 % pct != 0)
        c = rng.getrandbits(40) + 1
        assert am.mul_div_ceil(a, b, c) == exact // c + (exact % c != 0)
    with pytest.raises(OverflowError):
        am.ray_mul_ceil(2**200, 2**60)
    with pytest.raises(ZeroDivisionError):
        am.mul_div_ceil(1, 1, 0)


def test_3_4_compounded_interest_is_the_new_polynomial_and_close_to_3_0_2() -> None:
    rate = 5 * RAY // 100  # 5% APR
    for dt in (0, 1, 12, 86_400, 30 * 86_400, 365 * 86_400):
        x = rate * dt // am.SECONDS_PER_YEAR
        expected = RAY + x + am.ray_mul(x, x // 2 + am.ray_mul(x, x // 6))
        assert am.calculate_compounded_interest_3_4(rate, 0, dt) == expected
    new = am.calculate_compounded_interest_3_4(rate, 0, 365 * 86_400)
    old = am.calculate_compounded_interest(rate, 0, 365 * 86_400)
    assert abs(new - old) / old < 1e-5  # 4.9e-6 at one year (AAVE-VERSIONS 1.6)
    index = am.get_normalized_debt(RAY, rate, 0, 86_400, rules=V3_4)
    assert index == am.ray_mul(am.calculate_compounded_interest_3_4(rate, 0, 86_400), RAY)


# -- 3.5 health factor, measured case --------------------------------------------------------------

WETH83 = make_config(8_050, 8_300)
WBTC_CFG = make_config(7_300, 7_800, decimals=8)
USDC6 = replace(USDC_CFG, decimals=6)


def _weth_wbtc_usdc(weth_price: int) -> list[am.UserReserveInput]:
    """$1,000 of WETH at $3,000 (LT 83%) + $300 of WBTC (LT 78%) against 1,020 USDC."""
    weth = reserve("WETH", 0, WETH83, weth_price, supplied=WAD // 3)
    wbtc = reserve("WBTC", 1, WBTC_CFG, 60_000 * E8, supplied=500_000)  # 0.005 WBTC
    usdc = reserve("USDC", 2, USDC6, E8, borrowed=1_020 * 10**6)
    return [weth, wbtc, usdc]


def test_3_5_health_factor_sums_collateral_times_lt_before_dividing() -> None:
    price = 2_841 * E8  # inside the measured band [$2,840.9687, $2,841.2936)
    new = am.calculate_user_account_data(_weth_wbtc_usdc(price), rules=V3_6)
    old = am.calculate_user_account_data(_weth_wbtc_usdc(price), rules=V3_0_2)
    weighted = new.assets[0].collateral_base * 8_300 + new.assets[1].collateral_base * 7_800
    assert new.health_factor == am.wad_div(weighted, 1_020 * E8) // 10_000
    assert new.health_factor >= WAD > old.health_factor  # Pool safe; 3.0.2 rules liquidate
    assert new.current_liquidation_threshold == old.current_liquidation_threshold  # truncated avg
    # the band where the verdicts differ, as measured on the 3.6 market
    parts = [
        PricedAsset(a.collateral_amount_raw, a.debt_amount_raw, a.liquidation_threshold_used, u, p)
        for a, u, p in zip(
            new.assets, (10**18, 10**8, 10**6), (price, 60_000 * E8, E8), strict=True
        )
    ]
    flip_36 = liquidation_price(parts, 0, V3_6)
    flip_302 = liquidation_price(parts, 0, V3_0_2)
    assert (flip_36, flip_302) == (2_840_963_855_43, 2_841_288_666_09)
    # ~$0.32 where the rules disagree (measured band on the 3.6 market: $2,840.9687-$2,841.2936
    # for its own amounts)
    for p in (flip_36 + 1, (flip_36 + flip_302) // 2, flip_302):
        assert am.calculate_user_account_data(_weth_wbtc_usdc(p), rules=V3_6).health_factor >= WAD
        assert am.calculate_user_account_data(_weth_wbtc_usdc(p), rules=V3_0_2).health_factor < WAD
    assert am.calculate_user_account_data(_weth_wbtc_usdc(flip_36), rules=V3_6).health_factor < WAD
    assert (
        am.calculate_user_account_data(_weth_wbtc_usdc(flip_302 + 1), rules=V3_0_2).health_factor
        >= WAD
    )


def test_3_5_collateral_rounds_down_and_debt_rounds_up() -> None:
    income, debt_index = 17 * RAY // 10, RAY + 987_654_321
    weth = reserve("WETH", 0, WETH_CFG, 3_000 * E8, supplied=10**18 + 1, income=income)
    usdc = reserve("USDC", 1, USDC6, 99_999_999, borrowed=1_000_000_003, debt_index=debt_index)
    new = am.calculate_user_account_data([weth, usdc], rules=V3_5)
    old = am.calculate_user_account_data([weth, usdc], rules=V3_0_2)
    assert new.assets[0].collateral_amount_raw == (10**18 + 1) * income // RAY
    debt = -(-1_000_000_003 * debt_index // RAY)
    assert new.assets[1].debt_amount_raw == debt
    assert new.total_debt_base == -(-debt * 99_999_999 // 10**6)
    assert old.total_debt_base == am.ray_mul(1_000_000_003, debt_index) * 99_999_999 // 10**6
    # the debt rounds up one raw unit (1,000.000004 vs 1,000.000003 USDC), the base value up too
    assert (debt, old.assets[1].debt_amount_raw) == (1_000_000_004, 1_000_000_003)
    assert (new.total_debt_base, old.total_debt_base) == (99_999_999_400, 99_999_999_299)
    assert new.assets[0].collateral_amount_raw < old.assets[0].collateral_amount_raw
    assert new.available_borrows_base == am.percent_mul_floor(
        new.total_collateral_base, new.ltv
    ) - (new.total_debt_base)


# -- 3.2 / 3.6 eMode ---------------------------------------------------------------------------------

DAI_CFG = replace(make_config(0, 0), liquidation_bonus=0)  # LT 0 outside eMode
STABLES = am.EModeCategory(
    id=1,
    ltv=9_300,
    liquidation_threshold=9_500,
    liquidation_bonus=10_100,
    collateral_bitmap=0b011,  # DAI (0) and USDC (1)
    borrowable_bitmap=0b011,
)


def _dai_user() -> list[am.UserReserveInput]:
    dai = reserve("DAI", 0, DAI_CFG, E8, supplied=1_000 * WAD)
    usdc = reserve("USDC", 1, USDC6, E8, borrowed=900 * 10**6)
    return [dai, usdc]


def test_3_6_lt_zero_reserve_counts_as_collateral_inside_its_emode() -> None:
    data = am.calculate_user_account_data(_dai_user(), 1, STABLES, rules=V3_6)
    assert data.total_collateral_base == 1_000 * E8
    assert data.health_factor == am.wad_div(1_000 * E8 * 9_500, 900 * E8) // 10_000
    assert round(data.health_factor / WAD, 4) == 1.0556  # the Pool's answer on the 3.6 market
    assert data.ltv == 9_300 and data.available_borrows_base == 30 * E8
    # 3.5 skipped an LT-0 reserve even inside the eMode: nothing counts, HF 0
    before = am.calculate_user_account_data(_dai_user(), 1, STABLES, rules=V3_5)
    assert (before.total_collateral_base, before.health_factor) == (0, 0)
    # outside the eMode, 3.6 counts it with LT 0: collateral without weight
    plain = am.calculate_user_account_data(_dai_user(), rules=V3_6)
    assert plain.total_collateral_base == 1_000 * E8 and plain.health_factor == 0
    assert plain.has_zero_ltv_collateral


def test_3_2_emode_membership_is_the_bitmap_not_the_reserve_bits() -> None:
    # the reserve's deprecated eMode bits say category 1, the bitmap says no: bitmap wins
    stale = reserve("WETH", 2, make_config(8_000, 8_250, emode=1), 2_000 * E8, supplied=WAD)
    usdc = reserve("USDC", 1, USDC6, E8, borrowed=1_000 * 10**6)
    data = am.calculate_user_account_data([stale, usdc], 1, STABLES, rules=V3_2)
    assert data.assets[1].liquidation_threshold_used == 8_250 and not data.assets[1].in_emode
    assert data.current_liquidation_threshold == 8_250
    # in the bitmap while the reserve bits say nothing: eMode applies
    both = replace(STABLES, collateral_bitmap=0b111)
    data = am.calculate_user_account_data([stale, usdc], 1, both, rules=V3_2)
    assert data.current_liquidation_threshold == 9_500 and data.ltv == 9_300
    # 3.0.2 follows the reserve bits
    data = am.calculate_user_account_data([stale, usdc], 1, STABLES, rules=V3_0_2)
    assert data.current_liquidation_threshold == 9_500


def test_3_6_ltv_comes_from_get_user_reserve_ltv() -> None:
    frozen_ltv = reserve("DAI", 0, make_config(0, 7_000), E8, supplied=1_000 * WAD)
    usdc = reserve("USDC", 1, USDC6, E8, borrowed=100 * 10**6)
    # reserve LTV 0 but in the category: 3.6 uses the category LTV, 3.5 keeps 0
    assert am.calculate_user_account_data([frozen_ltv, usdc], 1, STABLES, rules=V3_6).ltv == 9_300
    assert am.calculate_user_account_data([frozen_ltv, usdc], 1, STABLES, rules=V3_5).ltv == 0
    zeroed = replace(STABLES, ltvzero_bitmap=0b001)
    data = am.calculate_user_account_data([frozen_ltv, usdc], 1, zeroed, rules=V3_6)
    assert data.ltv == 0 and data.has_zero_ltv_collateral
    assert data.current_liquidation_threshold == 9_500  # the eMode LT still applies
    assert am.get_user_reserve_ltv(7_000, zeroed, 0, 0) == 7_000  # no eMode: the reserve's


def test_3_2_liquidation_bonus_follows_the_bitmap() -> None:
    cfg = make_config(8_000, 8_250, emode=0, bonus=10_500)
    args = (1, STABLES, cfg, "0xC", "0xD")
    assert am.liquidation_configuration(*args, collateral_reserve_id=1, rules=V3_2)[2] == 10_100
    assert am.liquidation_configuration(*args, collateral_reserve_id=2, rules=V3_2)[2] == 10_500
    assert am.liquidation_configuration(*args, collateral_reserve_id=1, rules=V3_0_2)[2] == 10_500


# -- 3.3 liquidation ------------------------------------------------------------------------------


def _side(amount: int, price: int, decimals: int) -> am.LiquidationSide:
    return am.LiquidationSide(amount, price, decimals)


def _liquidate(
    rules: am.AaveRules,
    weth: int,
    weth_price: int,
    debts: dict[str, int],
    *,
    debt_to_cover: int = am.UINT256_MAX,
) -> am.LiquidationOutcome:
    """One WETH collateral (LT 83%, bonus 5%, fee 10%) against USDC (the debt repaid) and other
    6-decimal stablecoins at $1, through calculateUserAccountData then the liquidation."""
    inputs = [
        reserve(
            "WETH", 0, replace(WETH_CFG, liquidation_protocol_fee=1_000), weth_price, supplied=weth
        )
    ]
    for i, (symbol, amount) in enumerate(debts.items(), start=1):
        inputs.append(reserve(symbol, i, USDC6, E8, borrowed=amount))
    data = am.calculate_user_account_data(inputs, rules=rules)
    return am.execute_liquidation_call(
        health_factor=data.health_factor,
        total_collateral_base=data.total_collateral_base,
        total_debt_base=data.total_debt_base,
        collateral=_side(data.assets[0].collateral_amount_raw, weth_price, 18),
        debt=_side(data.assets[1].debt_amount_raw, E8, 6),
        liquidation_bonus=10_500,
        liquidation_protocol_fee=1_000,
        debt_to_cover=debt_to_cover,
        debt_asset="USDC",
        other_debts={a.asset: a.debt_amount_raw for a in data.assets[2:]},
        rules=rules,
    )


def test_3_3_small_reserves_repay_the_whole_reserve_debt() -> None:
    # measured: 1 WETH at $3,094 vs 1,300 USDC + 1,300 DAI, HF 0.9877: the Pool repaid all USDC
    debts = {"USDC": 1_300 * 10**6, "DAI": 1_300 * 10**6}
    new = _liquidate(V3_6, WAD, 3_094 * E8, debts)
    assert new.debt_repaid == 1_300 * 10**6 and new.max_liquidatable_debt == 1_300 * 10**6
    assert new.deficit == {}
    old = _liquidate(V3_0_2, WAD, 3_094 * E8, debts)
    assert old.debt_repaid == 650 * 10**6  # 3.0.2's 50% of the reserve
    # 3.0.2's amount on a 3.6 Pool: leftover $650 of USDC debt -> MustNotLeaveDust
    with pytest.raises(am.LiquidationReverted, match="MustNotLeaveDust"):
        _liquidate(V3_6, WAD, 3_094 * E8, debts, debt_to_cover=650 * 10**6)


def test_3_3_large_reserves_above_hf_0_95_cap_at_half_the_position() -> None:
    # $10,000 of WETH vs 8,400 USDC + 100 DAI: HF 0.976, both reserves >= $2,000
    out = _liquidate(V3_6, 10 * WAD // 3, 3_000 * E8, {"USDC": 8_400 * 10**6, "DAI": 100 * 10**6})
    assert out.max_liquidatable_debt == 4_250 * 10**6  # 50% of the $8,500 position
    assert out.debt_repaid == 4_250 * 10**6
    # below HF 0.95 the whole reserve debt may go
    out = _liquidate(V3_6, 10 * WAD // 3, 2_700 * E8, {"USDC": 8_400 * 10**6, "DAI": 100 * 10**6})
    assert out.max_liquidatable_debt == 8_400 * 10**6


def test_3_3_a_cap_that_leaves_dust_reverts_and_a_smaller_amount_passes() -> None:
    # $5,000 WETH vs 2,100 USDC + 2,000 DAI at HF ~0.99: cap = 50% of $4,100 = 2,050 USDC,
    # leaving $50 of USDC debt
    debts = {"USDC": 2_100 * 10**6, "DAI": 2_000 * 10**6}
    weth, price = 5 * WAD // 3, 2_940 * E8
    with pytest.raises(am.LiquidationReverted, match="MustNotLeaveDust"):
        _liquidate(V3_6, weth, price, debts)
    ok = _liquidate(V3_6, weth, price, debts, debt_to_cover=1_100 * 10**6)  # leaves $1,000
    assert ok.debt_repaid == 1_100 * 10**6
    with pytest.raises(am.LiquidationReverted, match="MustNotLeaveDust"):
        _liquidate(V3_6, weth, price, debts, debt_to_cover=1_100 * 10**6 + 1)


def test_3_3_seizing_all_collateral_burns_the_rest_into_the_deficit() -> None:
    # $1,000 of WETH vs 1,100 USDC + 50 DAI: HF 0.72, whole USDC debt needs more than all WETH
    debts = {"USDC": 1_100 * 10**6, "DAI": 50 * 10**6}
    out = _liquidate(V3_6, WAD // 3, 3_000 * E8, debts)
    assert out.collateral_to_liquidator + out.protocol_fee == WAD // 3
    needed = am.percent_div_ceil(1_000 * 10**6 * WAD // 3 * 3 // WAD, 10_500)
    assert out.debt_repaid == am.percent_div_ceil(
        3_000 * E8 * (WAD // 3) * 10**6 // (E8 * WAD), 10_500
    )
    assert abs(out.debt_repaid - needed) <= 1
    assert out.deficit == {"USDC": 1_100 * 10**6 - out.debt_repaid, "DAI": 50 * 10**6}
    # 3.0.2: half the reserve, no deficit
    old = _liquidate(V3_0_2, WAD // 3, 3_000 * E8, debts)
    assert old.deficit == {} and old.debt_repaid < 1_100 * 10**6
