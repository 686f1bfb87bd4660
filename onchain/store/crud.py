"""The few writes the jobs need, each one transaction: register markets, record discovered
accounts, write a block's snapshot whole (or replace it after a reorg), move cursors, record job
runs, apply risk tiers and alerts, and prune old history."""

from __future__ import annotations

import os
import socket
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, cast

import numpy as np
from sqlalchemy import (
    ColumnElement,
    Connection,
    Table,
    bindparam,
    case,
    delete,
    func,
    select,
    update,
)

from onchain.protocols.base import MarketSnapshot, Position
from onchain.rpc.client import BlockRef
from onchain.store import changes
from onchain.store import models as m
from onchain.store.changes import KeptState, LeanBook
from onchain.store.db import Store
from onchain.store.rows import (
    asset_values,
    chunks,
    copy_rows,
    insert_for,
    jsonable,
    position_values,
)

if TYPE_CHECKING:  # a value the refresh hands over; the store never builds one
    from onchain.risk.verdict import RiskVerdict

WAD = 10**18
SYNC_MARKETS_LOCK = 0x6F6E6D6B  # PostgreSQL advisory lock key: one sync_markets at a time
COPY_MIN_ROWS = 200  # PostgreSQL: COPY beats INSERT from about this many rows

T_CHAINS = cast(Table, m.Chain.__table__)
T_MARKETS = cast(Table, m.Market.__table__)
T_ASSETS = cast(Table, m.Asset.__table__)
T_ACCOUNTS = cast(Table, m.Account.__table__)
T_MARKET_ACCOUNTS = cast(Table, m.MarketAccount.__table__)
T_CURSORS = cast(Table, m.Cursor.__table__)
T_SNAPSHOTS = cast(Table, m.MarketSnapshot.__table__)
T_RESERVES = cast(Table, m.ReserveSnapshot.__table__)
T_POSITIONS = cast(Table, m.PositionSnapshot.__table__)
T_ASSET_POSITIONS = cast(Table, m.AssetPosition.__table__)
T_JOB_RUNS = cast(Table, m.JobRun.__table__)
T_ALERT_OUTBOX = cast(Table, m.AlertOutbox.__table__)
T_ALERT_DELIVERIES = cast(Table, m.AlertDelivery.__table__)


def utcnow() -> datetime:
    return datetime.now(UTC)


_insert = insert_for  # the name the alerts' outbox imports


# -- chains, markets, accounts ----------------------------------------------------------------


@dataclass(frozen=True)
class MarketInfo:
    """A configured market as the store knows it."""

    id: int
    name: str
    chain_id: int
    chain_name: str
    protocol: str
    address: str
    start_block: int
    version: str | None
    market_id: str | None = None  # one market inside the deployment at `address`


def sync_markets(store: Store, config: Any, names: Iterable[str] | None = None) -> list[MarketInfo]:
    """Register the config's chains and markets (idempotent; a rename just updates the name)."""
    wanted = list(names) if names is not None else list(config.markets)
    out: list[MarketInfo] = []
    with store.write() as conn:
        if conn.dialect.name == "postgresql":  # workers starting together register one by one
            conn.execute(select(func.pg_advisory_xact_lock(SYNC_MARKETS_LOCK)))
        for name in wanted:
            mc = config.market(name)
            chain = config.chains[mc.chain]
            conn.execute(
                insert_for(conn, T_CHAINS)
                .values(chain_id=chain.chain_id, name=chain.name, created_at=utcnow())
                .on_conflict_do_nothing(index_elements=["chain_id"])
            )
            scoped = mc.extra.get("market_id")
            scope = str(scoped).lower() if scoped else ""
            key = (
                (T_MARKETS.c.chain_id == chain.chain_id)
                & (T_MARKETS.c.protocol == mc.protocol)
                & (T_MARKETS.c.address == mc.address)
                & (T_MARKETS.c.scope == scope)
            )
            market_id = conn.execute(select(T_MARKETS.c.id).where(key)).scalar()
            settings = jsonable({"start_block": mc.start_block, **mc.extra})
            if market_id is None:
                market_id = conn.execute(
                    T_MARKETS.insert()
                    .values(
                        chain_id=chain.chain_id,
                        name=mc.name,
                        protocol=mc.protocol,
                        version=mc.version,
                        address=mc.address,
                        scope=scope,
                        addresses={},
                        settings=settings,
                        created_at=utcnow(),
                    )
                    .returning(T_MARKETS.c.id)
                ).scalar_one()
            else:
                conn.execute(update(T_MARKETS).where(key).values(name=mc.name, settings=settings))
            out.append(
                MarketInfo(
                    market_id,
                    mc.name,
                    chain.chain_id,
                    chain.name,
                    mc.protocol,
                    mc.address,
                    mc.start_block,
                    mc.version,
                    str(scoped) if scoped else None,
                )
            )
    return out


