"""The change layout (models: `market_states`, `account_states`, `position_verdicts`,
`positions_latest`): a block stores what the chain changed, and any stored block's book is
rebuilt exactly from it through the adapter's own integer math.

Why: the snapshot layout writes every position and asset row again at every block although,
between two blocks, almost nothing of a position changes except what the market's prices and
indexes imply. Here a block costs its market state, the accounts whose protocol state changed,
the verdicts that changed tier or crossed a health-factor band, and in-place updates of the
current book. The store never reads the blobs: the adapter encodes and decodes them."""

from __future__ import annotations

import json
import re
from bisect import bisect_right
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from functools import cached_property
from itertools import pairwise
from operator import itemgetter, ne
from types import NoneType
from typing import TYPE_CHECKING, Any, NamedTuple, Protocol, cast, overload, runtime_checkable

import numpy as np
from sqlalchemy import (
    Connection,
    Float,
    MetaData,
    Table,
    and_,
    bindparam,
    delete,
    func,
    literal_column,
    select,
    text,
    tuple_,
    update,
)
from sqlalchemy.dialects.postgresql import distinct_on
from sqlalchemy.sql import Select

from onchain.protocols.base import IncrementalAdapter, Position
from onchain.rpc.client import BlockRef
from onchain.store import models as m
from onchain.store.buckets import (
    BUCKET_COLUMNS,
    HF_PER_OCTAVE,
    buckets,
    float_buckets,
    int_buckets,
)
from onchain.store.db import Store
from onchain.store.rows import (
    IN_CHUNK,
    asset_values,
    chunks,
    copy_rows,
    insert_for,
    jsonable,
    position_values,
)
from onchain.store.types import UINT256_MAX, Uint256

if TYPE_CHECKING:
    from onchain.store.crud import Assessed

WAD = 10**18

T_MARKET_STATES = cast(Table, m.MarketStateRow.__table__)
T_ACCOUNT_STATES = cast(Table, m.AccountStateRow.__table__)
T_VERDICTS = cast(Table, m.PositionVerdict.__table__)
T_LATEST = cast(Table, m.PositionLatest.__table__)
T_LATEST_DETAILS = cast(Table, m.PositionLatestDetails.__table__)
T_ACCOUNTS = cast(Table, m.Account.__table__)
T_SNAPSHOTS = cast(Table, m.MarketSnapshot.__table__)
T_MARKET_ACCOUNTS = cast(Table, m.MarketAccount.__table__)
T_MARKETS = cast(Table, m.Market.__table__)
CHANGE_TABLES = (T_MARKET_STATES, T_ACCOUNT_STATES, T_VERDICTS)
KEY_VERDICT = ("account_id", "market_key")
KEY_LATEST = ("market_id", "account_id", "market_key")
COPY_MIN_ROWS = 200  # PostgreSQL: COPY beats INSERT from about this many rows (as crud's)


@dataclass(frozen=True)
class KeptState:
    """What the adapter keeps for a block, encoded by it: the market's state and every tracked
    account's state (address -> bytes). `bands`: health factors whose crossing stores a
    position's verdict again."""

    market_state: bytes
    accounts: Mapping[str, bytes]
    bands: tuple[float, ...]
    standing: Standing | None = None  # the writer's memory of what stands (`Standing`)
    # ((block number, hash), accounts): `accounts` equal the last block's encoded at that block
    # but for these accounts' bytes (read again since); None: not known, every one compared
    changed: tuple[tuple[int, str], frozenset[str]] | None = None


class BookFigures(Protocol):
    """Every position of a block, row by row: its exact contract-level figures (the adapter's
    own integers, what a Position would hold), without building the Position."""

    @property
    def accounts(self) -> Sequence[str]: ...

    @property
    def markets(self) -> Sequence[str]: ...

    @property
    def health_factor(self) -> Sequence[int | None]: ...

    @property
    def total_collateral_base(self) -> Sequence[int]: ...

    @property
    def total_debt_base(self) -> Sequence[int]: ...

    @property
    def liquidatable(self) -> Any: ...  # one bool per row (a numpy array)


@dataclass(frozen=True)
class LeanBook:
    """A block written at a cost that follows what changed: every position's figures and
    verdict (`figures`, `tiers`, row by row), while `write_snapshot`'s positions are only the
    rows written whole; the other rows of the latest view get only the columns prices move.
    `tiers`: in the daemon `jobs.assess.TierColumns`, columns whose whole `Assessed` (with
    its typed verdict) is built only for a row asked for; read the book through `verdicts`
    (columns) or `assessed` (a row's stored verdict fields, cheap)."""

    figures: BookFigures
    tiers: Sequence[Assessed]

    @cached_property
    def verdicts(self) -> VerdictColumns:
        """Every row's stored verdict as columns, without an Assessed per row."""
        return columns_of(self.tiers)

    @cached_property
    def assessed(self) -> Sequence[VerdictRow]:
        """Row i's stored verdict fields (those of its `Assessed`, without the typed verdict),
        built from the columns when read."""
        return _VerdictRows(self.verdicts)

    @cached_property
    def health_floats(self) -> list[float | None]:
        """Each row's health factor as a float (None without debt), as the latest view has it."""
        return [None if hf is None else hf / WAD for hf in self.figures.health_factor]

    def position_keys(self) -> list[tuple[str, str]]:
        """(account, market key) of each row."""
        return list(zip(self.figures.accounts, self.figures.markets, strict=True))


class VerdictRow(NamedTuple):
    """One row's stored verdict fields, as `Assessed` names them."""

    tier: str
    reason: str
    reasons: list[str] | None
    probability: float | None
    pending_health_factor: float | None
    horizon_s: float | None


class _VerdictRows(Sequence[VerdictRow]):
    def __init__(self, columns: VerdictColumns) -> None:
        self._c = columns

    def __len__(self) -> int:
        return len(self._c.tier)

    @overload
    def __getitem__(self, i: int) -> VerdictRow: ...

    @overload
    def __getitem__(self, i: slice) -> list[VerdictRow]: ...

    def __getitem__(self, i: int | slice) -> VerdictRow | list[VerdictRow]:
        if isinstance(i, slice):
            return [self[j] for j in range(len(self))[i]]
        c = self._c
        return VerdictRow(
            c.tier[i],
            c.reason[i],
            c.reasons[i],
            c.probability[i],
            c.pending_health_factor[i],
            c.horizon_s[i],
        )


@runtime_checkable
class VerdictColumns(Protocol):
    """A block's stored verdicts, one list per column, row by row (`jobs.assess.TierColumns`)."""

    @property
    def tier(self) -> Sequence[str]: ...

    @property
    def reason(self) -> Sequence[str]: ...

    @property
    def reasons(self) -> Sequence[list[str] | None]: ...

    @property
    def probability(self) -> Sequence[float | None]: ...

    @property
    def pending_health_factor(self) -> Sequence[float | None]: ...

    @property
    def horizon_s(self) -> Sequence[float | None]: ...


@dataclass(frozen=True)
class _Columns:
    tier: Sequence[str]
    reason: Sequence[str]
    reasons: Sequence[list[str] | None]
    probability: Sequence[float | None]
    pending_health_factor: Sequence[float | None]
    horizon_s: Sequence[float | None]


# a book's latest-view indexed values (`INDEXED` but the market), row by row: tiers and the
# health-factor and debt buckets
LatestColumns = tuple[Sequence[str], Sequence[int | None], Sequence[int | None]]
# a book's latest-view columns that seldom move, row by row (`STEADY`: reason codes,
# liquidatable, horizon)
SteadyColumns = tuple[Sequence[list[str] | None], Sequence[bool], Sequence[float | None]]


@dataclass(frozen=True)
class BookRows:
    """A lean block's book row by row, as written: each row's account and market key, its key
    in the store, and what now stands for it: its verdict's tier, reason codes and band (equal
    to the stored verdict's: a row whose differ gets a verdict row), and its latest-view row's
    indexed values (`INDEXED` but the market) and seldom moving values (`STEADY`). The next
    block, where its rows are the same, compares these column by column instead of looking
    each row up by its key, and leaves the steady columns out of the rows where they stay."""

    accounts: tuple[str, ...]
    markets: tuple[str, ...]
    keys: list[tuple[int, str]]
    tiers: tuple[str, ...]
    reasons: tuple[list[str] | None, ...]
    bands: Any  # numpy int array
    latest: LatestColumns | None = None
    steady: SteadyColumns | None = None
    rowids: list[int] | None = None  # SQLite: each row's latest-view rowid, by row

    def same_rows(self, book: LeanBook) -> bool:
        """Whether `book` has these rows in this order."""
        f = book.figures
        return self.accounts == _frozen(f.accounts) and self.markets == _frozen(f.markets)


def _frozen(values: Sequence[Any]) -> tuple[Any, ...]:
    """A copy nothing can change (the sequence itself where it is a tuple)."""
    return values if type(values) is tuple else tuple(values)


