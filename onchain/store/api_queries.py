"""The reads behind the HTTP API (`onchain serve`): markets and their newest snapshot, a page of
positions at each market's newest block (filtered, sorted, exact), positions read back as the
adapters' own `Position` objects (so `scan --json`'s writer and `stress`'s book builder apply to
them unchanged), tier counts and amounts at risk over time, and USD rates of base currencies.

Uint256 columns are text on SQLite: exact comparisons and ordering go through `uint_ge` and
`uint_order`, which compare decimal strings by length first (no leading zeros are stored)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Connection,
    Double,
    String,
    and_,
    case,
    cast,
    func,
    or_,
    select,
    type_coerce,
)

from onchain.model import AssetPosition, Position, fields_from_details
from onchain.risk.book import DEFAULT_STABLE_SYMBOLS
from onchain.rpc.client import BlockRef
from onchain.store.crud import (
    IN_CHUNK,
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
from onchain.store.queries import book_label

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


def _position_columns() -> list[Any]:
    p = T_POSITIONS
    return [
        p.c.snapshot_id,
        p.c.account_id,
        p.c.market_key,
        p.c.block_number,
        p.c.block_hash,
        p.c.block_timestamp,
        p.c.base_currency_decimals,
        p.c.health_factor,
        p.c.liquidatable,
        p.c.total_collateral_base,
        p.c.total_debt_base,
        p.c.available_borrows_base,
        p.c.liquidation_threshold_bps,
        p.c.ltv_bps,
        p.c.risk_tier,
        p.c.risk_reason,
        p.c.risk_reasons,
        p.c.liquidation_probability,
        p.c.pending_health_factor,
        p.c.horizon_s,
        p.c.extra,
        T_ACCOUNTS.c.address,
        T_MARKETS.c.name.label("market_name"),
        T_MARKETS.c.address.label("market_address"),
        T_MARKETS.c.protocol,
    ]


def _segments(conn: Connection, sort: str, descending: bool) -> list[tuple[list[Any], list[Any]]]:
    """The sort as consecutive segments (conditions, ORDER BY), each one an index range: risk is
    tier by tier (worst first), each with the lower health factor first; no debt (a NULL health
    factor, a NULL probability) comes last in ascending order on both backends. A page is read
    segment by segment, so the database never sorts the whole book. Ties: account, then book."""
    p = T_POSITIONS
    tie = [p.c.account_id, p.c.market_key]
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
        segments = [([], [T_ACCOUNTS.c.address, p.c.market_key])]
    else:
        column = p.c.total_debt_base if sort == "debt" else p.c.total_collateral_base
        segments = [([], [*uint_order(conn, column), *tie])]
    if descending:
        segments = [(where, [t.desc() for t in order]) for where, order in reversed(segments)]
    return segments


def _whole_order(conn: Connection, sort: str, descending: bool) -> list[Any]:
    """The segments' order as one ORDER BY (for a few rows: one account's positions)."""
    p = T_POSITIONS
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
    return [*terms, p.c.account_id, p.c.market_key]


def head_snapshot_ids(conn: Connection, market: str | None = None) -> dict[int, int]:
    """market id -> id of its newest snapshot."""
    s, mk = T_SNAPSHOTS, T_MARKETS
    newest = (
        select(s.c.market_id, func.max(s.c.block_number).label("block_number"))
        .group_by(s.c.market_id)
        .subquery()
    )
    query = select(s.c.market_id, s.c.id).join(
        newest,
        (newest.c.market_id == s.c.market_id) & (newest.c.block_number == s.c.block_number),
    )
    if market is not None:
        query = query.join(mk, mk.c.id == s.c.market_id).where(mk.c.name == market)
    return dict(conn.execute(query).all())


def positions_page(
    store: Store,
    where: PositionFilter,
    *,
    sort: str = "risk",
    descending: bool = False,
    limit: int = 50,
    offset: int = 0,
) -> PositionPage:
    """One page of the positions at each market's newest stored block, and how many match."""
    p = T_POSITIONS
    with store.read() as conn:
        heads = head_snapshot_ids(conn, where.market)
        if not heads:
            return PositionPage(0)
        conditions: list[Any] = [p.c.snapshot_id.in_(list(heads.values()))]
        if where.tier is not None:
            conditions.append(p.c.risk_tier == where.tier)
        if where.account is not None:
            ids = list(
                conn.execute(
                    select(T_ACCOUNTS.c.id).where(T_ACCOUNTS.c.address == where.account)
                ).scalars()
            )
            if not ids:
                return PositionPage(0)
            conditions.append(p.c.account_id.in_(ids))
        if where.min_debt_base is not None:
            conditions.append(uint_ge(conn, p.c.total_debt_base, where.min_debt_base))
        keys: list[tuple[int, int, str]] = []
        total, skip, need = 0, offset, limit
        segments = _segments(conn, sort, descending)
        if where.account is not None:  # a handful of rows: one segment, sorted whole
            segments = [([], _whole_order(conn, sort, descending))]
        for extra, order in segments:
            n = conn.execute(select(func.count()).where(*conditions, *extra)).scalar_one()
            total += n
            if need <= 0 or skip >= n:
                skip = max(0, skip - n)
                continue
            query = select(p.c.snapshot_id, p.c.account_id, p.c.market_key).where(
                *conditions, *extra
            )
            if sort == "account" or where.account is not None:
                query = query.join(T_ACCOUNTS, T_ACCOUNTS.c.id == p.c.account_id)
            got = conn.execute(query.order_by(*order).limit(need).offset(skip)).all()
            keys += [tuple(r) for r in got]
            need -= len(got)
            skip = 0
        return PositionPage(int(total), _rows_in_order(conn, keys))


