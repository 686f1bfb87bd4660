"""How far prices may move before a position becomes liquidatable: closed forms, all positions.

Write W = sum c·p·LT and D = sum d·p, so a position is liquidatable when W - D < 0 (and D > 0).
Moving one price p_i to x changes W - D by a_i·(x - p_i) with the NET exposure
a_i = c_i·LT_i - d_i, which is why one formula covers collateral assets, debt assets, and assets
that are both (a loop: WETH collateral with WETH debt).

:func:`liquidation_price` — per position and asset, others held: x* = p_i - (W - D) / a_i.
  ``side`` says which way the price must move: -1 (falls: net collateral, a_i > 0), +1 (rises:
  net debt, a_i < 0), 0 (no root: no exposure, no debt, or x* <= 0, e.g. the other collateral
  alone covers the debt). ``price_base`` is NaN exactly where ``side`` is 0. For a position
  already liquidatable the root is still reported: it is the price that would make it healthy.
  At x* the float HF is exactly 1, which is NOT liquidatable (the rule is HF < 1); one oracle unit
  beyond it is. :func:`exact_flip_price` finds that unit with the protocol's integer math.

:func:`uniform_shock` — all volatile assets (``~is_stable`` unless a mask is given; stables
  held) scaled by one factor r, collateral AND debt sides alike (a price is a price): the root is
  r* = (D_s - W_s) / (W_v - D_v). ``drop_fraction`` is the smallest fractional drop that
  liquidates (1 - r*), ``rise_fraction`` the smallest rise (r* - 1); both 0 when liquidatable
  now, +inf when no move that way does (no debt, net short volatile for a drop, debt fully
  covered by stable collateral...).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from onchain.risk.book import Book, BoolArray, FloatArray

UINT256_MAX = 2**256 - 1


@dataclass(frozen=True)
class LiquidationPrices:
    """Per (position, asset), other prices held."""

    price_base: FloatArray  # (n, m), NaN where side == 0
    side: npt.NDArray[np.int8]  # (n, m): -1 liquidates when falling to price, +1 when rising

    def move(self, current_price_base: npt.ArrayLike) -> FloatArray:
        """(n, m) signed fractional move to the liquidation price, x*/p - 1 (NaN: no root)."""
        with np.errstate(divide="ignore", invalid="ignore"):
            return self.price_base / np.asarray(current_price_base, dtype=np.float64) - 1.0


@dataclass(frozen=True)
class UniformShock:
    """The uniform move of all volatile prices (stables held) that makes HF reach 1."""

    drop_fraction: FloatArray  # (n,) in [0, 1] or +inf
    rise_fraction: FloatArray  # (n,) >= 0 or +inf
    multiplier: FloatArray  # (n,) r*, NaN when no positive root


def _gap(book: Book, p: FloatArray) -> tuple[FloatArray, FloatArray]:
    w = book.collateral_lt @ p
    d = book.debt @ p
    return w - d, d


def liquidation_price(book: Book, price_base: npt.ArrayLike | None = None) -> LiquidationPrices:
    """The price of each asset at which each position reaches HF = 1, the others held."""
    p = book.price_base if price_base is None else np.asarray(price_base, dtype=np.float64)
    gap, debt_value = _gap(book, p)
    a = book.collateral_lt - book.debt
    with np.errstate(divide="ignore", invalid="ignore"):
        x = p - gap[:, None] / a
    ok = (a != 0.0) & (x > 0.0) & (debt_value > 0.0)[:, None] & np.isfinite(x)
    side = np.where(ok, np.where(a > 0.0, -1, 1), 0).astype(np.int8)
    price = np.where(ok, x, np.nan)
    return LiquidationPrices(price_base=price, side=side)


def uniform_shock(
    book: Book,
    price_base: npt.ArrayLike | None = None,
    shocked: npt.ArrayLike | None = None,
) -> UniformShock:
    """Smallest uniform drop (or rise) of the shocked assets' prices that liquidates each position.

    ``shocked``: (m,) bool, the assets that move (default: the volatile ones, ``~book.is_stable``).
    """
    p = book.price_base if price_base is None else np.asarray(price_base, dtype=np.float64)
    mask = ~book.is_stable if shocked is None else np.asarray(shocked, dtype=bool)
    pv = np.where(mask, p, 0.0)
    ps = np.where(mask, 0.0, p)
    net = book.collateral_lt - book.debt
    net_v = net @ pv  # W_v - D_v
    gap_s = net @ ps  # W_s - D_s
    debt_value = book.debt @ p
    has_debt = debt_value > 0.0
    liquidatable = has_debt & (gap_s + net_v < 0.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        r = -gap_s / net_v
    r_ok = np.isfinite(r) & (r > 0.0) & has_debt
    multiplier = np.where(r_ok, r, np.nan)
    drop = np.where((net_v > 0.0) & r_ok & (r <= 1.0), 1.0 - r, np.inf)
    rise = np.where((net_v < 0.0) & r_ok & (r >= 1.0), r - 1.0, np.inf)
    drop = np.where(liquidatable, 0.0, drop)
    rise = np.where(liquidatable, 0.0, rise)
    return UniformShock(drop_fraction=drop, rise_fraction=rise, multiplier=multiplier)


def volatile_drop_to_liquidation(book: Book, shocked: npt.ArrayLike | None = None) -> FloatArray:
    """Shortcut: :attr:`UniformShock.drop_fraction` at the book's prices."""
    return uniform_shock(book, shocked=shocked).drop_fraction