@dataclass
class Standing:
    """What a writer knows stands in the store for one market after the block it wrote last
    (`block_number`, `block_hash`): each account's state bytes and each position's verdict, as
    `states_at` and `_standing_verdicts` would read them back. Kept across blocks so a block
    costs no read of the whole book; used only while the market's newest stored block is that
    one (`usable`): a restart, a reorg, another writer or a block written below the newest
    make the next block read the store again (and refill this). The latest view's indexed
    values (`latest`) also need the view itself at that block: another writer's block that a
    reorg dropped leaves its rows there."""

    block_number: int | None = None
    block_hash: str | None = None
    states: dict[int, bytes] = field(default_factory=dict)
    verdicts: dict[tuple[int, str], StoredVerdict] = field(default_factory=dict)
    # the latest view's indexed values per row (`INDEXED` but the market), as written; None:
    # not known (read from the store)
    latest: dict[tuple[int, str], tuple[Any, ...]] | None = None
    # SQLite: each latest-view row's rowid, as `latest` (None: not known, read with it)
    latest_rowids: dict[tuple[int, str], int] | None = None
    account_ids: dict[str, int] = field(default_factory=dict)  # address -> id, as written
    # each verdict's band (`band`) under `band_edges`, the same keys as `verdicts`
    verdict_bands: dict[tuple[int, str], int] = field(default_factory=dict)
    band_edges: tuple[float, ...] | None = None
    # the last book's keys (account id, market key) by row, and its rows in key order
    key_order: tuple[list[tuple[int, str]], list[int]] | None = None
    # the last lean block's book row by row, what stands for each row (`BookRows`); None:
    # not known (then each row is looked up by its key)
    book_rows: BookRows | None = None

    def in_key_order(self, keys: list[tuple[int, str]]) -> list[int]:
        """The rows of a book with these keys, in the primary key's order (kept while the
        book's rows stay the same: sorting them is a noticeable part of a quiet block)."""
        if self.key_order is None or self.key_order[0] != keys:
            order = sorted(range(len(keys)), key=keys.__getitem__)
            for i, j in pairwise(order):  # a row per key: the update and count rely on it
                if keys[i] == keys[j]:
                    raise ValueError(f"two positions of the book have the key {keys[i]}")
            self.key_order = (keys, order)
        return self.key_order[1]

    def usable(self, block_number: int, newest: tuple[int, str] | None) -> bool:
        """Whether this is what stands before `block_number`, the store's newest other block
        being `newest` (number, hash)."""
        return (
            self.block_number is not None
            and newest == (self.block_number, self.block_hash)
            and self.block_number < block_number
        )


@dataclass(frozen=True)
class StoredVerdict:
    """A position's verdict as stored, from `block_number` on."""

    block_number: int
    health_factor: int | None
    risk_tier: str | None
    risk_reason: str | None
    risk_reasons: list[str] | None
    liquidation_probability: float | None
    pending_health_factor: float | None
    horizon_s: float | None


@dataclass(frozen=True)
class StoredBook:
    """What the change layout holds for one market at one block, still encoded."""

    block: BlockRef
    market_state: bytes
    accounts: dict[str, bytes]  # address -> the adapter's bytes, by address
    verdicts: dict[tuple[str, str], StoredVerdict]  # (address, market key)


def band(health_factor: int | None, bands: Sequence[float]) -> int:
    """Which band a health factor is in (no debt: above them all)."""
    if health_factor is None:
        return len(bands) + 1
    return bisect_right(bands, health_factor / WAD)  # the first band above it


def bands_of(
    health_factors: Sequence[int | None],
    bands: Sequence[float],
    floats: Sequence[float | None] | None = None,
) -> list[int]:
    """`band` of each health factor, a whole book at once (numpy's right-side search is
    `bisect_right`'s, on the same floats; `floats`: each health factor / WAD, if at hand)."""
    if floats is None:
        floats = [None if hf is None else hf / WAD for hf in health_factors]
    found = np.searchsorted(
        np.asarray(bands, dtype=float), np.array(floats, dtype=float), side="right"
    ).tolist()
    above = len(bands) + 1
    return [above if hf is None else b for hf, b in zip(health_factors, found, strict=True)]


def _newest_at(table: Table, key: Sequence[str], market_id: int, block_number: int) -> Select[Any]:
    """Each key's newest row at or before `block_number`: one grouped pass over the market's
    rows (the primary key's order), joined back to the rows."""
    newest = (
        select(*(table.c[k] for k in key), func.max(table.c.block_number).label("newest"))
        .where((table.c.market_id == market_id) & (table.c.block_number <= block_number))
        .group_by(*(table.c[k] for k in key))
        .subquery()
    )
    return select(table).join(
        newest,
        and_(
            table.c.market_id == market_id,
            table.c.block_number == newest.c.newest,
            *(table.c[k] == newest.c[k] for k in key),
        ),
    )


def states_at(conn: Connection, market_id: int, block_number: int) -> dict[int, bytes | None]:
    """account id -> its kept state at `block_number` (None: no state from then on). A short
    history is read in one pass over the market's rows; a long one (many rows per account)
    account by account, each one probe of the primary key, so the cost follows the number
    of accounts, not the history kept (bench/bench_pg_partitions.py measures both)."""
    t = T_ACCOUNT_STATES
    if _long_history(conn):
        probe = _PROBE_PG if conn.dialect.name == "postgresql" else _PROBE_SQLITE
        rows = conn.execute(text(probe), {"m": market_id, "n": block_number})
        return {aid: state for aid, state in rows}
    if conn.dialect.name == "postgresql":  # one walk down the primary key
        query = (
            select(t.c.account_id, t.c.state)
            .where((t.c.market_id == market_id) & (t.c.block_number <= block_number))
            .order_by(t.c.account_id, t.c.block_number.desc())
            .ext(distinct_on(t.c.account_id))
        )
        return {r.account_id: r.state for r in conn.execute(query)}
    rows = conn.execute(_newest_at(t, ["account_id"], market_id, block_number))
    return {r.account_id: r.state for r in rows}


# from about this many stored rows per tracked account, a probe per account beats one pass
# over every row: 30,000 accounts on PostgreSQL, ~22 µs a probe against ~1.9 µs a row
PROBE_ROWS_PER_ACCOUNT = 10

# the market's account ids by a skip scan of the primary key (one index probe each), then each
# account's newest row at or before the block (one more probe)
_ACCOUNT_IDS = (
    "WITH RECURSIVE ids(a) AS (SELECT min(account_id) FROM account_states WHERE market_id = :m "
    "UNION ALL SELECT (SELECT min(s.account_id) FROM account_states s WHERE s.market_id = :m "
    "AND s.account_id > ids.a) FROM ids WHERE ids.a IS NOT NULL) "
)
_PROBE_PG = _ACCOUNT_IDS + (
    "SELECT ids.a, s.state FROM ids JOIN LATERAL (SELECT state FROM account_states s "
    "WHERE s.market_id = :m AND s.account_id = ids.a AND s.block_number <= :n "
    "ORDER BY s.block_number DESC LIMIT 1) s ON true WHERE ids.a IS NOT NULL"
)
_PROBE_SQLITE = _ACCOUNT_IDS + (
    "SELECT s.account_id, s.state FROM ids JOIN account_states s ON s.market_id = :m "
    "AND s.account_id = ids.a AND s.block_number = (SELECT max(x.block_number) "
    "FROM account_states x WHERE x.market_id = :m AND x.account_id = ids.a "
    "AND x.block_number <= :n) WHERE ids.a IS NOT NULL"
)


def _long_history(conn: Connection) -> bool:
    """Whether `account_states` holds many rows per tracked account, by cheap estimates (the
    planner's row count on PostgreSQL, the highest rowid on SQLite; every market's)."""
    if conn.dialect.name == "postgresql":
        rows = conn.execute(
            text("SELECT reltuples FROM pg_class WHERE oid = 'account_states'::regclass")
        ).scalar()
    else:
        rows = conn.execute(text("SELECT max(rowid) FROM account_states")).scalar()
    accounts = conn.execute(select(func.count()).select_from(T_MARKET_ACCOUNTS)).scalar()
    return float(rows or 0) > PROBE_ROWS_PER_ACCOUNT * max(1, int(accounts or 0))


def verdicts_at(
    conn: Connection, market_id: int, block_number: int
) -> dict[tuple[int, str], StoredVerdict]:
    """(account id, market key) -> the position's verdict at `block_number`. On PostgreSQL one
    walk down the primary key (DISTINCT ON): the grouped pass joined back to the rows can be
    planned as a nested loop over the block index, quadratic in the book, while the table's
    statistics still say it is small (after the first blocks, until autovacuum analyzes it)."""
    t = T_VERDICTS
    if conn.dialect.name == "postgresql":
        rows = conn.execute(
            select(t)
            .where((t.c.market_id == market_id) & (t.c.block_number <= block_number))
            .order_by(t.c.account_id, t.c.market_key, t.c.block_number.desc())
            .ext(distinct_on(t.c.account_id, t.c.market_key))
        )
    else:
        rows = conn.execute(_newest_at(t, ["account_id", "market_key"], market_id, block_number))
    return {
        (r.account_id, r.market_key): StoredVerdict(
            r.block_number,
            r.health_factor,
            r.risk_tier,
            r.risk_reason,
            r.risk_reasons,
            r.liquidation_probability,
            r.pending_health_factor,
            r.horizon_s,
        )
        for r in rows
    }


def _standing_verdicts(
    conn: Connection, market_id: int, block_number: int, newest: int | None
) -> dict[tuple[int, str], StoredVerdict]:
    """The verdicts standing before `block_number`, from the latest view when it holds the
    newest stored block and that is older (the common case: its tier, codes and band are the
    last verdict row's, else a row would have been written since), else from the verdicts."""
    # one row per position at every block: read as the driver gives it (the health factor and
    # the reason codes as text, each distinct text decoded once)
    mark = "?" if conn.dialect.name == "sqlite" else "%s"
    rows = conn.exec_driver_sql(
        "SELECT account_id, market_key, block_number, CAST(health_factor AS TEXT), risk_tier,"
        f" CAST(risk_reasons AS TEXT) FROM positions_latest WHERE market_id = {mark}",
        (market_id,),
    ).all()
    if newest is None or newest > block_number or any(r[2] != newest for r in rows):
        return verdicts_at(conn, market_id, block_number - 1)
    decoded: dict[str | None, Any] = {None: None}
    out = {}
    for aid, key, number, hf, tier, reasons in rows:
        if reasons not in decoded:
            decoded[reasons] = json.loads(reasons)
        out[(aid, key)] = StoredVerdict(
            number, None if hf is None else int(hf), tier, None, decoded[reasons], None, None, None
        )
    return out


