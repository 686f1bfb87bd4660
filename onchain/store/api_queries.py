"""The reads behind the HTTP API (`onchain serve`): markets and their newest snapshot, a page of
positions at each market's newest block (filtered, sorted, exact), positions read back as the
adapters' own `Position` objects (so `scan --json`'s writer and `stress`'s book builder apply to
them unchanged), tier counts and amounts at risk over time, and USD rates of base currencies.

Uint256 columns are text on SQLite: exact comparisons and ordering go through `uint_ge` and
`uint_order`, which compare decimal strings by length first (no leading zeros are stored)."""

from __future__ import annotations

from collections import namedtuple
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from operator import itemgetter
from types import SimpleNamespace
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Connection,
    Double,
    Integer,
    String,
    and_,
    bindparam,
    case,
    cast,
    func,
    literal,
    null,
    or_,
    select,
    true,
    type_coerce,
    union_all,
)
from sqlalchemy.sql import FromClause, Select

from onchain.gc_pause import without_cycle_collection
from onchain.model import AssetPosition, Position, fields_from_details
from onchain.protocols.base import BookHealth
from onchain.risk.book import DEFAULT_STABLE_SYMBOLS
from onchain.rpc.client import BlockRef
from onchain.store.changes import (
    KEY_LATEST,
    T_LATEST,
    T_LATEST_DETAILS,
    BookRebuild,
    StoredBook,
    book_at,
    latest_seek,
    newest_book,
    rebuilt_details,
    rebuilt_positions,
    stale_details,
)
from onchain.store.crud import (
    T_ACCOUNTS,
    T_ASSET_POSITIONS,
    T_ASSETS,
    T_CHAINS,
    T_CURSORS,
    T_MARKET_ACCOUNTS,
    T_MARKETS,
    T_POSITIONS,
    T_RESERVES,
    T_SNAPSHOTS,
)
from onchain.store.db import Store
from onchain.store.models import TIERS
from onchain.store.queries import book_label, stored_address
from onchain.store.rows import chunks, jsonable

# (protocol, a book's stored change rows at a block) -> its exact figures row by row
# (`onchain.app.stored_book.rebuild_book_figures`)
FiguresRebuild = Callable[[str, StoredBook], BookHealth]

SORTS = ("risk", "health_factor", "debt", "collateral", "account", "probability")


def uint_ge(conn: Connection, column: Any, value: int) -> ColumnElement[bool]:
    """column >= value, exactly, for a Uint256 column on either backend."""
    if conn.dialect.name == "postgresql":
        return column >= value
    text = str(value)
    as_text = type_coerce(column, String(78))  # compare the stored digits, not an int
    length = func.length(as_text)
    return or_(length > len(text), and_(length == len(text), as_text >= text))


def uint_order(conn: Connection, column: Any) -> list[Any]:
    """ORDER BY terms that sort a Uint256 column numerically on either backend."""
    if conn.dialect.name == "postgresql":
        return [column]
    return [func.length(column), column]


def label_of(name: str, address: str, key: str, extra: dict[str, Any] | None) -> str:
    """A book as people read it: the config name, and where one contract holds many books the
    adapter's label for this one (e.g. "WETH/USDC 86%") or its short id."""
    label = (extra or {}).get("market_label")
    if label and key.lower() != address.lower():
        return f"{name} {label}"
    return book_label(name, address, key)


# -- markets ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class SnapshotHead:
    id: int
    block_number: int
    block_hash: str
    block_timestamp: int
    taken_at: datetime
    positions: int
    with_debt: int
    liquidatable: int
    at_risk: int


@dataclass(frozen=True)
class MarketRow:
    id: int
    name: str
    chain: str
    chain_id: int
    protocol: str
    version: str | None
    address: str
    scope: str
    base_currency_decimals: int | None
    tracked_accounts: int
    snapshots: int
    refresh_cursor: int | None
    head: SnapshotHead | None


def markets(store: Store) -> list[MarketRow]:
    """Every registered market with its newest snapshot (None before the first refresh)."""
    with store.read() as conn:
        return _markets(conn)


def _markets(conn: Connection) -> list[MarketRow]:
    mk, s = T_MARKETS, T_SNAPSHOTS
    newest = (
        select(s.c.market_id, func.max(s.c.block_number).label("block_number"), func.count())
        .group_by(s.c.market_id)
        .subquery()
    )
    heads = {
        r.market_id: r
        for r in conn.execute(
            select(s, newest.c[2].label("snapshots")).join(
                newest,
                (newest.c.market_id == s.c.market_id) & (newest.c.block_number == s.c.block_number),
            )
        )
    }
    tracked: dict[Any, Any] = dict(
        conn.execute(
            select(T_MARKET_ACCOUNTS.c.market_id, func.count()).group_by(
                T_MARKET_ACCOUNTS.c.market_id
            )
        ).all()
    )
    cursors = dict(
        conn.execute(
            select(T_CURSORS.c.market_id, T_CURSORS.c.block_number).where(
                T_CURSORS.c.kind == "refresh"
            )
        ).all()
    )
    out = []
    for m in conn.execute(
        select(mk, T_CHAINS.c.name.label("chain"))
        .join(T_CHAINS, T_CHAINS.c.chain_id == mk.c.chain_id)
        .order_by(mk.c.name)
    ):
        h = heads.get(m.id)
        out.append(
            MarketRow(
                m.id,
                m.name,
                m.chain,
                m.chain_id,
                m.protocol,
                m.version,
                m.address,
                m.scope,
                m.base_currency_decimals,
                int(tracked.get(m.id, 0)),
                int(h.snapshots) if h else 0,
                cursors.get(m.id),
                SnapshotHead(
                    h.id,
                    h.block_number,
                    h.block_hash,
                    h.block_timestamp,
                    h.taken_at,
                    h.positions,
                    h.with_debt,
                    h.liquidatable,
                    h.at_risk,
                )
                if h
                else None,
            )
        )
    return out


# -- positions --------------------------------------------------------------------------------


@dataclass(frozen=True)
class StoredPosition:
    """A stored position as the adapter produced it, with the market it is in and the risk
    verdict stored with it (the risk module's fields are None where the tier came from the
    health-factor rule)."""

    market: str
    label: str
    position: Position
    risk_tier: str
    risk_reason: str
    risk_reasons: list[str] | None
    liquidation_probability: float | None
    pending_health_factor: float | None
    horizon_s: float | None


@dataclass
class PositionFilter:
    market: str | None = None
    tier: str | None = None
    account: str | None = None
    min_debt_base: int | None = None


@dataclass
class PositionPage:
    total: int
    positions: list[StoredPosition] = field(default_factory=list)


