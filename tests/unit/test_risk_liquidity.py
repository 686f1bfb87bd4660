"""Liquidity: pool availability, DEX price impact in closed form vs direct simulation, cascades."""

from __future__ import annotations

import numpy as np
import pytest

from onchain.risk.book import make_book
from onchain.risk.liquidity import (
    Q96,
    available_liquidity,
    can_pay_liquidator,
    can_withdraw,
    cascade,
    constant_product_out,
    constant_product_price_impact,
    constant_product_spot_impact,
    low_liquidity_mask,
    seized_units_at_prices,
    tick_to_sqrt_price,
    utilization,
    v3_swap_exact_in,
    v3_virtual_reserves,
)

X, Y = 1_000.0, 3_000_000.0  # 1,000 ETH against 3M USDC


def test_constant_product_matches_direct_simulation() -> None:
    """Integrate the marginal price y/x along the curve in many small steps (fee kept out of
    the pool, as V3 does): the closed form is the limit."""
    for amount, fee in ((50.0, 0.003), (400.0, 0.0005), (1e-3, 0.003)):
        steps = 20_000
        x, y = X, Y
        got = 0.0
        da = amount * (1 - fee) / steps
        for _ in range(steps):
            # midpoint marginal price over the step, then move along x*y = k exactly
            xm = x + da / 2
            got += da * (x * y / xm**2)
            y = x * y / (x + da)
            x += da
        closed = float(constant_product_out(amount, X, Y, fee))
        assert got == pytest.approx(closed, rel=1e-8)
        impact = float(constant_product_price_impact(amount, X, Y, fee))
        assert impact == pytest.approx(1 - closed / (amount * Y / X), rel=1e-12)
        assert float(constant_product_spot_impact(amount, X, fee)) == pytest.approx(
            1 - (y / x) / (Y / X), rel=1e-5, abs=1e-11
        )


def test_constant_product_matches_uniswap_v2_integer_formula() -> None:
    rin, rout, a = 1_234 * 10**18, 3_700_000 * 10**6, 17 * 10**18
    with_fee = a * 997
    v2 = with_fee * rout // (rin * 1000 + with_fee)  # UniswapV2Library.getAmountOut
    assert abs(float(constant_product_out(a, rin, rout, 0.003)) - v2) < 1.0  # integer truncation
    # infinite depth: no slippage beyond the fee
    assert float(constant_product_price_impact(10.0, np.inf, np.inf, 0.003)) == pytest.approx(0.003)


def test_v3_single_range_is_constant_product_on_virtual_reserves() -> None:
    price = 3000.0 * 1e6 / 1e18  # USDC(6) per WETH(18), raw units: token0 = WETH
    sqrt_x96 = int(np.sqrt(price) * Q96)
    liquidity = 5e15
    xv, yv = v3_virtual_reserves(sqrt_x96, liquidity)
    amounts = np.array([1e17, 1e18, 5e19, 3e20])
    res = v3_swap_exact_in(amounts, sqrt_x96, liquidity, zero_for_one=True, fee=0.0005)
    np.testing.assert_allclose(
        res.amount_out, constant_product_out(amounts, xv, yv, 0.0005), rtol=1e-10
    )
    np.testing.assert_allclose(res.amount_in_used, amounts)
    assert np.all(np.diff(res.price_impact) > 0)
    # other direction
    back = v3_swap_exact_in(np.array([1e9]), sqrt_x96, liquidity, zero_for_one=False, fee=0.0005)
    assert back.amount_out[0] == pytest.approx(
        float(constant_product_out(1e9, yv, xv, 0.0005)), rel=1e-10
    )


def test_v3_tick_crossing_walks_range_by_range() -> None:
    s0 = 1.0  # price 1, tick 0
    sqrt_x96 = int(s0 * Q96)
    lower_tick = -200  # liquidity drops by half below this tick, to zero below -400
    ticks = np.array([lower_tick, -400])
    net = np.array([5e17, 5e17])  # crossing down subtracts liquidityNet
    L0 = 1e18
    s1 = float(tick_to_sqrt_price(lower_tick))
    s2 = float(tick_to_sqrt_price(-400))
    in1 = L0 * (1 / s1 - 1 / s0)
    out1 = L0 * (s0 - s1)
    in2 = 5e17 * (1 / s2 - 1 / s1)
    out2 = 5e17 * (s1 - s2)
    a_mid = in1 + 0.5 * in2
    s_mid = 5e17 * s1 / (5e17 + 0.5 * in2 * s1)
    want_mid = out1 + 5e17 * (s1 - s_mid)
    res = v3_swap_exact_in(
        np.array([0.5 * in1, a_mid, 10 * (in1 + in2)]),
        sqrt_x96,
        L0,
        zero_for_one=True,
        fee=0.0,
        ticks=ticks,
        liquidity_net=net,
    )
    assert res.amount_out[0] == pytest.approx(
        L0 * (s0 - L0 * s0 / (L0 + 0.5 * in1 * s0)), rel=1e-12
    )
    assert res.amount_out[1] == pytest.approx(want_mid, rel=1e-12)
    # beyond the last initialized tick there is no liquidity: a partial fill
    assert res.amount_out[2] == pytest.approx(out1 + out2, rel=1e-12)
    assert res.amount_in_used[2] == pytest.approx(in1 + in2, rel=1e-12)