def _account_ids(conn: Connection, chain_id: int, addresses: Sequence[str]) -> dict[str, int]:
    ids: dict[str, int] = {}
    for chunk in chunks(list(addresses)):
        rows = conn.execute(
            select(T_ACCOUNTS.c.address, T_ACCOUNTS.c.id).where(
                (T_ACCOUNTS.c.chain_id == chain_id) & T_ACCOUNTS.c.address.in_(chunk)
            )
        )
        ids.update({a: i for a, i in rows})
    return ids


def _ensure_accounts(conn: Connection, chain_id: int, addresses: Sequence[str]) -> dict[str, int]:
    ids = _account_ids(conn, chain_id, addresses)
    missing = sorted(set(addresses) - set(ids))
    if missing:
        conn.execute(
            insert_for(conn, T_ACCOUNTS).on_conflict_do_nothing(
                index_elements=["chain_id", "address"]
            ),
            [{"chain_id": chain_id, "address": a} for a in missing],
        )
        ids.update(_account_ids(conn, chain_id, missing))
    return ids


def _market_account_ids(
    conn: Connection,
    market: MarketInfo,
    addresses: set[str],
    known: Mapping[str, int] | None = None,
) -> Mapping[str, int]:
    """Ids of these addresses: the market's tracked accounts in one query (a block names them
    all), the others looked up or registered as `_ensure_accounts` does. `known`: ids the
    writer remembers (`changes.remembered_ids`); no query when they name every address (then
    `known` itself is the answer: a mapping the caller only reads)."""
    if known and addresses.issubset(known):
        return known  # more addresses than asked for, perhaps: the ids are the same
    ids = {
        address: aid
        for address, aid in conn.execute(
            select(T_ACCOUNTS.c.address, T_ACCOUNTS.c.id).join(
                T_MARKET_ACCOUNTS,
                (T_MARKET_ACCOUNTS.c.account_id == T_ACCOUNTS.c.id)
                & (T_MARKET_ACCOUNTS.c.market_id == market.id),
            )
        )
        if address in addresses
    }
    missing = sorted(addresses - set(ids))
    if missing:
        ids.update(_ensure_accounts(conn, market.chain_id, missing))
    return ids


def record_discovery(
    store: Store,
    market: MarketInfo,
    first_seen: Mapping[str, int],
    scanned_to: BlockRef,
    *,
    forward_only: bool = True,
) -> int:
    """Track newly found accounts and move the discovery cursor, in one transaction; an account
    seen again keeps its earliest block. Returns how many accounts are new to this market."""
    with store.write() as conn:
        before = conn.execute(
            select(func.count()).where(T_MARKET_ACCOUNTS.c.market_id == market.id)
        ).scalar_one()
        if first_seen:
            ids = _ensure_accounts(conn, market.chain_id, sorted(first_seen))
            stmt = insert_for(conn, T_MARKET_ACCOUNTS)
            stmt = stmt.on_conflict_do_update(
                index_elements=["market_id", "account_id"],
                set_={
                    "first_seen_block": case(
                        (
                            stmt.excluded.first_seen_block < T_MARKET_ACCOUNTS.c.first_seen_block,
                            stmt.excluded.first_seen_block,
                        ),
                        else_=T_MARKET_ACCOUNTS.c.first_seen_block,
                    )
                },
            )
            now = utcnow()
            conn.execute(
                stmt,
                [
                    {
                        "market_id": market.id,
                        "account_id": ids[a],
                        "first_seen_block": b,
                        "discovered_at": now,
                    }
                    for a, b in sorted(first_seen.items())
                ],
            )
        _set_cursor(
            conn,
            market.id,
            "discover",
            scanned_to.number,
            scanned_to.hash,
            forward_only=forward_only,
        )
        after = conn.execute(
            select(func.count()).where(T_MARKET_ACCOUNTS.c.market_id == market.id)
        ).scalar_one()
    return int(after - before)