def _position_rows(table: Any, details: bool = True) -> Select[Any]:
    """Position rows with their account and market, from the snapshot rows or the latest view
    (whose extras and asset rows, `assets`, are in its details table; the snapshot rows have
    `snapshot_id` and asset rows of their own). `details=False`: the latest view's rows
    with their details only where they are the row's block's (NULL elsewhere: rebuilt)."""
    p = table
    snapshots = table is T_POSITIONS
    d = T_LATEST_DETAILS
    query = select(
        p.c.snapshot_id if snapshots else null().label("snapshot_id"),
        null().label("assets") if snapshots else d.c.assets,
        null().label("detail_block") if snapshots else p.c.detail_block,
        p.c.market_id,
        p.c.account_id,
        p.c.market_key,
        *(p.c[name] for name in VALUE_COLUMNS),
        p.c.extra if snapshots else d.c.extra,
        T_ACCOUNTS.c.address,
        T_MARKETS.c.name.label("market_name"),
        T_MARKETS.c.address.label("market_address"),
        T_MARKETS.c.protocol,
        T_MARKETS.c.chain_id.label("chain_id"),
    )
    query = query.join(T_ACCOUNTS, T_ACCOUNTS.c.id == p.c.account_id).join(
        T_MARKETS, T_MARKETS.c.id == p.c.market_id
    )
    if snapshots:
        return query
    on = and_(*(d.c[k] == p.c[k] for k in KEY_LATEST))
    if details:
        return query.join(d, on)
    current = (p.c.detail_block.is_(None)) | (p.c.detail_block == p.c.block_number)
    return query.outerjoin(d, on & current)


def _latest_rows(conn: Connection, where: Any) -> list[Any]:
    """The latest view's rows where `where`, with their details read only where they are the
    row's block's (the others' are rebuilt: `fresh`), in one statement."""
    return list(conn.execute(_position_rows(T_LATEST, details=False).where(where)).all())


def _latest_rows_statement() -> Any:
    """`_latest_rows` of one market's accounts (bound as rows_market, rows_accounts)."""
    t = T_LATEST
    market = bindparam("rows_market", type_=t.c.market_id.type)
    return _position_rows(t, details=False).where(
        (t.c.market_id == market) & t.c.account_id.in_(bindparam("rows_accounts", expanding=True))
    )


def _overlaid(
    rows: Sequence[Any], values: Mapping[tuple[int, int, str], Mapping[str, Any]]
) -> list[Any]:
    """The rows with `values` (by market, account, book) laid over their columns; the others
    as they are."""
    out: list[Any] = []
    for r in rows:
        mine = values.get((r.market_id, r.account_id, r.market_key))
        out.append(r if mine is None else SimpleNamespace(**{**r._asdict(), **mine}))
    return out


# a position's values, the same columns in the snapshot rows and the latest view
VALUE_COLUMNS = tuple(
    c.name
    for c in T_POSITIONS.columns
    if c.name in T_LATEST.c and c.name not in ("market_id", "account_id", "market_key")
)


@dataclass(frozen=True)
class Heads:
    """Each market's newest stored block, by where its positions are: snapshot rows (market id
    -> snapshot id), or the change layout's latest view alone (market id -> block number)."""

    snapshots: dict[int, int]
    latest: dict[int, int]

    def where(self, table: Any) -> ColumnElement[bool]:
        """The rows of these blocks in `table` (the snapshot rows or the latest view: every
        row of a market there, as `heads_of` checked it holds the market's newest block)."""
        if table is T_POSITIONS:
            return table.c.snapshot_id.in_(sorted(self.snapshots.values()))
        return table.c.market_id.in_(sorted(self.latest))

    def scan(self, table: Any) -> ColumnElement[bool]:
        """`where(table)` for the latest view, in a form no index on the market serves: a
        read of every row is one pass over the table, not a lookup per row."""
        return (table.c.market_id + 0).in_(sorted(self.latest))

    def tables(self) -> list[Any]:
        return [t for t, ids in ((T_POSITIONS, self.snapshots), (T_LATEST, self.latest)) if ids]


def heads_of(conn: Connection, market: str | None = None) -> Heads:
    """Each market's newest block (one market, or all), split by layout: one statement, the
    block the latest view's rows of each market are at read with it (`_latest_block`)."""
    query = _built(("heads", market is not None), lambda: _heads_statement(market is not None))
    heads = Heads({}, {})
    for r in conn.execute(query, {} if market is None else {"heads_market": market}):
        table, _where = newest_book(r.id, r.market_id, r.block_number, r.details)
        if table is T_POSITIONS:
            heads.snapshots[r.market_id] = r.id
        elif r.latest_block == r.block_number:
            heads.latest[r.market_id] = r.block_number
    return heads


def _heads_statement(one_market: bool) -> Any:
    """`heads_of`'s statement (one market: its name bound as heads_market)."""
    s, mk = T_SNAPSHOTS, T_MARKETS
    newest = (
        select(s.c.market_id, func.max(s.c.block_number).label("block_number"))
        .group_by(s.c.market_id)
        .subquery()
    )
    query = select(
        s.c.market_id, s.c.id, s.c.block_number, s.c.details, _latest_block(s.c.market_id)
    ).join(
        newest,
        (newest.c.market_id == s.c.market_id) & (newest.c.block_number == s.c.block_number),
    )
    if not one_market:
        return query
    name = bindparam("heads_market", type_=mk.c.name.type)
    return query.join(mk, mk.c.id == s.c.market_id).where(mk.c.name == name)


# statements the API's reads run every time, built once (their values bound at each read):
# building one costs about as much as running it
_BUILT: dict[Any, Any] = {}


def _built(key: Any, make: Callable[[], Any]) -> Any:
    statement = _BUILT.get(key)
    if statement is None:
        statement = _BUILT[key] = make()
    return statement


def _latest_block(market_id: Any) -> Any:
    """The block the market's rows of the latest view are at: one row's, as a block writes
    every row of the market (a replaced newest block leaves them at the replaced one until
    the next block is written: its market then has no rows to serve, as before)."""
    t = T_LATEST
    return (
        select(t.c.block_number)
        .where(t.c.market_id == market_id)
        .limit(1)
        .scalar_subquery()
        .label("latest_block")
    )


def _book(heads: Heads) -> tuple[Any, list[Any]]:
    """The newest blocks' position rows as one selectable and the condition that picks them:
    a table itself when every market is in one layout (its indexes apply), else both tables'
    rows united."""
    tables = heads.tables()
    if len(tables) == 1:
        return tables[0], [heads.where(tables[0])]
    names = ("market_id", "account_id", "market_key", *VALUE_COLUMNS)
    parts = [select(*(t.c[n] for n in names)).where(heads.where(t)) for t in tables]
    book: FromClause = union_all(*parts).subquery("book")
    return book, []


