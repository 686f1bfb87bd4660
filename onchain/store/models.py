"""The tables. Protocol-neutral by construction: a position is protocol + market + account +
assets at a block, and whatever one protocol alone knows goes in a JSON column, so a new protocol
needs no schema change. The schema itself is made and changed only by migrations/ (Alembic).

A refresh of one market at one block writes one `market_snapshots` row (the block's commit
marker, with counts) and its `position_snapshots`, `asset_positions` and `reserve_snapshots`,
all in one transaction: a block is in the store whole or not at all."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Double,
    ForeignKey,
    ForeignKeyConstraint,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from onchain.store.types import Address, Hash, Id, Json, Uint256, UtcDateTime

NAMING = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_N_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

# Risk tiers, most severe first; `assess` assigns them, queries rank by this order. PENDING (one
# oracle update from liquidation) comes from the risk module; the health-factor rule never gives it.
TIERS = ("LIQUIDATABLE", "PENDING", "CRITICAL", "HIGH", "WATCH", "SAFE")


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


class Chain(Base):
    """An EVM chain, keyed by its EIP-155 chain id."""

    __tablename__ = "chains"

    chain_id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    name: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)


class Market(Base):
    """A lending market: protocol family, the rules version and its contract addresses.
    `scope` is the part of the deployment at `address` it covers: '' for all of it, or one
    market id where a contract holds many (MarketRef.market_id)."""

    __tablename__ = "markets"
    __table_args__ = (UniqueConstraint("chain_id", "protocol", "address", "scope"),)

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    chain_id: Mapped[int] = mapped_column(ForeignKey("chains.chain_id"))
    name: Mapped[str] = mapped_column(String(128), index=True)
    protocol: Mapped[str] = mapped_column(String(64))
    version: Mapped[str | None] = mapped_column(String(64))
    address: Mapped[str] = mapped_column(Address)
    scope: Mapped[str] = mapped_column(Hash)
    addresses: Mapped[dict[str, Any]] = mapped_column(Json)
    settings: Mapped[dict[str, Any]] = mapped_column(Json)
    base_currency_decimals: Mapped[int | None] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)


class Asset(Base):
    __tablename__ = "assets"
    __table_args__ = (UniqueConstraint("chain_id", "address"),)

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    chain_id: Mapped[int] = mapped_column(ForeignKey("chains.chain_id"))
    address: Mapped[str] = mapped_column(Address)
    symbol: Mapped[str] = mapped_column(String(64))
    decimals: Mapped[int] = mapped_column(Integer)


class Account(Base):
    """A wallet on one chain; it may hold positions in several markets."""

    __tablename__ = "accounts"
    __table_args__ = (UniqueConstraint("chain_id", "address"),)

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    chain_id: Mapped[int] = mapped_column(ForeignKey("chains.chain_id"))
    address: Mapped[str] = mapped_column(Address)


class MarketAccount(Base):
    """An account discovery found in a market, from the first block it showed up in: a
    snapshot at block B covers every account first seen at or before B."""

    __tablename__ = "market_accounts"
    __table_args__ = (Index(None, "market_id", "first_seen_block"),)

    market_id: Mapped[int] = mapped_column(ForeignKey("markets.id"), primary_key=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id"), primary_key=True)
    first_seen_block: Mapped[int] = mapped_column(BigInteger)
    discovered_at: Mapped[datetime] = mapped_column(UtcDateTime)


class Cursor(Base):
    """How far a job got in a market ('discover': logs scanned up to; 'refresh': last block
    snapshotted). The daemon resumes from these after a restart."""

    __tablename__ = "cursors"

    market_id: Mapped[int] = mapped_column(ForeignKey("markets.id"), primary_key=True)
    kind: Mapped[str] = mapped_column(String(32), primary_key=True)
    block_number: Mapped[int] = mapped_column(BigInteger)
    block_hash: Mapped[str | None] = mapped_column(Hash)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime)


class MarketSnapshot(Base):
    """One market at one block: the commit marker of a refresh, with what it holds."""

    __tablename__ = "market_snapshots"
    __table_args__ = (
        UniqueConstraint("market_id", "block_number"),
        Index(None, "market_id", "block_timestamp"),
    )

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    market_id: Mapped[int] = mapped_column(ForeignKey("markets.id"))
    block_number: Mapped[int] = mapped_column(BigInteger)
    block_hash: Mapped[str] = mapped_column(Hash)
    block_timestamp: Mapped[int] = mapped_column(BigInteger)
    positions: Mapped[int] = mapped_column(Integer)
    asset_rows: Mapped[int] = mapped_column(Integer)
    with_debt: Mapped[int] = mapped_column(Integer)
    liquidatable: Mapped[int] = mapped_column(Integer)
    at_risk: Mapped[int] = mapped_column(Integer)
    details: Mapped[dict[str, Any]] = mapped_column(Json)
    taken_at: Mapped[datetime] = mapped_column(UtcDateTime)


class ReserveSnapshot(Base):
    """One reserve (lendable asset) of a market snapshot: price, indexes, liquidity."""

    __tablename__ = "reserve_snapshots"

    snapshot_id: Mapped[int] = mapped_column(
        ForeignKey("market_snapshots.id", ondelete="CASCADE"), primary_key=True
    )
    asset_id: Mapped[int] = mapped_column(ForeignKey("assets.id"), primary_key=True)
    price_base: Mapped[int] = mapped_column(Uint256)
    supply_index: Mapped[int | None] = mapped_column(Uint256)
    borrow_index: Mapped[int | None] = mapped_column(Uint256)
    available_liquidity_raw: Mapped[int | None] = mapped_column(Uint256)
    total_debt_raw: Mapped[int | None] = mapped_column(Uint256)
    utilization: Mapped[float | None] = mapped_column(Double)
    extra: Mapped[dict[str, Any]] = mapped_column(Json)


class PositionFigures:
    """A position's values at a block with its verdict but its protocol extras: the latest
    view's columns (which keeps the extras, the widest, with the asset rows aside)."""

    block_number: Mapped[int] = mapped_column(BigInteger)
    block_hash: Mapped[str] = mapped_column(Hash)
    block_timestamp: Mapped[int] = mapped_column(BigInteger)
    base_currency_decimals: Mapped[int] = mapped_column(Integer)
    health_factor: Mapped[int | None] = mapped_column(Uint256)
    health_factor_float: Mapped[float | None] = mapped_column(Double)
    liquidatable: Mapped[bool] = mapped_column(Boolean)
    total_collateral_base: Mapped[int] = mapped_column(Uint256)
    total_debt_base: Mapped[int] = mapped_column(Uint256)
    available_borrows_base: Mapped[int] = mapped_column(Uint256)
    liquidation_threshold_bps: Mapped[int] = mapped_column(Integer)
    ltv_bps: Mapped[int] = mapped_column(Integer)
    risk_tier: Mapped[str] = mapped_column(String(16))
    risk_reason: Mapped[str] = mapped_column(Text)
    risk_reasons: Mapped[list[str] | None] = mapped_column(Json)
    liquidation_probability: Mapped[float | None] = mapped_column(Double)
    pending_health_factor: Mapped[float | None] = mapped_column(Double)
    horizon_s: Mapped[float | None] = mapped_column(Double)