def tracked_accounts(store: Store, market_id: int, up_to_block: int) -> list[str]:
    """Accounts discovery found in the market by `up_to_block`, in a stable order."""
    with store.read() as conn:
        rows = conn.execute(
            select(T_ACCOUNTS.c.address)
            .join(T_MARKET_ACCOUNTS, T_MARKET_ACCOUNTS.c.account_id == T_ACCOUNTS.c.id)
            .where(_tracked(market_id, up_to_block))
            .order_by(T_ACCOUNTS.c.address)
        )
        return [r[0] for r in rows]


def tracked_count(store: Store, market_id: int, up_to_block: int) -> int:
    """How many accounts `tracked_accounts` gives (counted in the index, no row read)."""
    with store.read() as conn:
        return int(
            conn.execute(select(func.count()).where(_tracked(market_id, up_to_block))).scalar_one()
        )


def _tracked(market_id: int, up_to_block: int) -> ColumnElement[bool]:
    """The market's accounts discovery found by `up_to_block` (`tracked_accounts`' rows)."""
    return (T_MARKET_ACCOUNTS.c.market_id == market_id) & (
        T_MARKET_ACCOUNTS.c.first_seen_block <= up_to_block
    )


# -- cursors ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class CursorState:
    block_number: int
    block_hash: str | None


def get_cursor(store: Store, market_id: int, kind: str) -> CursorState | None:
    with store.read() as conn:
        row = conn.execute(
            select(T_CURSORS.c.block_number, T_CURSORS.c.block_hash).where(
                (T_CURSORS.c.market_id == market_id) & (T_CURSORS.c.kind == kind)
            )
        ).first()
    return CursorState(row[0], row[1]) if row else None


def _set_cursor(
    conn: Connection,
    market_id: int,
    kind: str,
    number: int,
    block_hash: str | None,
    *,
    forward_only: bool = True,
) -> None:
    """Cursors only move forward unless told otherwise (a reorg rewinds them explicitly)."""
    where = (T_CURSORS.c.market_id == market_id) & (T_CURSORS.c.kind == kind)
    current = conn.execute(select(T_CURSORS.c.block_number).where(where)).scalar()
    if current is None:
        conn.execute(
            T_CURSORS.insert().values(
                market_id=market_id,
                kind=kind,
                block_number=number,
                block_hash=block_hash,
                updated_at=utcnow(),
            )
        )
    elif number >= current or not forward_only:
        conn.execute(
            update(T_CURSORS)
            .where(where)
            .values(block_number=number, block_hash=block_hash, updated_at=utcnow())
        )


def rewind_cursor(
    store: Store,
    market_id: int,
    kind: str,
    number: int,
    guard: Callable[[Connection], Any] | None = None,
) -> None:
    with store.write() as conn:
        if guard is not None:  # a worker's lease, re-checked in the transaction
            guard(conn)
        _set_cursor(conn, market_id, kind, number, None, forward_only=False)


# -- snapshots --------------------------------------------------------------------------------


def snapshot_hashes(store: Store, market_id: int, from_block: int = 0) -> dict[int, str]:
    """Block number -> stored hash for this market's snapshots from `from_block` on."""
    with store.read() as conn:
        rows = conn.execute(
            select(T_SNAPSHOTS.c.block_number, T_SNAPSHOTS.c.block_hash).where(
                (T_SNAPSHOTS.c.market_id == market_id) & (T_SNAPSHOTS.c.block_number >= from_block)
            )
        )
        return {n: h for n, h in rows}


def snapshot_hash(store: Store, market_id: int, block_number: int) -> str | None:
    with store.read() as conn:
        return conn.execute(
            select(T_SNAPSHOTS.c.block_hash).where(
                (T_SNAPSHOTS.c.market_id == market_id)
                & (T_SNAPSHOTS.c.block_number == block_number)
            )
        ).scalar()