def _segments(
    p: Any, conn: Connection, sort: str, descending: bool
) -> list[tuple[list[Any], list[Any]]]:
    """The sort as consecutive segments (conditions, ORDER BY), each one an index range: risk is
    tier by tier (worst first), each with the lower health factor first; no debt (a NULL health
    factor, a NULL probability) comes last in ascending order on both backends. A page is read
    segment by segment, so the database never sorts the whole book. Ties: account, then book."""
    tie = [p.c.account_id, p.c.market_key, p.c.market_id]
    hf = p.c.health_factor_float
    if sort == "risk":
        segments = [
            part
            for tier in TIERS
            for part in (
                ([p.c.risk_tier == tier, hf.is_not(None)], [hf, *tie]),
                ([p.c.risk_tier == tier, hf.is_(None)], tie),
            )
        ]
    elif sort == "health_factor":
        segments = [([hf.is_not(None)], [hf, *tie]), ([hf.is_(None)], tie)]
    elif sort == "probability":
        prob = p.c.liquidation_probability
        segments = [([prob.is_not(None)], [prob, *tie]), ([prob.is_(None)], tie)]
    elif sort == "account":
        segments = [([], [T_ACCOUNTS.c.address, p.c.market_key, p.c.market_id])]
    else:
        column = p.c.total_debt_base if sort == "debt" else p.c.total_collateral_base
        segments = [([], [*uint_order(conn, column), *tie])]
    if descending:
        segments = [(where, [t.desc() for t in order]) for where, order in reversed(segments)]
    return segments


def _whole_order(p: Any, conn: Connection, sort: str, descending: bool) -> list[Any]:
    """The segments' order as one ORDER BY (for a few rows: one account's positions)."""
    hf, prob = p.c.health_factor_float, p.c.liquidation_probability
    rank = case({t: i for i, t in enumerate(TIERS)}, value=p.c.risk_tier, else_=len(TIERS))
    by_sort: dict[str, list[Any]] = {
        "risk": [rank, hf.is_(None), hf],
        "health_factor": [hf.is_(None), hf],
        "probability": [prob.is_(None), prob],
        "account": [T_ACCOUNTS.c.address],
        "debt": uint_order(conn, p.c.total_debt_base),
        "collateral": uint_order(conn, p.c.total_collateral_base),
    }
    terms = by_sort[sort]
    if descending:
        terms = [t.desc() for t in terms]
    return [*terms, p.c.account_id, p.c.market_key, p.c.market_id]


def positions_page(
    store: Store,
    where: PositionFilter,
    *,
    sort: str = "risk",
    descending: bool = False,
    limit: int = 50,
    offset: int = 0,
    rebuild: BookRebuild | None = None,
) -> PositionPage:
    """One page of the positions at each market's newest stored block, and how many match.
    `rebuild`: the adapters' exact math for latest-view rows whose details are older than
    their block (`fresh`)."""
    with store.read() as conn:
        heads = heads_of(conn, where.market)
        if not heads.tables():
            return PositionPage(0)
        p, conditions = _book(heads)
        if where.account is not None and p is T_LATEST:
            return _account_page(conn, heads, where, sort, descending, limit, offset, rebuild)
        if where.tier is not None:
            conditions.append(p.c.risk_tier == where.tier)
        if where.account is not None:
            ids = list(
                conn.execute(select(T_ACCOUNTS.c.id).where(_address_is(where.account))).scalars()
            )
            if not ids:
                return PositionPage(0)
            conditions.append(p.c.account_id.in_(ids))
        if where.min_debt_base is not None:
            conditions.append(uint_ge(conn, p.c.total_debt_base, where.min_debt_base))
        if where.account is not None:  # a handful of rows: every one, sorted whole, then cut
            query = (
                select(p.c.market_id, p.c.account_id, p.c.market_key)
                .join(T_ACCOUNTS, T_ACCOUNTS.c.id == p.c.account_id)
                .where(*conditions)
                .order_by(*_whole_order(p, conn, sort, descending))
            )
            every = [tuple(r) for r in conn.execute(query)]
            start = max(offset, 0)  # as LIMIT and OFFSET read it
            page = every[start : start + limit] if limit > 0 else []
            return PositionPage(len(every), _rows_in_order(conn, heads, page, rebuild))
        keys: list[tuple[int, int, str]] = []
        skip, need = offset, limit
        bucketed: tuple[int, list[tuple[Segment, int]]] | None = None
        if p is T_LATEST:
            given = (sorted(heads.latest), where.tier, where.min_debt_base)
            bucketed = _bucketed(conn, sort, descending, offset + limit, given)
            if bucketed is None:  # every row read: one pass, not a lookup per row by an index
                conditions[0] = heads.scan(p)
        if bucketed is None:
            segments = _segments(p, conn, sort, descending)
            counts = _segment_counts(conn, p, conditions, segments)
            counted = [
                (_reader(conn, p, [*conditions, *extra], order, sort == "account"), n)
                for (extra, order), n in zip(segments, counts, strict=True)
            ]
            total = sum(counts)
        else:
            total, counted = bucketed
        for segment, n in counted:
            if need <= 0 or skip >= n:
                skip = max(0, skip - n)
                continue
            got = segment(need, skip)
            keys += got
            need -= len(got)
            skip = 0
        return PositionPage(int(total), _rows_in_order(conn, heads, keys, rebuild))


def _account_page(
    conn: Connection,
    heads: Heads,
    where: PositionFilter,
    sort: str,
    descending: bool,
    limit: int,
    offset: int,
    rebuild: BookRebuild | None,
) -> PositionPage:
    """`positions_page` of one account where every market is in the latest view: its handful
    of rows read whole and sorted (`_whole_order`) by one statement built once, then cut as
    LIMIT and OFFSET cut them (no second read of the page's rows by their keys)."""
    tier, debt = where.tier is not None, where.min_debt_base is not None
    shape = (conn.dialect.name, sort, descending, tier, debt)
    statement = _built(("account", *shape), lambda: _account_statement(conn, shape))
    values: dict[str, Any] = {
        "account_markets": sorted(heads.latest),
        "account": stored_address(where.account or ""),
    }
    if where.tier is not None:
        values["head_tier"] = where.tier
    if where.min_debt_base is not None:
        values |= {"head_debt": where.min_debt_base, "head_debt_text": str(where.min_debt_base)}
        values["head_debt_digits"] = len(values["head_debt_text"])
    every = conn.execute(statement, values).all()
    start = max(offset, 0)  # as LIMIT and OFFSET read it
    page = every[start : start + limit] if limit > 0 else []
    return PositionPage(len(every), _stored(conn, page, rebuild))


def _account_statement(conn: Connection, shape: tuple[Any, ...]) -> Any:
    """`_account_page`'s statement for a shape (dialect, sort, descending, whether a tier,
    whether a least debt): the latest view's rows of the account (bound as `account`, looked
    up as `_address_is` does) in the markets bound as account_markets, sorted whole."""
    _dialect, sort, descending, tier_wanted, min_debt = shape
    p, a = T_LATEST, T_ACCOUNTS.c
    address = bindparam("account", type_=a.address.type)
    ids = select(a.id).where(a.chain_id.in_(select(T_CHAINS.c.chain_id)) & (a.address == address))
    conditions: list[ColumnElement[bool]] = [
        p.c.market_id.in_(bindparam("account_markets", expanding=True)),
        p.c.account_id.in_(ids),
    ]
    if tier_wanted:
        conditions.append(p.c.risk_tier == bindparam("head_tier", type_=p.c.risk_tier.type))
    if min_debt:
        conditions.append(_uint_ge_bound(conn, p.c.total_debt_base))
    return (
        _position_rows(p, details=False)
        .where(*conditions)
        .order_by(*_whole_order(p, conn, sort, descending))
    )