class PositionValues(PositionFigures):
    """A position's values at a block with its verdict: a snapshot row's columns
    (`onchain.store.rows.position_values` writes them)."""

    extra: Mapped[dict[str, Any]] = mapped_column(Json)


class PositionSnapshot(PositionValues, Base):
    """One account's position at one block. `market_key` is the protocol's own key of the book
    the position is in (Position.market): the market's address where a market is one book
    (Aave), a market id where one contract holds many (Morpho Blue). Amounts are in that
    book's base currency (`base_currency_decimals`). `health_factor` is the exact wad (NULL:
    no debt); `health_factor_float` is its twin for range queries and charts.

    `risk_tier`/`risk_reason` are always set; the risk module's own outputs (reason codes,
    probability of liquidation within `horizon_s` seconds, health at the next oracle price) are
    NULL where the tier came from the health-factor fallback rule."""

    __tablename__ = "position_snapshots"
    __table_args__ = (
        Index(None, "account_id", "market_id", "block_number"),  # history; latest per account
        Index(None, "snapshot_id", "health_factor_float"),  # at risk now, riskiest first
        Index(None, "snapshot_id", "risk_tier", "health_factor_float"),  # riskiest; tier counts
        Index(None, "snapshot_id", "total_debt_base"),  # by debt (SQLite: also by digits, 0003)
    )

    snapshot_id: Mapped[int] = mapped_column(
        ForeignKey("market_snapshots.id", ondelete="CASCADE"), primary_key=True
    )
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id"), primary_key=True)
    market_key: Mapped[str] = mapped_column(Hash, primary_key=True)
    market_id: Mapped[int] = mapped_column(ForeignKey("markets.id"))