def _rows_in_order(conn: Connection, keys: list[tuple[int, int, str]]) -> list[StoredPosition]:
    """The positions of these (snapshot, account, book) keys, in the keys' order."""
    if not keys:
        return []
    p = T_POSITIONS
    rows: dict[tuple[int, int, str], Any] = {}
    for sid in sorted({k[0] for k in keys}):
        accounts = sorted({k[1] for k in keys if k[0] == sid})
        for chunk in _chunks(accounts):
            for r in conn.execute(
                select(*_position_columns())
                .join(T_ACCOUNTS, T_ACCOUNTS.c.id == p.c.account_id)
                .join(T_MARKETS, T_MARKETS.c.id == p.c.market_id)
                .where((p.c.snapshot_id == sid) & p.c.account_id.in_(chunk))
            ):
                rows[(r.snapshot_id, r.account_id, r.market_key)] = r
    return _with_assets(conn, [rows[k] for k in keys if k in rows])


def _with_assets(conn: Connection, rows: Sequence[Any]) -> list[StoredPosition]:
    """The rows as StoredPositions, their assets read in one query per chunk."""
    a = T_ASSET_POSITIONS
    wanted = {(r.snapshot_id, r.account_id, r.market_key) for r in rows}
    assets: dict[tuple[int, int, str], list[AssetPosition]] = {}
    by_snapshot: dict[int, set[int]] = {}
    for sid, aid, _key in wanted:
        by_snapshot.setdefault(sid, set()).add(aid)
    for sid, account_ids in by_snapshot.items():
        ids = sorted(account_ids)
        for start in range(0, len(ids), IN_CHUNK):
            chunk = ids[start : start + IN_CHUNK]
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
                if key not in wanted:
                    continue
                exact = r.liquidation_price_base_exact
                if exact is None and r.liquidation_price_base is not None:
                    exact = round(r.liquidation_price_base)  # rows older than 0004_api
                assets.setdefault(key, []).append(
                    AssetPosition(
                        r.address,
                        r.symbol,
                        r.decimals,
                        r.price_base,
                        r.collateral_raw,
                        r.debt_raw,
                        r.collateral_base,
                        r.debt_base,
                        bool(r.collateral_enabled),
                        r.liquidation_threshold_bps,
                        exact,
                    )
                )
    out = []
    for r in rows:
        position = Position(
            protocol=r.protocol,
            market=r.market_key,
            account=r.address,
            block=BlockRef(r.block_number, r.block_hash, r.block_timestamp),
            health_factor=r.health_factor,
            liquidatable=bool(r.liquidatable),
            total_collateral_base=r.total_collateral_base,
            total_debt_base=r.total_debt_base,
            available_borrows_base=r.available_borrows_base,
            liquidation_threshold_bps=r.liquidation_threshold_bps,
            ltv_bps=r.ltv_bps,
            base_currency_decimals=r.base_currency_decimals,
            assets=tuple(assets.get((r.snapshot_id, r.account_id, r.market_key), ())),
            extra=dict(r.extra or {}),
            **fields_from_details(r.extra or {}),
        )
        out.append(
            StoredPosition(
                r.market_name,
                label_of(r.market_name, r.market_address, r.market_key, r.extra),
                position,
                r.risk_tier,
                r.risk_reason,
                r.risk_reasons,
                r.liquidation_probability,
                r.pending_health_factor,
                r.horizon_s,
            )
        )
    return out


