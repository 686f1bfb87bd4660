"""Liquidity: can the pool pay, how much does selling seized collateral move the DEX, cascades.

(a) Pool side. A lending reserve can only hand out what is not lent: available = supplied -
    borrowed, utilization = borrowed / supplied. A borrower cannot withdraw more than that, and a
    liquidator who asks for the underlying (not the aToken) cannot be paid more than that.

(b) DEX side, pure functions of pool state, vectorised over trade sizes:
    * constant product (Uniswap V2 style, fee on input): out = y·a·(1-f) / (x + a·(1-f));
    * Uniswap V3: one range of constant liquidity L is a constant-product curve on VIRTUAL
      reserves x_v = L/sqrt(P), y_v = L·sqrt(P) (P = token1 per token0, raw units,
      sqrt(P) = sqrtPriceX96 / 2^96), valid until the price leaves the range; across initialized
      ticks the liquidity changes by liquidityNet and the swap walks range by range
      (:func:`v3_swap_exact_in`).
    Price impact here is 1 - (execution price / spot price before the trade), fee included;
    ``spot impact`` is the move of the pool's spot price itself, which is what an oracle reading
    the market would publish next.

(c) Cascade. Collateral liquidated at a price drop is sold into DEX depth, which pushes the price
    further down, which makes more positions liquidatable. :func:`cascade` iterates
    drop_{k+1} = 1 - (1 - drop_0)·(1 - spot_impact(seized(drop_k))) to its fixed point (it is
    monotone, so it converges or runs to a total collapse). Seizures follow each position's first
    liquidation (close factor, bonus), liquidators seize the shocked asset and sell it all at
    once; arbitrage refilling the pool between blocks is ignored (conservative).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import numpy as np
import numpy.typing as npt

from onchain.risk.book import (
    POSITION_RULE_MIN_BASE,
    Book,
    BoolArray,
    CloseFactorRule,
    FloatArray,
)

Q96 = float(2**96)


# ---------------------------------------------------------------------------------------------
# (a) lending pool
# ---------------------------------------------------------------------------------------------


def available_liquidity(total_supplied: npt.ArrayLike, total_borrowed: npt.ArrayLike) -> FloatArray:
    """Underlying a reserve can hand out now (>= 0), asset units."""
    return np.maximum(
        np.asarray(total_supplied, dtype=np.float64) - np.asarray(total_borrowed, dtype=np.float64),
        0.0,
    )


def utilization(total_supplied: npt.ArrayLike, total_borrowed: npt.ArrayLike) -> FloatArray:
    """borrowed / supplied (0 for an empty reserve)."""
    s = np.asarray(total_supplied, dtype=np.float64)
    b = np.asarray(total_borrowed, dtype=np.float64)
    return np.divide(b, s, out=np.zeros(np.broadcast(s, b).shape), where=s > 0)


def can_withdraw(amount: npt.ArrayLike, available: npt.ArrayLike) -> BoolArray:
    """Whether ``amount`` (n, m) or (m,) of each asset could be withdrawn from the pool now."""
    return np.asarray(amount, dtype=np.float64) <= np.asarray(available, dtype=np.float64)


def can_pay_liquidator(
    seized_units: npt.ArrayLike, collateral_index: npt.ArrayLike, available: npt.ArrayLike
) -> BoolArray:
    """(n,) whether the pool holds enough underlying of each seized collateral to pay it out."""
    avail = np.asarray(available, dtype=np.float64)
    idx = np.asarray(collateral_index)
    return np.asarray(seized_units, dtype=np.float64) <= avail[np.maximum(idx, 0)]


def low_liquidity_mask(
    book: Book, available: npt.ArrayLike, util: npt.ArrayLike, max_utilization: float = 0.95
) -> BoolArray:
    """(n,) positions with collateral in a reserve that is (nearly) fully lent out, or holding
    more of it than the pool could pay: neither the borrower nor a liquidator could get it out."""
    avail = np.asarray(available, dtype=np.float64)
    tight = np.asarray(util, dtype=np.float64) >= max_utilization
    held = book.collateral > 0.0
    return np.any(held & (tight[None, :] | (book.collateral > avail[None, :])), axis=1)


# ---------------------------------------------------------------------------------------------
# (b) DEX price impact
# ---------------------------------------------------------------------------------------------


def constant_product_out(
    amount_in: npt.ArrayLike,
    reserve_in: npt.ArrayLike,
    reserve_out: npt.ArrayLike,
    fee: npt.ArrayLike = 0.003,
) -> FloatArray:
    """Output of an exact-input swap on x·y = k with the fee taken from the input."""
    a = np.asarray(amount_in, dtype=np.float64) * (1.0 - np.asarray(fee, dtype=np.float64))
    x = np.asarray(reserve_in, dtype=np.float64)
    y = np.asarray(reserve_out, dtype=np.float64)
    with np.errstate(invalid="ignore"):
        out = y * a / (x + a)
    return np.where(np.isinf(x) & np.isinf(y), a * np.ones_like(out), out)


def constant_product_price_impact(
    amount_in: npt.ArrayLike,
    reserve_in: npt.ArrayLike,
    reserve_out: npt.ArrayLike,
    fee: npt.ArrayLike = 0.003,
) -> FloatArray:
    """1 - execution price / spot: = 1 - (1 - f)·x / (x + a·(1 - f)). 0 for infinite depth."""
    a = np.asarray(amount_in, dtype=np.float64)
    x = np.asarray(reserve_in, dtype=np.float64)
    f = np.asarray(fee, dtype=np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        impact = 1.0 - (1.0 - f) * x / (x + a * (1.0 - f))
    return np.where(np.isinf(x), f * np.ones_like(impact), impact)


def constant_product_spot_impact(
    amount_in: npt.ArrayLike, reserve_in: npt.ArrayLike, fee: npt.ArrayLike = 0.003
) -> FloatArray:
    """Relative fall of the pool's spot price after selling ``amount_in``: 1 - (x / x')^2."""
    a = np.asarray(amount_in, dtype=np.float64) * (1.0 - np.asarray(fee, dtype=np.float64))
    x = np.asarray(reserve_in, dtype=np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        r = x / (x + a)
    return np.where(np.isinf(x), 0.0, 1.0 - r * r)


def sqrt_price_from_x96(sqrt_price_x96: int | float) -> float:
    """sqrt(P) as a float from the pool's slot0 sqrtPriceX96 (P = token1/token0, raw units)."""
    return float(sqrt_price_x96) / Q96


