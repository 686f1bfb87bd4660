"""Every kept Morpho Blue position's `_isHealthy` figures at once: health factor, collateral
value and borrowed assets in loan-token units and the verdict, equal bit for bit to the
Position `MorphoBlueAdapter.positions_from_states` builds (same rows, same order), without
building Position objects: numpy arrays of Python ints, the contract's roundings in its order
(`toAssetsUp`, `mulDivDown(price, 1e36)`, `wMulDown(lltv)`)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from onchain.protocols.base import BookHealth
from onchain.protocols.morpho_blue import math
from onchain.protocols.morpho_blue.adapter import MorphoPositionState, MorphoState
from onchain.rpc.client import BlockRef


@dataclass
class ExactBook:
    """Kept (market, account) states as arrays: the market as a code (`codes`), borrow shares
    and collateral per row."""

    states: list[MorphoPositionState]
    codes: dict[str, int]  # market id -> code
    market: np.ndarray
    shares: np.ndarray
    collateral: np.ndarray


def book(market_state: MorphoState, states: Sequence[MorphoPositionState]) -> ExactBook:
    codes: dict[str, int] = {}
    market = [codes.setdefault(s.market_id, len(codes)) for s in states]
    shares, collateral = np.empty(len(states), object), np.empty(len(states), object)
    shares[:] = [s.borrow_shares for s in states]
    collateral[:] = [s.collateral for s in states]
    return ExactBook(list(states), codes, np.array(market, np.int64), shares, collateral)


def set_row(
    market_state: MorphoState, book: ExactBook, row: int, state: MorphoPositionState
) -> None:
    book.states[row] = state
    book.market[row] = book.codes.setdefault(state.market_id, len(book.codes))
    book.shares[row] = state.borrow_shares
    book.collateral[row] = state.collateral


def exact_health(market_state: MorphoState, book: ExactBook, block: BlockRef) -> BookHealth:
    """The rows `positions_from_states` keeps (priced markets the account's discovery notes
    name, with collateral or debt), each with its figures at the market state's block."""
    k = len(book.codes)
    priced = np.zeros(k, bool)
    tba = np.zeros(k, object)  # total borrow assets + VIRTUAL_ASSETS
    tbs = np.ones(k, object)  # total borrow shares + VIRTUAL_SHARES
    price = np.zeros(k, object)
    lltv = np.zeros(k, object)
    ids = [""] * k
    for market_id, i in book.codes.items():
        ids[i] = market_id
    for m in market_state.priced_markets:
        at = book.codes.get(m.id)
        if at is None:
            continue
        priced[at] = True
        tba[at] = m.accrued.total_borrow_assets + math.VIRTUAL_ASSETS
        tbs[at] = m.accrued.total_borrow_shares + math.VIRTUAL_SHARES
        price[at] = m.price if m.price is not None else 0
        lltv[at] = m.lltv
    notes = market_state.account_markets
    keep = priced[book.market] & (
        np.asarray(book.shares != 0, bool) | np.asarray(book.collateral != 0, bool)
    )
    for row in np.flatnonzero(keep).tolist():
        s = book.states[row]
        used = notes.get(s.account)
        if used is not None and s.market_id not in used:
            keep[row] = False
    rows = np.flatnonzero(keep)
    code = book.market[rows]
    shares, collateral = book.shares[rows], book.collateral[rows]
    d = tbs[code]
    borrowed = (shares * tba[code] + (d - 1)) // d  # toAssetsUp
    value = collateral * price[code] // math.ORACLE_PRICE_SCALE
    limit = value * lltv[code] // math.WAD
    owing = np.asarray(shares != 0, bool)
    health: np.ndarray = np.full(len(rows), None, object)
    health[owing] = limit[owing] * math.WAD // borrowed[owing]
    liquidatable = owing & np.asarray(limit < borrowed, bool)
    return BookHealth(
        accounts=tuple(book.states[r].account for r in rows.tolist()),
        markets=tuple(ids[c] for c in code.tolist()),
        health_factor=health.tolist(),
        total_collateral_base=value.tolist(),
        total_debt_base=borrowed.tolist(),
        liquidatable=liquidatable,
    )