def newest_snapshot(store: Store, market_id: int) -> tuple[int, str] | None:
    with store.read() as conn:
        row = conn.execute(
            select(T_SNAPSHOTS.c.block_number, T_SNAPSHOTS.c.block_hash)
            .where(T_SNAPSHOTS.c.market_id == market_id)
            .order_by(T_SNAPSHOTS.c.block_number.desc())
            .limit(1)
        ).first()
    return (row[0], row[1]) if row else None


@dataclass(frozen=True)
class Assessed:
    """What the store needs from a risk assessment of one position. The optional fields are the
    risk module's outputs; None where the tier came from the health-factor rule."""

    tier: str
    reason: str
    reasons: list[str] | None = None
    probability: float | None = None
    pending_health_factor: float | None = None
    horizon_s: float | None = None
    verdict: RiskVerdict | None = None  # the risk module's, as it came (alerts read its advice)


def _asset_ids(
    conn: Connection, chain_id: int, assets: Mapping[str, tuple[str, int]]
) -> dict[str, int]:
    """Ids of assets (address -> (symbol, decimals)), registering new ones."""
    if not assets:
        return {}
    conn.execute(
        insert_for(conn, T_ASSETS).on_conflict_do_nothing(index_elements=["chain_id", "address"]),
        [
            {"chain_id": chain_id, "address": a, "symbol": s[:64], "decimals": d}
            for a, (s, d) in sorted(assets.items())
        ],
    )
    rows = conn.execute(
        select(T_ASSETS.c.address, T_ASSETS.c.id).where(
            (T_ASSETS.c.chain_id == chain_id) & T_ASSETS.c.address.in_(sorted(assets))
        )
    )
    return {a: i for a, i in rows}


def _delete_snapshots(conn: Connection, snapshot_ids: Sequence[int]) -> None:
    """Children first, so it works with or without ON DELETE CASCADE being enforced; the
    change layout's rows of those blocks go with them (a reorg replaces or drops them)."""
    for chunk in chunks(list(snapshot_ids)):
        heads = conn.execute(
            select(T_SNAPSHOTS.c.market_id, T_SNAPSHOTS.c.block_number).where(
                T_SNAPSHOTS.c.id.in_(chunk)
            )
        ).all()
        for market_id in {h.market_id for h in heads}:
            numbers = [h.block_number for h in heads if h.market_id == market_id]
            changes.delete_changes(conn, market_id, numbers)
        for table in (T_ASSET_POSITIONS, T_POSITIONS, T_RESERVES):
            conn.execute(delete(table).where(table.c.snapshot_id.in_(chunk)))
        conn.execute(delete(T_SNAPSHOTS).where(T_SNAPSHOTS.c.id.in_(chunk)))


def _bulk_insert(conn: Connection, table: Table, rows: list[dict[str, Any]]) -> None:
    """Many rows at once: COPY on PostgreSQL, executemany elsewhere; same transaction."""
    if not rows:
        return
    if conn.dialect.name == "postgresql" and len(rows) >= COPY_MIN_ROWS:
        copy_rows(conn, table, rows)
    else:
        conn.execute(table.insert(), rows)


@dataclass(frozen=True)
class WriteResult:
    outcome: str  # written, replaced, unchanged
    positions: int = 0
    asset_rows: int = 0
    change_rows: Mapping[str, int] | None = None  # change layout: rows of each kind written