def tick_to_sqrt_price(tick: npt.ArrayLike) -> FloatArray:
    """sqrt(1.0001^tick)."""
    return np.power(1.0001, np.asarray(tick, dtype=np.float64) / 2.0)


def v3_virtual_reserves(sqrt_price_x96: int | float, liquidity: float) -> tuple[float, float]:
    """(x_v, y_v) = (L/sqrt(P), L·sqrt(P)): the constant-product reserves one V3 range acts as."""
    s = sqrt_price_from_x96(sqrt_price_x96)
    return float(liquidity) / s, float(liquidity) * s


@dataclass(frozen=True)
class SwapResult:
    amount_out: FloatArray
    amount_in_used: FloatArray  # < amount_in when the liquidity ran out (fee included)
    sqrt_price_after: FloatArray
    price_impact: FloatArray  # 1 - execution price / spot before, fee included


def v3_swap_exact_in(
    amount_in: npt.ArrayLike,
    sqrt_price_x96: int | float,
    liquidity: float,
    *,
    zero_for_one: bool,
    fee: float = 0.003,
    ticks: npt.ArrayLike | None = None,
    liquidity_net: npt.ArrayLike | None = None,
    sqrt_price_limit: float | None = None,
) -> SwapResult:
    """Exact-input swaps of many sizes against one Uniswap V3 pool state, in floats.

    Without ``ticks``: a single range of constant ``liquidity`` up to ``sqrt_price_limit``
    (default: unbounded). With ``ticks`` (initialized tick indexes) and ``liquidity_net``
    (int128 values, as ``ticks(tick).liquidityNet``): the swap crosses ranges, adding
    liquidityNet when crossing a tick upward and subtracting it downward, as the pool does.
    Amounts are raw token units; token0 in when ``zero_for_one``.
    """
    a_in = np.asarray(amount_in, dtype=np.float64)
    a_eff = a_in * (1.0 - fee)
    s0 = sqrt_price_from_x96(sqrt_price_x96)
    # segment boundaries in the swap direction and the liquidity inside each segment
    bounds: list[float] = []
    liqs: list[float] = []
    L = float(liquidity)
    if ticks is not None and liquidity_net is not None:
        t = np.asarray(ticks, dtype=np.float64)
        net = np.asarray(liquidity_net, dtype=np.float64)
        sp = tick_to_sqrt_price(t)
        if zero_for_one:
            order = np.argsort(-sp)
            for k in order:
                if sp[k] < s0:
                    bounds.append(float(sp[k]))
                    liqs.append(L)
                    L = L - float(net[k])
        else:
            order = np.argsort(sp)
            for k in order:
                if sp[k] > s0:
                    bounds.append(float(sp[k]))
                    liqs.append(L)
                    L = L + float(net[k])
    limit = sqrt_price_limit if sqrt_price_limit is not None else (0.0 if zero_for_one else np.inf)
    bounds.append(limit)
    liqs.append(L)
    b = np.asarray(bounds)
    lq = np.maximum(np.asarray(liqs), 0.0)
    starts = np.concatenate([[s0], b[:-1]])
    with np.errstate(divide="ignore", invalid="ignore"):
        if zero_for_one:
            seg_in = lq * (1.0 / b - 1.0 / starts)
            seg_out = lq * (starts - b)
        else:
            seg_in = lq * (b - starts)
            seg_out = lq * (1.0 / starts - 1.0 / b)
    seg_in = np.nan_to_num(seg_in, nan=0.0, posinf=np.inf)
    seg_out = np.nan_to_num(seg_out, nan=0.0, posinf=np.inf)
    cum_in = np.concatenate([[0.0], np.cumsum(seg_in)])
    cum_out = np.concatenate([[0.0], np.cumsum(seg_out)])
    k = np.clip(np.searchsorted(cum_in, a_eff, side="right") - 1, 0, len(b) - 1)
    rem = np.minimum(a_eff - cum_in[k], seg_in[k])
    L_k = lq[k]
    s_start = starts[k]
    with np.errstate(divide="ignore", invalid="ignore"):
        if zero_for_one:
            s_new = np.where(L_k > 0, L_k * s_start / (L_k + rem * s_start), s_start)
            out = cum_out[k] + np.where(L_k > 0, L_k * (s_start - s_new), 0.0)
        else:
            s_new = np.where(L_k > 0, s_start + rem / L_k, s_start)
            out = cum_out[k] + np.where(L_k > 0, L_k * (1.0 / s_start - 1.0 / s_new), 0.0)
    used_eff = np.minimum(a_eff, cum_in[k] + rem)
    used = used_eff / (1.0 - fee)
    spot = s0 * s0 if zero_for_one else 1.0 / (s0 * s0)
    with np.errstate(divide="ignore", invalid="ignore"):
        impact = np.where(used > 0, 1.0 - (out / used) / spot, fee)
    return SwapResult(out, used, s_new, impact)


