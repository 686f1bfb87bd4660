"""Morpho Blue positions as the risk book's arrays (`onchain.position_rows.PositionRows`) straight
from kept (market, account) states: what `adapter.positions_from_states` followed by the
Position-based book would give, without a Position per state.

Two columns per priced market (its collateral, then its loan token, the order a Position lists
them), amounts in whole tokens from the contract's integers (borrowed assets rounded up as
`toAssetsUp` does), prices in the market's loan token as the adapter states them."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from onchain.model import CloseFactorRule
from onchain.position_rows import PositionRows
from onchain.protocols.morpho_blue import math
from onchain.protocols.morpho_blue.adapter import PROTOCOL, MorphoPositionState, MorphoState


def risk_rows(market_state: MorphoState, states: Sequence[MorphoPositionState]) -> PositionRows:
    """One row per state with collateral or debt in a priced market its account's discovery
    logs name, as `positions_from_states` keeps them."""
    markets = market_state.priced_markets
    at = {m.id: i for i, m in enumerate(markets)}
    k = len(markets)
    accounts: list[str] = []
    row_market: list[int] = []
    collateral_raw: list[int] = []
    borrowed_raw: list[int] = []
    has_debt: list[bool] = []
    notes = market_state.account_markets
    for s in states:
        i = at.get(s.market_id)
        used = notes.get(s.account)
        if i is None or (used is not None and s.market_id not in used):
            continue
        if not (s.borrow_shares or s.collateral):
            continue
        accounts.append(s.account)
        row_market.append(i)
        collateral_raw.append(s.collateral)
        borrowed_raw.append(math.borrowed_assets(s.borrow_shares, markets[i].accrued))
        has_debt.append(s.borrow_shares != 0)
    n = len(accounts)
    rows = np.arange(n)
    which = np.array(row_market, dtype=np.intp)
    coll_col, loan_col = 2 * which, 2 * which + 1
    # per market: the collateral's unit, price, LLTV and incentive, the loan token's unit
    coll_unit = np.array([10.0**m.collateral_decimals for m in markets])
    loan_unit = np.array([10.0**m.loan_decimals for m in markets])
    held = np.zeros((n, 2 * k), dtype=bool)
    held[rows, coll_col] = np.array([c != 0 for c in collateral_raw], dtype=bool)
    held[rows, loan_col] = np.array(has_debt, dtype=bool)
    collateral = np.zeros((n, 2 * k))
    collateral[rows, coll_col] = (
        np.array(collateral_raw, dtype=object).astype(np.float64) / coll_unit[which]
    )
    debt = np.zeros((n, 2 * k))
    debt[rows, loan_col] = (
        np.array(borrowed_raw, dtype=object).astype(np.float64) / loan_unit[which]
    )
    lt = np.zeros((n, 2 * k))
    lt[rows, coll_col] = np.array([(m.lltv // 10**14) / 1e4 for m in markets])[which]
    lt = np.where(held, lt, 0.0)
    bonus = np.full((n, 2 * k), np.nan)
    incentive = np.array([(m.liquidation_incentive_factor - math.WAD) / math.WAD for m in markets])
    bonus[rows, coll_col] = incentive[which]
    bonus = np.where(held, bonus, np.nan)
    price = []
    for m in markets:
        whole = (m.price or 0) * 10**m.collateral_decimals // math.ORACLE_PRICE_SCALE
        scale = 10.0**m.loan_decimals
        price += [whole / scale, 10**m.loan_decimals / scale]
    assets, symbols, decimals = [], [], []
    for m in markets:
        assets += [m.collateral_token, m.loan_token]
        symbols += [m.collateral_symbol, m.loan_symbol]
        decimals += [m.collateral_decimals, m.loan_decimals]
    # (supply, borrow) per column: each market's collateral, then its loan token
    rates = np.array(
        [m.interest_rates[t.lower()] for m in markets for t in (m.collateral_token, m.loan_token)],
        dtype=np.float64,
    ).reshape(2 * k, 2)
    return PositionRows(
        protocol=PROTOCOL,
        version=market_state.version,
        block=market_state.block,
        accounts=tuple(accounts),
        row_market=which,
        markets=tuple(m.id for m in markets),
        base_currencies=tuple(m.loan_symbol for m in markets),
        market_labels=tuple(m.label for m in markets),
        held=held,
        collateral_enabled=held & (np.arange(2 * k) % 2 == 0),
        collateral=collateral,
        debt=debt,
        liquidation_threshold=lt,
        liquidation_bonus=bonus,
        close_factor_rule=np.full(n, int(CloseFactorRule.FULL), dtype=np.int8),
        column_market=np.repeat(np.arange(k, dtype=np.intp), 2),
        assets=tuple(assets),
        symbols=tuple(symbols),
        decimals=np.array(decimals, dtype=np.int64),
        price_base=np.array(price, dtype=np.float64).reshape(2 * k),
        protocol_fee=np.zeros(2 * k),
        supply_rate=rates[:, 0],
        borrow_rate=rates[:, 1],
    )
