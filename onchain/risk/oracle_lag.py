"""Oracle lag: the price the next oracle update will most likely publish, and the health at it.

Protocols liquidate at the oracle's price, which lags the market. A push oracle (Chainlink-style)
publishes a new answer when the market has moved by at least its deviation threshold from the
last answer, or when its heartbeat expires, whichever comes first. So, per asset, with a
reference market price (a DEX pool, a CEX feed, a faster oracle):

* |ref / oracle - 1| >= deviation threshold -> an update is due NOW, at ~ref (eta 0 s);
* otherwise the heartbeat forces one at ``heartbeat_s - since_update_s`` (>= 0), again at ~ref
  (the best guess of the market then is the market now);
* no reference (NaN) or no oracle (NaN/0) -> the oracle price stays, eta +inf.

``horizon_s`` limits which updates count as "next": updates due later than the horizon keep the
current oracle price (default +inf: every asset's next update). The pending health is the float
HF at those prices; a position healthy now but liquidatable at pending prices is ONE ORACLE
UPDATE AWAY from liquidation (tier PENDING): a liquidator can be ready in the same block as the
update, the borrower has at most ``eta_s``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from onchain.risk.book import Book, BoolArray, FloatArray
from onchain.risk.health import health_factor


@dataclass(frozen=True)
class PendingPrices:
    """Per asset (m,): the next published price, when, and whether deviation triggers it."""

    price_base: FloatArray
    eta_s: FloatArray
    deviation_triggered: BoolArray
    deviation: FloatArray  # ref / oracle - 1


@dataclass(frozen=True)
class PendingHealth:
    """Per position (n,)."""

    health_now: FloatArray
    health_pending: FloatArray
    one_update_away: BoolArray  # healthy now, liquidatable at pending prices
    eta_s: FloatArray  # when the earliest price update that matters to the position lands


def next_oracle_prices(
    reference_price_base: npt.ArrayLike,
    oracle_price_base: npt.ArrayLike,
    deviation_threshold: npt.ArrayLike,
    heartbeat_s: npt.ArrayLike,
    since_update_s: npt.ArrayLike,
    horizon_s: float = np.inf,
) -> PendingPrices:
    """The price each oracle will most likely publish next, and when (see module doc)."""
    ref = np.asarray(reference_price_base, dtype=np.float64)
    orc = np.asarray(oracle_price_base, dtype=np.float64)
    thr = np.broadcast_to(np.asarray(deviation_threshold, dtype=np.float64), ref.shape)
    hb = np.broadcast_to(np.asarray(heartbeat_s, dtype=np.float64), ref.shape)
    since = np.broadcast_to(np.asarray(since_update_s, dtype=np.float64), ref.shape)
    usable = np.isfinite(ref) & (ref > 0.0) & np.isfinite(orc) & (orc > 0.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        dev = np.where(usable, ref / orc - 1.0, 0.0)
    # a tiny relative epsilon: a move of exactly the threshold triggers (>=) despite rounding
    triggered = usable & (np.abs(dev) >= thr * (1.0 - 1e-12))
    eta = np.where(triggered, 0.0, np.maximum(hb - since, 0.0))
    eta = np.where(usable, eta, np.inf)
    applies = usable & (eta <= horizon_s)
    price = np.where(applies, ref, orc)
    return PendingPrices(price_base=price, eta_s=eta, deviation_triggered=triggered, deviation=dev)


def pending_health(book: Book, pending: PendingPrices) -> PendingHealth:
    """Health now (book prices = oracle prices) and at the pending prices, for every position."""
    now = health_factor(book)
    later = health_factor(book, pending.price_base)
    changed = pending.price_base != book.price_base
    eta_assets = np.where(changed, pending.eta_s, np.inf)
    # the earliest update among the assets the position holds (lower bound on time left);
    # one pass per asset whose price changes (a row-wise min over narrow rows is slow)
    eta = np.full(book.n_positions, np.inf)
    for j in np.flatnonzero(np.isfinite(eta_assets)):
        exposed = (book.collateral_lt[:, j] > 0.0) | (book.debt[:, j] > 0.0)
        np.minimum(eta, np.where(exposed, eta_assets[j], np.inf), out=eta)
    away = (now >= 1.0) & (later < 1.0)
    return PendingHealth(health_now=now, health_pending=later, one_update_away=away, eta_s=eta)