# a segment of a sort: (how many rows, after how many) -> their keys, in order
Segment = Callable[[int, int], list[tuple[int, int, str]]]


def _reader(
    conn: Connection, p: Any, where: list[Any], order: list[Any], by_address: bool
) -> Segment:
    """A segment read by a statement built when a page reads it (`by_address`: with the
    accounts, whose address orders it)."""

    def read(need: int, skip: int) -> list[tuple[int, int, str]]:
        query = select(p.c.market_id, p.c.account_id, p.c.market_key).where(*where)
        if by_address:
            query = query.join(T_ACCOUNTS, T_ACCOUNTS.c.id == p.c.account_id)
        got = conn.execute(query.order_by(*order).limit(need).offset(skip))
        return [tuple(r) for r in got]

    return read


def _bucketed(
    conn: Connection,
    sort: str,
    descending: bool,
    enough: int,
    given: Filtered,
) -> tuple[int, list[tuple[Segment, int]]] | None:
    """How many rows match, and the latest view's segments of `_segments`, each cut into its
    sort key's buckets (`onchain.store.buckets`) with how many rows each holds, in order: a
    page then reads and sorts only the buckets it covers. The segments are the sort's first
    ones holding at least `enough` rows (`_bucket_head`: one statement, each tier's index
    range read only as far as those). `given`: the page's conditions (`Filtered`). None: a
    sort with no bucket (collateral, probability, account: one pass over the narrow rows)."""
    p = T_LATEST
    bucket = {"risk": p.c.hf_bucket, "health_factor": p.c.hf_bucket, "debt": p.c.debt_bucket}.get(
        sort
    )
    if bucket is None:
        return None
    markets, tier_wanted, min_debt = given
    values: dict[str, Any] = {"head_markets": markets, "head_skip": max(0, enough - 1)}
    if tier_wanted is not None:
        values["head_tier"] = tier_wanted
    if min_debt is not None:
        values |= {"head_debt": min_debt, "head_debt_text": str(min_debt)}
        values["head_debt_digits"] = len(values["head_debt_text"])
    shape = (conn.dialect.name, sort, descending, tier_wanted is not None, min_debt is not None)

    def segment(tier: str | None, b: int | None) -> Segment:
        # its statement by shape, built once: this tier (the risk sort's) and bucket bound
        mine = (*shape, tier is not None, b is None)
        statement = _built(("page", *mine), lambda: _page_statement(conn, mine, bucket))
        bound = {**values, "page_tier": tier, "page_bucket": b}

        def read(need: int, skip: int) -> list[tuple[int, int, str]]:
            got = conn.execute(statement, {**bound, "page_need": need, "page_skip": skip})
            return [tuple(r) for r in got]

        return read

    total, first = _bucket_head(conn, values, shape, enough, bucket)
    return total, [(segment(tier, b), n) for tier, b, n in first]


def _page_statement(conn: Connection, shape: tuple[Any, ...], bucket: Any) -> Any:
    """The keys of one bucket of a latest-view page's sort, in order, for a shape (`_bucketed`'s
    and whether one tier, whether no value): `_head_statement`'s conditions, then page_tier,
    page_bucket, page_need and page_skip bound by name."""
    p = T_LATEST
    _dialect, sort, descending, _tier, _debt, one_tier, no_value = shape
    tie = [p.c.account_id, p.c.market_key, p.c.market_id]
    value = uint_order(conn, p.c.total_debt_base) if sort == "debt" else [p.c.health_factor_float]
    where = _head_conditions(conn, shape[:5])
    if sort == "health_factor":  # every tier: its index's prefix, a range per tier
        where.append(p.c.risk_tier.in_(TIERS))
    elif one_tier:
        where.append(p.c.risk_tier == bindparam("page_tier", type_=p.c.risk_tier.type))
    if no_value:  # no value (no debt, no probability): last, in the ties' order
        where.append(bucket.is_(None))
        order = tie
    else:
        where.append(bucket == bindparam("page_bucket", type_=Integer))
        order = [bucket, *value, *tie]
    return (
        select(p.c.market_id, p.c.account_id, p.c.market_key)
        .where(*where)
        .order_by(*([t.desc() for t in order] if descending else order))
        .limit(bindparam("page_need", type_=Integer))
        .offset(bindparam("page_skip", type_=Integer))
    )


# beyond every bucket, either way (`buckets`: health factors' reach about -2.1e6 below zero,
# debts' about 1e3): `_bucket_head`'s edge of a tier that holds fewer rows than a page needs
PAST_BUCKETS = 2**31 - 1


# the conditions of a page of the latest view: (its markets, a tier, a least debt)
Filtered = tuple[list[int], str | None, int | None]


def _bucket_head(
    conn: Connection,
    values: Mapping[str, Any],
    shape: tuple[Any, ...],
    enough: int,
    bucket: Any,
) -> tuple[int, list[tuple[str | None, int | None, int]]]:
    """How many rows match, and the sort's first (tier, bucket, rows) segments, in order, that
    hold at least `enough` rows (fewer only where they are all), from one statement: the count,
    and per tier (the risk and health-factor sorts) its buckets in the page's direction up to
    the one holding its `enough`-th row (every one where it holds fewer), read along the index
    and no further, and its rows without one. `values`, `shape`: `_bucketed`'s."""
    _dialect, sort, descending, _tier, _debt = shape
    tiers: list[str | None] = list(TIERS) if sort != "debt" else [None]
    statement = _built(("head", *shape), lambda: _head_statement(conn, shape, tiers, bucket))
    found: dict[int, list[tuple[int, int]]] = {}
    for part, b, n in conn.execute(statement, values):
        found.setdefault(int(part), []).append((0 if b is None else int(b), int(n)))
    total = found[0][0][1]
    per_tier = []  # (its first buckets in the page's direction, its rows without one)
    for i in range(len(tiers)):
        firsts = sorted(found.get(2 * i + 1, []), reverse=descending)
        per_tier.append((firsts, sum(n for _b, n in found.get(2 * i + 2, []))))
    if sort == "health_factor":  # every tier's buckets as one
        merged: dict[int, int] = {}
        for firsts, _n in per_tier:
            for b, n in firsts:
                merged[b] = merged.get(b, 0) + n
        per_tier = [(sorted(merged.items(), reverse=descending), sum(n for _f, n in per_tier))]
        tiers = [None]
    # A tier's buckets are all there up to its edge, which holds its `enough`-th row: a page
    # reads no further (in the health-factor sort, a bucket past one tier's edge, its count
    # then short of that tier's rows, comes after `enough` rows), and reads a tier's rows
    # without a value, which come after its last bucket, only where every bucket is there.
    out: list[tuple[str | None, int | None, int]] = []
    covered = 0
    order = range(len(tiers) - 1, -1, -1) if descending else range(len(tiers))
    for i in order:
        firsts, nulls = per_tier[i]
        mine: list[tuple[str | None, int | None, int]] = [(tiers[i], b, n) for b, n in firsts]
        if nulls:  # no value: first, descending; last, ascending
            mine.insert(len(mine) if not descending else 0, (tiers[i], None, nulls))
        out += mine
        covered += sum(n for _t, _b, n in mine)
        if covered >= enough:
            break
    return total, out