class AssetPosition(Base):
    """One asset of one position: raw token amounts and their value in the base currency."""

    __tablename__ = "asset_positions"
    __table_args__ = (
        ForeignKeyConstraint(
            ["snapshot_id", "account_id", "market_key"],
            [
                "position_snapshots.snapshot_id",
                "position_snapshots.account_id",
                "position_snapshots.market_key",
            ],
            name="fk_asset_positions_position_snapshots",  # the default is over 63 chars
            ondelete="CASCADE",
        ),
    )

    snapshot_id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    account_id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    market_key: Mapped[str] = mapped_column(Hash, primary_key=True)
    asset_id: Mapped[int] = mapped_column(ForeignKey("assets.id"), primary_key=True)
    price_base: Mapped[int] = mapped_column(Uint256)
    collateral_raw: Mapped[int] = mapped_column(Uint256)
    debt_raw: Mapped[int] = mapped_column(Uint256)
    collateral_base: Mapped[int] = mapped_column(Uint256)
    debt_base: Mapped[int] = mapped_column(Uint256)
    collateral_enabled: Mapped[bool] = mapped_column(Boolean)
    liquidation_threshold_bps: Mapped[int] = mapped_column(Integer)
    liquidation_price_base: Mapped[float | None] = mapped_column(Double)
    # the same price exactly (the float twin above is for charts and range queries)
    liquidation_price_base_exact: Mapped[int | None] = mapped_column(Uint256)


class JobRun(Base):
    """One run of a scheduled job: when, how it ended, what it did."""

    __tablename__ = "job_runs"
    __table_args__ = (Index(None, "job", "started_at"), Index(None, "outcome"))

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    job: Mapped[str] = mapped_column(String(32))
    started_at: Mapped[datetime] = mapped_column(UtcDateTime)
    finished_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    outcome: Mapped[str] = mapped_column(String(16))  # running, ok, error, interrupted, crashed
    counts: Mapped[dict[str, Any]] = mapped_column(Json)
    error: Mapped[str | None] = mapped_column(Text)
    host: Mapped[str] = mapped_column(String(255))
    pid: Mapped[int] = mapped_column(Integer)


class AlertOutbox(Base):
    """An alert a rule fired, written in the same transaction as the snapshot that caused it.
    `uid` is its public id: the same on every delivery attempt, so receivers can dedupe.
    `payload` is the complete webhook body; `text` the short human line."""

    __tablename__ = "alert_outbox"
    __table_args__ = (UniqueConstraint("uid"), Index(None, "created_at"))

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    uid: Mapped[str] = mapped_column(String(64))
    rule: Mapped[str] = mapped_column(String(64))
    kind: Mapped[str] = mapped_column(String(16))
    chain_id: Mapped[int] = mapped_column(BigInteger)
    market_id: Mapped[int | None] = mapped_column(BigInteger)
    account: Mapped[str | None] = mapped_column(Address)
    market_key: Mapped[str | None] = mapped_column(Hash)
    block_number: Mapped[int] = mapped_column(BigInteger)
    block_hash: Mapped[str] = mapped_column(Hash)
    tier: Mapped[str | None] = mapped_column(String(16))
    previous_tier: Mapped[str | None] = mapped_column(String(16))
    health_factor: Mapped[int | None] = mapped_column(Uint256)
    text: Mapped[str] = mapped_column(Text)
    payload: Mapped[dict[str, Any]] = mapped_column(Json)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)


class AlertDelivery(Base):
    """One alert to one channel: pending until a channel acknowledges it (delivered) or the
    attempts run out (failed). Each channel has its own row, so one failing channel never
    holds back another."""

    __tablename__ = "alert_deliveries"
    __table_args__ = (Index(None, "state", "next_attempt_at"),)

    outbox_id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    channel: Mapped[str] = mapped_column(String(64), primary_key=True)
    state: Mapped[str] = mapped_column(String(16))  # pending, delivered, failed
    attempts: Mapped[int] = mapped_column(Integer)
    next_attempt_at: Mapped[datetime] = mapped_column(UtcDateTime)
    last_error: Mapped[str | None] = mapped_column(Text)
    delivered_at: Mapped[datetime | None] = mapped_column(UtcDateTime)