def write_snapshot(
    store: Store,
    market: MarketInfo,
    block: BlockRef,
    positions: Sequence[Position],
    assessed: Sequence[Assessed],
    market_snapshot: MarketSnapshot | None,
    details: Mapping[str, Any] | None = None,
    in_transaction: Callable[[Connection], Any] | None = None,
    guard: Callable[[Connection], Any] | None = None,
    *,
    kept: KeptState | None = None,
    layout: str = "snapshots",
    book: LeanBook | None = None,
) -> WriteResult:
    """All of block B's rows for one market, in ONE transaction, or none of them.

    `layout` "snapshots" writes every position and asset row; "changes" writes the market's
    state, the changed account states and verdicts, and the latest view (from `kept`, the
    adapter's encoded state: `onchain.store.changes`); "both" writes both.

    The same block again (same hash) changes nothing; a stored block whose hash differs (it
    left the canonical chain) is replaced by this one. The refresh cursor moves in the same
    transaction, so after a crash it never points past what is stored. `details` adds to the
    snapshot header's details (e.g. how the block's risk tiers were computed).
    `in_transaction` runs last, inside the same transaction (the alerts outbox: a block is
    stored with the alerts it caused, or neither is). `guard` runs first, inside the same
    transaction, and raises to write nothing (a worker whose lease is gone: onchain.store.leases).

    `book` (the change layout alone): the whole book's figures and verdicts, `positions` then
    being only the rows written whole (`changes.LeanBook`); the snapshot header counts the
    book, its `asset_rows` the asset rows written."""
    if len(assessed) != len(positions):
        raise ValueError("one assessment per position")
    if layout not in ("snapshots", "changes", "both"):
        raise ValueError(f"unknown store layout {layout!r}")
    if layout != "snapshots" and kept is None:
        raise ValueError(f"the {layout} layout needs the block's kept state")
    if book is not None and layout != "changes":
        raise ValueError(f"the {layout} layout writes every position whole")
    with store.write() as conn:
        if guard is not None:
            guard(conn)
        changes.share_market(conn, market.id)
        existing = conn.execute(
            select(T_SNAPSHOTS.c.id, T_SNAPSHOTS.c.block_hash).where(
                (T_SNAPSHOTS.c.market_id == market.id)
                & (T_SNAPSHOTS.c.block_number == block.number)
            )
        ).first()
        if existing is not None and existing.block_hash == block.hash:
            return WriteResult("unchanged")
        if existing is not None:
            _delete_snapshots(conn, [existing.id])

        assets: dict[str, tuple[str, int]] = {}
        for p in positions:
            for a in p.assets:
                assets.setdefault(a.asset, (a.symbol, a.decimals))
        if market_snapshot is not None:
            for r in market_snapshot.reserves:
                assets.setdefault(r.asset, (r.symbol, r.decimals))
        asset_ids = _asset_ids(conn, market.chain_id, assets)
        accounts = {p.account for p in positions} | set(kept.accounts if kept else ())
        accounts |= set(book.figures.accounts if book else ())
        known = (
            changes.remembered_ids(conn, market.id, block.number, kept.standing)
            if kept is not None and layout == "changes"
            else {}
        )
        account_ids = _market_account_ids(conn, market, accounts, known)

        if market_snapshot is not None:
            conn.execute(
                update(T_MARKETS)
                .where(T_MARKETS.c.id == market.id)
                .values(
                    version=market_snapshot.version,
                    addresses=jsonable(market_snapshot.addresses),
                    base_currency_decimals=market_snapshot.base_currency_decimals,
                )
            )
        n_assets = sum(len(p.assets) for p in positions)
        counted = _book_counts(positions, assessed, book)
        snapshot_id = conn.execute(
            T_SNAPSHOTS.insert()
            .values(
                market_id=market.id,
                block_number=block.number,
                block_hash=block.hash,
                block_timestamp=block.timestamp,
                positions=counted[0],
                asset_rows=n_assets,
                with_debt=counted[1],
                liquidatable=counted[2],
                at_risk=counted[3],
                details=jsonable(
                    {
                        "version": market_snapshot.version if market_snapshot else None,
                        "protocol": market.protocol,
                        **({"layout": layout} if layout != "snapshots" else {}),
                        **(details or {}),
                    }
                ),
                taken_at=utcnow(),
            )
            .returning(T_SNAPSHOTS.c.id)
        ).scalar_one()

        position_rows = []
        asset_rows = []
        for p, verdict in zip(positions, assessed, strict=True):
            account_id = account_ids[p.account]
            position_rows.append(
                {
                    "snapshot_id": snapshot_id,
                    "account_id": account_id,
                    "market_key": p.market,
                    "market_id": market.id,
                    **position_values(block, p, verdict),
                }
            )
            for asset in p.assets:
                asset_rows.append(
                    {
                        "snapshot_id": snapshot_id,
                        "account_id": account_id,
                        "market_key": p.market,
                        "asset_id": asset_ids[asset.asset],
                        **asset_values(asset),
                    }
                )
        written = None
        if layout != "snapshots":
            assert kept is not None
            by_position: dict[tuple[str, str], list[dict[str, Any]]] = {}
            for p in positions:
                by_position[(p.account, p.market)] = [
                    {"asset_id": asset_ids[a.asset], **asset_values(a)} for a in p.assets
                ]
            written = changes.write_changes(
                conn, market.id, block, kept, positions, assessed, account_ids, by_position, book
            )
        if layout != "changes":
            _bulk_insert(conn, T_POSITIONS, position_rows)
            _bulk_insert(conn, T_ASSET_POSITIONS, asset_rows)
        if market_snapshot is not None:
            _bulk_insert(
                conn,
                T_RESERVES,
                [
                    {
                        "snapshot_id": snapshot_id,
                        "asset_id": asset_ids[r.asset],
                        "price_base": r.price_base,
                        "supply_index": r.supply_index,
                        "borrow_index": r.borrow_index,
                        "available_liquidity_raw": r.available_liquidity_raw,
                        "total_debt_raw": r.total_debt_raw,
                        "utilization": r.utilization,
                        "extra": jsonable(r.extra),
                    }
                    for r in market_snapshot.reserves
                ],
            )
        _set_cursor(conn, market.id, "refresh", block.number, block.hash)
        if in_transaction is not None:
            in_transaction(conn)
    return WriteResult(
        "replaced" if existing is not None else "written",
        counted[0],
        len(asset_rows),
        written,
    )