def latest_positions(store: Store, market: str | None = None) -> list[StoredPosition]:
    """Every position of each market's newest snapshot (one market, or all), in a stable order."""
    p = T_POSITIONS
    with store.read() as conn:
        heads = head_snapshot_ids(conn, market)
        if not heads:
            return []
        rows = conn.execute(
            select(*_position_columns())
            .join(T_ACCOUNTS, T_ACCOUNTS.c.id == p.c.account_id)
            .join(T_MARKETS, T_MARKETS.c.id == p.c.market_id)
            .where(p.c.snapshot_id.in_(list(heads.values())))
            .order_by(T_MARKETS.c.name, p.c.market_key, T_ACCOUNTS.c.address)
        ).all()
        return _with_assets(conn, rows)


def account_known(store: Store, address: str) -> bool:
    with store.read() as conn:
        return (
            conn.execute(
                select(T_ACCOUNTS.c.id).where(T_ACCOUNTS.c.address == address).limit(1)
            ).first()
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


def _chunks(items: Sequence[Any]) -> Iterable[Sequence[Any]]:
    for start in range(0, len(items), IN_CHUNK):
        yield items[start : start + IN_CHUNK]


def tier_series(
    store: Store, market: str, limit: int = 500, *, exact: bool = True
) -> list[BookSeries]:
    """The market's newest `limit` snapshots, oldest first, per book. `exact=False` sums the
    amounts at risk as floats in the database (for metrics: one query, no integer per row)."""
    s, p = T_SNAPSHOTS, T_POSITIONS
    with store.read() as conn:
        m = conn.execute(select(T_MARKETS).where(T_MARKETS.c.name == market)).first()
        if m is None:
            return []
        snaps = conn.execute(
            select(s.c.id, s.c.block_number, s.c.block_timestamp)
            .where(s.c.market_id == m.id)
            .order_by(s.c.block_number.desc())
            .limit(limit)
        ).all()[::-1]
        if not snaps:
            return []
        ids = [r.id for r in snaps]
        with_debt = or_(p.c.health_factor_float.is_not(None), p.c.liquidatable)
        counts: dict[tuple[int, str], dict[str, int]] = {}
        for chunk in _chunks(ids):
            for sid, key, tier, n in conn.execute(
                select(p.c.snapshot_id, p.c.market_key, p.c.risk_tier, func.count())
                .where(p.c.snapshot_id.in_(chunk) & with_debt)
                .group_by(p.c.snapshot_id, p.c.market_key, p.c.risk_tier)
            ):
                counts.setdefault((sid, key), {})[tier] = int(n)
        amounts: dict[tuple[int, str], dict[str, list[Any]]] = {}
        for chunk in _chunks(ids) if not exact else ():
            for sid, key, tier, coll, debt in conn.execute(
                select(
                    p.c.snapshot_id,
                    p.c.market_key,
                    p.c.risk_tier,
                    func.sum(cast(p.c.total_collateral_base, Double)),
                    func.sum(cast(p.c.total_debt_base, Double)),
                )
                .where(p.c.snapshot_id.in_(chunk) & (p.c.risk_tier != "SAFE") & with_debt)
                .group_by(p.c.snapshot_id, p.c.market_key, p.c.risk_tier)
            ):
                amounts.setdefault((sid, key), {})[tier] = [float(coll), float(debt)]
        for chunk in _chunks(ids) if exact else ():
            for sid, key, tier, coll, debt in conn.execute(
                select(
                    p.c.snapshot_id,
                    p.c.market_key,
                    p.c.risk_tier,
                    p.c.total_collateral_base,
                    p.c.total_debt_base,
                ).where(p.c.snapshot_id.in_(chunk) & (p.c.risk_tier != "SAFE") & with_debt)
            ):
                pair = amounts.setdefault((sid, key), {}).setdefault(tier, [0, 0])
                pair[0] += coll
                pair[1] += debt
        books = _book_currencies(conn, m.id, ids[-1])
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
    conn: Connection, market_id: int, snapshot_id: int
) -> dict[str, tuple[str, int, str | None]]:
    """market_key -> (base currency symbol, decimals) of the books in a snapshot: "USD" unless
    the adapter names the base token (`extra.base_currency`, e.g. a Morpho loan token)."""
    p = T_POSITIONS
    out: dict[str, tuple[str, int, str | None]] = {}
    keys = conn.execute(
        select(p.c.market_key)
        .where((p.c.snapshot_id == snapshot_id) & (p.c.market_id == market_id))
        .distinct()
    ).scalars()
    for key in list(keys):  # one row per book: its extras name the book's base currency
        decimals, extra = conn.execute(
            select(p.c.base_currency_decimals, p.c.extra)
            .where((p.c.snapshot_id == snapshot_id) & (p.c.market_key == key))
            .limit(1)
        ).one()
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