class AlertAttempt(Base):
    """Every delivery attempt, successful or not: when, how it ended, how long it took."""

    __tablename__ = "alert_attempts"
    __table_args__ = (Index(None, "outbox_id", "channel"),)

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    outbox_id: Mapped[int] = mapped_column(BigInteger)
    channel: Mapped[str] = mapped_column(String(64))
    attempted_at: Mapped[datetime] = mapped_column(UtcDateTime)
    ok: Mapped[bool] = mapped_column(Boolean)
    status: Mapped[int | None] = mapped_column(Integer)
    error: Mapped[str | None] = mapped_column(Text)
    duration_ms: Mapped[int] = mapped_column(Integer)


class AlertRuleState(Base):
    """Where a rule stands for one position (or, with account '', for a market's digest): in
    an episode or not, the worst tier reported, the re-arm level, the last message. Kept in the
    store so a restart neither repeats nor forgets an alert."""

    __tablename__ = "alert_rule_state"

    rule: Mapped[str] = mapped_column(String(64), primary_key=True)
    market_id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    account: Mapped[str] = mapped_column(String(42), primary_key=True)
    market_key: Mapped[str] = mapped_column(Hash, primary_key=True)
    active: Mapped[bool] = mapped_column(Boolean)
    reported_tier: Mapped[str | None] = mapped_column(String(16))
    rearm_wad: Mapped[int | None] = mapped_column(Uint256)
    last_fired_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    observed: Mapped[dict[str, Any]] = mapped_column(Json)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime)


class Worker(Base):
    """One `onchain run --worker NAME` process: alive while `heartbeat_at` is younger than its
    `lease_seconds`; the live workers share the markets between them."""

    __tablename__ = "workers"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    host: Mapped[str] = mapped_column(String(255))
    pid: Mapped[int] = mapped_column(Integer)
    lease_seconds: Mapped[float] = mapped_column(Double)
    started_at: Mapped[datetime] = mapped_column(UtcDateTime)
    heartbeat_at: Mapped[datetime] = mapped_column(UtcDateTime)


class MarketLease(Base):
    """Which worker refreshes a market, until when. `epoch` grows at every takeover: a write
    checks holder and epoch in its own transaction, so a worker that lost the market cannot
    write it. The market's progress is its refresh cursor (`cursors`), moved with each block."""

    __tablename__ = "market_leases"

    market_id: Mapped[int] = mapped_column(
        ForeignKey("markets.id"), primary_key=True, autoincrement=False
    )
    holder: Mapped[str | None] = mapped_column(String(64), index=True)
    epoch: Mapped[int] = mapped_column(BigInteger)
    expires_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    acquired_at: Mapped[datetime | None] = mapped_column(UtcDateTime)


# -- the change layout: what the chain changed, per block; the rest is derived exactly ---------
#
# A block's book is rebuilt from the market's state at that block (`market_states`), each
# account's newest kept state at or before it (`account_states`, written only when it changed)
# and each position's newest verdict at or before it (`position_verdicts`, written when the tier
# or reasons change or the health factor crosses a band), through the adapter's own exact math.
# The blobs are the adapter's (`IncrementalAdapter.encode_*`): the store never reads them.


class MarketStateRow(Base):
    """A market's state at one block, as its adapter encodes it (prices, indexes, config)."""

    __tablename__ = "market_states"

    market_id: Mapped[int] = mapped_column(ForeignKey("markets.id"), primary_key=True)
    block_number: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    state: Mapped[bytes] = mapped_column(LargeBinary)