@dataclass(frozen=True)
class DexDepth:
    """Per asset (m,): a constant-product pool selling the asset for the base/debt side.

    ``reserve_asset`` in asset units, ``reserve_quote_base`` the other side valued in the base
    currency, ``fee`` fraction. +inf reserves = no slippage (stables, or unknown and ignored).
    A V3 pool enters through its virtual reserves (:func:`v3_virtual_reserves`), valid within
    its current range.
    """

    reserve_asset: FloatArray
    reserve_quote_base: FloatArray
    fee: FloatArray

    @staticmethod
    def infinite(m: int) -> DexDepth:
        return DexDepth(np.full(m, np.inf), np.full(m, np.inf), np.zeros(m))


# ---------------------------------------------------------------------------------------------
# (c) cascades
# ---------------------------------------------------------------------------------------------


def grid_count_below(grid: FloatArray, t: FloatArray, inclusive: bool) -> npt.NDArray[np.int64]:
    """``np.searchsorted(grid, t, "right" if inclusive else "left")`` for an ascending grid,
    by index arithmetic when the grid is evenly spaced (the usual price/drop grids), corrected
    by one comparison each way so the result is exact despite rounding."""
    k = grid.shape[0]
    side: Literal["left", "right"] = "right" if inclusive else "left"
    if k < 3:
        return np.searchsorted(grid, t, side=side)
    step = (grid[-1] - grid[0]) / (k - 1)
    if not (step > 0.0 and np.allclose(np.diff(grid), step, rtol=1e-9, atol=0.0)):
        return np.searchsorted(grid, t, side=side)
    with np.errstate(invalid="ignore"):
        pos = np.floor(
            (
                np.nan_to_num(t, nan=grid[0] - 1.0, posinf=grid[-1] + 1.0, neginf=grid[0] - 1.0)
                - grid[0]
            )
            / step
        )
    idx = np.clip(pos + 1.0, 0, k).astype(np.int64)  # candidate count of grid values <= t
    below = (lambda g, x: g <= x) if inclusive else (lambda g, x: g < x)
    # one step down where grid[idx-1] is not below t, one step up where grid[idx] is
    down = (idx > 0) & ~below(grid[np.maximum(idx - 1, 0)], t)
    idx = idx - down
    up = (idx < k) & below(grid[np.minimum(idx, k - 1)], t)
    return idx + up