def remembered_ids(
    conn: Connection, market_id: int, block_number: int, standing: Standing | None
) -> dict[str, int]:
    """The account ids the writer remembers for the market (`Standing.account_ids`) where its
    memory stands for the store before `block_number`, else none."""
    if standing is None or not standing.account_ids:
        return {}
    if not standing.usable(block_number, _newest_other(conn, market_id, block_number)):
        return {}
    return standing.account_ids


def _latest_ref(conn: Connection, market_id: int) -> tuple[int, str] | None:
    """The block (number, hash) the market's latest view is at: one row's (a block sets every
    row's); None without rows."""
    t = T_LATEST
    row = conn.execute(
        select(t.c.block_number, t.c.block_hash).where(t.c.market_id == market_id).limit(1)
    ).first()
    return None if row is None else (row.block_number, row.block_hash)


def _newest_other(conn: Connection, market_id: int, block_number: int) -> tuple[int, str] | None:
    """The market's newest stored block other than `block_number`: (number, hash)."""
    s = T_SNAPSHOTS
    row = conn.execute(
        select(s.c.block_number, s.c.block_hash)
        .where((s.c.market_id == market_id) & (s.c.block_number != block_number))
        .order_by(s.c.block_number.desc())
        .limit(1)
    ).first()
    return None if row is None else (row.block_number, row.block_hash)


def _verdict_inputs(
    positions: Sequence[Position], assessed: Sequence[Assessed], book: LeanBook | None
) -> tuple[Sequence[int | None], VerdictColumns]:
    """The health factor and verdict of every position of the block."""
    if book is None:
        return [p.health_factor for p in positions], columns_of(assessed)
    return book.figures.health_factor, book.verdicts


def columns_of(assessed: Sequence[Assessed]) -> VerdictColumns:
    """Whole assessments' fields as columns."""
    if not isinstance(assessed, (list, tuple)) and isinstance(assessed, VerdictColumns):
        return assessed
    return _Columns(
        [a.tier for a in assessed],
        [a.reason for a in assessed],
        [a.reasons for a in assessed],
        [a.probability for a in assessed],
        [a.pending_health_factor for a in assessed],
        [a.horizon_s for a in assessed],
    )


def write_changes(
    conn: Connection,
    market_id: int,
    block: BlockRef,
    kept: KeptState,
    positions: Sequence[Position],
    assessed: Sequence[Assessed],
    account_ids: Mapping[str, int],
    asset_rows: Mapping[tuple[str, str], list[dict[str, Any]]],
    book: LeanBook | None = None,
) -> dict[str, int]:
    """Block `block`'s changes, inside the caller's transaction; how many rows of each kind.
    `asset_rows`: each position's asset rows (account, market key) for the latest view.
    `book`: the whole book where `positions` are only the rows to write whole (`LeanBook`).
    `kept.standing`: the writer's memory of what stands; where usable it replaces reading the
    book's states and verdicts back, and it is brought up to this block either way."""
    # PostgreSQL: the block holds the market's row in key share until it commits (`share_market`,
    # taken before its first delete), so an assessment (`lock_market`) cannot change what stands
    # while it is written
    conn.execute(
        T_MARKET_STATES.insert().values(
            market_id=market_id, block_number=block.number, state=kept.market_state
        )
    )
    newest_ref = _newest_other(conn, market_id, block.number)
    newest = None if newest_ref is None else newest_ref[0]
    memory = kept.standing
    remembered = memory is not None and memory.usable(block.number, newest_ref)
    if memory is not None and remembered:
        before: Mapping[int, bytes | None] = memory.states
        previous = memory.verdicts
    else:
        before = states_at(conn, market_id, block.number - 1)
        previous = _standing_verdicts(conn, market_id, block.number, newest)
    changed = kept.changed
    if not (
        memory is not None
        and remembered
        and changed
        and changed[0] == (memory.block_number, memory.block_hash)
    ):
        changed = None  # the encoding's changes are not since what `before` holds
    now, moved, gone = _states_moved(kept, account_ids, before, changed)
    state_rows = [
        {"market_id": market_id, "account_id": aid, "block_number": block.number, "state": now[aid]}
        for aid in moved
    ] + [
        {"market_id": market_id, "account_id": aid, "block_number": block.number, "state": None}
        for aid in gone
    ]
    if state_rows:
        _insert(conn, T_ACCOUNT_STATES, state_rows)

    health, verdicts = _verdict_inputs(positions, assessed, book)
    tier, reasons = verdicts.tier, verdicts.reasons
    verdict_rows = []
    known_bands = None
    if (
        memory is not None
        and remembered
        and memory.band_edges == tuple(kept.bands)
        and len(memory.verdict_bands) == len(previous)
    ):
        known_bands = memory.verdict_bands
    # the last block's rows, where they are this book's in the same order (what stands for
    # each is then compared column by column)
    rows_before = None if memory is None or known_bands is None else memory.book_rows
    if rows_before is not None and (book is None or not rows_before.same_rows(book)):
        rows_before = None
    if rows_before is not None:
        current = rows_before.keys
    else:
        keys = (
            book.position_keys() if book is not None else [(p.account, p.market) for p in positions]
        )
        current = [(account_ids[account], market_key) for account, market_key in keys]
    now_bands = bands_of(health, kept.bands, book.health_floats if book is not None else None)
    # a verdict is stored again where it is new (or back), its tier or reason codes changed, or
    # its health factor crossed a band
    for i in _verdicts_to_store(
        current, tier, reasons, now_bands, previous, known_bands, kept.bands, rows_before
    ):
        verdict_rows.append(
            _verdict_row(market_id, current[i], block.number, health[i], verdicts, i)
        )
    left: Iterable[tuple[int, str]] = ()
    if rows_before is None or len(previous) != len(current):  # else every key is in the book
        left = (k for k in previous.keys() - set(current) if previous[k].risk_tier is not None)
    for key in sorted(left):  # left the book
        verdict_rows.append(_verdict_row(market_id, key, block.number, None, None, 0))
    if verdict_rows:
        _insert(conn, T_VERDICTS, verdict_rows)
    if memory is not None:
        _remember(
            memory, block, newest, now, previous, verdict_rows, verdicts, kept.bands, known_bands
        )
        memory.book_rows = None
        if book is not None and memory.block_number == block.number:
            f = book.figures
            memory.book_rows = BookRows(
                _frozen(f.accounts), _frozen(f.markets), current, _frozen(tier),
                _frozen(reasons), np.asarray(now_bands),
            )  # fmt: skip

    latest = whole = 0
    if newest is None or block.number >= newest:
        # the latest view outlives a dropped block (a reorg drops change rows, not the view's
        # rows another writer left): remembered only while the view is at the block we wrote
        known, rowids, was = None, None, None
        if memory is not None and remembered and _latest_ref(conn, market_id) == newest_ref:
            known, rowids = memory.latest, memory.latest_rowids
            was = rows_before
        order = (memory or Standing()).in_key_order(current) if book is not None else []
        whole, indexed, rowids, columns = _write_latest(
            conn, market_id, block, positions, assessed, account_ids, asset_rows, book, known,
            current if book is not None else (), order, rowids, was,
        )  # fmt: skip
        latest = whole if book is None else len(book.assessed)
        if memory is not None and memory.block_number == block.number:
            memory.latest, memory.account_ids = indexed, dict(account_ids)
            memory.latest_rowids = rowids
            if memory.book_rows is not None and columns is not None:
                memory.book_rows = replace(
                    memory.book_rows, latest=columns[0], steady=columns[1], rowids=columns[2]
                )
    return {
        "account_states": len(state_rows),
        "verdicts": len(verdict_rows),
        "latest": latest,
        "latest_whole": whole,
        "remembered": int(remembered),  # what stands came from the writer's memory
        "states_changed_only": int(changed is not None),  # only the accounts read again compared
        "rows_by_column": int(rows_before is not None),  # the last book's rows were these
    }


def _verdicts_to_store(
    current: list[tuple[int, str]],
    tier: Sequence[str],
    reasons: Sequence[list[str] | None],
    now_bands: list[int],
    previous: Mapping[tuple[int, str], StoredVerdict],
    known_bands: Mapping[tuple[int, str], int] | None,
    bands: Sequence[float],
    rows_before: BookRows | None,
) -> list[int]:
    """The rows whose verdict is stored again: new (or back), their tier or reason codes
    changed, or their health factor crossed a band. `rows_before`: the last block's rows, the
    same as these (`BookRows`): compared column by column; else each row's standing verdict
    is looked up by its key."""
    if rows_before is not None:
        differ = np.asarray(now_bands) != rows_before.bands
        differ |= _differ((tier, reasons), (rows_before.tiers, rows_before.reasons))
        return np.flatnonzero(differ).tolist()
    lasts = list(map(previous.get, current))
    if known_bands is not None:  # None where there is no verdict: `last` is None there
        was_bands: list[int | None] = list(map(known_bands.get, current))
    else:
        was_bands = list(bands_of([None if v is None else v.health_factor for v in lasts], bands))
    return [
        i
        for i, (last, t, r, old_band, new_band) in enumerate(
            zip(lasts, tier, reasons, was_bands, now_bands, strict=True)
        )
        if last is None or last.risk_tier != t or last.risk_reasons != r or old_band != new_band
    ]


