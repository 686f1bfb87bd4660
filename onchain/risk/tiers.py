"""Risk tiers and reason codes: every flag says why.

Tier (worst first, an ``IntEnum`` so tiers compare and sort):

* LIQUIDATABLE — HF < 1 now (float screen; the adapter's exact math gives the verdict);
* PENDING — healthy at the oracle price, liquidatable at the price the next oracle update will
  most likely publish (``oracle_lag.py``): one update away;
* CRITICAL / HIGH / WATCH — probability of liquidation within the horizon at or above
  ``critical_probability`` / ``high_probability`` / ``watch_probability``;
* SAFE — none of the above.

Reasons are bit flags (``Reason``, stored as uint32 per position) so every position can carry
several: the tier's own reason plus context (low pool liquidity, concentration, a liquidation that
would leave bad debt, one no liquidator would find profitable...). :func:`reason_names` turns
them into the codes the CLI/API print. Thresholds live in :class:`TierThresholds` (defaults
here; config overrides them).
"""

from __future__ import annotations

from enum import IntEnum, IntFlag

import numpy as np
import numpy.typing as npt

from onchain.risk.book import Book, FloatArray
from onchain.risk.settings import TierThresholds as TierThresholds


class Tier(IntEnum):
    SAFE = 0
    WATCH = 1
    HIGH = 2
    CRITICAL = 3
    PENDING = 4
    LIQUIDATABLE = 5


class Reason(IntFlag):
    NONE = 0
    HF_BELOW_1 = 1 << 0
    ONE_ORACLE_UPDATE_AWAY = 1 << 1
    PROB_GE_CRITICAL = 1 << 2
    PROB_GE_HIGH = 1 << 3
    PROB_GE_WATCH = 1 << 4
    NEAR_LIQUIDATION_PRICE = 1 << 5  # a uniform volatile move smaller than near_move liquidates
    LOW_POOL_LIQUIDITY = 1 << 6  # collateral in a reserve that cannot pay it out
    CONCENTRATED_COLLATERAL = 1 << 7  # holds a large share of the book's collateral of an asset
    FULL_CLOSE_FACTOR = 1 << 8  # HF <= 0.95: a liquidator may repay 100% in one call
    BAD_DEBT = 1 << 9  # collateral value below debt
    UNPROFITABLE_LIQUIDATION = 1 << 10  # liquidatable, but no call pays gas and slippage
    NO_DEBT = 1 << 11


DEFAULT_THRESHOLDS = TierThresholds()


def collateral_concentration(book: Book, totals: npt.ArrayLike | None = None) -> FloatArray:
    """(n,) the largest share a position holds of the book's total collateral of any asset
    (``totals``: per-asset totals of the whole book when ``book`` is a chunk of it)."""
    total = book.collateral.sum(axis=0) if totals is None else np.asarray(totals, dtype=np.float64)
    out = np.zeros(book.n_positions)
    for j in np.flatnonzero(total > 0):  # column passes: faster than a row-wise max
        np.maximum(out, book.collateral[:, j] / total[j], out=out)
    return out


def classify(
    health: npt.ArrayLike,
    probability: npt.ArrayLike,
    *,
    thresholds: TierThresholds = DEFAULT_THRESHOLDS,
    pending_liquidatable: npt.ArrayLike | None = None,
    nearest_move: npt.ArrayLike | None = None,
    low_liquidity: npt.ArrayLike | None = None,
    concentration: npt.ArrayLike | None = None,
    bad_debt: npt.ArrayLike | None = None,
    unprofitable: npt.ArrayLike | None = None,
) -> tuple[npt.NDArray[np.int8], npt.NDArray[np.uint32]]:
    """(tier, reasons) per position. Optional inputs add their reasons when given.

    ``nearest_move``: the smaller of the uniform drop/rise fractions that liquidate
    (``distance.uniform_shock``); ``concentration``: :func:`collateral_concentration`;
    ``bad_debt``: bool or amount (> 0 flags); ``unprofitable``: bool (liquidatable but the
    liquidator's best net profit <= 0).
    """
    t = thresholds
    hf = np.asarray(health, dtype=np.float64)
    p = np.asarray(probability, dtype=np.float64)
    n = hf.shape[0]
    reasons = np.zeros(n, dtype=np.uint32)

    def flag(mask: npt.ArrayLike, reason: Reason) -> None:
        reasons[np.asarray(mask, dtype=bool)] |= np.uint32(reason)

    liq = hf < 1.0
    flag(liq, Reason.HF_BELOW_1)
    flag(~np.isfinite(hf), Reason.NO_DEBT)
    flag(hf <= t.full_close_factor_hf, Reason.FULL_CLOSE_FACTOR)
    pend = (
        np.zeros(n, dtype=bool)
        if pending_liquidatable is None
        else np.asarray(pending_liquidatable, dtype=bool) & ~liq
    )
    flag(pend, Reason.ONE_ORACLE_UPDATE_AWAY)
    crit = p >= t.critical_probability
    high = p >= t.high_probability
    watch = p >= t.watch_probability
    flag(crit & ~liq, Reason.PROB_GE_CRITICAL)
    flag(high & ~crit & ~liq, Reason.PROB_GE_HIGH)
    flag(watch & ~high & ~liq, Reason.PROB_GE_WATCH)
    if nearest_move is not None:
        flag(
            np.asarray(nearest_move, dtype=np.float64) < t.near_move, Reason.NEAR_LIQUIDATION_PRICE
        )
    if low_liquidity is not None:
        flag(low_liquidity, Reason.LOW_POOL_LIQUIDITY)
    if concentration is not None:
        flag(
            np.asarray(concentration, dtype=np.float64) >= t.concentration_share,
            Reason.CONCENTRATED_COLLATERAL,
        )
    if bad_debt is not None:
        flag(np.asarray(bad_debt, dtype=np.float64) > 0.0, Reason.BAD_DEBT)
    if unprofitable is not None:
        flag(np.asarray(unprofitable, dtype=bool) & liq, Reason.UNPROFITABLE_LIQUIDATION)
    tier = np.select(
        [liq, pend, crit, high, watch],
        [Tier.LIQUIDATABLE, Tier.PENDING, Tier.CRITICAL, Tier.HIGH, Tier.WATCH],
        default=Tier.SAFE,
    ).astype(np.int8)
    return tier, reasons


def reason_names(flags: int) -> list[str]:
    """Reason codes set in one position's flags, in bit order (e.g. ['HF_BELOW_1', ...])."""
    value = int(flags)
    return [r.name for r in Reason if r.value and value & r.value and r.name is not None]


def tier_name(tier: int) -> str:
    return Tier(int(tier)).name