def _linear_interval(
    const: FloatArray, slope: FloatArray, grid: FloatArray, strict: bool
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    """Indices [a, b) of an ascending grid where const + slope·q > 0 (``strict``) or >= 0.

    Linear in q, so it holds on a prefix (slope < 0) or a suffix (slope > 0) of the grid."""
    k = grid.shape[0]
    with np.errstate(divide="ignore", invalid="ignore"):
        t = -const / slope
    n_lt = grid_count_below(grid, t, inclusive=False)  # grid values < t
    n_le = n_lt + ((n_lt < k) & (grid[np.minimum(n_lt, k - 1)] == t))  # <= t
    # slope > 0: q > t (strict) starts after the values <= t, q >= t after those < t
    a = np.where(slope > 0.0, n_le if strict else n_lt, 0)
    # slope < 0: q < t (strict) ends at the values < t, q <= t at those <= t
    b = np.where(slope < 0.0, n_lt if strict else n_le, k)
    flat_ok = (const > 0.0) if strict else (const >= 0.0)
    b = np.where((slope == 0.0) & ~flat_ok, 0, b)
    return a, np.maximum(a, b)


def _interval_sum(
    a: npt.NDArray[np.int64], b: npt.NDArray[np.int64], weights: FloatArray, k: int
) -> FloatArray:
    """For every grid index, the sum of weights of the intervals [a, b) covering it."""
    start = np.bincount(a, weights, minlength=k + 1)
    stop = np.bincount(b, weights, minlength=k + 1)
    return np.cumsum(start - stop)[:k]


def seized_units_at_prices(
    book: Book, asset_index: int, price_grid: npt.ArrayLike, price_base: npt.ArrayLike | None = None
) -> FloatArray:
    """(K,) units of ``asset_index`` seized by first liquidations when its price is each grid
    value (others held). Liquidators take this asset and repay the largest other debt, close
    factor by each position's rule and HF, bonus as the book says.

    Per position and price q: liquidatable when D(q) > W(q) (linear in q), close factor 1 where
    HF(q) <= 0.95 (linear too), units min(cf·A/q, c) = c below q = cf·A/c and cf·A/q above
    (A = repayable debt × (1 + bonus)). Each piece holds on an interval of the sorted grid, so
    the whole table is a few binary searches per position and cumulative sums: O(n log K).
    """
    p = (book.price_base if price_base is None else np.asarray(price_base, dtype=np.float64)).copy()
    q_in = np.asarray(price_grid, dtype=np.float64)
    order = np.argsort(q_in, kind="stable")
    q = q_in[order]
    kq = q.shape[0]
    i = asset_index
    cand = np.flatnonzero(
        (book.collateral[:, i] > 0.0) & (book.debt @ np.ones(book.n_assets) > 0.0)
    )
    c_lt = book.collateral_lt[cand]
    d = book.debt[cand]
    ci = book.collateral[cand, i]
    clt_i = c_lt[:, i]
    d_i = d[:, i]
    p_wo = p.copy()
    p_wo[i] = 0.0
    w_rest = c_lt @ p_wo
    d_rest = d @ p_wo
    d_max = (d * p_wo).max(axis=1) if book.n_assets else np.zeros(cand.size)
    repay_value = d_max * (1.0 + book.liquidation_bonus[cand, i])  # A
    rule = book.close_factor_rule[cand]
    # the position rule repays all of a debt worth under its threshold (the collateral side of
    # that test is not followed along the price grid: above it the 50% branch is assumed)
    full_rule = (rule == CloseFactorRule.FULL) | (
        (rule == CloseFactorRule.HALF_OF_POSITION_ABOVE_HF_0_95) & (d_max < POSITION_RULE_MIN_BASE)
    )
    # liquidatable: (d_rest - w_rest) + q (d_i - clt_i) > 0 and d_rest + q d_i > 0
    la, lb = _linear_interval(d_rest - w_rest, d_i - clt_i, q, strict=True)
    da, db = _linear_interval(d_rest, d_i, q, strict=True)
    la, lb = np.maximum(la, da), np.minimum(lb, db)
    # HF <= 0.95: 0.95 D - W >= 0
    c95, s95 = 0.95 * d_rest - w_rest, 0.95 * d_i - clt_i
    fa, fb = _linear_interval(c95, s95, q, strict=False)
    fa = np.where(full_rule, 0, fa)
    fb = np.where(full_rule, kq, fb)
    ha, hb = _linear_interval(-c95, -s95, q, strict=True)  # the complement: HF > 0.95
    hb = np.where(full_rule, 0, hb)
    const_sum = np.zeros(kq)
    coef_sum = np.zeros(kq)
    with np.errstate(divide="ignore", invalid="ignore"):
        for (ra, rb), cf in (((fa, fb), 1.0), ((ha, hb), 0.5)):
            a0, b0 = np.maximum(la, ra), np.minimum(lb, rb)
            cap = np.where(ci > 0.0, cf * repay_value / ci, np.inf)
            # q <= cap: the whole collateral; q > cap: cf·A/q
            ca, cb = _linear_interval(cap, -np.ones_like(cap), q, strict=False)
            xa, xb = np.maximum(a0, ca), np.minimum(b0, cb)
            const_sum += _interval_sum(xa, np.maximum(xa, xb), ci, kq)
            ua, ub = _linear_interval(-cap, np.ones_like(cap), q, strict=True)
            ya, yb = np.maximum(a0, ua), np.minimum(b0, ub)
            coef_sum += _interval_sum(ya, np.maximum(ya, yb), cf * repay_value, kq)
        per_q = const_sum + np.where(q > 0.0, coef_sum / q, 0.0)
    out = np.empty(kq)
    out[order] = per_q
    return out


@dataclass(frozen=True)
class CascadeResult:
    """Per initial drop (s,)."""

    initial_drop: FloatArray
    final_drop: FloatArray
    seized_units: FloatArray  # asset units sold at the fixed point
    iterations: npt.NDArray[np.int64]
    collapsed: BoolArray  # ran to (near) zero price: no fixed point above it


def cascade(
    book: Book,
    asset_index: int,
    drops: npt.ArrayLike,
    spot_impact: Callable[[FloatArray], FloatArray],
    *,
    grid_size: int = 128,
    max_iter: int = 200,
    tol: float = 1e-7,
    price_base: npt.ArrayLike | None = None,
) -> CascadeResult:
    """Fixed point of drop -> seizures -> DEX sale -> further drop, for each initial drop.

    ``spot_impact(units)`` maps units of the asset sold at once to the relative fall of the
    market price (e.g. ``lambda a: constant_product_spot_impact(a, reserve, fee)``). Seizures
    are tabulated once on a price grid (``grid_size`` points from 0 to the current price) and
    interpolated, so the iteration is cheap for any number of initial drops.
    """
    p = book.price_base if price_base is None else np.asarray(price_base, dtype=np.float64)
    p0 = float(p[asset_index])
    d0 = np.asarray(drops, dtype=np.float64)
    grid = np.linspace(0.0, 1.0, grid_size)  # drop fractions
    seized_grid = seized_units_at_prices(book, asset_index, p0 * (1.0 - grid), p)
    drop = d0.copy()
    iters = np.zeros(d0.shape, dtype=np.int64)
    active = np.ones(d0.shape, dtype=bool)
    for _ in range(max_iter):
        seized = np.interp(drop, grid, seized_grid)
        new = 1.0 - (1.0 - d0) * (1.0 - np.clip(spot_impact(seized), 0.0, 1.0))
        new = np.maximum(new, d0)
        moved = np.abs(new - drop) > tol
        iters += active & moved
        active &= moved
        drop = new
        if not active.any():
            break
    seized = np.interp(drop, grid, seized_grid)
    return CascadeResult(d0, drop, seized, iters, drop >= 1.0 - 1e-6)