def _head_statement(
    conn: Connection, shape: tuple[Any, ...], tiers: list[str | None], bucket: Any
) -> Any:
    """`_bucket_head`'s statement for a shape, its values bound by name (head_markets,
    head_tier, head_debt or head_debt_text and head_debt_digits: `uint_ge`'s)."""
    p = T_LATEST
    _dialect, sort, descending, _tier, _debt = shape
    conditions = _head_conditions(conn, shape)
    way = bucket.desc() if descending else bucket
    everyone = [p.c.risk_tier.in_(TIERS)] if sort == "risk" else []  # as its segments
    parts: list[Any] = [
        select(literal(0).label("part"), null().label("b"), func.count()).where(
            *conditions, *everyone
        )
    ]
    skip = bindparam("head_skip", type_=Integer)
    for i, tier in enumerate(tiers):
        mine = [*conditions, *([p.c.risk_tier == tier] if tier else [])]
        # the bucket of the tier's `enough`-th row in the page's direction (else past its last)
        nth = (
            select(bucket).where(*mine, bucket.is_not(None)).order_by(way).limit(1).offset(skip)
        ).scalar_subquery()
        edge = func.coalesce(nth, -PAST_BUCKETS if descending else PAST_BUCKETS)
        first = (
            select(bucket.label("b"), func.count().label("n"))
            .where(*mine, bucket.is_not(None), bucket >= edge if descending else bucket <= edge)
            .group_by(bucket)
            .subquery()
        )
        parts.append(select(literal(2 * i + 1), first.c.b, first.c.n))
        parts.append(
            select(literal(2 * i + 2), null(), func.count()).where(*mine, bucket.is_(None))
        )
    return union_all(*parts)


def _head_conditions(conn: Connection, shape: tuple[Any, ...]) -> list[ColumnElement[bool]]:
    """A latest-view page's conditions (`_bucketed`'s shape), their values bound by name
    (head_markets, head_tier, head_debt or head_debt_text and head_debt_digits)."""
    p = T_LATEST
    _dialect, _sort, _descending, tier_wanted, min_debt = shape
    conditions: list[ColumnElement[bool]] = [
        p.c.market_id.in_(bindparam("head_markets", expanding=True))
    ]
    if tier_wanted:
        conditions.append(p.c.risk_tier == bindparam("head_tier", type_=p.c.risk_tier.type))
    if min_debt:
        conditions.append(_uint_ge_bound(conn, p.c.total_debt_base))
    return conditions


def _uint_ge_bound(conn: Connection, column: Any) -> ColumnElement[bool]:
    """`uint_ge(conn, column, value)` with the value bound at each read (head_debt on
    PostgreSQL; its digits, head_debt_text, and how many, head_debt_digits, on SQLite)."""
    if conn.dialect.name == "postgresql":
        return column >= bindparam("head_debt", type_=column.type)
    as_text = type_coerce(column, String(78))
    length = func.length(as_text)
    digits = bindparam("head_debt_digits", type_=Integer)
    return or_(
        length > digits,
        and_(length == digits, as_text >= bindparam("head_debt_text", type_=String(78))),
    )


def _segment_counts(
    conn: Connection, p: Any, conditions: list[Any], segments: list[tuple[list[Any], list[Any]]]
) -> list[int]:
    """How many rows each segment holds: one count per segment where the snapshot rows' indexes
    answer it, else (the latest view has no index on a column that moves) one pass for all."""
    if p is T_POSITIONS or len(segments) == 1:
        return [
            conn.execute(
                select(func.count()).select_from(p).where(*conditions, *extra)
            ).scalar_one()
            for extra, _order in segments
        ]
    sums = [
        func.coalesce(func.sum(case((and_(true(), *extra), 1), else_=0)), 0)
        for extra, _order in segments
    ]
    return [int(n) for n in conn.execute(select(*sums).select_from(p).where(*conditions)).one()]


def _rows_in_order(
    conn: Connection,
    heads: Heads,
    keys: list[tuple[int, int, str]],
    rebuild: BookRebuild | None = None,
) -> list[StoredPosition]:
    """The positions of these (market, account, book) keys at the heads, in the keys' order."""
    if not keys:
        return []
    rows: dict[tuple[int, int, str], Any] = {}
    for mid in sorted({k[0] for k in keys}):
        one = Heads(
            {mid: heads.snapshots[mid]} if mid in heads.snapshots else {},
            {mid: heads.latest[mid]} if mid in heads.latest else {},
        )
        (p,) = one.tables()
        accounts = sorted({k[1] for k in keys if k[0] == mid})
        for chunk in chunks(accounts):
            if p is T_LATEST:
                got = conn.execute(
                    _built("latest rows", _latest_rows_statement),
                    {"rows_market": mid, "rows_accounts": chunk},
                ).all()
            else:
                where = one.where(p) & p.c.account_id.in_(chunk)
                got = conn.execute(_position_rows(p).where(where)).all()
            for r in got:
                rows[(r.market_id, r.account_id, r.market_key)] = r
    return _stored(conn, [rows[k] for k in keys if k in rows], rebuild)


def fresh(conn: Connection, rows: Sequence[Any], rebuild: BookRebuild | None) -> list[Any]:
    """The rows with the details of latest-view rows older than their block (a block wrote
    only their moving columns) rebuilt exactly from the stored states at their block: what a
    row written whole holds (`changes.rebuilt_details`). Only these rows are rebuilt."""
    return _overlaid(rows, _rebuilt(conn, rows, rebuild, rebuilt_details))


def _rebuilt(
    conn: Connection,
    rows: Sequence[Any],
    rebuild: BookRebuild | None,
    of: Callable[
        [Connection, int, Sequence[Any], BookRebuild], Mapping[tuple[int, str], Any]
    ] = rebuilt_positions,
) -> dict[tuple[int, int, str], Any]:
    """(market, account, book) -> `of` (the rebuilt position; `fresh`: its details) for each
    latest-view row older than its block, market by market (`_stored` reads the details off
    the positions)."""
    stale = [r for r in rows if stale_details(r)]
    if not stale:
        return {}
    if rebuild is None:
        raise ValueError("latest rows with older details need the adapters' rebuild")
    out: dict[tuple[int, int, str], Any] = {}
    for market_id in sorted({r.market_id for r in stale}):
        mine = [r for r in stale if r.market_id == market_id]
        for (aid, key), rebuilt in of(conn, market_id, mine, rebuild).items():
            out[(market_id, aid, key)] = rebuilt
    return out