def exact_flip_price(
    is_liquidatable_at: Callable[[int], bool],
    guess: float,
    *,
    liquidatable_below: bool = True,
    lo: int = 1,
    hi: int = UINT256_MAX,
) -> int | None:
    """The integer oracle price where an exact predicate flips, found from a float guess.

    ``is_liquidatable_at(price_int)`` must be the protocol's exact verdict with one price replaced
    and be monotone in it. With ``liquidatable_below`` (a collateral price falling) the answer is
    the LARGEST price that is liquidatable (one unit up is not); otherwise (a debt price rising)
    the SMALLEST price that is liquidatable (one unit down is not). None when the verdict does not
    change within [lo, hi]. Gallops out from the guess, then bisects: O(log) predicate calls.
    """
    g = int(min(max(round(guess), lo), hi))
    target_at_g = is_liquidatable_at(g)
    # "inside": prices on the liquidatable side; we look for the boundary between inside/outside.
    # Walking direction towards the boundary:
    toward_up = target_at_g if liquidatable_below else not target_at_g
    step = max(1, abs(g) // 10**9)
    a = g
    while True:
        b = a + step if toward_up else a - step
        if b > hi or b < lo:
            b = hi if toward_up else lo
            if b == a or is_liquidatable_at(b) == target_at_g:
                return None
            break
        if is_liquidatable_at(b) != target_at_g:
            break
        a = b
        step *= 2
    # is_liquidatable_at(a) == target_at_g != is_liquidatable_at(b); |a - b| >= 1
    left, right = (a, b) if a < b else (b, a)
    left_val = is_liquidatable_at(left)
    while right - left > 1:
        mid = (left + right) // 2
        if is_liquidatable_at(mid) == left_val:
            left = mid
        else:
            right = mid
    # left and right are adjacent with different verdicts
    if liquidatable_below:
        return left if left_val else right
    return right if not left_val else left


def near_liquidation_mask(
    book: Book, within_fraction: float, price_base: npt.ArrayLike | None = None
) -> BoolArray:
    """Positions a uniform volatile drop (or rise) smaller than ``within_fraction`` liquidates."""
    s = uniform_shock(book, price_base)
    return np.minimum(s.drop_fraction, s.rise_fraction) < within_fraction
