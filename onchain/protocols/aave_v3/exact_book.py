"""Every kept Aave account's `getUserAccountData` figures at once: health factor, total
collateral and debt in base currency, and the "liquidatable now" verdict (liquidation holds
included), equal bit for bit to the Position `AaveV3Adapter.positions_from_states` builds.

Why not one `account_data` per account: building a Position costs 100+ us, too much for a
book of 100,000 every block. Here each kept balance is one entry of flat numpy arrays of
Python ints (only the (account, reserve) pairs the configuration bitmap marks), and
`GenericLogic.calculateUserAccountData` runs over all entries at once, the same integer
operations in the same order as `math.calculate_user_account_data` (so every division
truncates where the contract's does); per-account sums by `np.add.reduceat` over entries kept
sorted by row. Per block only the per-reserve vectors (indexes, prices, thresholds per eMode
category) change. Rows where the contract would revert (its overflow guards), or with inputs
this module does not take (an eMode category not loaded, values wider than uint256 ...), are
computed by `adapter.account_data` itself, row by row, so they behave as a Position would."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from onchain.protocols.aave_v3 import limbs, math
from onchain.protocols.aave_v3.adapter import (
    AaveAccountState,
    AaveMarketState,
    account_data,
    liquidation_hold,
)
from onchain.protocols.base import BookHealth, checksummed
from onchain.rpc.client import BlockRef

MAX = math.UINT256_MAX
RESERVES = math.MAX_RESERVES_COUNT
HF_ONE = math.HEALTH_FACTOR_LIQUIDATION_THRESHOLD
WIDTH = 4  # limbs of a scaled balance or index: below 1e36 (a row above: scalar math)
PRICE_WIDTH = 3  # limbs of a price: below 1e27
PRICE_LIMIT = limbs.B**PRICE_WIDTH
MAX_DECIMALS = 36
RAY_LIMBS = 3  # 1e27 = B**3: rayMul's division drops three limbs
WAD_LIMBS = 2  # 1e18 = B**2
HALF_RAY_LIMB = math.HALF_RAY // limbs.B**2  # in limb 2
SUM_WIDTH = 10


@dataclass
class ExactBook:
    """Kept states as entries: one collateral entry per (row, reserve id) whose collateral bit
    is set (scaled aToken balance), one debt entry per borrowing bit (scaled variable debt and
    stable debt), sorted by row, amounts as `limbs`; per row the eMode and whether the row is
    left to the scalar math (inputs outside what the contract's ABI could carry, or wider
    than the limbs here)."""

    states: list[AaveAccountState]
    accounts: list[str]
    emode: np.ndarray
    odd: np.ndarray  # bool per row: computed by `account_data` whatever the block
    c_row: np.ndarray
    c_rid: np.ndarray
    c_scaled: np.ndarray  # (entries, WIDTH) limbs
    d_row: np.ndarray
    d_rid: np.ndarray
    d_var: np.ndarray
    d_stable: np.ndarray
    pending: set[int] = field(default_factory=set)  # rows replaced since the entries were built


def _is_uint(value: object, bits: int = 256) -> bool:
    return type(value) is int and value >= 0 and not value >> bits


def _row_entries(
    state: AaveAccountState,
) -> tuple[bool, list[tuple[int, int]], list[tuple[int, int, int]]]:
    """(plain, collateral entries (rid, scaled), debt entries (rid, variable, stable)) of one
    kept state: the reserves its bitmap marks, as `positions_from_states` takes them (absent
    balances are 0). `plain` False: the row is left to the scalar math."""
    config, balances = state.user_configuration, state.balances
    if not _is_uint(config) or not _is_uint(state.emode, 8):
        return False, [], []
    plain = True
    collateral: list[tuple[int, int]] = []
    debt: list[tuple[int, int, int]] = []
    bits = config
    while bits:
        low = (bits & -bits).bit_length() - 1
        rid = low >> 1
        pair = (config >> (rid << 1)) & 3
        if pair & 2:
            value = balances.get((rid, "a"), 0)
            plain = plain and _is_uint(value)
            collateral.append((rid, value))
        if pair & 1:
            v, s = balances.get((rid, "v"), 0), balances.get((rid, "s"), 0)
            plain = plain and _is_uint(v) and _is_uint(s)
            debt.append((rid, v, s))
        bits &= ~(3 << (rid << 1))
    return plain, collateral, debt


def book(market_state: AaveMarketState, states: Sequence[AaveAccountState]) -> ExactBook:
    """The arrays of a whole book, built once (then `set_row` for re-read accounts)."""
    n = len(states)
    out = ExactBook(
        list(states),
        [checksummed(s.account) for s in states],
        np.zeros(n, np.int64),
        np.zeros(n, bool),
        *_empty_entries(),
    )
    _fill(out, range(n))
    return out


def set_row(
    market_state: AaveMarketState, book: ExactBook, row: int, state: AaveAccountState
) -> None:
    """Row `row` now holds `state` (a touched account's new state); its entries are rebuilt
    with the next `exact_health`."""
    book.states[row] = state
    book.accounts[row] = checksummed(state.account)
    book.pending.add(row)


def _empty_entries() -> tuple[
    np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray
]:
    ints, amounts = np.zeros(0, np.int64), np.zeros((WIDTH, 0), np.int64)
    return ints, ints, amounts, ints, ints, amounts, amounts


def _fill(book: ExactBook, rows: Sequence[int] | range) -> None:
    """Append the entries of `rows` (their row-level fields set too); entries stay sorted by
    row when `rows` are ascending and after every existing row (the caller re-sorts if not)."""
    c_row: list[int] = []
    c_rid: list[int] = []
    c_scaled: list[int] = []
    d_row: list[int] = []
    d_rid: list[int] = []
    d_var: list[int] = []
    d_stable: list[int] = []
    for row in rows:
        state = book.states[row]
        plain, collateral, debt = _row_entries(state)
        book.odd[row] = not plain
        book.emode[row] = state.emode if plain else 0
        if not plain:
            continue
        for rid, value in collateral:
            c_row.append(row)
            c_rid.append(rid)
            c_scaled.append(value)
        for rid, v, s in debt:
            d_row.append(row)
            d_rid.append(rid)
            d_var.append(v)
            d_stable.append(s)
    c_limbs, c_fits = limbs.from_ints(c_scaled, WIDTH)
    v_limbs, v_fits = limbs.from_ints(d_var, WIDTH)
    s_limbs, s_fits = limbs.from_ints(d_stable, WIDTH)
    book.odd[np.array(c_row, np.int64)[~c_fits]] = True
    book.odd[np.array(d_row, np.int64)[~(v_fits & s_fits)]] = True
    book.c_row = np.concatenate([book.c_row, np.array(c_row, np.int64)])
    book.c_rid = np.concatenate([book.c_rid, np.array(c_rid, np.int64)])
    book.c_scaled = np.concatenate([book.c_scaled, c_limbs], axis=1)
    book.d_row = np.concatenate([book.d_row, np.array(d_row, np.int64)])
    book.d_rid = np.concatenate([book.d_rid, np.array(d_rid, np.int64)])
    book.d_var = np.concatenate([book.d_var, v_limbs], axis=1)
    book.d_stable = np.concatenate([book.d_stable, s_limbs], axis=1)


def _settle(book: ExactBook) -> None:
    """Rebuild the entries of the rows replaced since the last computation, kept sorted."""
    if not book.pending:
        return
    rows = np.array(sorted(book.pending), np.int64)
    book.pending = set()
    keep_c = ~np.isin(book.c_row, rows)
    keep_d = ~np.isin(book.d_row, rows)
    book.c_row, book.c_rid, book.c_scaled = (
        book.c_row[keep_c],
        book.c_rid[keep_c],
        book.c_scaled[:, keep_c],
    )
    book.d_row, book.d_rid, book.d_var, book.d_stable = (
        book.d_row[keep_d],
        book.d_rid[keep_d],
        book.d_var[:, keep_d],
        book.d_stable[:, keep_d],
    )
    _fill(book, rows.tolist())
    order = np.argsort(book.c_row, kind="stable")
    book.c_row, book.c_rid, book.c_scaled = (
        book.c_row[order],
        book.c_rid[order],
        book.c_scaled[:, order],
    )
    order = np.argsort(book.d_row, kind="stable")
    book.d_row, book.d_rid, book.d_var, book.d_stable = (
        book.d_row[order],
        book.d_rid[order],
        book.d_var[:, order],
        book.d_stable[:, order],
    )


@dataclass
class _Reserves:
    """Per reserve id (0..127): what GenericLogic reads of the reserve at this block (indexes
    as limbs)."""

    present: np.ndarray
    income: np.ndarray
    debt_index: np.ndarray
    decimals: np.ndarray
    stable: np.ndarray
    blocked: np.ndarray  # inactive, paused or in a liquidation grace period
    bad: np.ndarray  # values the contract could not hold, or wider than the limbs here


def _reserves(market_state: AaveMarketState, timestamp: int) -> tuple[_Reserves, bool]:
    rules = market_state.rules
    t = _Reserves(
        np.zeros(RESERVES, bool),
        np.zeros((WIDTH, RESERVES), np.int64),
        np.zeros((WIDTH, RESERVES), np.int64),
        np.zeros(RESERVES, np.int64),
        np.zeros(RESERVES, bool),
        np.zeros(RESERVES, bool),
        np.zeros(RESERVES, bool),
    )
    whole = True  # False: a reserve id the contract refuses (every row to the scalar math)
    kept = []
    for r in market_state.reserves:
        rid = r.reserve_id
        if not (type(rid) is int and 0 <= rid < RESERVES):
            whole = False
            continue
        t.present[rid] = True
        t.stable[rid] = r.has_stable_debt
        t.bad[rid] = not (
            _is_uint(r.price_base)
            and r.price_base < PRICE_LIMIT
            and _is_uint(r.normalized_income_ray)
            and _is_uint(r.normalized_debt_ray)
            and _is_uint(r.liquidation_grace_until)
            and _is_uint(r.config.decimals)
            and r.config.decimals <= MAX_DECIMALS
        )
        if t.bad[rid]:
            continue
        kept.append(r)
        t.decimals[rid] = r.config.decimals
        t.blocked[rid] = (
            not r.config.active
            or r.config.paused
            or (rules.grace_period and r.liquidation_grace_until >= timestamp)
        )
    ids = np.array([r.reserve_id for r in kept], np.int64)
    income, income_fits = limbs.from_ints([r.normalized_income_ray for r in kept], WIDTH)
    debt, debt_fits = limbs.from_ints([r.normalized_debt_ray for r in kept], WIDTH)
    t.income[:, ids], t.debt_index[:, ids] = income, debt
    t.bad[ids[~(income_fits & debt_fits)]] = True
    return t, whole


def _emode_tables(
    market_state: AaveMarketState, emodes: list[int]
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Per (eMode category, reserve id): the price GenericLogic uses (3.0.2/3.1: the category's
    price source for the category's assets) as limbs, the liquidation threshold (the
    category's where the collateral is in it), whether collateral counts (LT != 0, or any from
    3.6); and per category whether its rows are left to the scalar math (not loaded ...)."""
    rules = market_state.rules
    k = len(emodes)
    prices = np.zeros((k, RESERVES), object)
    lt = np.zeros((k, RESERVES), np.int64)
    counts = np.zeros((k, RESERVES), bool)
    odd = np.zeros(k, bool)
    for i, e in enumerate(emodes):
        category = market_state.emode_categories.get(e) if e else None
        emode_price = 0
        if e:
            if category is None or category.id != e or not _fits_category(category):
                odd[i] = True
                continue
            if category.has_price_source and not rules.emode_bitmaps:
                given = market_state.emode_prices.get(e)
                if given is None or not _is_uint(given) or given >= PRICE_LIMIT:
                    odd[i] = True
                    continue
                emode_price = given
        for r in market_state.reserves:
            rid, cfg = r.reserve_id, r.config
            if not (type(rid) is int and 0 <= rid < RESERVES):
                continue
            same = emode_price != 0 and e == cfg.emode_category
            prices[i, rid] = emode_price if same else r.price_base
            if not e:
                in_emode = False
            elif rules.emode_bitmaps:
                assert category is not None
                in_emode = (category.collateral_bitmap >> rid) & 1 != 0
            else:
                in_emode = e == cfg.emode_category
            lt[i, rid] = (
                category.liquidation_threshold
                if in_emode and category is not None
                else cfg.liquidation_threshold
            )
            counts[i, rid] = rules.lt_zero_collateral or cfg.liquidation_threshold != 0
    flat = [p if _is_uint(p) and p < PRICE_LIMIT else 0 for p in prices.ravel().tolist()]
    price_limbs = limbs.from_ints(flat, PRICE_WIDTH)[0].reshape(PRICE_WIDTH, k, RESERVES)
    return price_limbs, lt, counts, odd


def _fits_category(category: math.EModeCategory) -> bool:
    return (
        _is_uint(category.liquidation_threshold, 16)
        and _is_uint(category.ltv, 16)
        and _is_uint(category.collateral_bitmap, 128)
        and _is_uint(category.ltvzero_bitmap, 128)
    )


def _row_sums(rows: np.ndarray, values: np.ndarray, n: int) -> np.ndarray:
    """Per-row sums of limb entries sorted by row (rows without entries: 0), SUM_WIDTH wide."""
    out = np.zeros((SUM_WIDTH, n), np.int64)
    if len(rows):
        starts = np.flatnonzero(np.r_[True, rows[1:] != rows[:-1]])
        out[: values.shape[0], rows[starts]] = np.add.reduceat(values, starts, axis=1)
    return limbs.normalize(out)


def _any_per_row(rows: np.ndarray, mask: np.ndarray, n: int) -> np.ndarray:
    return np.bincount(rows[mask], minlength=n)[:n] > 0


def exact_health(market_state: AaveMarketState, book: ExactBook, block: BlockRef) -> BookHealth:
    """Every row's health factor, totals and liquidatable verdict at `block` (the market
    state's block), as `positions_from_states` would give them."""
    _settle(book)
    rules = market_state.rules
    floor = rules.directional_rounding  # 3.5+: Floor collateral, Ceil debt; else half up
    n = len(book.states)
    reserves, whole = _reserves(market_state, block.timestamp)
    odd = book.odd.copy() if whole else np.ones(n, bool)
    emodes = sorted({0, *np.unique(book.emode).tolist()})
    price_t, lt_t, counts_t, odd_emode = _emode_tables(market_state, emodes)
    e_of_row = np.searchsorted(np.array(emodes, np.int64), book.emode)
    odd |= odd_emode[e_of_row]
    # rows touching a reserve whose values the limbs do not take: the scalar math decides
    for rows, rids in ((book.c_row, book.c_rid), (book.d_row, book.d_rid)):
        odd[rows[reserves.bad[rids] & reserves.present[rids]]] = True

    # collateral: aToken balance (rayMul, rayMulFloor from 3.5), in base, weighted by LT.
    # Every product stays below 1e72 (the limb widths), so no overflow guard of the Pool trips.
    c_e = e_of_row[book.c_row]
    use = reserves.present[book.c_rid] & counts_t[c_e, book.c_rid] & ~odd[book.c_row]
    c_row, c_rid, c_e = book.c_row[use], book.c_rid[use], c_e[use]
    product = limbs.mul(book.c_scaled[:, use], reserves.income[:, c_rid])
    if not floor:
        limbs.add_at(product, 2, HALF_RAY_LIMB)
    amount = product[RAY_LIMBS:]
    value = limbs.mul(amount, price_t[:, c_e, c_rid])
    collateral_base = limbs.div_pow10(value, reserves.decimals[c_rid])[0]
    weighted = limbs.mul_small(collateral_base, lt_t[c_e, c_rid])

    # debt: variable (rayMul, rayMulCeil from 3.5) + stable, in base (mulDivCeil from 3.5)
    use = reserves.present[book.d_rid] & ~odd[book.d_row]
    d_row, d_rid = book.d_row[use], book.d_rid[use]
    d_e = e_of_row[d_row]
    product = limbs.mul(book.d_var[:, use], reserves.debt_index[:, d_rid])
    if floor:
        debt = limbs.widen(product[RAY_LIMBS:], WIDTH + 2)
        limbs.plus_one(debt, limbs.nonzero(product[:RAY_LIMBS]))
    else:
        limbs.add_at(product, 2, HALF_RAY_LIMB)
        debt = limbs.widen(product[RAY_LIMBS:], WIDTH + 2)
    stable = np.where(reserves.stable[d_rid], book.d_stable[:, use], 0)
    debt = limbs.add(debt, stable)
    value = limbs.mul(debt, price_t[:, d_e, d_rid])
    debt_base, cut = limbs.div_pow10(value, reserves.decimals[d_rid])
    if floor:
        limbs.plus_one(debt_base, cut)

    total_collateral = _row_sums(c_row, collateral_base, n)
    total_weighted = _row_sums(c_row, weighted, n)
    total_debt = _row_sums(d_row, debt_base, n)
    # a total of 1e72 or more: percentMul / wadDiv could overflow, the scalar math decides
    odd |= ~limbs.below(total_collateral, 8) | ~limbs.below(total_debt, 8)

    # health factor: 3.0.2 percentMul(avg LT truncated) then wadDiv; 3.5 Σ(c·LT).wadDiv / 1e4
    owing = np.flatnonzero(limbs.nonzero(total_debt) & ~odd)
    td = total_debt[:, owing]
    if floor:
        weighted_owing = total_weighted[:, owing]
    else:
        tc = total_collateral[:, owing]
        average = _small_quotient(total_weighted[:, owing], tc)
        adjusted = limbs.add_at(limbs.mul_small(tc, average), 0, math.HALF_PERCENTAGE_FACTOR)
        weighted_owing = limbs.div_small(adjusted, math.PERCENTAGE_FACTOR)[0]
    numerator = limbs.add(
        limbs.widen(weighted_owing, weighted_owing.shape[0] + WAD_LIMBS, WAD_LIMBS),
        limbs.div_small(td, 2)[0],
    )
    fits = limbs.below(numerator, 9) & (numerator[8] < 10**4)  # below 1e76 < 2**256
    odd[owing[~fits]] = True
    owing, numerator, td = owing[fits], numerator[:, fits], td[:, fits]
    hf_owing = limbs.to_ints(numerator) // limbs.to_ints(td)
    if floor:
        hf_owing = hf_owing // math.PERCENTAGE_FACTOR
    health: np.ndarray = np.full(n, None, object)
    health[owing] = hf_owing

    # liquidatable: below 1, unless every (collateral, debt) pair it holds is refused
    below = np.zeros(n, bool)
    below[owing] = np.asarray(hf_owing < HF_ONE, bool)
    held_c = limbs.nonzero(amount)
    free_c = held_c & ~reserves.blocked[c_rid]
    held_d = limbs.nonzero(debt)
    free_d = held_d & ~reserves.blocked[d_rid]
    refused = (
        _any_per_row(c_row, held_c, n)
        & _any_per_row(d_row, held_d, n)
        & ~(_any_per_row(c_row, free_c, n) & _any_per_row(d_row, free_d, n))
    )
    liquidatable = below & ~refused

    collateral_out = limbs.to_ints(total_collateral)
    debt_out = limbs.to_ints(total_debt)
    scalar = np.flatnonzero(odd)
    for row in scalar.tolist():
        hf, tc_row, td_row, verdict = _scalar_row(market_state, book.states[row], block)
        health[row], collateral_out[row], debt_out[row] = hf, tc_row, td_row
        liquidatable[row] = verdict
    return BookHealth(
        accounts=tuple(book.accounts),
        markets=(market_state.addresses_provider,) * n,
        health_factor=health.tolist(),
        total_collateral_base=collateral_out.tolist(),
        total_debt_base=debt_out.tolist(),
        liquidatable=liquidatable,
        scalar_rows=len(scalar),
    )


def _small_quotient(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """a // b per row where the quotient is below 2**16 (the average LT: Σ c·LT // Σ c), 0
    where b is 0: a float estimate (off by at most one), made exact by comparing q·b and
    (q+1)·b with a in limbs."""
    nonzero = limbs.nonzero(b)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = limbs.to_float(a) / np.where(nonzero, limbs.to_float(b), 1.0)
    q = np.where(nonzero, np.clip(np.floor(ratio), 0, 0xFFFF), 0).astype(np.int64)
    width = max(a.shape[0], b.shape[0]) + 2
    a = limbs.widen(a, width)
    high = limbs.compare(limbs.widen(limbs.mul_small(b, q), width), a) > 0
    q -= high
    low = limbs.compare(limbs.widen(limbs.mul_small(b, q + 1), width), a) <= 0
    q += low & nonzero
    return np.where(nonzero, q, 0)


def _scalar_row(
    market_state: AaveMarketState, state: AaveAccountState, block: BlockRef
) -> tuple[int | None, int, int, bool]:
    """One row the way `AaveV3Adapter.position` computes it (and raises where it raises)."""
    rules = market_state.rules
    values: dict[tuple[int, str], int] = {}
    for r in market_state.reserves:
        rid = r.reserve_id
        bits = math.reserve_bits(state.user_configuration, rid)
        if bits & 2 and (r.config.liquidation_threshold != 0 or rules.lt_zero_collateral):
            values[(rid, "a")] = state.balances.get((rid, "a"), 0)
        if bits & 1:
            values[(rid, "v")] = state.balances.get((rid, "v"), 0)
            if r.has_stable_debt:
                values[(rid, "s")] = state.balances.get((rid, "s"), 0)
    data = account_data(market_state, state.user_configuration, state.emode, values)
    has_debt = data.total_debt_base > 0
    below = has_debt and math.is_liquidatable(data.health_factor)
    hold = liquidation_hold(market_state, data.assets, block.timestamp) if below else None
    return (
        data.health_factor if has_debt else None,
        data.total_collateral_base,
        data.total_debt_base,
        below and hold is None,
    )