def _asset_position(r: Any, address: str, symbol: str, decimals: int) -> AssetPosition:
    """One stored asset row (a snapshot row or an entry of the latest view's `assets`)."""
    exact = r["liquidation_price_base_exact"]
    if exact is None and r["liquidation_price_base"] is not None:
        exact = round(r["liquidation_price_base"])  # rows older than 0004_api
    return AssetPosition(
        address,
        symbol,
        decimals,
        r["price_base"],
        r["collateral_raw"],
        r["debt_raw"],
        r["collateral_base"],
        r["debt_base"],
        bool(r["collateral_enabled"]),
        r["liquidation_threshold_bps"],
        exact,
    )


def _stored(
    conn: Connection, rows: Sequence[Any], rebuild: BookRebuild | None
) -> list[StoredPosition]:
    """The rows (`_position_rows`') as StoredPositions: `_with_assets(conn, fresh(conn, rows,
    rebuild))`, the rebuilt rows' details read off their positions (no row copied)."""
    rows = _records(rows)
    return _with_assets(conn, rows, _rebuilt(conn, rows, rebuild))


def _records(rows: Sequence[Any]) -> list[Any]:
    """Result rows as named tuples of the same fields: each row's values are read tens of
    times on the way to a StoredPosition, and a result row's attribute costs several times a
    named tuple's."""
    out: list[Any] = []
    for r in rows:
        fields = getattr(r, "_fields", None)
        kind = _RECORDS.get(fields) if fields is not None else None
        if kind is None and fields is not None:
            kind = _RECORDS[fields] = namedtuple("StoredRow", fields)
        out.append(r if kind is None else kind._make(r))
    return out


# `_records`' named tuple types by their fields (the few shapes of `_position_rows`)
_RECORDS: dict[tuple[str, ...], Any] = {}


def _with_assets(
    conn: Connection,
    rows: Sequence[Any],
    rebuilt: Mapping[tuple[int, int, str], Position] | None = None,
) -> list[StoredPosition]:
    """The rows as StoredPositions, their assets read in one query per chunk (snapshot rows)
    or from the latest view's own `assets`; a row with a `rebuilt` position (by market,
    account, book) takes its details from it, as `fresh` lays them over the row."""
    a = T_ASSET_POSITIONS
    rebuilt = rebuilt or {}
    wanted = {(r.snapshot_id, r.account_id, r.market_key) for r in rows if r.snapshot_id}
    assets: dict[tuple[int, int, str], list[AssetPosition]] = {}
    by_snapshot: dict[int, set[int]] = {}
    for sid, aid, _key in wanted:
        by_snapshot.setdefault(sid, set()).add(aid)
    for sid, account_ids in by_snapshot.items():
        ids = sorted(account_ids)
        for chunk in chunks(ids):
            for r in conn.execute(
                select(
                    a.c.snapshot_id,
                    a.c.account_id,
                    a.c.market_key,
                    T_ASSETS.c.address,
                    T_ASSETS.c.symbol,
                    T_ASSETS.c.decimals,
                    a.c.price_base,
                    a.c.collateral_raw,
                    a.c.debt_raw,
                    a.c.collateral_base,
                    a.c.debt_base,
                    a.c.collateral_enabled,
                    a.c.liquidation_threshold_bps,
                    a.c.liquidation_price_base,
                    a.c.liquidation_price_base_exact,
                )
                .join(T_ASSETS, T_ASSETS.c.id == a.c.asset_id)
                .where((a.c.snapshot_id == sid) & a.c.account_id.in_(chunk))
                .order_by(a.c.account_id, a.c.market_key, T_ASSETS.c.address)
            ):
                key = (r.snapshot_id, r.account_id, r.market_key)
                if key in wanted:
                    row = r._mapping
                    assets.setdefault(key, []).append(
                        _asset_position(row, r.address, r.symbol, r.decimals)
                    )
    known = _Assets.read(conn) if any(not r.snapshot_id for r in rows) else _Assets({}, {})
    out = []
    for r in rows:
        p = rebuilt.get((r.market_id, r.account_id, r.market_key))
        if p is not None:
            out.append(_position(r, known.rebuilt(r.chain_id, p), p))
            continue
        if r.snapshot_id:
            mine = assets.get((r.snapshot_id, r.account_id, r.market_key), [])
        else:
            mine = known.held(r.assets)
        out.append(_position(r, mine))
    return out


def _position(r: Any, assets: list[AssetPosition], p: Position | None = None) -> StoredPosition:
    """A stored row as a StoredPosition, with `p`'s details (`changes.DETAILS`) where its own
    are older than its block (`p` rebuilt at its block: what `fresh` lays over the row)."""
    d = r if p is None else p
    extra = r.extra if p is None else jsonable(p.extra)
    position = Position(
        protocol=r.protocol,
        market=r.market_key,
        account=r.address,
        block=BlockRef(r.block_number, r.block_hash, r.block_timestamp),
        health_factor=r.health_factor,
        liquidatable=bool(r.liquidatable),
        total_collateral_base=r.total_collateral_base,
        total_debt_base=r.total_debt_base,
        available_borrows_base=d.available_borrows_base,
        liquidation_threshold_bps=d.liquidation_threshold_bps,
        ltv_bps=d.ltv_bps,
        base_currency_decimals=d.base_currency_decimals,
        assets=tuple(assets),
        extra=dict(extra or {}),
        **fields_from_details(extra or {}),
    )
    return StoredPosition(
        r.market_name,
        label_of(r.market_name, r.market_address, r.market_key, extra),
        position,
        r.risk_tier,
        r.risk_reason,
        r.risk_reasons,
        r.liquidation_probability,
        r.pending_health_factor,
        r.horizon_s,
    )


# `_Assets.read`'s statement, built once (a page's read runs it every time)
_EVERY_ASSET = select(
    T_ASSETS.c.id, T_ASSETS.c.chain_id, T_ASSETS.c.address, T_ASSETS.c.symbol, T_ASSETS.c.decimals
)


