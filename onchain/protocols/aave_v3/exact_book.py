"""Every kept Aave account's `getUserAccountData` figures at once: health factor, total
collateral and debt in base currency, and the "liquidatable now" verdict (liquidation holds
included), equal bit for bit to the Position `AaveV3Adapter.positions_from_states` builds.

Why not one `account_data` per account: building a Position costs 100+ us, too much for a
book of 100,000 every block. Here each kept balance the configuration bitmap marks is one
entry of flat arrays, exact integers as base-1e9 limbs (`limbs`), grouped by (the account's
eMode, reserve): per group the reserve's index, price, decimals and threshold are constants,
and `GenericLogic.calculateUserAccountData` runs over all the group's entries at once, the same
integer operations in the same order as `math.calculate_user_account_data` (every division
truncates or rounds up where the contract's does). Per-account sums add limbs with
`np.bincount` (exact: sums of limbs stay far below 2**53). Rows with inputs the limbs do not
take (balances, indexes or prices of 1e36 and more; totals of 1e72 and more, where the Pool's
overflow guards could trip), an eMode category not loaded, or values the ABI could not carry
are computed by `adapter.account_data` itself, row by row, so they behave as a Position
would, raising where it raises."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
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

RESERVES = math.MAX_RESERVES_COUNT
WIDTH = 4  # limbs of a kept balance: below 1e36 (a row above: scalar math)
LIMIT = limbs.B**WIDTH  # indexes and prices below it too
MAX_DECIMALS = 36
RAY_LIMBS = 3  # 1e27 = B**3: rayMul's division drops three limbs
WAD_LIMBS = 2  # 1e18 = B**2
HALF_RAY_LIMB = math.HALF_RAY // limbs.B**2  # in limb 2
TOTAL_LIMBS = 8  # totals from 1e72 = B**8 on: scalar math


@dataclass
class _Entries:
    """Balances of one kind (collateral, or variable + stable debt) as limbs, one column per
    (row, reserve id) entry, sorted by `key` = eMode * 128 + reserve id; `groups` are the runs
    of one key (key, first, end)."""

    row: np.ndarray
    rid: np.ndarray
    key: np.ndarray
    amount: np.ndarray  # (WIDTH, entries)
    stable: np.ndarray  # (WIDTH, entries), debt only (zeros for collateral)
    groups: list[tuple[int, int, int]] = field(default_factory=list)

    @classmethod
    def empty(cls) -> _Entries:
        ints, amounts = np.zeros(0, np.int64), np.zeros((WIDTH, 0), np.int64)
        return cls(ints, ints, ints, amounts, amounts)

    def keep(self, mask: np.ndarray) -> None:
        self.row, self.rid, self.key = self.row[mask], self.rid[mask], self.key[mask]
        self.amount, self.stable = self.amount[:, mask], self.stable[:, mask]

    def append(self, other: _Entries) -> None:
        self.row = np.concatenate([self.row, other.row])
        self.rid = np.concatenate([self.rid, other.rid])
        self.key = np.concatenate([self.key, other.key])
        self.amount = np.concatenate([self.amount, other.amount], axis=1)
        self.stable = np.concatenate([self.stable, other.stable], axis=1)

    def sort(self) -> None:
        self.keep(np.argsort(self.key, kind="stable"))
        bounds = (np.flatnonzero(np.diff(self.key)) + 1).tolist()
        starts, ends = [0, *bounds], [*bounds, len(self.key)]
        self.groups = [
            (int(self.key[lo]), lo, hi) for lo, hi in zip(starts, ends, strict=True) if hi > lo
        ]


@dataclass
class ExactBook:
    """Kept states as entries (`_Entries`), and per row the eMode and whether the row is left
    to the scalar math (inputs outside what the ABI could carry, or the limbs take)."""

    states: list[AaveAccountState]
    accounts: list[str]
    emode: np.ndarray
    odd: np.ndarray  # bool per row: computed by `account_data` whatever the block
    collateral: _Entries
    debt: _Entries
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
        _Entries.empty(),
        _Entries.empty(),
    )
    _fill(out, range(n))
    out.collateral.sort()
    out.debt.sort()
    return out


def set_row(
    market_state: AaveMarketState, book: ExactBook, row: int, state: AaveAccountState
) -> None:
    """Row `row` now holds `state` (a touched account's new state); its entries are rebuilt
    with the next `exact_health`."""
    book.states[row] = state
    book.accounts[row] = checksummed(state.account)
    book.pending.add(row)


def _fill(book: ExactBook, rows: Sequence[int] | range) -> None:
    """Append the entries of `rows` (unsorted) and set their row-level fields."""
    c: tuple[list[int], list[int], list[int]] = ([], [], [])
    d: tuple[list[int], list[int], list[int], list[int]] = ([], [], [], [])
    for row in rows:
        state = book.states[row]
        plain, collateral, debt = _row_entries(state)
        book.odd[row] = not plain
        book.emode[row] = state.emode if plain else 0
        if not plain:
            continue
        for rid, value in collateral:
            c[0].append(row)
            c[1].append(rid)
            c[2].append(value)
        for rid, v, st in debt:
            d[0].append(row)
            d[1].append(rid)
            d[2].append(v)
            d[3].append(st)
    for entries, (row_list, rid_list, *values) in ((book.collateral, c), (book.debt, d)):
        row_ids = np.array(row_list, np.int64)
        rid_ids = np.array(rid_list, np.int64)
        amount, fits = limbs.from_ints(values[0], WIDTH)
        if len(values) > 1:
            stable, stable_fits = limbs.from_ints(values[1], WIDTH)
            fits &= stable_fits
        else:
            stable = np.zeros_like(amount)
        book.odd[row_ids[~fits]] = True
        key = book.emode[row_ids] * RESERVES + rid_ids
        entries.append(_Entries(row_ids, rid_ids, key, amount, stable))


def _settle(book: ExactBook) -> None:
    """Rebuild the entries of the rows replaced since the last computation, kept sorted."""
    if not book.pending:
        return
    rows = np.array(sorted(book.pending), np.int64)
    book.pending = set()
    for entries in (book.collateral, book.debt):
        entries.keep(~np.isin(entries.row, rows))
    _fill(book, rows.tolist())
    book.collateral.sort()
    book.debt.sort()


@dataclass
class _Market:
    """What GenericLogic reads of each reserve at this block, per reserve id (Python ints),
    and per eMode category in use its prices, thresholds and collateral rule."""

    reserves: dict[int, tuple[int, int, int, bool]]  # rid: (income, debt index, decimals, stable)
    blocked: np.ndarray  # per rid: inactive, paused or in a liquidation grace period
    bad: set[int]  # reserve ids with values the ABI or the limbs do not take
    price: dict[int, dict[int, int]]  # eMode: rid: price
    lt: dict[int, dict[int, int]]
    counts: dict[int, dict[int, bool]]  # eMode: rid: collateral with the bit set counts
    odd_emodes: set[int]  # categories not loaded (or not usable): their rows to scalar math


def _market(market_state: AaveMarketState, emodes: list[int], timestamp: int) -> _Market:
    rules = market_state.rules
    out = _Market({}, np.zeros(RESERVES, bool), set(), {}, {}, {}, set())
    for r in market_state.reserves:
        rid = r.reserve_id
        if not (type(rid) is int and 0 <= rid < RESERVES):
            raise _WholeBookScalar
        fine = (
            _is_uint(r.price_base)
            and r.price_base < LIMIT
            and _is_uint(r.normalized_income_ray)
            and r.normalized_income_ray < LIMIT
            and _is_uint(r.normalized_debt_ray)
            and r.normalized_debt_ray < LIMIT
            and _is_uint(r.liquidation_grace_until)
            and _is_uint(r.config.decimals)
            and r.config.decimals <= MAX_DECIMALS
        )
        if not fine:
            out.bad.add(rid)
            continue
        out.reserves[rid] = (
            r.normalized_income_ray,
            r.normalized_debt_ray,
            r.config.decimals,
            r.has_stable_debt,
        )
        out.blocked[rid] = (
            not r.config.active
            or r.config.paused
            or (rules.grace_period and r.liquidation_grace_until >= timestamp)
        )
    for e in emodes:
        category = market_state.emode_categories.get(e) if e else None
        emode_price = 0
        if e:
            if category is None or category.id != e or not _fits_category(category):
                out.odd_emodes.add(e)
                continue
            if category.has_price_source and not rules.emode_bitmaps:
                given = market_state.emode_prices.get(e)
                if given is None or not _is_uint(given) or given >= LIMIT:
                    out.odd_emodes.add(e)
                    continue
                emode_price = given
        price: dict[int, int] = {}
        lt: dict[int, int] = {}
        counts: dict[int, bool] = {}
        out.price[e], out.lt[e], out.counts[e] = price, lt, counts
        for r in market_state.reserves:
            rid, cfg = r.reserve_id, r.config
            same = emode_price != 0 and e == cfg.emode_category
            price[rid] = emode_price if same else r.price_base
            if not e:
                in_emode = False
            elif rules.emode_bitmaps:
                assert category is not None
                in_emode = (category.collateral_bitmap >> rid) & 1 != 0
            else:
                in_emode = e == cfg.emode_category
            lt[rid] = (
                category.liquidation_threshold
                if in_emode and category is not None
                else cfg.liquidation_threshold
            )
            counts[rid] = rules.lt_zero_collateral or cfg.liquidation_threshold != 0
    return out


class _WholeBookScalar(Exception):
    """A reserve id the contract refuses (every row to the scalar math, which raises)."""


def _fits_category(category: math.EModeCategory) -> bool:
    return (
        _is_uint(category.liquidation_threshold, 16)
        and _is_uint(category.ltv, 16)
        and _is_uint(category.collateral_bitmap, 128)
        and _is_uint(category.ltvzero_bitmap, 128)
    )


def _row_sums(rows: np.ndarray, values: np.ndarray, n: int) -> np.ndarray:
    """Per-row sums of limb entries (rows without entries: 0): float64 bincounts are exact
    here, every sum of limbs staying below 128 * 1e9 < 2**53."""
    out = np.zeros((values.shape[0] + 2, n), np.int64)
    for k in range(values.shape[0]):
        out[k] = np.bincount(rows, weights=values[k], minlength=n)[:n].astype(np.int64)
    return limbs.normalize(out)


def _any_per_row(rows: np.ndarray, mask: np.ndarray, n: int) -> np.ndarray:
    return np.bincount(rows[mask], minlength=n)[:n] > 0


def _groups(
    entries: _Entries, market: _Market, odd: np.ndarray
) -> Iterator[tuple[int, int, int, int]]:
    """(eMode, reserve id, first, end) of each group of entries the arrays compute: not those
    of reserves the market does not list; rows in groups the limbs do not take become odd."""
    for key, lo, hi in entries.groups:
        e, rid = divmod(key, RESERVES)
        if rid in market.bad or e in market.odd_emodes:
            odd[entries.row[lo:hi]] = True
        elif rid in market.reserves:
            yield e, rid, lo, hi


def _collateral(
    book: ExactBook, market: _Market, floor: bool, odd: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per collateral entry: its base value (aToken balance by rayMul, rayMulFloor from 3.5,
    times price, over 10**decimals), the same weighted by the LT it counts with, and whether
    it holds any aToken; zeros where it does not count."""
    entries = book.collateral
    m = len(entries.row)
    base: list[tuple[int, int, np.ndarray]] = []
    weighted: list[tuple[int, int, np.ndarray]] = []
    held = np.zeros(m, bool)
    for e, rid, lo, hi in _groups(entries, market, odd):
        if not market.counts[e][rid]:
            continue
        income, _debt_index, decimals, _stable = market.reserves[rid]
        product = _product(entries.amount[:, lo:hi], income)
        if not floor:
            limbs.add_at(product, 2, HALF_RAY_LIMB)
        amount = limbs.trim(product[RAY_LIMBS:])
        held[lo:hi] = limbs.nonzero(amount)
        value = limbs.mul_const(amount, market.price[e][rid])
        value = limbs.trim(limbs.div_pow10(value, decimals)[0])
        base.append((lo, hi, value))
        weighted.append((lo, hi, limbs.trim(limbs.mul_small(value, market.lt[e][rid]))))
    return _assemble(base, m), _assemble(weighted, m), held


def _debt(
    book: ExactBook, market: _Market, floor: bool, odd: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Per debt entry: its base value (variable debt by rayMul, rayMulCeil from 3.5, plus
    stable debt, times price over 10**decimals, mulDivCeil from 3.5) and whether any debt."""
    entries = book.debt
    m = len(entries.row)
    base: list[tuple[int, int, np.ndarray]] = []
    held = np.zeros(m, bool)
    for e, rid, lo, hi in _groups(entries, market, odd):
        _income, debt_index, decimals, stable = market.reserves[rid]
        product = _product(entries.amount[:, lo:hi], debt_index)
        if floor:
            amount = limbs.widen(product[RAY_LIMBS:], product.shape[0] - RAY_LIMBS + 1)
            limbs.plus_one(amount, limbs.nonzero(product[:RAY_LIMBS]))
        else:
            amount = limbs.add_at(product, 2, HALF_RAY_LIMB)[RAY_LIMBS:]
        if stable:
            amount = limbs.add(amount, entries.stable[:, lo:hi])
        amount = limbs.trim(amount)
        held[lo:hi] = limbs.nonzero(amount)
        value = limbs.mul_const(amount, market.price[e][rid])
        value, cut = limbs.div_pow10(limbs.widen(value, value.shape[0] + 1), decimals)
        if floor:
            limbs.plus_one(value, cut)
        base.append((lo, hi, limbs.trim(value)))
    return _assemble(base, m), held


def _assemble(parts: list[tuple[int, int, np.ndarray]], m: int) -> np.ndarray:
    """One limb array for all entries from the groups' (first, end, limbs), as wide as the
    widest group's (entries of no group: 0)."""
    out = np.zeros((max((p.shape[0] for _lo, _hi, p in parts), default=1), m), np.int64)
    for lo, hi, part in parts:
        out[: part.shape[0], lo:hi] = part
    return out


def _product(scaled: np.ndarray, index: int) -> np.ndarray:
    """scaled * index, with a free top limb and at least one limb above the ray."""
    product = limbs.mul_const(limbs.trim(scaled), index)
    return limbs.widen(product, max(product.shape[0] + 1, RAY_LIMBS + 2))


def exact_health(market_state: AaveMarketState, book: ExactBook, block: BlockRef) -> BookHealth:
    """Every row's health factor, totals and liquidatable verdict at `block` (the market
    state's block), as `positions_from_states` would give them."""
    _settle(book)
    floor = market_state.rules.directional_rounding  # 3.5+: Floor collateral, Ceil debt
    n = len(book.states)
    odd = book.odd.copy()
    try:
        emodes = sorted({0, *np.unique(book.emode).tolist()})
        market = _market(market_state, emodes, block.timestamp)
    except _WholeBookScalar:
        return _all_scalar(market_state, book, block)
    c_base, c_weighted, c_held = _collateral(book, market, floor, odd)
    d_base, d_held = _debt(book, market, floor, odd)
    c_row, d_row = book.collateral.row, book.debt.row
    total_collateral = limbs.trim(_row_sums(c_row, limbs.trim(c_base), n))
    total_weighted = limbs.trim(_row_sums(c_row, limbs.trim(c_weighted), n))
    total_debt = limbs.trim(_row_sums(d_row, limbs.trim(d_base), n))
    # totals of 1e72 or more: percentMul / wadDiv could overflow, the scalar math decides
    odd |= ~limbs.below(total_collateral, TOTAL_LIMBS) | ~limbs.below(total_debt, TOTAL_LIMBS)

    # health factor: 3.0.2 percentMul(avg LT truncated) then wadDiv; 3.5 Σ(c·LT).wadDiv / 1e4
    owing = np.flatnonzero(limbs.nonzero(total_debt) & ~odd)
    td = limbs.trim(total_debt[:, owing])
    if floor:
        weighted = limbs.trim(total_weighted[:, owing])
    else:
        tc = limbs.trim(total_collateral[:, owing])
        average = _small_quotient(limbs.trim(total_weighted[:, owing]), tc)
        adjusted = limbs.add_at(limbs.mul_small(tc, average), 0, math.HALF_PERCENTAGE_FACTOR)
        weighted = limbs.trim(limbs.div_small(adjusted, math.PERCENTAGE_FACTOR)[0])
    numerator = limbs.add(
        limbs.widen(weighted, weighted.shape[0] + WAD_LIMBS, WAD_LIMBS),
        limbs.div_small(td, 2)[0],
    )
    numerator = limbs.widen(numerator, max(numerator.shape[0], 10))
    fits = limbs.below(numerator, 9) & (numerator[8] < 10**4)  # below 1e76 < 2**256
    odd[owing[~fits]] = True
    owing, numerator, td = owing[fits], numerator[:, fits], td[:, fits]
    # 3.5: (N // D) // 1e4 = N // (D * 1e4); the verdict: N // D' < 1e18 exactly when
    # N < D' * 1e18, compared in limbs
    divisor = limbs.mul_small(td, math.PERCENTAGE_FACTOR) if floor else td
    numerator = limbs.trim(numerator)
    one = limbs.widen(divisor, divisor.shape[0] + WAD_LIMBS, WAD_LIMBS)
    width = max(numerator.shape[0], one.shape[0])
    below = np.zeros(n, bool)
    below[owing] = limbs.compare(limbs.widen(numerator, width), limbs.widen(one, width)) < 0
    debt_out = limbs.to_ints(total_debt)
    health: np.ndarray = np.full(n, None, object)
    # the quotients in Python ints (most are 1e18 and more: no int64 holds them anyway)
    health[owing] = limbs.to_ints(numerator) // (
        debt_out[owing] * math.PERCENTAGE_FACTOR if floor else debt_out[owing]
    )

    # liquidatable: below 1, unless every (collateral, debt) pair it holds is refused
    c_free = c_held & ~market.blocked[book.collateral.rid]
    d_free = d_held & ~market.blocked[book.debt.rid]
    refused = (
        _any_per_row(c_row, c_held, n)
        & _any_per_row(d_row, d_held, n)
        & ~(_any_per_row(c_row, c_free, n) & _any_per_row(d_row, d_free, n))
    )
    liquidatable = below & ~refused

    collateral_out = limbs.to_ints(total_collateral)
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


def _all_scalar(market_state: AaveMarketState, book: ExactBook, block: BlockRef) -> BookHealth:
    rows = [_scalar_row(market_state, state, block) for state in book.states]
    return BookHealth(
        accounts=tuple(book.accounts),
        markets=(market_state.addresses_provider,) * len(rows),
        health_factor=[r[0] for r in rows],
        total_collateral_base=[r[1] for r in rows],
        total_debt_base=[r[2] for r in rows],
        liquidatable=np.array([r[3] for r in rows], bool),
        scalar_rows=len(rows),
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