def _states_moved(
    kept: KeptState,
    account_ids: Mapping[str, int],
    before: Mapping[int, bytes | None],
    changed: tuple[tuple[int, str], frozenset[str]] | None,
) -> tuple[dict[int, bytes], list[int], list[int]]:
    """Each account's state bytes by id (`now`), and the ids whose state moved or is gone since
    `before`. `changed`: `kept.changed` where it is since the block `before` holds (the
    writer's memory): then only those accounts are compared."""
    if changed is not None:
        # the same accounts (`KeptState.changed`), each with a state
        now = cast(dict[int, bytes], dict(before))
        moved = []
        for account in changed[1]:
            aid = account_ids[account]
            blob = kept.accounts[account]
            if before.get(aid) != blob:
                now[aid] = blob
                moved.append(aid)
        return now, sorted(moved), []
    now = {account_ids[a]: blob for a, blob in kept.accounts.items()}
    moved = sorted(aid for aid, blob in now.items() if before.get(aid) != blob)
    gone = sorted(aid for aid, blob in before.items() if blob is not None and aid not in now)
    return now, moved, gone


def _remember(
    memory: Standing,
    block: BlockRef,
    newest: int | None,
    now: dict[int, bytes],
    previous: dict[tuple[int, str], StoredVerdict],
    verdict_rows: list[dict[str, Any]],
    verdicts: VerdictColumns,
    bands: Sequence[float],
    known_bands: dict[tuple[int, str], int] | None,
) -> None:
    """`memory` brought up to `block` as written (before the transaction commits: a rollback
    leaves it naming a block the store does not hold, so it is not used). Not kept where the
    block is below the newest stored one, or where the health-factor rule tiered it (a later
    assess run may re-tier those verdicts in the store). `known_bands`: the bands of
    `previous` as remembered, else worked out here."""
    if (newest is not None and block.number < newest) or None in verdicts.probability:
        memory.block_number = memory.block_hash = None
        memory.states, memory.verdicts, memory.latest = {}, {}, None
        memory.latest_rowids, memory.book_rows = None, None
        memory.account_ids, memory.verdict_bands, memory.band_edges = {}, {}, None
        return
    if known_bands is None:
        known_bands = {key: band(v.health_factor, bands) for key, v in previous.items()}
    for row in verdict_rows:
        key = (row["account_id"], row["market_key"])
        if row["risk_tier"] is None:
            previous.pop(key, None)
            known_bands.pop(key, None)
        else:
            previous[key] = StoredVerdict(
                block.number,
                row["health_factor"],
                row["risk_tier"],
                row["risk_reason"],
                row["risk_reasons"],
                row["liquidation_probability"],
                row["pending_health_factor"],
                row["horizon_s"],
            )
            known_bands[key] = band(row["health_factor"], bands)
    memory.block_number, memory.block_hash = block.number, block.hash
    memory.states, memory.verdicts = now, previous
    memory.verdict_bands, memory.band_edges = known_bands, tuple(bands)


def lock_market(conn: Connection, market_id: int) -> None:
    """An assessment's lock on the market's row, held until its write transaction ends. A block
    being written (it reads the verdicts standing before it and writes against them) holds
    that row in key share from before its first delete (`share_market`): FOR UPDATE waits for
    that block to commit, and a block begun meanwhile waits for the assessment. SQLite: every
    write transaction holds the database's write lock already."""
    _lock_market_row(conn, market_id)


def share_market(conn: Connection, market_id: int) -> None:
    """A block's key-share lock on its market's row, taken before the block deletes or updates
    anything (a replaced block's rows, the latest view): an assessment holding the row FOR
    UPDATE (`lock_market`) is then waited for before the block touches a row it reads, not
    after (each would wait for the other). SQLite: the write lock is the database's."""
    _lock_market_row(conn, market_id, key_share=True)


def _lock_market_row(conn: Connection, market_id: int, *, key_share: bool = False) -> None:
    """PostgreSQL: the market's row locked FOR UPDATE, or FOR KEY SHARE, until the transaction
    ends; SQLite has only its database-wide write lock."""
    if conn.dialect.name == "postgresql":
        conn.execute(
            select(T_MARKETS.c.id)
            .where(T_MARKETS.c.id == market_id)
            .with_for_update(read=key_share, key_share=key_share)
        ).first()