@dataclass(frozen=True)
class _Assets:
    """The registered assets (tens per chain), read in one statement: a latest-view row's asset
    entries name them by id, a rebuilt position's by address."""

    by_id: dict[int, Any]
    # chain id -> address -> (address, symbol, decimals)
    on_chain: dict[int, dict[str, tuple[str, str, int]]]

    @classmethod
    def read(cls, conn: Connection) -> _Assets:
        rows = conn.execute(_EVERY_ASSET)
        by_id = {r.id: r for r in rows}
        on_chain: dict[int, dict[str, tuple[str, str, int]]] = {}
        for r in by_id.values():
            on_chain.setdefault(r.chain_id, {})[r.address] = (r.address, r.symbol, r.decimals)
        return cls(by_id, on_chain)

    def held(self, entries: Sequence[Mapping[str, Any]] | None) -> list[AssetPosition]:
        """A latest-view row's asset entries, in the snapshot rows' order (by asset address)."""
        held = [(self.by_id[int(x["asset_id"])], x) for x in entries or ()]
        held.sort(key=lambda pair: pair[0].address)
        return [_asset_position(x, k.address, k.symbol, k.decimals) for k, x in held]

    def rebuilt(self, chain_id: int, p: Position) -> list[AssetPosition]:
        """A rebuilt position's assets as its row written whole would hold them: `held` of
        `changes.details_of`' entries (`asset_values`), field for field, without the dicts."""
        registered = self.on_chain.get(chain_id, {})  # none: a chain whose positions hold nothing
        held = []
        for a in p.assets:
            address, symbol, decimals = registered[a.asset]
            price = a.liquidation_price_base
            if (
                a.symbol == symbol
                and a.decimals == decimals
                and type(a.collateral_enabled) is bool
                and (price is None or type(price) is int)
            ):  # already what the row holds (shared, as frozen as the position it is from)
                held.append((address, a))
                continue
            exact = (
                price  # `asset_values`' exact twin, else the estimate rounded (`_asset_position`)
            )
            if price is not None and (not isinstance(price, int) or isinstance(price, bool)):
                exact = round(price)
            held.append(
                (
                    address,
                    AssetPosition(
                        address,
                        symbol,
                        decimals,
                        a.price_base,
                        a.collateral_raw,
                        a.debt_raw,
                        a.collateral_base,
                        a.debt_base,
                        bool(a.collateral_enabled),
                        a.liquidation_threshold_bps,
                        exact,
                    ),
                )
            )
        held.sort(key=itemgetter(0))
        return [asset for _address, asset in held]


def latest_positions(
    store: Store, market: str | None = None, rebuild: BookRebuild | None = None
) -> list[StoredPosition]:
    """Every position of each market's newest block (one market, or all), in a stable order
    (`rebuild`: as `positions_page`'s). Tens of thousands of rows and Positions, none in a
    reference cycle: made with the cyclic collector paused."""
    with store.read() as conn, without_cycle_collection():
        heads = heads_of(conn, market)
        rows: list[Any] = []
        for p in heads.tables():
            if p is T_LATEST:
                rows += _latest_rows(conn, heads.scan(p))
            else:
                rows += conn.execute(_position_rows(p).where(heads.where(p))).all()
        rows.sort(key=lambda r: (r.market_name, r.market_key, r.address))
        return _stored(conn, rows, rebuild)


def _address_is(address: str) -> ColumnElement[bool]:
    """The accounts with this address (whatever its case: `stored_address`), on any chain, in
    a form the accounts' unique index (chain id, address) serves: a lookup per registered
    chain, not a pass over every account (no index starts with the address)."""
    a = T_ACCOUNTS.c
    return a.chain_id.in_(select(T_CHAINS.c.chain_id)) & (a.address == stored_address(address))


def account_known(store: Store, address: str) -> bool:
    with store.read() as conn:
        return (
            conn.execute(select(T_ACCOUNTS.c.id).where(_address_is(address)).limit(1)).first()
            is not None
        )


# -- over time --------------------------------------------------------------------------------


@dataclass(frozen=True)
class BookPoint:
    """One book at one stored block: positions with debt per tier and what is at risk (every
    tier but SAFE), exact, in the book's base currency."""

    block_number: int
    block_timestamp: int
    tiers: dict[str, int]
    collateral_at_risk_base: int
    debt_at_risk_base: int
    collateral_at_risk_usd: float | None
    debt_at_risk_usd: float | None
    at_risk_by_tier: dict[str, tuple[int, int]]  # tier -> (collateral, debt), tiers but SAFE
    usd_per_unit: float | None  # USD per whole unit of the base currency at the block


@dataclass
class BookSeries:
    market: str
    market_key: str
    label: str
    protocol: str
    base_currency: str
    base_currency_decimals: int
    points: list[BookPoint] = field(default_factory=list)


def _rebuilt_rows(
    conn: Connection, market_id: int, protocol: str, number: int, rebuild: FiguresRebuild | None
) -> list[tuple[str, str, bool, int, int]]:
    """(book, tier, has debt, collateral, debt) of each position at an older block stored in
    the change layout alone: the book's figures rebuilt, with the verdict standing at that
    block."""
    book = book_at(conn, market_id, number)
    if book is None or rebuild is None:
        return []
    f = rebuild(protocol, book)
    out = []
    for i, (account, key) in enumerate(zip(f.accounts, f.markets, strict=True)):
        verdict = book.verdicts.get((account, key))
        tier = verdict.risk_tier if verdict is not None and verdict.risk_tier else ""
        has_debt = f.health_factor[i] is not None or bool(f.liquidatable[i])
        out.append((key, tier, has_debt, f.total_collateral_base[i], f.total_debt_base[i]))
    return out


def _tally(
    conn: Connection,
    p: Any,
    where: Any,
    sid: int | None,
    exact: bool,
    counts: dict[tuple[int, str], dict[str, int]],
    amounts: dict[tuple[int, str], dict[str, list[Any]]],
    at_risk_where: Any = None,
) -> None:
    """Positions with debt per (snapshot, book, tier), and the collateral and debt of those not
    SAFE, from stored rows (`p` where `where`): the snapshot rows, grouped by their snapshot
    (`sid` None), or the latest view's, all of snapshot `sid`. `exact=False` sums floats in the
    database. `at_risk_where`: the same rows as `where`, in a form an index on the tier serves
    (the latest view's counts read every row, its rows at risk a few)."""
    with_debt = or_(p.c.health_factor_float.is_not(None), p.c.liquidatable)
    block = [p.c.snapshot_id] if sid is None else []

    def rows(query: Any) -> Any:
        for row in conn.execute(query):
            yield tuple(row) if sid is None else (sid, *row)

    keys = [*block, p.c.market_key, p.c.risk_tier]
    for snapshot, key, tier, n in rows(
        select(*keys, func.count()).where(where & with_debt).group_by(*keys)
    ):
        counts.setdefault((snapshot, key), {})[tier] = int(n)
    at_risk = (
        (where if at_risk_where is None else at_risk_where)
        & p.c.risk_tier.in_([t for t in TIERS if t != "SAFE"])
        & with_debt
    )
    if not exact:
        sums = [
            func.sum(cast(p.c.total_collateral_base, Double)),
            func.sum(cast(p.c.total_debt_base, Double)),
        ]
        for snapshot, key, tier, coll, debt in rows(
            select(*keys, *sums).where(at_risk).group_by(*keys)
        ):
            amounts.setdefault((snapshot, key), {})[tier] = [float(coll), float(debt)]
        return
    for snapshot, key, tier, coll, debt in rows(
        select(*keys, p.c.total_collateral_base, p.c.total_debt_base).where(at_risk)
    ):
        pair = amounts.setdefault((snapshot, key), {}).setdefault(tier, [0, 0])
        pair[0] += coll
        pair[1] += debt