class AccountStateRow(Base):
    """One account's kept protocol state from `block_number` on, until its next row; written
    only when it changed. NULL `state`: the account has no kept state from this block on."""

    __tablename__ = "account_states"
    __table_args__ = (Index(None, "market_id", "block_number"),)

    market_id: Mapped[int] = mapped_column(ForeignKey("markets.id"), primary_key=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id"), primary_key=True)
    block_number: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    state: Mapped[bytes | None] = mapped_column(LargeBinary)


class PositionVerdict(Base):
    """One position's risk verdict from `block_number` on, until its next row: written when the
    tier or the reason codes change, the health factor crosses a configured band, or the
    position appears; a NULL tier: the position left the book at this block. The reason text,
    probability and pending health factor are those of this row's block (the text names the
    health factor, which moves every block: it alone writes no row)."""

    __tablename__ = "position_verdicts"
    __table_args__ = (Index(None, "market_id", "block_number"),)

    market_id: Mapped[int] = mapped_column(ForeignKey("markets.id"), primary_key=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id"), primary_key=True)
    market_key: Mapped[str] = mapped_column(Hash, primary_key=True)
    block_number: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    health_factor: Mapped[int | None] = mapped_column(Uint256)
    risk_tier: Mapped[str | None] = mapped_column(String(16))
    risk_reason: Mapped[str | None] = mapped_column(Text)
    risk_reasons: Mapped[list[str] | None] = mapped_column(Json)
    liquidation_probability: Mapped[float | None] = mapped_column(Double)
    pending_health_factor: Mapped[float | None] = mapped_column(Double)
    horizon_s: Mapped[float | None] = mapped_column(Double)


class PositionLatest(PositionFigures, Base):
    """The current book: one row per position, updated in place at every stored block, for the
    queries that need it fast (report, dashboard, targets); its protocol extras and asset rows
    are in `positions_latest_details`, written only with the row whole (0009), so the update
    in place rewrites a narrow row and a pass over the book reads narrow pages. No index on a
    column that moves with prices (only on their coarse buckets), and on PostgreSQL a fill
    factor of 50 (0007): an update then stays in its page (a HOT update), so the table does
    not grow per block.

    A block updates the columns prices move (health factor, collateral, debt, liquidatable, the
    verdict) of every row, and writes a row whole only where more changed (its account's state,
    its verdict, a position at risk); `detail_block` is the block its other columns (the
    details' extras and assets, available borrows, thresholds) are from. Readers rebuild those
    from the stored states where it is older than `block_number` (NULL: rows written whole
    before 0008)."""

    __tablename__ = "positions_latest"
    # the sort keys' buckets (`onchain.store.buckets`, 0009): a page reads the index range of
    # the buckets it covers and sorts only those rows; a block rewrites an entry only where a
    # bucket (or the tier) changed, so most updates stay in place (HOT on PostgreSQL)
    __table_args__ = (
        Index(None, "market_id", "risk_tier", "hf_bucket"),  # riskiest, by health; counts
        Index(None, "market_id", "debt_bucket"),
    )

    market_id: Mapped[int] = mapped_column(ForeignKey("markets.id"), primary_key=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id"), primary_key=True)
    market_key: Mapped[str] = mapped_column(Hash, primary_key=True)
    detail_block: Mapped[int | None] = mapped_column(BigInteger)
    hf_bucket: Mapped[int | None] = mapped_column(Integer)  # NULL: no debt
    debt_bucket: Mapped[int | None] = mapped_column(Integer)


class PositionLatestDetails(Base):
    """A latest-view row's protocol extras and asset rows (`assets`), as of its
    `detail_block`: written with the row whole, never by the per-block update in place. On
    PostgreSQL a fill factor of 50 (0009), as the latest view's: a row written whole again
    stays in its page."""

    __tablename__ = "positions_latest_details"

    market_id: Mapped[int] = mapped_column(ForeignKey("markets.id"), primary_key=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id"), primary_key=True)
    market_key: Mapped[str] = mapped_column(Hash, primary_key=True)
    extra: Mapped[dict[str, Any]] = mapped_column(Json)
    assets: Mapped[list[Any]] = mapped_column(Json)


class BacktestRun(Base):
    """One `onchain backtest --store`: when it ran, its parameters, the counts and per-model
    headline figures the list shows (`summary`), and the whole report as `--json` prints it
    (non-finite floats as null), written in one transaction (0010). The API reads it back."""

    __tablename__ = "backtest_runs"
    __table_args__ = (Index(None, "ran_at"),)

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    ran_at: Mapped[datetime] = mapped_column(UtcDateTime)
    prices: Mapped[str] = mapped_column(Text)  # the --prices source as given
    window_start: Mapped[datetime] = mapped_column(UtcDateTime)  # --start
    window_end: Mapped[datetime] = mapped_column(UtcDateTime)  # --end (exclusive)
    horizon_h: Mapped[int] = mapped_column(Integer)
    cadence_h: Mapped[int] = mapped_column(Integer)
    seed: Mapped[int] = mapped_column(BigInteger)
    borrowers: Mapped[int] = mapped_column(Integer)
    markets: Mapped[list[str]] = mapped_column(Json)
    models: Mapped[list[str]] = mapped_column(Json)
    samples: Mapped[int] = mapped_column(Integer)
    liquidations: Mapped[int] = mapped_column(Integer)
    summary: Mapped[dict[str, Any]] = mapped_column(Json)
    # json, not jsonb, on PostgreSQL: kept as written, so the report's keys keep their order
    report: Mapped[dict[str, Any]] = mapped_column(JSON)
