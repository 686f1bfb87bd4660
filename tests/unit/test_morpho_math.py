"""The Python mirror of Morpho Blue's math on hand-checked cases and invariants (no chain), and
the ABI file the adapter decodes with, checked against our compile of the real sources."""

from __future__ import annotations

import json
import random
from fractions import Fraction
from pathlib import Path

from onchain.protocols.morpho_blue import math as m

WAD = m.WAD
ABI_DIR = Path(__file__).resolve().parents[2] / "onchain" / "contracts_abi" / "morpho_blue"


def test_shares_math_rounds_like_the_contract() -> None:
    # an empty market: 1 asset is worth 1e6 shares (virtual shares 1e6, virtual assets 1)
    assert m.to_shares_down(1, 0, 0) == 10**6
    assert m.to_assets_up(1, 0, 0) == 1  # ceil(1 * 1 / 1e6)
    assert m.to_assets_down(1, 0, 0) == 0
    rng = random.Random(1)
    for _ in range(2000):
        ta, ts = rng.randrange(1, 10**30), rng.randrange(1, 10**36)
        x = rng.randrange(0, 10**30)
        assert m.to_assets_down(x, ta, ts) <= m.to_assets_up(x, ta, ts)
        assert m.to_assets_up(x, ta, ts) - m.to_assets_down(x, ta, ts) <= 1
        exact = Fraction(x * (ta + 1), ts + 10**6)
        assert m.to_assets_up(x, ta, ts) == -((-exact.numerator) // exact.denominator)


def test_taylor_compounding_and_interest_with_fee() -> None:
    rate = 10 * WAD // 100 // (365 * 86400)  # 10% APR per second, as an IRM returns it
    year = m.w_taylor_compounded(rate, 365 * 86400)
    assert 105 * WAD // 1000 < year < 106 * WAD // 1000  # e^0.1 - 1 = 0.10517...
    market = m.Market(1_000 * 10**6, 1_000 * 10**12, 800 * 10**6, 800 * 10**12, 1_000, WAD // 10)
    acc = m.accrue_interest(market, rate, 1_000 + 30 * 86400)
    assert acc.interest == m.w_mul_down(800 * 10**6, m.w_taylor_compounded(rate, 30 * 86400))
    assert acc.market.total_borrow_assets == 800 * 10**6 + acc.interest
    assert acc.market.total_supply_assets == 1_000 * 10**6 + acc.interest
    fee = m.w_mul_down(acc.interest, WAD // 10)
    assert acc.fee_shares == m.to_shares_down(
        fee, acc.market.total_supply_assets - fee, 1_000 * 10**12
    )
    assert acc.market.total_supply_shares == 1_000 * 10**12 + acc.fee_shares
    assert acc.market.last_update == 1_000 + 30 * 86400
    # no IRM: only the timestamp moves; same block: nothing at all
    assert m.accrue_interest(market, None, 5_000).market.total_borrow_assets == 800 * 10**6
    assert m.accrue_interest(market, rate, 1_000).market == market


def test_liquidation_incentive_factor_for_the_enabled_lltvs() -> None:
    for lltv in (77 * 10**16, 86 * 10**16, 915 * 10**15, 945 * 10**15, 98 * 10**16):
        exact = 1 / (1 - Fraction(3, 10) * (1 - Fraction(lltv, WAD)))
        got = m.liquidation_incentive_factor(lltv)
        assert abs(Fraction(got, WAD) - exact) < Fraction(2, WAD)
    assert m.liquidation_incentive_factor(86 * 10**16) == 1043841336116910229
    assert m.liquidation_incentive_factor(0) == m.MAX_LIQUIDATION_INCENTIVE_FACTOR  # capped


def test_health_factor_below_one_exactly_when_unhealthy() -> None:
    rng = random.Random(2)
    market = m.Market(10**15, 10**21, 9 * 10**14, 9 * 10**20 + 12345, 0, 0)
    for _ in range(3000):
        collateral = rng.randrange(1, 10**22)
        shares = rng.randrange(1, 10**21)
        price = rng.randrange(1, 10**40)
        lltv = rng.choice((77, 86, 91, 94)) * 10**16
        healthy = m.is_healthy(collateral, shares, market, price, lltv)
        hf = m.health_factor(collateral, shares, market, price, lltv)
        assert hf is not None and (hf < WAD) == (not healthy)
    assert m.health_factor(10**18, 0, market, 10**36, 86 * 10**16) is None
    assert m.is_healthy(0, 0, market, 0, 86 * 10**16)


def test_liquidation_price_is_the_last_unhealthy_price() -> None:
    rng = random.Random(3)
    market = m.Market(10**15, 10**21, 9 * 10**14, 9 * 10**20, 0, 0)
    for _ in range(3000):
        collateral = rng.randrange(1, 10**22)
        shares = rng.randrange(1, 10**21)
        lltv = rng.choice((385, 625, 770, 860, 915, 945, 965, 980)) * 10**15
        borrowed = m.borrowed_assets(shares, market)
        flip = m.liquidation_price(collateral, borrowed, lltv)
        assert flip is not None
        assert not m.is_healthy(collateral, shares, market, flip, lltv)
        assert m.is_healthy(collateral, shares, market, flip + 1, lltv)
    assert m.liquidation_price(10**18, 0, 86 * 10**16) is None  # no debt: never
    assert m.liquidation_price(0, 5, 86 * 10**16) is None  # no collateral: always


def test_full_liquidation_bad_debt() -> None:
    market = m.Market(10**12, 10**18, 8 * 10**11, 8 * 10**17, 0, 0)
    lltv = 86 * 10**16
    shares = 10**15  # about 1,000 USDC of debt
    borrowed = m.borrowed_assets(shares, market)
    # 0.5 WETH at 1,500 USDC: 750 USDC of collateral for 1,000 of debt -> bad debt
    price = 1_500 * 10**6 * 10**36 // 10**18
    full = m.full_liquidation(5 * 10**17, shares, market, price, lltv)
    assert full.seized_assets == 5 * 10**17
    assert 0 < full.bad_debt_assets < borrowed
    assert full.repaid_shares + full.bad_debt_shares == shares
    # worth far more than the debt: repaying everything leaves collateral and no bad debt
    rich = m.full_liquidation(10 * 10**18, shares, market, price, lltv)
    assert rich.repaid_shares == shares and rich.bad_debt_assets == 0
    assert rich.seized_assets < 10 * 10**18
    # no collateral: the whole debt is bad
    assert m.full_liquidation(0, shares, market, price, lltv).bad_debt_assets == borrowed


def test_market_id_is_keccak_of_the_params() -> None:
    # MarketParamsLib.id on a known tuple: stable across runs, 32 bytes, lower-case hex
    mid = m.market_id(
        "0xA0b86991c6218b36c1d19D4a2e9Eb0cE3606eB48",
        "0xC02aaA39b223FE8D0A0e5C4F27eAD9083C756Cc2",
        "0x0000000000000000000000000000000000000001",
        "0x870aC11D48B15DB9a138Cf899d20F13F79Ba00BC",
        86 * 10**16,
    )
    assert len(mid) == 66 and mid == mid.lower()


def test_abi_file_holds_the_compiled_functions_and_the_library_events() -> None:
    """solc 0.8.19 leaves EventsLib's events out of Morpho's ABI: our file must carry them, and
    every function of the real compile, unchanged."""
    from onchain.devnet.morpho import compile_morpho

    compiled = compile_morpho()
    ours = json.loads((ABI_DIR / "Morpho.json").read_text())
    for entry in compiled["Morpho"].abi:
        assert entry in ours
    events = {e["name"] for e in ours if e["type"] == "event"}
    library = {e["name"] for e in compiled["EventsLib"].abi if e["type"] == "event"}
    assert library <= events
    assert {"CreateMarket", "Borrow", "SupplyCollateral", "Liquidate"} <= events
    oracle = json.loads((ABI_DIR / "IOracle.json").read_text())
    assert oracle == compiled["IOracle"].abi