def test_pool_side_liquidity() -> None:
    supplied = np.array([100.0, 1_000_000.0])
    borrowed = np.array([96.0, 200_000.0])
    avail = available_liquidity(supplied, borrowed)
    util = utilization(supplied, borrowed)
    np.testing.assert_allclose(avail, [4.0, 800_000.0])
    np.testing.assert_allclose(util, [0.96, 0.2])
    assert can_withdraw(np.array([3.0, 900_000.0]), avail).tolist() == [True, False]
    assert can_pay_liquidator(np.array([5.0, 10.0]), np.array([0, 1]), avail).tolist() == [
        False,
        True,
    ]
    book = make_book([[1.0, 0.0], [0.0, 10.0]], [[0, 0.5], [0, 1.0]], [0.8, 0.8], [3000.0, 1.0])
    assert low_liquidity_mask(book, avail, util).tolist() == [True, False]


def test_cascade_fixed_point() -> None:
    # 10 identical positions: 1 ETH collateral (LT 0.8), 2,160 USDC debt: HF 1.0 at 2,700
    n = 10
    book = make_book(
        np.tile([1.0, 0.0], (n, 1)),
        np.tile([0.0, 2160.0], (n, 1)),
        [0.8, 0.8],
        [3000.0, 1.0],
        is_stable=[False, True],
        liquidation_bonus=0.05,
    )
    # at a price below 2,700 each is liquidatable; 50% close factor: seize 1080*1.05/q ETH each
    q = 2600.0
    want = n * min(0.5 * 2160 * 1.05 / q, 1.0)
    assert seized_units_at_prices(book, 0, np.array([q]))[0] == pytest.approx(want)
    reserve = 200.0  # a shallow ETH pool: selling ~4.4 ETH moves the spot ~4%

    def impact(units: np.ndarray) -> np.ndarray:
        return constant_product_spot_impact(units, reserve, 0.0)

    res = cascade(book, 0, np.array([0.05, 0.12, 0.5]), impact, grid_size=2001)
    # 5% (2,850) liquidates nobody: no cascade
    assert res.final_drop[0] == pytest.approx(0.05)
    assert res.iterations[0] == 0
    # 12% (2,640) liquidates all; the sale pushes the price further, to a fixed point
    d = res.final_drop[1]
    assert d > 0.12
    seized = seized_units_at_prices(book, 0, np.array([3000.0 * (1 - d)]))[0]
    assert 1 - (1 - 0.12) * (1 - float(impact(np.array([seized]))[0])) == pytest.approx(d, abs=2e-3)
    assert not res.collapsed.any()
    assert np.all(res.final_drop >= res.initial_drop)


def _seized_brute_force(book, i: int, grid: np.ndarray) -> np.ndarray:
    """Position by position, price by price: the definition the interval algorithm must meet."""
    out = []
    for q in grid:
        p = book.price_base.copy()
        p[i] = q
        total = 0.0
        for r in range(book.n_positions):
            c, d = book.collateral[r], book.debt[r]
            if c[i] <= 0 or d.sum() <= 0:
                continue
            w, dv = (book.collateral_lt[r] * p).sum(), (d * p).sum()
            if not (dv > 0 and w < dv):
                continue
            full = book.close_factor_rule[r] == 1 or w / dv <= 0.95
            others = d * p
            others[i] = 0.0
            a = (1.0 if full else 0.5) * others.max() * (1 + book.liquidation_bonus[r, i])
            total += min(a / q, c[i]) if q > 0 else c[i]
        out.append(total)
    return np.array(out)


def test_seized_units_table_matches_brute_force() -> None:
    rng = np.random.default_rng(4)
    n = 300
    c = rng.uniform(0, 2, (n, 3)) * (rng.random((n, 3)) < 0.7) * [1.0, 0.05, 2000.0]
    d = rng.uniform(0, 1, (n, 3)) * (rng.random((n, 3)) < 0.6) * [0.3, 0.02, 3000.0]
    book = make_book(
        c,
        d,
        [0.8, 0.75, 0.85],
        [3000.0, 60000.0, 1.0],
        is_stable=[False, False, True],
        liquidation_bonus=rng.uniform(0.02, 0.1, (n, 3)),
        close_factor_rule=rng.integers(0, 2, n),
    )
    grid = rng.permutation(np.linspace(0.0, 4000.0, 41))
    np.testing.assert_allclose(
        seized_units_at_prices(book, 0, grid), _seized_brute_force(book, 0, grid), rtol=1e-9
    )