def _book_counts(
    positions: Sequence[Position], assessed: Sequence[Assessed], book: LeanBook | None
) -> tuple[int, int, int, int]:
    """(positions, with debt, liquidatable, at risk) of the block's book."""
    if book is None:
        return (
            len(positions),
            sum(1 for p in positions if p.total_debt_base > 0),
            sum(1 for p in positions if p.liquidatable),
            sum(1 for a in assessed if a.tier != "SAFE"),
        )
    f, tiers = book.figures, book.verdicts.tier
    return (
        len(tiers),
        sum(1 for debt in f.total_debt_base if debt > 0),
        int(np.count_nonzero(np.asarray(f.liquidatable, dtype=bool))),
        len(tiers) - list(tiers).count("SAFE"),
    )


def delete_snapshots_from(
    store: Store,
    market_id: int,
    block_numbers: Sequence[int],
    guard: Callable[[Connection], Any] | None = None,
) -> int:
    """Drop a market's snapshots at these heights (blocks that no longer exist after a reorg)."""
    if not block_numbers:
        return 0
    with store.write() as conn:
        if guard is not None:
            guard(conn)
        ids = [
            r[0]
            for r in conn.execute(
                select(T_SNAPSHOTS.c.id).where(
                    (T_SNAPSHOTS.c.market_id == market_id)
                    & T_SNAPSHOTS.c.block_number.in_(list(block_numbers))
                )
            )
        ]
        _delete_snapshots(conn, ids)
    return len(ids)


# -- job runs ---------------------------------------------------------------------------------


def start_run(store: Store, job: str) -> int:
    with store.write() as conn:
        return int(
            conn.execute(
                T_JOB_RUNS.insert()
                .values(
                    job=job,
                    started_at=utcnow(),
                    outcome="running",
                    counts={},
                    host=socket.gethostname()[:255],
                    pid=os.getpid(),
                )
                .returning(T_JOB_RUNS.c.id)
            ).scalar_one()
        )