def record_assessment(
    conn: Connection,
    market_id: int,
    block_number: int,
    changed: Sequence[tuple[tuple[int, str], int | None, Assessed]],
) -> int:
    """A later assessment that re-tiered positions of a block stored in the change layout: their
    verdict rows at that block say so (replaced, or written), so the block and the ones after it
    read the new tier once the latest view has moved on. (key, health factor, assessment) each.
    The caller holds `lock_market` and has checked that the block is the market's newest: a
    block written after it was written against the verdicts this replaces (a position that
    block did not write would read the new tier there, not the one its refresh gave it)."""
    stored = conn.execute(
        select(T_MARKET_STATES.c.block_number).where(
            (T_MARKET_STATES.c.market_id == market_id)
            & (T_MARKET_STATES.c.block_number == block_number)
        )
    ).first()
    if stored is None or not changed:
        return 0
    keys = [key for key, _hf, _a in changed]
    for chunk in chunks(keys, IN_CHUNK // 2):  # two values per key
        conn.execute(
            delete(T_VERDICTS).where(
                (T_VERDICTS.c.market_id == market_id)
                & (T_VERDICTS.c.block_number == block_number)
                & tuple_(T_VERDICTS.c.account_id, T_VERDICTS.c.market_key).in_(chunk)
            )
        )
    verdicts = columns_of([a for _key, _hf, a in changed])
    rows = [
        _verdict_row(market_id, key, block_number, hf, verdicts, i)
        for i, (key, hf, _a) in enumerate(changed)
    ]
    conn.execute(T_VERDICTS.insert(), rows)
    return len(rows)


def _verdict_row(
    market_id: int,
    key: tuple[int, str],
    number: int,
    hf: int | None,
    verdicts: VerdictColumns | None,
    i: int,
) -> dict[str, Any]:
    """Row `i` of `verdicts` as a verdict row (None: the position left the book)."""
    v = verdicts
    return {
        "market_id": market_id,
        "account_id": key[0],
        "market_key": key[1],
        "block_number": number,
        "health_factor": hf,
        "risk_tier": v.tier[i] if v is not None else None,
        "risk_reason": v.reason[i] if v is not None else None,
        "risk_reasons": v.reasons[i] if v is not None else None,
        "liquidation_probability": v.probability[i] if v is not None else None,
        "pending_health_factor": v.pending_health_factor[i] if v is not None else None,
        "horizon_s": v.horizon_s[i] if v is not None else None,
    }


def _write_latest(
    conn: Connection,
    market_id: int,
    block: BlockRef,
    positions: Sequence[Position],
    assessed: Sequence[Assessed],
    account_ids: Mapping[str, int],
    asset_rows: Mapping[tuple[str, str], list[dict[str, Any]]],
    book: LeanBook | None = None,
    known: dict[tuple[int, str], tuple[Any, ...]] | None = None,
    book_keys: Sequence[tuple[int, str]] = (),
    order: Sequence[int] = (),
    rowids: dict[tuple[int, str], int] | None = None,
    was: BookRows | None = None,
) -> tuple[
    int,
    dict[tuple[int, str], tuple[Any, ...]],
    dict[tuple[int, str], int] | None,
    tuple[LatestColumns, SteadyColumns, list[int] | None] | None,
]:
    """The current book in place: positions gone are deleted, `positions` upserted whole, and
    with a `book` its other rows get the columns prices move (`_update_moving`). `known`: each
    stored row's indexed values (`INDEXED` but the market) where the writer remembers them
    (`Standing.latest`), else read. Returns the rows written whole and every row's indexed
    values as written. `book_keys`: with a `book`, its rows' (account id, market key), and
    `order` its rows in the primary key's order (`Standing.in_key_order`). `rowids`: on
    SQLite, each stored row's rowid where remembered with `known` (`Standing.latest_rowids`);
    the rows updated in place are found by it, and it is returned as the rows now stand
    (None: not kept, on PostgreSQL or without a `book`). `was`: with `known`, the last book's
    rows, where they are this `book`'s (`BookRows`, its `latest` and `steady` columns);
    `known` is then brought up to date in place. Also returns, with a `book`, its rows'
    indexed and steady values row by row, and (SQLite, where known) their rowids by row."""
    rows = []
    details = []
    for p, a in zip(positions, assessed, strict=True):
        key = {"market_id": market_id, "account_id": account_ids[p.account], "market_key": p.market}
        values = position_values(block, p, a)
        extra = values.pop("extra")
        rows.append({**key, **values, "detail_block": block.number, **_bucket_values(values)})
        assets = jsonable(asset_rows.get((p.account, p.market), []))
        details.append({**key, "extra": extra, "assets": assets})
    indexed = {(r["account_id"], r["market_key"]): tuple(r[n] for n in INDEXED[1:]) for r in rows}
    by_rowid = book is not None and conn.dialect.name == "sqlite"
    stored: dict[tuple[int, str], tuple[Any, ...]]
    if known is None or (by_rowid and rowids is None):
        stored, rowids = _stored_indexed(conn, market_id, with_rowids=by_rowid)
        was = None
    else:
        stored = known
    if was is not None and (was.latest is None or was.steady is None):
        was = None
    if not by_rowid:
        rowids = None
    columns, row_ids = None, None
    if book is not None:
        present, columns, row_ids = _update_moving(
            conn, market_id, block, book, book_keys, indexed, stored, order, rowids, was
        )
        # every stored row still in the book (its keys are distinct): none gone
        gone = [] if present == len(stored) else sorted(set(stored) - set(book_keys))
    else:
        gone = sorted(k for k in stored if k not in indexed)
    if rowids is not None:
        for gone_key in gone:
            del rowids[gone_key]
    for aid, market_key in gone:
        for table in (T_LATEST, T_LATEST_DETAILS):
            conn.execute(
                delete(table).where(
                    (table.c.market_id == market_id)
                    & (table.c.account_id == aid)
                    & (table.c.market_key == market_key)
                )
            )
    _upsert(conn, T_LATEST, rows)
    _upsert(conn, T_LATEST_DETAILS, details)
    if rowids is not None:
        new = [k for k in indexed if k not in rowids]
        if new:
            rowids.update(_rowids_of(conn, market_id, new))
    if was is not None:  # `stored` is up to date but for the rows written whole
        stored.update(indexed)
        indexed = stored
    if columns is None:
        return len(rows), indexed, rowids, None
    return len(rows), indexed, rowids, (*columns, row_ids)


def _stored_indexed(
    conn: Connection, market_id: int, *, with_rowids: bool = False
) -> tuple[dict[tuple[int, str], tuple[Any, ...]], dict[tuple[int, str], int] | None]:
    """Each of the market's latest-view rows' indexed values (`INDEXED` but the market), and
    with `with_rowids` (SQLite) each one's rowid."""
    t = T_LATEST
    indexed = [t.c[n] for n in INDEXED if n != "market_id"]
    rowid: list[Any] = [literal_column("rowid")] if with_rowids else []
    found = conn.execute(
        select(t.c.account_id, t.c.market_key, *rowid, *indexed).where(t.c.market_id == market_id)
    ).all()
    if not with_rowids:
        return {(aid, key): tuple(values) for aid, key, *values in found}, None
    return (
        {(aid, key): tuple(values) for aid, key, _rowid, *values in found},
        {(aid, key): int(rowid) for aid, key, rowid, *_values in found},
    )


def _rowids_of(
    conn: Connection, market_id: int, keys: Sequence[tuple[int, str]]
) -> dict[tuple[int, str], int]:
    """The SQLite rowids of these latest-view rows (rows just written whole)."""
    t = T_LATEST
    found: dict[tuple[int, str], int] = {}
    for chunk in chunks(list(keys), IN_CHUNK // 2):  # two values per key
        for aid, key, rowid_ in conn.execute(
            select(t.c.account_id, t.c.market_key, literal_column("rowid")).where(
                (t.c.market_id == market_id) & tuple_(t.c.account_id, t.c.market_key).in_(chunk)
            )
        ):
            found[(aid, key)] = int(rowid_)
    return found


def latest_with_details() -> Select[Any]:
    """The latest view's rows with their details (extras, asset rows): each row as it was
    written whole, its moving columns as of its block."""
    d = T_LATEST_DETAILS
    on = and_(*(d.c[k] == T_LATEST.c[k] for k in KEY_LATEST))
    return select(T_LATEST, d.c.extra, d.c.assets).join(d, on)


def _upsert(conn: Connection, table: Table, rows: list[dict[str, Any]]) -> None:
    """Rows of the latest view (or its details) whole, over any row of the same key."""
    if not rows:
        return
    names = list(rows[0])

    def upsert(stmt: Any) -> Any:
        changing = {n: stmt.excluded[n] for n in names if n not in KEY_LATEST}
        return stmt.on_conflict_do_update(index_elements=list(KEY_LATEST), set_=changing)

    if conn.dialect.name == "postgresql" and len(rows) >= COPY_MIN_ROWS:
        # COPY into a scratch table of the same shape, then one upsert from it
        name = f"{table.name}_in"
        scratch = Table(name, MetaData(), *(c._copy() for c in table.columns))
        conn.execute(
            text(
                f"CREATE TEMP TABLE IF NOT EXISTS {name} (LIKE {table.name}) ON COMMIT DELETE ROWS"
            )
        )
        copy_rows(conn, scratch, rows)
        picked = select(*(scratch.c[n] for n in names))
        conn.execute(upsert(insert_for(conn, table).from_select(names, picked)))
    else:
        conn.execute(upsert(insert_for(conn, table)), rows)


# the latest view's columns that move with prices and indexes: a row not written whole gets
# these alone (its other columns stay those of its `detail_block`)
MOVING = (
    "block_number",
    "block_hash",
    "block_timestamp",
    "health_factor",
    "health_factor_float",
    "liquidatable",
    "total_collateral_base",
    "total_debt_base",
    "risk_tier",
    "risk_reason",
    "risk_reasons",
    "liquidation_probability",
    "pending_health_factor",
    "horizon_s",
)


# the latest view's indexed columns that a block may change (the tier, the sort keys' buckets)
INDEXED = ("market_id", "risk_tier", *BUCKET_COLUMNS)
# the moving columns no index holds: a row whose tier and buckets stay gets these alone
UNINDEXED = tuple(n for n in MOVING if n not in INDEXED)
# of those, the ones that seldom move: a row where they stay too gets the others (`QUIET`)
STEADY = ("risk_reasons", "liquidatable", "horizon_s")
QUIET = tuple(n for n in UNINDEXED if n not in STEADY)


def _bucket_values(values: Mapping[str, Any]) -> dict[str, int | None]:
    """A latest row's buckets from its values (`position_values`' names)."""
    return dict(
        zip(
            BUCKET_COLUMNS,
            buckets(values["health_factor_float"], int(values["total_debt_base"])),
            strict=True,
        )
    )


def _update_moving(
    conn: Connection,
    market_id: int,
    block: BlockRef,
    book: LeanBook,
    keys: Sequence[tuple[int, str]],
    indexed: dict[tuple[int, str], tuple[Any, ...]],
    stored: dict[tuple[int, str], tuple[Any, ...]],
    order: Sequence[int],
    rowids: Mapping[tuple[int, str], int] | None = None,
    was: BookRows | None = None,
) -> tuple[int, tuple[LatestColumns, SteadyColumns], list[int] | None]:
    """The rows of `book` (`keys`: each one's account id and market key) not written whole
    (not in `indexed` yet): their moving columns, in
    place (no asset JSON rewritten); `indexed` gains their indexed values. Each must be in the
    view already: a new position is written whole. `stored`: each row's indexed values now
    (`INDEXED` but the market): only the rows whose tier or a bucket changed rewrite an index
    entry (on SQLite a column in the SET list rewrites its index entry even when equal, so the
    others leave those columns out). Tens of thousands of rows per block: built column by
    column, and bound without a statement's per-row parameter handling.

    `was`: the last book's rows, where they are these, with their indexed and steady values
    (`BookRows`): compared column by column; `stored` (the writer's memory) then gains the
    values that changed, `indexed` keeps only the rows written whole, and on SQLite the rows
    whose steady values stay leave those columns out too. Returns how many of the book's
    rows `stored` holds, the rows' indexed and steady values row by row, and (SQLite, by
    column) each row's rowid by row."""
    f, v = book.figures, book.verdicts
    pg = conn.dialect.name == "postgresql"
    hfs, debts, collaterals = f.health_factor, f.total_debt_base, f.total_collateral_base
    floats = book.health_floats
    debts, collaterals = _ints(debts), _ints(collaterals)
    debt_buckets = int_buckets(debts)
    hf_buckets = float_buckets(floats, HF_PER_OCTAVE)
    columns: LatestColumns = (v.tier, hf_buckets, debt_buckets)
    liquidatable = np.asarray(f.liquidatable, dtype=bool).tolist()  # Python bools, in C
    steady: SteadyColumns = (v.reasons, liquidatable, v.horizon_s)
    # in the primary key's order (pages stay warm): the rows whose tier and buckets stay, and
    # those that rewrite an index entry (PostgreSQL: all, HOT compares them); of the first,
    # those whose steady values stay too (`quiet`)
    quiet: list[int] = []
    row_ids = None  # the rows' rowids by row, where every row has one (the last book's rows)
    if was is not None and was.latest is not None and was.steady is not None:
        if rowids is not None:
            row_ids = was.rowids if was.rowids is not None else [rowids[k] for k in keys]
        same, moved = _moved_by_column(keys, indexed, stored, order, columns, was.latest, pg)
        present = len(keys)  # the last book's rows, all in the view
        if same:
            quiet, same = _split_steady(same, steady, was.steady)
    else:
        same, moved, present = _moved_by_key(keys, indexed, stored, order, columns, pg, f.accounts)
    # each column as a sequence by row (a constant: None); a row not written whole has the
    # buckets worked out here (`indexed` holds them too)
    by_row: dict[str, Sequence[Any] | None] = {
        "health_factor": hfs,
        "health_factor_float": floats,
        "liquidatable": liquidatable,
        "total_collateral_base": collaterals,
        "total_debt_base": debts,
        "risk_tier": v.tier,
        "risk_reason": v.reason,
        "risk_reasons": v.reasons,
        "liquidation_probability": v.probability,
        "pending_health_factor": v.pending_health_factor,
        "horizon_s": v.horizon_s,
        "hf_bucket": hf_buckets,
        "debt_bucket": debt_buckets,
        "market_id": None,
        "account_id": [k[0] for k in keys],
        "market_key": [k[1] for k in keys],
    }
    constant = {"market_id": market_id}
    # the block's own columns: the same in every row (`_set_rows` sets them once)
    fixed = {
        "block_number": block.number,
        "block_hash": block.hash,
        "block_timestamp": block.timestamp,
    }
    for names, picked in (
        (list(QUIET), quiet),
        (list(UNINDEXED), same),
        ([*MOVING, *BUCKET_COLUMNS], moved),
    ):
        if not picked:
            continue
        take = itemgetter(*picked)
        per_row = [n for n in names if n not in fixed]
        values_by_row = []
        for n in [*per_row, *KEY_LATEST]:
            values = by_row[n]
            if values is None:
                values_by_row.append([constant[n]] * len(picked))
            else:
                values_by_row.append(
                    [values[picked[0]]] if len(picked) == 1 else list(take(values))
                )
        found = None
        if row_ids is not None:
            found = [row_ids[picked[0]]] if len(picked) == 1 else list(take(row_ids))
        elif rowids is not None:
            found = [rowids[keys[i]] for i in picked]
        _set_rows(conn, per_row, values_by_row, found, fixed)
    return present, (columns, steady), row_ids


def _split_steady(
    rows: list[int], steady: SteadyColumns, was: SteadyColumns
) -> tuple[list[int], list[int]]:
    """`rows` (in their order) whose steady values (`STEADY`) stay, and the others."""
    moved = _differ(steady, was)
    picked = np.asarray(rows, dtype=np.intp)
    stays = ~moved[picked]
    return picked[stays].tolist(), picked[~stays].tolist()


def _moved_by_key(
    keys: Sequence[tuple[int, str]],
    indexed: dict[tuple[int, str], tuple[Any, ...]],
    stored: Mapping[tuple[int, str], tuple[Any, ...]],
    order: Sequence[int],
    columns: LatestColumns,
    pg: bool,
    accounts: Sequence[str],
) -> tuple[list[int], list[int], int]:
    """`_update_moving`'s rows that keep their indexed values and those that move, in key
    order, each row's stored values looked up by its key; `indexed` gains every row's. Also
    how many of the book's rows `stored` holds."""
    whole = bool(indexed)  # rows written whole (few, often none)
    kind = bytearray(len(keys))  # per row: 0 written whole, 1 tier and buckets stay, 2 moved
    present = 0
    for i, (key, *now) in enumerate(zip(keys, *columns, strict=True)):
        if whole and key in indexed:
            present += key in stored
            continue
        before = stored.get(key)
        if before is None:
            raise ValueError(f"{accounts[i]} {key[1]}: a new position must be written whole")
        indexed[key] = values = tuple(now)
        kind[i] = 2 if pg or values != before else 1
        present += 1
    same = [i for i in order if kind[i] == 1]
    moved = [i for i in order if kind[i] == 2]
    return same, moved, present


def _moved_by_column(
    keys: Sequence[tuple[int, str]],
    indexed: Mapping[tuple[int, str], tuple[Any, ...]],
    stored: dict[tuple[int, str], tuple[Any, ...]],
    order: Sequence[int],
    columns: LatestColumns,
    was: LatestColumns,
    pg: bool,
) -> tuple[list[int], list[int]]:
    """`_moved_by_key` where the last book's rows are these (`was`: their indexed values row
    by row): compared column by column; `stored` gains the values that changed, the rows
    written whole (`indexed`) left out."""
    n = len(keys)
    changed = _differ(columns, was)
    keep = np.ones(n, dtype=bool)
    if indexed:
        keep[[i for i, key in enumerate(keys) if key in indexed]] = False
    for i in np.flatnonzero(changed & keep).tolist():
        stored[keys[i]] = (columns[0][i], columns[1][i], columns[2][i])
    rows = np.asarray(order, dtype=np.intp)
    rows = rows[keep[rows]]
    if pg:
        return [], rows.tolist()
    moved_in_order = changed[rows]
    return rows[~moved_in_order].tolist(), rows[moved_in_order].tolist()


def _differ(now: Sequence[Sequence[Any]], before: Sequence[Sequence[Any]]) -> Any:
    """A numpy bool per row: whether any of the columns `now` differs there from its twin in
    `before` (the last book's, row for row)."""
    n = len(now[0])
    differ = np.zeros(n, dtype=bool)
    for column, was in zip(now, before, strict=True):
        differ |= np.fromiter(map(ne, column, was), bool, n)
    return differ


def _sql_literal(value: Any) -> str | None:
    """A block's number, time or hash as SQL text (None: not one of those, bind it)."""
    if type(value) is int and -(2**63) <= value < 2**63:  # SQLite's integers
        return str(value)
    if isinstance(value, str) and _HEX.fullmatch(value):
        return f"'{value}'"
    return None


_HEX = re.compile(r"0x[0-9a-fA-F]{1,64}")


def _ints(values: Sequence[Any]) -> list[int]:
    """Amounts as Python ints (the exact figures give them so: then as they are)."""
    if type(values) is list and set(map(type, values)) <= {int}:
        return values
    return [int(x) for x in values]


def _set_rows(
    conn: Connection,
    names: list[str],
    columns: list[list[Any]],
    rowids: list[int] | None = None,
    fixed: Mapping[str, Any] | None = None,
) -> None:
    """UPDATE the latest view's `names` columns of each row in place: `columns` are their
    values, then the key's (market id, account id, market key), one list per column; and the
    `fixed` columns to one value in every row (the block's number, hash and time: on SQLite
    written into the statement once, not bound per row).
    `rowids` (SQLite): each row's rowid, which finds it in one search instead of two (the
    key's index, then the table); the row it names is checked against the key, and every
    row must be found, else the block's transaction fails."""
    t = T_LATEST
    count = len(columns[0])
    literals = {n: _sql_literal(v) for n, v in (fixed or {}).items()}
    if conn.dialect.name != "sqlite" or None in literals.values():
        width = len(names)  # bound per row, as the other columns
        names = [*names, *literals]
        columns = [
            *columns[:width],
            *([v] * count for v in (fixed or {}).values()),
            *columns[width:],
        ]
        literals = {}
    named = [*names, *KEY_LATEST]
    if conn.dialect.name == "postgresql" and count >= COPY_MIN_ROWS:
        # COPY into a scratch table of these columns, then one UPDATE ... FROM it
        name = f"positions_latest_set{len(names)}"
        scratch = Table(name, MetaData(), *(t.c[n]._copy() for n in named))
        conn.execute(
            text(
                f"CREATE TEMP TABLE IF NOT EXISTS {name} ON COMMIT DELETE ROWS AS "
                f"SELECT {', '.join(named)} FROM positions_latest WITH NO DATA"
            )
        )
        copy_rows(
            conn, scratch, [dict(zip(named, r, strict=True)) for r in zip(*columns, strict=True)]
        )
        conn.execute(
            update(t)
            .where(and_(*(t.c[k] == scratch.c[k] for k in KEY_LATEST)))
            .values({n: scratch.c[n] for n in names})
        )
    elif conn.dialect.name == "sqlite":
        assignments = ", ".join(
            [*(f"{n} = ?" for n in names), *(f"{n} = {v}" for n, v in literals.items())]
        )
        if rowids is None:
            bound = [
                _bound(t.c[n], conn.dialect, values)
                for n, values in zip(named, columns, strict=True)
            ]
            where = "market_id = ? AND account_id = ? AND market_key = ?"
        else:
            bound = [
                *(_bound(t.c[n], conn.dialect, v) for n, v in zip(names, columns, strict=False)),
                rowids,
                columns[-3],
                columns[-2],
                columns[-1],
            ]
            where = "rowid = ? AND market_id = ? AND account_id = ? AND market_key = ?"
        done = conn.exec_driver_sql(
            f"UPDATE positions_latest SET {assignments} WHERE {where}",
            list(zip(*bound, strict=True)),
        )
        if rowids is not None and done.rowcount != count:
            raise RuntimeError(
                f"latest view: {done.rowcount} of {count} rows found by their remembered rowids"
            )
    else:  # a SET clause's parameters may not bear its columns' names
        conn.execute(
            update(t)
            .where(and_(*(t.c[k] == bindparam(f"b_{k}") for k in KEY_LATEST)))
            .values({n: bindparam(f"v_{n}", type_=t.c[n].type) for n in names}),
            [
                {f"v_{n}": v for n, v in zip(names, r, strict=False)}
                | {f"b_{k}": v for k, v in zip(KEY_LATEST, r[-3:], strict=True)}
                for r in zip(*columns, strict=True)
            ],
        )


def _insert(conn: Connection, table: Table, rows: list[dict[str, Any]]) -> None:
    """Rows into a change table: on SQLite bound column by column (`_bound`) and handed to
    the driver at once (thousands of verdict rows a block when prices move far)."""
    if conn.dialect.name != "sqlite":
        conn.execute(table.insert(), rows)
        return
    names = list(rows[0])
    bound = [_bound(table.c[n], conn.dialect, [r[n] for r in rows]) for n in names]
    conn.exec_driver_sql(
        f"INSERT INTO {table.name} ({', '.join(names)}) VALUES ({', '.join('?' * len(names))})",
        list(zip(*bound, strict=True)),
    )


def _bound(column: Any, dialect: Any, values: list[Any]) -> list[Any]:
    """A column's values as its type binds them for the driver: floats through the type's own
    (compiled) converter, each distinct value of the others bound once (a block's timestamp,
    tiers, flags and reason codes repeat down the column)."""
    bind = column.type.dialect_impl(dialect).bind_processor(dialect)
    if bind is None:
        return values
    if isinstance(column.type, Uint256):  # distinct per row: no memo; ints in range: text
        kinds = set(map(type, values))
        if kinds <= {int, NoneType}:
            present = [v for v in values if v is not None] if NoneType in kinds else values
            if not present or 0 <= min(present) <= max(present) <= UINT256_MAX:
                if NoneType in kinds:
                    return [None if v is None else str(v) for v in values]
                return list(map(str, values))
        return [bind(v) for v in values]  # what the type refuses raises as it says
    if isinstance(column.type, Float):
        return list(map(bind, values))
    kinds = set(map(type, values))
    if kinds == {bool}:  # flags: two values
        yes, no = bind(True), bind(False)
        return [yes if v else no for v in values]
    if kinds == {list}:  # reason codes: a few distinct lists of strings
        try:
            distinct = set(map(tuple, values))
        except TypeError:  # something unhashable in a list
            return [bind(v) for v in values]
        if all(type(c) is str for codes in distinct for c in codes):
            by_codes = {codes: bind(list(codes)) for codes in distinct}
            return [by_codes[tuple(v)] for v in values]
        return [bind(v) for v in values]
    keys = [_memo_key(v) for v in values]
    if None in keys:  # a value no key tells apart from another that binds otherwise
        return [bind(v) for v in values]
    by_key = {k: bind(v) for k, v in dict(zip(keys, values, strict=True)).items()}
    return [by_key[k] for k in keys]


def _memo_key(value: Any) -> Any:
    """A key equal only for values that bind alike: with the type (True, 1 and 1.0 are equal in
    Python but not as JSON), a list as a tuple of its strings (reason codes); None: no key."""
    if type(value) is list:
        return (list, tuple(value)) if all(type(v) is str for v in value) else None
    return (type(value), value)


def delete_changes(conn: Connection, market_id: int, block_numbers: Sequence[int]) -> None:
    """A market's change rows at these blocks (a reorg replaces or drops them)."""
    for table in CHANGE_TABLES:
        conn.execute(
            delete(table).where(
                (table.c.market_id == market_id) & table.c.block_number.in_(list(block_numbers))
            )
        )


# -- reading a block back ---------------------------------------------------------------------


def newest_book(
    snapshot_id: int, market_id: int, block_number: int, details: Mapping[str, Any] | None
) -> tuple[Table, Any]:
    """Where a market's newest block's position rows are, and the condition that selects them:
    its snapshot rows, or, for a block stored in the change layout alone, the latest view (the
    same columns). Only for the market's newest block: the latest view holds no other."""
    if (details or {}).get("layout") == "changes":
        # every row of the market: one pass over the table beats a lookup per row through an
        # index on the market (SQLite, without statistics, would take one)
        return T_LATEST, ((T_LATEST.c.market_id + 0) == market_id) & (
            T_LATEST.c.block_number == block_number
        )
    positions = cast(Table, m.PositionSnapshot.__table__)
    return positions, positions.c.snapshot_id == snapshot_id


def latest_seek(market_id: int, block_number: int) -> Any:
    """`newest_book`'s latest-view rows, in a form an index on the market serves (for reads
    that narrow them further: a tier, the books)."""
    return (T_LATEST.c.market_id == market_id) & (T_LATEST.c.block_number == block_number)


def stored_book(store: Store, market_id: int, block_number: int) -> StoredBook | None:
    """The change layout's rows for one market at one block (None: not stored that way)."""
    with store.read() as conn:
        return book_at(conn, market_id, block_number)


def book_at(conn: Connection, market_id: int, block_number: int) -> StoredBook | None:
    """`stored_book` inside the caller's read (many blocks in one transaction)."""
    head = conn.execute(
        select(T_SNAPSHOTS.c.block_hash, T_SNAPSHOTS.c.block_timestamp, T_MARKET_STATES.c.state)
        .join(
            T_MARKET_STATES,
            (T_MARKET_STATES.c.market_id == T_SNAPSHOTS.c.market_id)
            & (T_MARKET_STATES.c.block_number == T_SNAPSHOTS.c.block_number),
        )
        .where(
            (T_SNAPSHOTS.c.market_id == market_id) & (T_SNAPSHOTS.c.block_number == block_number)
        )
    ).first()
    if head is None:
        return None
    states = states_at(conn, market_id, block_number)
    verdicts = verdicts_at(conn, market_id, block_number)
    addresses: dict[int, str] = {}
    for chunk in chunks(sorted(set(states) | {aid for aid, _key in verdicts})):
        addresses.update(
            (aid, address)
            for aid, address in conn.execute(
                select(T_ACCOUNTS.c.id, T_ACCOUNTS.c.address).where(T_ACCOUNTS.c.id.in_(chunk))
            )
        )
    return StoredBook(
        BlockRef(block_number, head.block_hash, head.block_timestamp),
        head.state,
        {
            addresses[aid]: blob
            for aid, blob in sorted(states.items(), key=lambda kv: addresses[kv[0]])
            if blob is not None
        },
        {
            (addresses.get(aid, ""), key): v
            for (aid, key), v in verdicts.items()
            if v.risk_tier is not None
        },
    )


# (protocol, a book's stored change rows at a block) -> its positions, by the adapter's exact
# math (`onchain.app.stored_book.rebuild_book`): the store never decodes a protocol's state
BookRebuild = Callable[[str, StoredBook], list[Position]]

# the latest view's columns a row not written whole keeps from its `detail_block`
DETAILS = (
    "base_currency_decimals",
    "available_borrows_base",
    "liquidation_threshold_bps",
    "ltv_bps",
    "extra",
    "assets",
)


def stale_details(row: Any) -> bool:
    """Whether a latest-view row's details are older than its block."""
    detail = getattr(row, "detail_block", None)
    return detail is not None and detail != row.block_number


def rebuilt_details(
    conn: Connection,
    market_id: int,
    rows: Sequence[Any],
    rebuild: BookRebuild,
    asset_ids: Mapping[str, int] | None = None,
) -> dict[tuple[int, str], dict[str, Any]]:
    """(account id, market key) -> the `DETAILS` columns of these latest-view rows of one
    market, rebuilt exactly from the stored states at each row's block, as a row written whole
    at that block holds them. Rows: account_id, market_key, block_number, block_hash,
    block_timestamp (and `address`, which saves reading it). `asset_ids`: the chain's assets'
    ids by address where the caller has them (`_asset_ids_of`)."""
    positions = rebuilt_positions(conn, market_id, rows, rebuild)
    if not positions:
        return {}
    if asset_ids is None:
        chain_id = conn.execute(
            select(m.Market.chain_id).where(m.Market.id == market_id)
        ).scalar_one()
        asset_ids = _asset_ids_of(conn, chain_id)
    return {key: details_of(p, asset_ids) for key, p in positions.items()}


def details_of(p: Position, asset_ids: Mapping[str, int]) -> dict[str, Any]:
    """A rebuilt position's `DETAILS` columns, as a row written whole holds them."""
    return {
        "base_currency_decimals": p.base_currency_decimals,
        "available_borrows_base": p.available_borrows_base,
        "liquidation_threshold_bps": p.liquidation_threshold_bps,
        "ltv_bps": p.ltv_bps,
        "extra": jsonable(p.extra),
        # as `assets` reads back from JSON (asset_values' are JSON's types already)
        "assets": [{"asset_id": asset_ids[a.asset], **asset_values(a)} for a in p.assets],
    }


# from this many rows of one block, their states are read in one pass over the market's (as a
# book's: `states_at`) rather than by account id, chunk by chunk
BOOK_ROWS = 2 * IN_CHUNK


def rebuilt_positions(
    conn: Connection, market_id: int, rows: Sequence[Any], rebuild: BookRebuild
) -> dict[tuple[int, str], Position]:
    """(account id, market key) -> the position of these latest-view rows of one market, rebuilt
    exactly from the stored states at each row's block (`rebuilt_details`' rows); a row whose
    account has no state there has none. Many rows: the book's states in one pass, each
    account's address taken from its row."""
    if not rows:
        return {}
    head = conn.execute(
        _MARKET_HEADS,
        {"heads_market": market_id, "heads_blocks": sorted({r.block_number for r in rows})},
    ).all()
    blobs = {number: blob for _protocol, number, blob in head}
    out: dict[tuple[int, str], Position] = {}
    for number in sorted({r.block_number for r in rows}):
        at = [r for r in rows if r.block_number == number]
        states = _states_of(conn, market_id, number, at)
        first = at[0]
        book = StoredBook(
            BlockRef(number, first.block_hash, first.block_timestamp),
            blobs[number],
            {address: state for address, state in states.values() if state is not None},
            {},
        )
        ids_of = {address: aid for aid, (address, _state) in states.items()}
        for p in rebuild(head[0].protocol, book):
            out[(ids_of[p.account], p.market)] = p
    return out


def _states_of(
    conn: Connection, market_id: int, number: int, rows: Sequence[Any]
) -> dict[int, tuple[str, bytes | None]]:
    """account id -> (address, its kept state at block `number`) for the accounts of `rows`."""
    ids = sorted({r.account_id for r in rows})
    if len(ids) >= BOOK_ROWS and all(hasattr(r, "address") for r in rows):
        addresses = {r.account_id: r.address for r in rows}
        every = states_at(conn, market_id, number)
        return {aid: (addresses[aid], every.get(aid)) for aid in ids}
    out: dict[int, tuple[str, bytes | None]] = {}
    for chunk in chunks(ids):
        values = {
            "states_market": market_id,
            "states_accounts": list(chunk),
            "states_block": number,
        }
        for aid, address, state in conn.execute(_ACCOUNTS_STATES, values):
            out[aid] = (address, state)  # the newest at or before the block wins
    return out


# `rebuilt_positions`' statements, built once (building one costs about as much as running it
# for a page's rows): the market's protocol and its states at some blocks (heads_market,
# heads_blocks), and some accounts' addresses with their states up to a block, oldest first
# (states_market, states_accounts, states_block)
_MARKET_HEADS = (
    select(m.Market.protocol, T_MARKET_STATES.c.block_number, T_MARKET_STATES.c.state)
    .join(T_MARKET_STATES, T_MARKET_STATES.c.market_id == m.Market.id)
    .where(
        (m.Market.id == bindparam("heads_market", type_=T_MARKET_STATES.c.market_id.type))
        & T_MARKET_STATES.c.block_number.in_(bindparam("heads_blocks", expanding=True))
    )
)
_ACCOUNTS_STATES = (
    select(T_ACCOUNT_STATES.c.account_id, T_ACCOUNTS.c.address, T_ACCOUNT_STATES.c.state)
    .join(T_ACCOUNTS, T_ACCOUNTS.c.id == T_ACCOUNT_STATES.c.account_id)
    .where(
        (
            T_ACCOUNT_STATES.c.market_id
            == bindparam("states_market", type_=T_ACCOUNT_STATES.c.market_id.type)
        )
        & T_ACCOUNT_STATES.c.account_id.in_(bindparam("states_accounts", expanding=True))
        & (
            T_ACCOUNT_STATES.c.block_number
            <= bindparam("states_block", type_=T_ACCOUNT_STATES.c.block_number.type)
        )
    )
    .order_by(T_ACCOUNT_STATES.c.account_id, T_ACCOUNT_STATES.c.block_number)
)


def _asset_ids_of(conn: Connection, chain_id: int) -> dict[str, int]:
    """The chain's registered assets' ids by address (every asset of a stored position is
    registered; a chain has tens of them, not thousands)."""
    t = cast(Table, m.Asset.__table__)
    return dict(conn.execute(select(t.c.address, t.c.id).where(t.c.chain_id == chain_id)).all())


def rebuild_positions(
    book: StoredBook, incremental: IncrementalAdapter, *, flip_prices: bool = True
) -> list[Position]:
    """The block's positions from its stored states, through the adapter's own exact math (the
    same as a live read recomputes them from kept state). `flip_prices=False`: without the
    per-asset liquidation prices, for readers that show none (tier series)."""
    market_state = incremental.decode_market_state(book.market_state)
    states = [s for blob in book.accounts.values() for s in incremental.decode_account_states(blob)]
    return incremental.positions_from_states(
        market_state, states, book.block, flip_prices=flip_prices
    )


# -- retention --------------------------------------------------------------------------------


def carry_forward(
    conn: Connection, market_id: int, doomed: Sequence[int], kept: Sequence[int]
) -> None:
    """Drop the market's change rows at the `doomed` blocks so that every `kept` block still
    rebuilds exactly: a state or verdict row at a doomed block moves to the next kept block
    when nothing newer for its key stands at or before that block, else it goes."""
    if not doomed:
        return
    kept_sorted = sorted(kept)
    conn.execute(
        delete(T_MARKET_STATES).where(
            (T_MARKET_STATES.c.market_id == market_id)
            & T_MARKET_STATES.c.block_number.in_(list(doomed))
        )
    )
    for table, key in ((T_ACCOUNT_STATES, ("account_id",)), (T_VERDICTS, KEY_VERDICT)):
        _carry(conn, table, key, market_id, sorted(doomed), kept_sorted)


def _carry(
    conn: Connection,
    table: Table,
    key: tuple[str, ...],
    market_id: int,
    doomed: list[int],
    kept: list[int],
) -> None:
    """`carry_forward` for one table: rows are (key..., block_number)."""
    in_market = table.c.market_id == market_id
    rows = conn.execute(
        select(*(table.c[k] for k in key), table.c.block_number)
        .where(in_market & table.c.block_number.in_(doomed))
        .order_by(table.c.block_number)
    ).all()
    by_key: dict[tuple[Any, ...], list[int]] = {}
    for row in rows:
        by_key.setdefault(tuple(row[:-1]), []).append(row.block_number)
    candidates = []
    for ident, blocks in by_key.items():
        for i, source in enumerate(blocks):
            at = bisect_right(kept, source)
            if at == len(kept):
                continue  # no kept block after it
            target = kept[at]
            if i + 1 < len(blocks) and blocks[i + 1] < target:
                continue  # a newer row stands before the kept block
            candidates.append((ident, source, target))
    targets = sorted({t for _i, _s, t in candidates})
    present = {
        (tuple(r[:-1]), r.block_number)
        for r in conn.execute(
            select(*(table.c[k] for k in key), table.c.block_number).where(
                in_market & table.c.block_number.in_(targets)
            )
        )
    }
    for ident, source, target in candidates:
        if (ident, target) in present:
            continue  # the kept block has its own row
        match = and_(in_market, *(table.c[k] == v for k, v in zip(key, ident, strict=True)))
        conn.execute(
            update(table)
            .where(match & (table.c.block_number == source))
            .values(block_number=target)
        )
    conn.execute(delete(table).where(in_market & table.c.block_number.in_(doomed)))


# -- one account through the blocks -----------------------------------------------------------

# (protocol, one account state's bytes, [(the market state's bytes, block), ...]) -> the
# account's positions at each of those blocks: the adapter's exact math, handed in by the caller
# (the store never decodes a blob), which decodes the account's state once for them all
Rebuild = Callable[[str, bytes, Sequence[tuple[bytes, BlockRef]]], list[list[Position]]]
HEADS_PAGE = 256  # snapshot heads read at a time, newest first, while picking blocks


@dataclass(frozen=True)
class RebuiltPoint:
    """One position of an account at a block stored in the change layout alone."""

    market_key: str
    base_currency_decimals: int
    # queries.HistoryPoint's fields, in its order: block number, hash, timestamp, health factor
    # (wad, float), liquidatable, tier, collateral, debt
    values: tuple[int, str, int, int | None, float | None, bool, str, int, int]


def account_points(
    conn: Connection,
    market_id: int,
    protocol: str,
    account_id: int,
    rebuild: Rebuild,
    limit: int,
) -> list[RebuiltPoint]:
    """The account's positions at the market's newest `limit` blocks stored in the change
    layout alone (no snapshot rows) at which it has a stored state, rebuilt exactly, with the
    verdict standing at each. Each block's market state is decoded once and the account's
    state once per stored row, not once per block."""
    mine = (T_ACCOUNT_STATES.c.market_id == market_id) & (
        T_ACCOUNT_STATES.c.account_id == account_id
    )
    states = conn.execute(
        select(T_ACCOUNT_STATES.c.block_number, T_ACCOUNT_STATES.c.state)
        .where(mine)
        .order_by(T_ACCOUNT_STATES.c.block_number)
    ).all()
    if not states or limit <= 0:
        return []
    state_blocks = [n for n, _s in states]
    picked = _heads_with_state(conn, market_id, state_blocks, states, limit)
    if not picked:
        return []
    verdicts: dict[str, tuple[list[int], list[str | None]]] = {}
    for key, number, tier in conn.execute(
        select(T_VERDICTS.c.market_key, T_VERDICTS.c.block_number, T_VERDICTS.c.risk_tier)
        .where((T_VERDICTS.c.market_id == market_id) & (T_VERDICTS.c.account_id == account_id))
        .order_by(T_VERDICTS.c.block_number)
    ):
        numbers, tiers = verdicts.setdefault(key, ([], []))
        numbers.append(number)
        tiers.append(tier)
    blobs: dict[int, bytes] = {}
    for chunk in chunks(sorted(b.number for b, _row in picked)):
        rows = conn.execute(
            select(T_MARKET_STATES.c.block_number, T_MARKET_STATES.c.state).where(
                (T_MARKET_STATES.c.market_id == market_id)
                & T_MARKET_STATES.c.block_number.in_(list(chunk))
            )
        )
        blobs.update((n, blob) for n, blob in rows)
    # oldest first, in runs of blocks that share the account's stored state
    runs: list[tuple[int, list[BlockRef]]] = []
    for block, row in sorted(picked, key=lambda p: p[0].number):
        if block.number not in blobs:
            continue
        if not runs or runs[-1][0] != row:
            runs.append((row, []))
        runs[-1][1].append(block)
    out = []
    for row, blocks in runs:
        at = [(blobs[b.number], b) for b in blocks]
        for block, positions in zip(blocks, rebuild(protocol, states[row].state, at), strict=True):
            for p in positions:
                numbers, tiers = verdicts.get(p.market, ([], []))
                v = bisect_right(numbers, block.number)
                hf = p.health_factor
                values = (
                    block.number,
                    block.hash,
                    block.timestamp,
                    hf,
                    None if hf is None else hf / WAD,
                    p.liquidatable,
                    (tiers[v - 1] if v else None) or "",
                    p.total_collateral_base,
                    p.total_debt_base,
                )
                out.append(RebuiltPoint(p.market, p.base_currency_decimals, values))
    return out


def _heads_with_state(
    conn: Connection,
    market_id: int,
    state_blocks: list[int],
    states: Sequence[Any],
    limit: int,
) -> list[tuple[BlockRef, int]]:
    """The newest `limit` blocks of the market stored in the change layout alone at which the
    account has a state: (block, the index of its state row), read a page of heads at a time
    from the newest down to the account's first state (not every head the market has)."""
    s = T_SNAPSHOTS
    first = state_blocks[0]
    picked: list[tuple[BlockRef, int]] = []
    below: int | None = None
    while len(picked) < limit:
        where = (s.c.market_id == market_id) & (s.c.block_number >= first)
        if below is not None:
            where &= s.c.block_number < below
        page = conn.execute(
            select(s.c.block_number, s.c.block_hash, s.c.block_timestamp, s.c.details)
            .where(where)
            .order_by(s.c.block_number.desc())
            .limit(HEADS_PAGE)
        ).all()
        for head in page:
            if (head.details or {}).get("layout") != "changes":
                continue
            row = bisect_right(state_blocks, head.block_number) - 1
            if row < 0 or states[row].state is None:
                continue
            block = BlockRef(head.block_number, head.block_hash, head.block_timestamp)
            picked.append((block, row))
            if len(picked) == limit:
                break
        if len(page) < HEADS_PAGE:
            break
        below = page[-1].block_number
    return picked