def tier_series(
    store: Store,
    market: str,
    limit: int = 500,
    *,
    exact: bool = True,
    rebuild: FiguresRebuild | None = None,
) -> list[BookSeries]:
    """The market's newest `limit` snapshots, oldest first, per book. `exact=False` sums the
    amounts at risk as floats in the database (for metrics: one query, no integer per row).
    Blocks stored in the change layout alone: the newest from the latest view, older ones
    rebuilt by `rebuild` (without it they are left out of the `limit` newest, as
    `queries.account_history` leaves them out)."""
    s, p = T_SNAPSHOTS, T_POSITIONS
    with store.read() as conn:
        m = conn.execute(select(T_MARKETS).where(T_MARKETS.c.name == market)).first()
        if m is None:
            return []
        heads = conn.execute(
            select(s.c.id, s.c.block_number, s.c.block_timestamp, s.c.details)
            .where(s.c.market_id == m.id)
            .order_by(s.c.block_number.desc())
            .limit(limit)
        ).all()
        alone = {r.id for r in heads if (r.details or {}).get("layout") == "changes"}
        if rebuild is None:
            heads = [r for i, r in enumerate(heads) if r.id not in alone or i == 0]
        snaps = heads[::-1]
        if not snaps:
            return []
        ids = [r.id for r in snaps if r.id not in alone]
        counts: dict[tuple[int, str], dict[str, int]] = {}
        amounts: dict[tuple[int, str], dict[str, list[Any]]] = {}
        for chunk in chunks(ids):
            _tally(conn, p, p.c.snapshot_id.in_(chunk), None, exact, counts, amounts)
        for snap in snaps:
            if snap.id not in alone:
                continue
            if snap.id == heads[0].id:  # the newest: the latest view, summed in the database
                _, scan = newest_book(snap.id, m.id, snap.block_number, snap.details)
                seek = latest_seek(m.id, snap.block_number)
                _tally(conn, T_LATEST, scan, snap.id, exact, counts, amounts, seek)
                continue
            for key, tier, has_debt, coll, debt in _rebuilt_rows(
                conn, m.id, m.protocol, snap.block_number, rebuild
            ):
                if not has_debt:
                    continue
                n = counts.setdefault((snap.id, key), {})
                n[tier] = n.get(tier, 0) + 1
                if tier != "SAFE":
                    pair = amounts.setdefault((snap.id, key), {}).setdefault(tier, [0, 0])
                    pair[0] += coll if exact else float(coll)
                    pair[1] += debt if exact else float(debt)
        head = snaps[-1]
        table, where = newest_book(head.id, m.id, head.block_number, head.details)
        books = _book_currencies(conn, table, where)
        rates = UsdRates.load(conn, [b[0] for b in books.values()], snaps[0].block_number)
        out = []
        for key in sorted({k for _sid, k in counts} | set(books)):
            currency, decimals, label = books.get(key, ("USD", m.base_currency_decimals or 0, None))
            series = BookSeries(
                m.name,
                key,
                label_of(m.name, m.address, key, {"market_label": label}),
                m.protocol,
                currency,
                decimals,
            )
            for snap in snaps:
                tiers = {t: counts.get((snap.id, key), {}).get(t, 0) for t in TIERS}
                by_tier = {t: tuple(v) for t, v in amounts.get((snap.id, key), {}).items()}
                coll = sum(v[0] for v in by_tier.values())
                debt = sum(v[1] for v in by_tier.values())
                rate = rates.usd_per_unit(currency, snap.block_number)
                scale = 10.0**decimals
                series.points.append(
                    BookPoint(
                        snap.block_number,
                        snap.block_timestamp,
                        tiers,
                        coll,
                        debt,
                        None if rate is None else coll / scale * rate,
                        None if rate is None else debt / scale * rate,
                        by_tier,
                        rate,
                    )
                )
            out.append(series)
        return out


def _book_currencies(
    conn: Connection, p: Any, where: Any
) -> dict[str, tuple[str, int, str | None]]:
    """market_key -> (base currency symbol, decimals) of the books in a block's rows (`p`
    where `where`): "USD" unless the adapter names the base token (`extra.base_currency`, e.g.
    a Morpho loan token)."""
    out: dict[str, tuple[str, int, str | None]] = {}
    keys = conn.execute(select(p.c.market_key).where(where).distinct()).scalars()
    for key in list(keys):  # one row per book: its extras name the book's base currency
        if p is T_LATEST:  # its extras are in its details
            d = T_LATEST_DETAILS
            query = select(p.c.base_currency_decimals, d.c.extra).join(
                d, and_(*(d.c[k] == p.c[k] for k in KEY_LATEST))
            )
        else:
            query = select(p.c.base_currency_decimals, p.c.extra)
        decimals, extra = conn.execute(query.where(where & (p.c.market_key == key)).limit(1)).one()
        extra = extra or {}
        label = extra.get("market_label")
        out[key] = (str(extra.get("base_currency", "USD")), int(decimals), label)
    return out


@dataclass
class UsdRates:
    """USD per whole unit of a symbol at a block: 1 for USD and stablecoins, else the price of
    that symbol in the newest stored reserves of a USD-priced market (Aave) at or before the
    block (or the oldest after it when none is older); None when no market prices it."""

    prices: dict[str, list[tuple[int, float]]]

    @classmethod
    def load(cls, conn: Connection, symbols: Iterable[str], from_block: int = 0) -> UsdRates:
        wanted = {s.upper() for s in symbols} - DEFAULT_STABLE_SYMBOLS - {"USD"}
        prices: dict[str, list[tuple[int, float]]] = {}
        if wanted:
            r, s, mk = T_RESERVES, T_SNAPSHOTS, T_MARKETS
            for symbol, number, price, decimals in conn.execute(
                select(
                    T_ASSETS.c.symbol, s.c.block_number, r.c.price_base, mk.c.base_currency_decimals
                )
                .join(s, s.c.id == r.c.snapshot_id)
                .join(mk, mk.c.id == s.c.market_id)
                .join(T_ASSETS, T_ASSETS.c.id == r.c.asset_id)
                .where(func.upper(T_ASSETS.c.symbol).in_(sorted(wanted)))
                .where(mk.c.base_currency_decimals.is_not(None))
                .order_by(s.c.block_number)
            ):
                prices.setdefault(symbol.upper(), []).append((number, price / 10.0**decimals))
        return cls(prices)

    def usd_per_unit(self, symbol: str, block_number: int | None = None) -> float | None:
        key = symbol.upper()
        if key == "USD" or key in DEFAULT_STABLE_SYMBOLS:
            return 1.0
        series = self.prices.get(key)
        if not series:
            return None
        if block_number is None:
            return series[-1][1]
        before = [price for number, price in series if number <= block_number]
        return before[-1] if before else series[0][1]


def usd_rates(store: Store, symbols: Iterable[str]) -> UsdRates:
    with store.read() as conn:
        return UsdRates.load(conn, symbols)
