"""A vectorised health screen over a whole book of kept Aave account states: health factors in
floating point for every account at once (numpy), and the exact integer verdict
(`GenericLogic` through `adapter.account_data`) only where the screen is too close to 1 to
trust. The float HF differs from the Pool's by roundings far smaller than `MARGIN` (3.0.2
truncates the average threshold to a whole bps, at most 1/LT ~ 1.3e-4 relative), so outside
the margin the float verdict is the Pool's verdict.

The arrays (one row per account, one column per reserve) are built once from the kept states
and rebuilt for the rows a block touched; per block only the per-reserve vectors (indexes,
prices, thresholds per eMode category) change."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from onchain.protocols.aave_v3 import math
from onchain.protocols.aave_v3.adapter import AaveAccountState, AaveMarketState, account_data

MARGIN = 1e-3  # relative distance from HF 1 below which the exact integer verdict decides
RAY = 10**27


@dataclass
class BookArrays:
    """Kept states as arrays: scaled collateral (where the bitmap counts it) and scaled debt per
    (account, reserve column), the account's eMode, and stable debt (raw) where any."""

    states: list[AaveAccountState]
    collateral: np.ndarray
    debt: np.ndarray
    stable: np.ndarray
    emode: np.ndarray


def book_arrays(market_state: AaveMarketState, states: Sequence[AaveAccountState]) -> BookArrays:
    n, k = len(states), len(market_state.reserves)
    book = BookArrays(
        list(states), np.zeros((n, k)), np.zeros((n, k)), np.zeros((n, k)), np.zeros(n, np.int64)
    )
    for row, state in enumerate(states):
        set_row(market_state, book, row, state)
    return book


def set_row(
    market_state: AaveMarketState, book: BookArrays, row: int, state: AaveAccountState
) -> None:
    """Row `row` of the arrays from one kept state (a touched account's new state)."""
    column = {r.reserve_id: i for i, r in enumerate(market_state.reserves)}
    book.states[row] = state
    for array in (book.collateral, book.debt, book.stable):
        array[row] = 0.0
    book.emode[row] = state.emode
    config = state.user_configuration
    for (rid, kind), value in state.balances.items():
        if not value or rid not in column:
            continue
        if kind == "a" and math.is_using_as_collateral(config, rid):
            book.collateral[row, column[rid]] = value
        elif kind == "v" and math.is_borrowing(config, rid):
            book.debt[row, column[rid]] = value
        elif kind == "s" and math.is_borrowing(config, rid):
            book.stable[row, column[rid]] = value


def screen_health(market_state: AaveMarketState, book: BookArrays) -> np.ndarray:
    """Float health factor of every account (inf without debt)."""
    reserves = market_state.reserves
    rules = market_state.rules
    income = np.array([r.normalized_income_ray / RAY for r in reserves])
    debt_index = np.array([r.normalized_debt_ray / RAY for r in reserves])
    unit = np.array([10.0**r.config.decimals for r in reserves])
    emodes = sorted({0, *(int(e) for e in np.unique(book.emode))})
    # per eMode category: the price and threshold each reserve counts with
    price = np.zeros((len(emodes), len(reserves)))
    lt = np.zeros((len(emodes), len(reserves)))
    for i, e in enumerate(emodes):
        category = market_state.emode_categories.get(e) if e else None
        override = market_state.emode_prices.get(e, 0) if e else 0
        for j, r in enumerate(reserves):
            same = override and not rules.emode_bitmaps and r.config.emode_category == e
            price[i, j] = override if same else r.price_base
            counts = rules.lt_zero_collateral or r.config.liquidation_threshold != 0
            in_emode = e != 0 and math.in_emode_collateral(
                e, category, r.config, r.reserve_id, rules
            )
            used = (
                category.liquidation_threshold
                if in_emode and category
                else r.config.liquidation_threshold
            )
            lt[i, j] = used / 10_000 if counts else 0.0
    row = np.searchsorted(np.array(emodes), book.emode)
    value = price[row] / unit  # (n, k) base units per raw token unit
    weighted = (book.collateral * income * value * lt[row]).sum(axis=1)
    owed = ((book.debt * debt_index + book.stable) * value).sum(axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(owed > 0, weighted / np.where(owed > 0, owed, 1.0), np.inf)


def liquidatable(market_state: AaveMarketState, book: BookArrays) -> tuple[np.ndarray, int]:
    """Every account's "liquidatable now" verdict, the Pool's own: the float screen where it is
    clear, the exact integer health factor for the rows within `MARGIN` of 1. Returns the
    verdicts and how many rows needed the exact computation."""
    hf = screen_health(market_state, book)
    verdict = hf < 1.0
    close = np.flatnonzero(np.abs(hf - 1.0) < MARGIN)
    for row in close:
        state = book.states[row]
        data = account_data(market_state, state.user_configuration, state.emode, _balances(state))
        verdict[row] = data.total_debt_base > 0 and math.is_liquidatable(data.health_factor)
    return verdict, len(close)


def _balances(state: AaveAccountState) -> dict[tuple[int, str], int]:
    return dict(state.balances)