def finish_run(
    store: Store, run_id: int, outcome: str, counts: Mapping[str, Any], error: str | None = None
) -> None:
    with store.write() as conn:
        conn.execute(
            update(T_JOB_RUNS)
            .where(T_JOB_RUNS.c.id == run_id)
            .values(
                finished_at=utcnow(),
                outcome=outcome,
                counts=jsonable(dict(counts)),
                error=error[:2000] if error else None,
            )
        )


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def mark_crashed_runs(store: Store) -> int:
    """Runs left 'running' by a process of this host that no longer exists (kill -9, power
    loss) are marked 'crashed', so `onchain status` tells the truth."""
    host = socket.gethostname()[:255]
    with store.write() as conn:
        rows = conn.execute(
            select(T_JOB_RUNS.c.id, T_JOB_RUNS.c.pid).where(
                (T_JOB_RUNS.c.outcome == "running") & (T_JOB_RUNS.c.host == host)
            )
        ).all()
        dead = [r.id for r in rows if r.pid != os.getpid() and not _alive(r.pid)]
        if dead:
            conn.execute(
                update(T_JOB_RUNS)
                .where(T_JOB_RUNS.c.id.in_(dead))
                .values(outcome="crashed", error="the process ended during the run")
            )
    return len(dead)


# -- risk tiers and alerts --------------------------------------------------------------------


@dataclass(frozen=True)
class StoredHealth:
    """A stored position's health, as `assess` reads it."""

    account_id: int
    market_key: str
    account: str
    health_factor: int | None
    liquidatable: bool
    risk_tier: str
    risk_reason: str
    liquidation_probability: float | None = None  # None: tiered by the health-factor rule


def latest_health(store: Store, market_id: int) -> LatestHealth | None:
    """The market's newest snapshot and its positions' health and tiers."""
    with store.read() as conn:
        head = conn.execute(
            select(
                T_SNAPSHOTS.c.id,
                T_SNAPSHOTS.c.block_number,
                T_SNAPSHOTS.c.block_hash,
                T_SNAPSHOTS.c.details,
            )
            .where(T_SNAPSHOTS.c.market_id == market_id)
            .order_by(T_SNAPSHOTS.c.block_number.desc())
            .limit(1)
        ).first()
        if head is None:
            return None
        p, where = changes.newest_book(head.id, market_id, head.block_number, head.details)
        rows = conn.execute(
            select(
                p.c.account_id,
                p.c.market_key,
                T_ACCOUNTS.c.address,
                p.c.health_factor,
                p.c.liquidatable,
                p.c.risk_tier,
                p.c.risk_reason,
                p.c.liquidation_probability,
            )
            .join(T_ACCOUNTS, T_ACCOUNTS.c.id == p.c.account_id)
            .where(where)
            .order_by(T_ACCOUNTS.c.address, p.c.market_key)
        )
        return LatestHealth(
            head.id, head.block_number, head.block_hash, [StoredHealth(*r) for r in rows]
        )


@dataclass(frozen=True)
class LatestHealth:
    """`latest_health`'s answer. The block's hash tells the same block from one that replaced
    it (SQLite may give the replacing snapshot the replaced one's id)."""

    snapshot_id: int
    block_number: int
    block_hash: str
    stored: list[StoredHealth]


