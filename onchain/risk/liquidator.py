"""The liquidator's view: for each liquidatable (or pending) position, the best call and its profit.

One liquidation call repays debt of one asset j and seizes collateral of one asset i:

* close factor (per position, :class:`~onchain.risk.book.CloseFactorRule`):
  ``HALF_ABOVE_HF_0_95`` repays at most 50% of the debt asset's balance when HF > 0.95, else
  100% (Aave 3.0.x, per reserve); ``FULL`` repays up to all of it (Morpho-like markets);
  ``HALF_OF_POSITION_ABOVE_HF_0_95`` repays up to all of it, but at most 50% of the position's
  total debt when HF > 0.95 and both the collateral and the debt asset are worth at least 2,000
  base units, and a call that clears neither leaves at least 1,000 of both (Aave 3.3+);
* collateral seized = repaid value × (1 + bonus_i) / p_i, capped by the collateral held (then
  the repaid debt shrinks to match); the protocol keeps ``protocol_fee_i`` of the bonus part;
* the repay asset: the largest debt (value) is always best, since every payoff grows with the
  amount repaid; the collateral: the one with the highest net profit.

Market costs: selling the seized collateral for the debt side on a DEX (constant-product depth
per asset, :class:`~onchain.risk.liquidity.DexDepth`) and gas (``gas_units × gas price ×
native price``). With depth, the liquidator may do better repaying LESS than the maximum:
profit(a) = y·a·phi/(x + a·phi) - a·p/(1 + b') - gas over seized units a has its maximum at
a* = (sqrt(x·y·phi·(1 + b')/p) - x)/phi (b' = bonus net of the protocol fee, phi = 1 - fee),
which we use, clipped to what the close factor allows. All values are in the base currency.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from onchain.risk.book import (
    POSITION_RULE_MIN_BASE,
    POSITION_RULE_MIN_LEFTOVER_BASE,
    Book,
    BoolArray,
    CloseFactorRule,
    FloatArray,
    IntArray,
)
from onchain.risk.health import health_factor
from onchain.risk.liquidity import DexDepth

CLOSE_FACTOR_HF_THRESHOLD = 0.95


def close_factor(rule: npt.ArrayLike, health: npt.ArrayLike) -> FloatArray:
    """Fraction of a debt asset's balance one call may repay, per position, before the
    position-wide limits of ``HALF_OF_POSITION_ABOVE_HF_0_95`` (see :func:`max_repay_base`)."""
    r = np.asarray(rule)
    hf = np.asarray(health, dtype=np.float64)
    half = (r == CloseFactorRule.HALF_ABOVE_HF_0_95) & (hf > CLOSE_FACTOR_HF_THRESHOLD)
    return np.where(half, 0.5, 1.0)


def max_repay_base(
    rule: npt.ArrayLike,
    health: npt.ArrayLike,
    debt_base: npt.ArrayLike,
    collateral_base: npt.ArrayLike,
    total_debt_base: npt.ArrayLike,
) -> FloatArray:
    """Most debt value one call may repay against each collateral (n, m), for a debt asset
    worth ``debt_base`` (n,) in a position owing ``total_debt_base`` (n,) in all."""
    r = np.asarray(rule)[:, None]
    hf = np.asarray(health, dtype=np.float64)[:, None]
    d = np.asarray(debt_base, dtype=np.float64)[:, None]
    c = np.asarray(collateral_base, dtype=np.float64)
    total = np.asarray(total_debt_base, dtype=np.float64)[:, None]
    cf = close_factor(rule, health)[:, None]
    out = np.broadcast_to(cf * d, c.shape).copy()
    position = r == CloseFactorRule.HALF_OF_POSITION_ABOVE_HF_0_95
    large = (c >= POSITION_RULE_MIN_BASE) & (d >= POSITION_RULE_MIN_BASE) & (hf > 0.95)
    half_total = np.minimum(d, 0.5 * total)
    return np.where(position & large, half_total, out)


@dataclass(frozen=True)
class LiquidationPlan:
    """Per position (n,); zeros where not eligible. Units: ``*_units`` asset units, else base."""

    eligible: BoolArray
    collateral_index: IntArray  # -1 where not eligible
    debt_index: IntArray
    close_factor: FloatArray
    debt_repaid_units: FloatArray
    debt_repaid_base: FloatArray
    collateral_seized_units: FloatArray  # to the liquidator (protocol fee excluded)
    collateral_seized_base: FloatArray
    protocol_fee_base: FloatArray
    bonus_base: FloatArray  # seized value - repaid value (liquidator's share)
    slippage_base: FloatArray
    gas_base: FloatArray
    net_profit_base: FloatArray

    def ranking(self, profitable_only: bool = True) -> IntArray:
        """Eligible positions, best net profit first."""
        ok = self.eligible & ((self.net_profit_base > 0.0) if profitable_only else True)
        idx = np.flatnonzero(ok)
        return idx[np.argsort(-self.net_profit_base[idx], kind="stable")]


def gas_cost_base(
    gas_units: npt.ArrayLike, gas_price_wei: npt.ArrayLike, native_price_base: float
) -> FloatArray:
    """gas units × (base fee + tip) in wei × 1e-18 × native token price in base currency."""
    return (
        np.asarray(gas_units, dtype=np.float64)
        * np.asarray(gas_price_wei, dtype=np.float64)
        * 1e-18
        * native_price_base
    )


def plan_liquidations(
    book: Book,
    price_base: npt.ArrayLike | None = None,
    *,
    health: npt.ArrayLike | None = None,
    eligible: npt.ArrayLike | None = None,
    dex: DexDepth | None = None,
    gas_base: npt.ArrayLike = 0.0,
    optimize_size: bool = True,
) -> LiquidationPlan:
    """Best single liquidation call of every eligible position (default: HF < 1 at ``price_base``).

    Pass ``eligible`` (e.g. liquidatable | one-update-away) and the pending prices to plan
    for positions one oracle update away. ``gas_base``: scalar or (n,) cost of the call.
    """
    p = book.price_base if price_base is None else np.asarray(price_base, dtype=np.float64)
    n = book.n_positions
    hf = health_factor(book, p) if health is None else np.asarray(health, dtype=np.float64)
    elig = (hf < 1.0) if eligible is None else np.asarray(eligible, dtype=bool)
    cf = close_factor(book.close_factor_rule, hf)
    debt_val = book.debt * p
    j = np.argmax(debt_val, axis=1)
    d_max = np.take_along_axis(debt_val, j[:, None], axis=1)[:, 0]
    bonus = book.liquidation_bonus
    net_bonus = bonus * (1.0 - book.protocol_fee[None, :])
    coll_val = book.collateral * p
    r_max = max_repay_base(book.close_factor_rule, hf, d_max, coll_val, debt_val.sum(axis=1))
    # repay limited by the collateral: seized gross value = R (1 + b) <= collateral value
    coll_repay = coll_val / (1.0 + bonus)
    r = np.minimum(r_max, coll_repay)
    # the position rule's dust test: a call clearing neither side leaves enough of both
    dusty = (
        (book.close_factor_rule == CloseFactorRule.HALF_OF_POSITION_ABOVE_HF_0_95)[:, None]
        & (r < d_max[:, None])
        & (r < coll_repay)
    )
    leftover = POSITION_RULE_MIN_LEFTOVER_BASE
    shrunk = np.minimum(
        r, np.minimum(d_max[:, None] - leftover, (coll_val - leftover) / (1.0 + bonus))
    )
    r = np.where(dusty, np.maximum(shrunk, 0.0), r)
    cf_pair = np.divide(r_max, d_max[:, None], out=np.ones_like(r_max), where=d_max[:, None] > 0)
    seized_val = r * (1.0 + net_bonus)  # to the liquidator
    if dex is None:
        profit = r * net_bonus
        slip = np.zeros_like(r)
    else:
        x = dex.reserve_asset[None, :]
        y = dex.reserve_quote_base[None, :]
        phi = 1.0 - dex.fee[None, :]
        finite = np.isfinite(x) & np.isfinite(y)
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            a_max = seized_val / p
            if optimize_size:
                a_opt = (np.sqrt(x * y * phi * (1.0 + net_bonus) / p) - x) / phi
                a = np.where(finite, np.clip(a_opt, 0.0, a_max), a_max)
            else:
                a = a_max
            a = np.nan_to_num(a, nan=0.0)
            proceeds = np.where(finite, y * a * phi / (x + a * phi), a * p)
            r = np.where(finite, a * p / (1.0 + net_bonus), r)
            seized_val = a * p
            slip = np.nan_to_num(seized_val - proceeds, nan=0.0)
            profit = proceeds - r
    profit = np.where((coll_val > 0.0) & np.isfinite(profit), profit, -np.inf)
    i = np.argmax(profit, axis=1)
    rows = np.arange(n)
    gas = np.broadcast_to(np.asarray(gas_base, dtype=np.float64), (n,))
    has_pair = (d_max > 0.0) & np.isfinite(profit[rows, i])
    elig = elig & has_pair
    zero = np.zeros(n)
    r_i = np.where(elig, r[rows, i], 0.0)
    seized_i = np.where(elig, seized_val[rows, i], 0.0)
    p_i = p[i]
    p_j = p[j]
    fee_base = np.where(elig, r_i * bonus[rows, i] * book.protocol_fee[i], 0.0)
    slip_i = np.where(elig, slip[rows, i], 0.0)
    net = np.where(elig, profit[rows, i] - gas, 0.0)
    return LiquidationPlan(
        eligible=elig,
        collateral_index=np.where(elig, i, -1),
        debt_index=np.where(elig, j, -1),
        close_factor=np.where(elig, cf_pair[rows, i], cf),
        debt_repaid_units=np.divide(r_i, p_j, out=zero.copy(), where=p_j > 0),
        debt_repaid_base=r_i,
        collateral_seized_units=np.divide(seized_i, p_i, out=zero.copy(), where=p_i > 0),
        collateral_seized_base=seized_i,
        protocol_fee_base=fee_base,
        bonus_base=seized_i - r_i,
        slippage_base=slip_i,
        gas_base=np.where(elig, gas, 0.0),
        net_profit_base=net,
    )
