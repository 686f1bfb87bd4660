"""Aave V3 positions as the risk book's arrays (`onchain.position_rows.PositionRows`) straight from
kept account states: what `adapter.positions_from_states` followed by the Position-based book
would give, without a Position per account.

The integer parts stay exact where the Position is exact: aToken and debt balances are the
Pool's `rayMul` (or 3.5's Floor/Ceil) of the scaled balances, computed as Python integers over
the non-zero entries only (numpy object arrays), then divided by the token unit as the book does;
thresholds, bonuses and prices are looked up per (eMode category, reserve), as GenericLogic and
LiquidationLogic choose them. Per-account Python work is one pass over its kept balances."""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from operator import is_
from threading import Lock

import numpy as np

from onchain.model import CloseFactorRule, LiquidationHold
from onchain.position_rows import PositionRows
from onchain.protocols.aave_v3 import math
from onchain.protocols.aave_v3.adapter import (
    PROTOCOL,
    AaveAccountState,
    AaveMarketState,
    AaveReserve,
    _bonus_bps,
    liquidation_hold,
    pair_refusal,
)
from onchain.protocols.base import checksummed

RAY = 10**27
HALF_RAY = RAY // 2


def _entries(
    states: Sequence[AaveAccountState], reserve_ids: Sequence[int]
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(row, column, kind, value) of every kept balance of a known reserve: kind 0 the scaled
    aToken balance, 1 the scaled variable debt, 2 stable debt; values as Python ints (an object
    array; zeros included: they count for nothing). Flat comprehensions, the rest in numpy."""
    code = {
        (rid, kind): 3 * j + c
        for j, rid in enumerate(reserve_ids)
        for kind, c in (("a", 0), ("v", 1), ("s", 2))
    }.get
    sizes = np.array([len(s.balances) for s in states], dtype=np.intp)
    codes = np.array([code(key, -1) for s in states for key in s.balances], dtype=np.intp)
    values = np.empty(codes.size, dtype=object)
    values[:] = [v for s in states for v in s.balances.values()]
    rows = np.repeat(np.arange(len(states), dtype=np.intp), sizes)
    known = codes >= 0
    codes = codes[known]
    return rows[known], codes // 3, codes % 3, values[known]


def _bits(configs: list[int], reserve_ids: Sequence[int]) -> np.ndarray:
    """Each account's two configuration bits per reserve column, (n, k) uint8: 2 collateral,
    1 borrowing. The bitmaps are split into 64-bit words so numpy does the shifting."""
    n, k = len(configs), len(reserve_ids)
    out = np.zeros((n, k), dtype=np.uint8)
    if n == 0 or k == 0:
        return out
    words = (2 * max(reserve_ids) + 2 + 63) // 64
    raw = np.array(configs, dtype=object)  # uint256 bitmaps: numpy shifts them in its C loop
    mask = (1 << 64) - 1
    split = np.stack(
        [((raw >> (64 * w)) & mask).astype(np.uint64) for w in range(words)], axis=1
    ).reshape(n, words)
    for j, rid in enumerate(reserve_ids):
        word, shift = divmod(2 * rid, 64)
        out[:, j] = (split[:, word] >> np.uint64(shift)) & np.uint64(3)
    return out


def _whole(raw: np.ndarray, unit: np.ndarray) -> np.ndarray:
    """Exact integers (object array) in whole token units, as the book divides them."""
    return np.asarray(raw.astype(np.float64) / unit, dtype=np.float64)


@dataclass(frozen=True)
class _StateArrays:
    """What the rows take from the kept states alone (not prices or indexes): the same from
    block to block while no account changes, so kept for the states they came from."""

    states: tuple[AaveAccountState, ...]
    reserve_ids: tuple[int, ...]
    bits: np.ndarray
    emode: np.ndarray
    entries: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]
    accounts: tuple[str, ...]


# the last few books' state arrays (one per market refreshed in turn), oldest first; a lock,
# as markets may be refreshed in threads
_KEPT: deque[_StateArrays] = deque(maxlen=8)
_KEPT_LOCK = Lock()


def _of_states(states: Sequence[AaveAccountState], reserve_ids: list[int]) -> _StateArrays:
    """The state arrays of `states`: those computed before for these very state objects (the
    states are frozen and replaced, never changed, when an account changes), else those of a
    kept book of the same size with the replaced rows computed again (`_patched`: a block
    where a few accounts changed), else new."""
    rids = tuple(reserve_ids)
    with _KEPT_LOCK:
        books = list(_KEPT)
    near: tuple[_StateArrays, list[int]] | None = None
    for kept in reversed(books):
        if kept.reserve_ids != rids or len(kept.states) != len(states):
            continue
        if all(map(is_, kept.states, states)):
            return kept
        if near is None:
            pairs = zip(kept.states, states, strict=True)
            changed = [i for i, (a, b) in enumerate(pairs) if a is not b]
            if len(changed) <= len(states) // 8:
                near = (kept, changed)
    made = _patched(near[0], near[1], states) if near else _computed(states, reserve_ids)
    for array in (made.bits, made.emode, *made.entries):
        array.flags.writeable = False  # shared by later blocks' rows: nobody may change them
    with _KEPT_LOCK:
        _KEPT.append(made)
    return made


def _computed(states: Sequence[AaveAccountState], reserve_ids: list[int]) -> _StateArrays:
    bits = _bits([s.user_configuration for s in states], reserve_ids)
    emode = np.array([s.emode for s in states], dtype=np.int64)
    entries = _entries(states, reserve_ids)
    accounts = tuple(checksummed(s.account) for s in states)
    return _StateArrays(tuple(states), tuple(reserve_ids), bits, emode, entries, accounts)


def _patched(
    kept: _StateArrays, changed: list[int], states: Sequence[AaveAccountState]
) -> _StateArrays:
    """`_computed(states)` from a book that differs in the `changed` rows alone: those rows
    computed again, the entries of the others kept, in the same order (by row, then as each
    state lists its balances)."""
    rids = list(kept.reserve_ids)
    fresh = _computed([states[i] for i in changed], rids)
    at = np.array(changed, dtype=np.intp)
    bits, emode = kept.bits.copy(), kept.emode.copy()
    bits[at], emode[at] = fresh.bits, fresh.emode
    rows, cols, kinds, values = kept.entries
    others = ~np.isin(rows, at)
    new_rows, new_cols, new_kinds, new_values = fresh.entries
    rows = np.concatenate([rows[others], at[new_rows]])
    order = np.argsort(rows, kind="stable")
    entries = (
        rows[order],
        np.concatenate([cols[others], new_cols])[order],
        np.concatenate([kinds[others], new_kinds])[order],
        np.concatenate([values[others], new_values])[order],
    )
    accounts = list(kept.accounts)
    for i, account in zip(changed, fresh.accounts, strict=True):
        accounts[i] = account
    return _StateArrays(tuple(states), kept.reserve_ids, bits, emode, entries, tuple(accounts))


def risk_rows(market_state: AaveMarketState, states: Sequence[AaveAccountState]) -> PositionRows:
    """One row per state, as `positions_from_states` gives one Position per state."""
    rules = market_state.rules
    reserves = sorted(market_state.reserves, key=lambda r: r.reserve_id)
    k, n = len(reserves), len(states)
    rids = [r.reserve_id for r in reserves]
    unit = np.array([10.0**r.config.decimals for r in reserves])
    counts = np.array(
        [rules.lt_zero_collateral or r.config.liquidation_threshold != 0 for r in reserves]
    )
    has_stable = np.array([r.has_stable_debt for r in reserves], dtype=bool)

    known = _of_states(states, rids)
    bits = known.bits
    held = bits != 0
    enabled = (bits & 2).astype(bool)
    borrowing = (bits & 1).astype(bool)
    counted = enabled & counts

    # per eMode category of the book: the price, threshold and bonus each reserve counts with
    emode = known.emode
    emodes = sorted({0, *(int(e) for e in np.unique(emode))})
    price = np.zeros((len(emodes), k), dtype=object)
    lt_bps = np.zeros((len(emodes), k), dtype=np.int64)
    bonus = np.zeros((len(emodes), k))
    for i, e in enumerate(emodes):
        category = market_state.emode_categories.get(e) if e else None
        override = (
            market_state.emode_prices.get(e, 0)
            if e and category is not None and category.has_price_source and not rules.emode_bitmaps
            else 0
        )
        for j, r in enumerate(reserves):
            same = override != 0 and r.config.emode_category == e
            price[i, j] = override if same else r.price_base
            in_emode = e != 0 and math.in_emode_collateral(
                e, category, r.config, r.reserve_id, rules
            )
            lt_bps[i, j] = (
                category.liquidation_threshold
                if in_emode and category is not None
                else r.config.liquidation_threshold
            )
            bonus[i, j] = (_bonus_bps(rules, r, e, category) - 10_000) / 10_000
    at = np.searchsorted(np.array(emodes), emode)

    # exact balances over the non-zero entries
    e_row, e_col, e_kind, scaled = known.entries
    income = np.array([r.normalized_income_ray for r in reserves] + [0], dtype=object)
    debt_index = np.array([r.normalized_debt_ray for r in reserves] + [0], dtype=object)
    collateral = np.zeros((n, k))
    debt = np.zeros((n, k))
    debt_raw: dict[tuple[int, int], int] = {}
    if scaled.size:
        is_a = (e_kind == 0) & counted[e_row, e_col]
        is_v = (e_kind == 1) & borrowing[e_row, e_col]
        is_s = (e_kind == 2) & borrowing[e_row, e_col] & has_stable[e_col]
        product = scaled[is_a] * income[e_col[is_a]]
        amount_a = product // RAY if rules.directional_rounding else (product + HALF_RAY) // RAY
        product = scaled[is_v] * debt_index[e_col[is_v]]
        amount_v = -(-product // RAY) if rules.directional_rounding else (product + HALF_RAY) // RAY
        ra, ca = e_row[is_a], e_col[is_a]
        collateral[ra, ca] = _whole(amount_a, unit[ca])
        rv, cv = e_row[is_v], e_col[is_v]
        debt[rv, cv] = _whole(amount_v, unit[cv])
        if is_s.any():  # stable debt (3.0.2/3.1): the cell's debt is variable + stable, exact
            debt_raw = {(int(r), int(c)): int(v) for r, c, v in zip(rv, cv, amount_v, strict=True)}
            for r, c, v in zip(e_row[is_s], e_col[is_s], scaled[is_s], strict=True):
                debt_raw[(int(r), int(c))] = debt_raw.get((int(r), int(c)), 0) + int(v)
                debt[r, c] = debt_raw[(int(r), int(c))] / unit[c]
        holds = _holds(market_state, reserves, ra, ca, amount_a, rv, cv, amount_v, debt_raw)
    else:
        holds = {}

    lt = np.where(counted, lt_bps[at] / 1e4, 0.0)
    row_bonus = np.where(enabled, bonus[at], np.nan)
    column_price = _one_price(held, at, price, 10.0**market_state.base_currency_decimals)
    fee = np.where(
        enabled.any(axis=0),
        np.array([r.config.liquidation_protocol_fee / 10_000 for r in reserves]),
        0.0,
    )
    return PositionRows(
        protocol=PROTOCOL,
        version=market_state.version,
        block=market_state.block,
        accounts=known.accounts,
        row_market=np.zeros(n, dtype=np.intp),
        markets=(market_state.addresses_provider,),
        base_currencies=(None,),
        market_labels=(None,),
        held=held,
        collateral_enabled=counted,  # AssetPosition's: the bit, where the release counts it
        collateral=collateral,
        debt=debt,
        liquidation_threshold=lt,
        liquidation_bonus=row_bonus,
        close_factor_rule=np.full(n, int(CloseFactorRule[rules.close_factor_rule]), dtype=np.int8),
        column_market=np.zeros(k, dtype=np.intp),
        assets=tuple(r.asset for r in reserves),
        symbols=tuple(r.symbol for r in reserves),
        decimals=np.array([r.config.decimals for r in reserves], dtype=np.int64),
        price_base=column_price,
        protocol_fee=fee,
        holds=holds,
        supply_rate=np.array([r.interest_rates[0] for r in reserves]),
        borrow_rate=np.array([r.interest_rates[1] for r in reserves]),
    )


def _one_price(held: np.ndarray, at: np.ndarray, price: np.ndarray, unit: float) -> np.ndarray:
    """Each column's price in whole base units, from the (eMode category, reserve) `price`
    table: every row holding the asset must count it at the same price (the Position-based book
    refuses two prices for one column; an eMode price source could make them differ), else
    ValueError. A column's price is the first holding row's; a column no row holds, eMode 0's."""
    groups, k = price.shape
    first = np.argmax(held, axis=0) if held.shape[0] else np.zeros(k, dtype=np.intp)
    out = np.zeros(k)
    present = np.stack([held[at == i].any(axis=0) for i in range(groups)]) if groups else None
    for j in range(k):
        ref = int(price[at[first[j]] if held.shape[0] else 0, j]) / unit
        out[j] = ref
        if present is None:
            continue
        for i in np.flatnonzero(present[:, j]):
            value = int(price[i, j]) / unit
            if not np.isclose(ref, value, rtol=1e-12, atol=0.0):
                raise ValueError(
                    f"asset column {j} has two prices in one book ({ref} and {value}); "
                    "build one book per oracle"
                )
    return out


def _holds(
    market_state: AaveMarketState,
    reserves: Sequence[AaveReserve],
    ra: np.ndarray,
    ca: np.ndarray,
    amount_a: np.ndarray,
    rv: np.ndarray,
    cv: np.ndarray,
    amount_v: np.ndarray,
    debt_raw: dict[tuple[int, int], int],
) -> dict[int, LiquidationHold]:
    """The hold each row would carry below the threshold (`adapter.liquidation_hold`): only rows
    that hold a reserve refusing liquidations (inactive, paused, grace period) can have one."""
    timestamp = market_state.block.timestamp
    rules = market_state.rules
    refusing = np.array(
        [pair_refusal(rules, r, r, timestamp) is not None for r in reserves],
        dtype=bool,
    )
    if not refusing.any():
        return {}
    amounts: dict[int, dict[int, list[int]]] = {}
    for r, c, v in zip(ra, ca, amount_a, strict=True):
        amounts.setdefault(int(r), {}).setdefault(int(c), [0, 0])[0] = int(v)
    for r, c, v in zip(rv, cv, amount_v, strict=True):
        amounts.setdefault(int(r), {}).setdefault(int(c), [0, 0])[1] = int(v)
    for (r, c), v in debt_raw.items():
        amounts.setdefault(r, {}).setdefault(c, [0, 0])[1] = v
    out: dict[int, LiquidationHold] = {}
    for row, cells in amounts.items():
        if not any(refusing[c] for c in cells):
            continue
        parts = [
            math.AssetBreakdown(
                asset=reserves[c].asset,
                collateral_base=0,
                debt_base=0,
                collateral_amount_raw=coll,
                debt_amount_raw=owed,
                ltv_used=0,
                liquidation_threshold_used=0,
                in_emode=False,
                price_base=0,
                reserve_id=reserves[c].reserve_id,
                counts_as_collateral=coll > 0,
            )
            for c, (coll, owed) in sorted(cells.items())
        ]
        hold = liquidation_hold(market_state, parts, timestamp)
        if hold is not None:
            out[row] = hold
    return out