def apply_assessment(
    store: Store,
    latest: LatestHealth,
    assessed: Sequence[Assessed],
) -> int:
    """Write changed tiers and reasons into the snapshot `latest_health` read (one
    transaction); the number changed. Only while it is still the market's newest snapshot, the
    same block (0 otherwise): a block written since it was read was tiered with what stood
    then, and in the change layout reads its positions' verdicts from the blocks before it
    (`changes.record_assessment`). Alerts are not decided here: the refresh's outbox rules
    decide them with the snapshot."""
    snapshot_id, stored = latest.snapshot_id, latest.stored
    with store.write() as conn:
        head = conn.execute(
            select(
                T_SNAPSHOTS.c.market_id,
                T_SNAPSHOTS.c.block_number,
                T_SNAPSHOTS.c.block_hash,
                T_SNAPSHOTS.c.details,
            ).where(T_SNAPSHOTS.c.id == snapshot_id)
        ).first()
        if head is None or (head.block_number, head.block_hash) != (
            latest.block_number,
            latest.block_hash,
        ):
            return 0  # gone, or replaced (a reorg) by a snapshot given its id
        # a block being written waits, or is waited for; the snapshot may have been replaced
        # (reorg), pruned or built on since it was read
        changes.lock_market(conn, head.market_id)
        newest = conn.execute(
            select(T_SNAPSHOTS.c.id)
            .where(T_SNAPSHOTS.c.market_id == head.market_id)
            .order_by(T_SNAPSHOTS.c.block_number.desc())
            .limit(1)
        ).scalar()
        if newest != snapshot_id:
            return 0
        table, _where = changes.newest_book(
            snapshot_id, head.market_id, head.block_number, head.details
        )
        moved = [
            (s, a)
            for s, a in zip(stored, assessed, strict=True)
            if (s.risk_tier, s.risk_reason) != (a.tier, a.reason)
        ]
        changed = [
            {
                "b_sid": snapshot_id,
                "b_aid": s.account_id,
                "b_key": s.market_key,
                "b_tier": a.tier,
                "b_reason": a.reason,
            }
            for s, a in moved
        ]
        changes.record_assessment(
            conn,
            head.market_id,
            head.block_number,
            [((s.account_id, s.market_key), s.health_factor, a) for s, a in moved],
        )
        if changed:
            # the snapshot's rows, or the latest view's (the newest block's: checked)
            on = (
                table.c.snapshot_id == bindparam("b_sid")
                if table is T_POSITIONS
                else (table.c.market_id == head.market_id)
                & (table.c.block_number == head.block_number)
            )
            conn.execute(
                update(table)
                .where(
                    on
                    & (table.c.account_id == bindparam("b_aid"))
                    & (table.c.market_key == bindparam("b_key"))
                )
                .values(risk_tier=bindparam("b_tier"), risk_reason=bindparam("b_reason")),
                changed,
            )
    return len(changed)


# -- retention --------------------------------------------------------------------------------


def prune_market(
    store: Store, market_id: int, *, full_s: float, downsample_s: int, keep_s: float
) -> int:
    """Keep every snapshot of the newest `full_s` seconds of chain time, then the last one of
    each `downsample_s` bucket; drop everything older than `keep_s` (0: keep forever).
    Chain time, not wall time: the newest snapshot's block timestamp is "now", so a devnet or
    a paused daemon prunes the same way. Deletes in chunks, one transaction each. The change
    layout's rows are carried to the next kept block, so every kept block rebuilds exactly."""
    with store.read() as conn:
        newest = conn.execute(
            select(func.max(T_SNAPSHOTS.c.block_timestamp)).where(
                T_SNAPSHOTS.c.market_id == market_id
            )
        ).scalar()
        if newest is None:
            return 0
        rows = conn.execute(
            select(T_SNAPSHOTS.c.id, T_SNAPSHOTS.c.block_number, T_SNAPSHOTS.c.block_timestamp)
            .where(
                (T_SNAPSHOTS.c.market_id == market_id)
                & (T_SNAPSHOTS.c.block_timestamp < newest - full_s)
            )
            .order_by(T_SNAPSHOTS.c.block_number)
        ).all()
    keep_last: dict[int, int] = {}
    for sid, _number, ts in rows:  # ordered by block: the last one per bucket wins
        keep_last[ts // downsample_s] = sid
    kept = set(keep_last.values())
    doomed = [
        sid for sid, _number, ts in rows if sid not in kept or (keep_s and ts < newest - keep_s)
    ]
    if not doomed:
        return 0
    numbers = {sid: number for sid, number, _ts in rows}
    with store.read() as conn:
        every = conn.execute(
            select(T_SNAPSHOTS.c.block_number).where(T_SNAPSHOTS.c.market_id == market_id)
        )
        kept_blocks = sorted(set(every.scalars()) - {numbers[sid] for sid in doomed})
    # newest chunk first: a change row carried to a kept block is never overtaken by an older one
    for chunk in reversed(list(chunks(doomed, 200))):
        with store.write() as conn:
            changes.carry_forward(conn, market_id, [numbers[sid] for sid in chunk], kept_blocks)
            _delete_snapshots(conn, chunk)
    return len(doomed)


def prune_job_runs(store: Store, older_than_days: float) -> int:
    cutoff = utcnow() - timedelta(days=older_than_days)
    with store.write() as conn:
        result = conn.execute(
            delete(T_JOB_RUNS).where(
                (T_JOB_RUNS.c.started_at < cutoff) & (T_JOB_RUNS.c.outcome != "running")
            )
        )
    return int(result.rowcount or 0)
