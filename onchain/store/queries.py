"""What people ask the store: what ran and how it ended, one account's health over time, and
which positions are at risk now. Reads only; exact sums are done in Python (SQLite keeps the
uint256 columns as text)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from eth_utils import to_checksum_address
from sqlalchemy import func, select

from onchain.errors import InputError
from onchain.store.changes import Rebuild, RebuiltPoint, account_points, newest_book
from onchain.store.crud import (
    T_ACCOUNTS,
    T_CHAINS,
    T_CURSORS,
    T_JOB_RUNS,
    T_MARKET_ACCOUNTS,
    T_MARKETS,
    T_POSITIONS,
    T_SNAPSHOTS,
    utcnow,
)
from onchain.store.db import Store
from onchain.store.models import TIERS

HEX_DIGITS = frozenset("0123456789abcdefABCDEF")


def stored_address(address: str) -> str:
    """An account address as the store keeps it (EIP-55 checksummed, as the adapters give
    it), whatever its case: lookups then find the account from a lowercase or uppercase
    address too. Anything but 0x and 40 hex digits is one clear InputError (a wrong mixed-case
    checksum is not judged here: `app.pipeline.checked_address` warns of it at the boundary)."""
    digits = address[2:] if isinstance(address, str) and address[:2] in ("0x", "0X") else ""
    if len(digits) != 40 or not HEX_DIGITS.issuperset(digits):
        raise InputError(
            f"malformed account address: {address!r} (expected 0x followed by 40 hex digits)"
        )
    return str(to_checksum_address("0x" + digits.lower()))


# -- status -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class RunRow:
    id: int
    job: str
    started_at: datetime
    finished_at: datetime | None
    outcome: str
    counts: dict[str, Any]
    error: str | None

    @property
    def seconds(self) -> float | None:
        if self.finished_at is None:
            return None
        return (self.finished_at - self.started_at).total_seconds()


@dataclass(frozen=True)
class JobSummary:
    job: str
    last: RunRow
    last_ok_at: datetime | None
    runs_24h: int
    failed_24h: int


@dataclass(frozen=True)
class MarketStatus:
    name: str
    chain: str
    protocol: str
    tracked_accounts: int
    discover_cursor: int | None
    refresh_cursor: int | None
    snapshots: int
    newest_block: int | None
    newest_block_timestamp: int | None
    newest_taken_at: datetime | None


def _run(row: Any) -> RunRow:
    return RunRow(
        row.id, row.job, row.started_at, row.finished_at, row.outcome, row.counts or {}, row.error
    )


def recent_runs(store: Store, limit: int = 10, job: str | None = None) -> list[RunRow]:
    r = T_JOB_RUNS
    query = select(r).order_by(r.c.id.desc()).limit(limit)
    if job:
        query = query.where(r.c.job == job)
    with store.read() as conn:
        return [_run(row) for row in conn.execute(query)]


def job_summaries(store: Store) -> list[JobSummary]:
    r = T_JOB_RUNS
    since = utcnow() - timedelta(hours=24)
    out = []
    with store.read() as conn:
        jobs = [row[0] for row in conn.execute(select(r.c.job).distinct().order_by(r.c.job))]
        for job in jobs:
            last = conn.execute(
                select(r).where(r.c.job == job).order_by(r.c.id.desc()).limit(1)
            ).first()
            last_ok = conn.execute(
                select(func.max(r.c.finished_at)).where((r.c.job == job) & (r.c.outcome == "ok"))
            ).scalar()
            runs = conn.execute(
                select(func.count()).where((r.c.job == job) & (r.c.started_at >= since))
            ).scalar_one()
            failed = conn.execute(
                select(func.count()).where(
                    (r.c.job == job)
                    & (r.c.started_at >= since)
                    & r.c.outcome.in_(["error", "crashed"])
                )
            ).scalar_one()
            out.append(JobSummary(job, _run(last), last_ok, runs, failed))
    return out


def market_names(store: Store) -> list[str]:
    """The config names of every market the store knows, sorted."""
    with store.read() as conn:
        return list(conn.execute(select(T_MARKETS.c.name).order_by(T_MARKETS.c.name)).scalars())


def market_statuses(store: Store) -> list[MarketStatus]:
    mk, s = T_MARKETS, T_SNAPSHOTS
    out = []
    with store.read() as conn:
        markets = conn.execute(
            select(mk.c.id, mk.c.name, mk.c.protocol, T_CHAINS.c.name.label("chain"))
            .join(T_CHAINS, T_CHAINS.c.chain_id == mk.c.chain_id)
            .order_by(mk.c.name)
        ).all()
        for market in markets:
            cursors = {
                kind: number
                for kind, number in conn.execute(
                    select(T_CURSORS.c.kind, T_CURSORS.c.block_number).where(
                        T_CURSORS.c.market_id == market.id
                    )
                )
            }
            tracked = conn.execute(
                select(func.count()).where(T_MARKET_ACCOUNTS.c.market_id == market.id)
            ).scalar_one()
            count = conn.execute(
                select(func.count()).where(s.c.market_id == market.id)
            ).scalar_one()
            newest = conn.execute(
                select(s.c.block_number, s.c.block_timestamp, s.c.taken_at)
                .where(s.c.market_id == market.id)
                .order_by(s.c.block_number.desc())
                .limit(1)
            ).first()
            out.append(
                MarketStatus(
                    market.name,
                    market.chain,
                    market.protocol,
                    tracked,
                    cursors.get("discover"),
                    cursors.get("refresh"),
                    count,
                    newest.block_number if newest else None,
                    newest.block_timestamp if newest else None,
                    newest.taken_at if newest else None,
                )
            )
    return out


# -- history ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class HistoryPoint:
    block_number: int
    block_hash: str
    block_timestamp: int
    health_factor: int | None
    health_factor_float: float | None
    liquidatable: bool
    risk_tier: str
    total_collateral_base: int
    total_debt_base: int


@dataclass
class AccountHistory:
    """One account's health over time in one book (market, market_key)."""

    market: str
    market_key: str
    label: str
    protocol: str
    account: str
    base_currency_decimals: int
    points: list[HistoryPoint] = field(default_factory=list)


def book_label(market_name: str, market_address: str, market_key: str) -> str:
    """The config name, plus the protocol's market id where one contract holds many books."""
    if market_key.lower() == market_address.lower():
        return market_name
    return f"{market_name} {market_key[:10]}…"


def account_history(
    store: Store,
    account: str,
    *,
    market: str | None = None,
    limit: int = 500,
    rebuild: Rebuild | None = None,
) -> list[AccountHistory]:
    """The account's newest `limit` snapshots per book, oldest first. `rebuild`: the adapters'
    exact math (`onchain.app.stored_book.rebuild_account`), so blocks stored in the change
    layout alone are rebuilt into the same points; without it, only snapshot rows count."""
    p, mk = T_POSITIONS, T_MARKETS
    account = stored_address(account)  # as stored, whatever its case
    out = []
    with store.read() as conn:
        pairs = conn.execute(
            select(mk.c.id, mk.c.name, mk.c.address, mk.c.protocol, T_ACCOUNTS.c.id)
            .join(T_ACCOUNTS, T_ACCOUNTS.c.chain_id == mk.c.chain_id)
            .where(T_ACCOUNTS.c.address == account)
            .where(mk.c.name == market if market else mk.c.id.is_not(None))
            .order_by(mk.c.name)
        ).all()
        for market_id, name, address, protocol, account_id in pairs:
            keys = conn.execute(
                select(p.c.market_key)
                .where((p.c.account_id == account_id) & (p.c.market_id == market_id))
                .distinct()
                .order_by(p.c.market_key)
            ).scalars()
            rebuilt: dict[str, list[RebuiltPoint]] = {}
            if rebuild is not None:
                for point in account_points(conn, market_id, protocol, account_id, rebuild, limit):
                    rebuilt.setdefault(point.market_key, []).append(point)
            for key in sorted(set(keys) | set(rebuilt)):
                rows = conn.execute(
                    select(
                        p.c.base_currency_decimals,
                        p.c.block_number,
                        p.c.block_hash,
                        p.c.block_timestamp,
                        p.c.health_factor,
                        p.c.health_factor_float,
                        p.c.liquidatable,
                        p.c.risk_tier,
                        p.c.total_collateral_base,
                        p.c.total_debt_base,
                    )
                    .where(
                        (p.c.account_id == account_id)
                        & (p.c.market_id == market_id)
                        & (p.c.market_key == key)
                    )
                    .order_by(p.c.block_number.desc())
                    .limit(limit)
                ).all()
                extra = rebuilt.get(key, [])
                decimals = rows[0][0] if rows else extra[0].base_currency_decimals
                history = AccountHistory(
                    name, key, book_label(name, address, key), protocol, account, decimals
                )
                points = [HistoryPoint(*r[1:]) for r in reversed(rows)]
                points += [HistoryPoint(*e.values) for e in extra]
                history.points = sorted(points, key=lambda h: h.block_number)[-limit:]
                out.append(history)
    return out


# -- report -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class AtRiskPosition:
    """A stored position as the report shows it; the risk module's fields are None where the
    tier came from the health-factor rule."""

    label: str
    account: str
    health_factor: int | None
    health_factor_float: float | None
    liquidatable: bool
    risk_tier: str
    risk_reason: str
    total_collateral_base: int
    total_debt_base: int
    risk_reasons: list[str] | None = None
    liquidation_probability: float | None = None
    pending_health_factor: float | None = None
    horizon_s: float | None = None


@dataclass(frozen=True)
class TierTotals:
    positions: int = 0
    collateral_base: int = 0
    debt_base: int = 0


@dataclass
class BookReport:
    """The newest snapshot of one book: totals by tier, and the positions not SAFE."""

    market: str
    market_key: str
    label: str
    chain: str
    protocol: str
    block_number: int
    block_hash: str
    block_timestamp: int
    taken_at: datetime
    base_currency_decimals: int
    positions: int
    with_debt: int
    total_collateral_base: int
    total_debt_base: int
    tiers: dict[str, TierTotals]
    at_risk: list[AtRiskPosition]


def _rank(a: AtRiskPosition) -> tuple[int, float, int]:
    """Worst tier first; within a tier the likelier liquidation, then the lower health."""
    tier = TIERS.index(a.risk_tier) if a.risk_tier in TIERS else len(TIERS)
    probability = a.liquidation_probability or 0.0
    return tier, -probability, a.health_factor if a.health_factor is not None else 2**256


def at_risk_report(store: Store, *, market: str | None = None) -> list[BookReport]:
    """Each market's newest snapshot, per book: positions with debt by tier with exact totals
    in the book's base currency, and every position not SAFE, riskiest first."""
    mk, s = T_MARKETS, T_SNAPSHOTS
    newest = (
        select(s.c.market_id, func.max(s.c.block_number).label("block_number"))
        .group_by(s.c.market_id)
        .subquery()
    )
    out = []
    with store.read() as conn:
        heads = conn.execute(
            select(
                s.c.id,
                s.c.block_number,
                s.c.block_hash,
                s.c.block_timestamp,
                s.c.taken_at,
                s.c.market_id,
                s.c.details,
                mk.c.name,
                mk.c.address,
                mk.c.protocol,
                T_CHAINS.c.name.label("chain"),
            )
            .join(
                newest,
                (newest.c.market_id == s.c.market_id) & (newest.c.block_number == s.c.block_number),
            )
            .join(mk, mk.c.id == s.c.market_id)
            .join(T_CHAINS, T_CHAINS.c.chain_id == mk.c.chain_id)
            .where(mk.c.name == market if market else mk.c.id.is_not(None))
            .order_by(mk.c.name)
        ).all()
        for head in heads:
            p, where = newest_book(head.id, head.market_id, head.block_number, head.details)
            rows = conn.execute(
                select(
                    p.c.market_key,
                    p.c.base_currency_decimals,
                    T_ACCOUNTS.c.address,
                    p.c.health_factor,
                    p.c.health_factor_float,
                    p.c.liquidatable,
                    p.c.risk_tier,
                    p.c.risk_reason,
                    p.c.total_collateral_base,
                    p.c.total_debt_base,
                    p.c.risk_reasons,
                    p.c.liquidation_probability,
                    p.c.pending_health_factor,
                    p.c.horizon_s,
                )
                .join(T_ACCOUNTS, T_ACCOUNTS.c.id == p.c.account_id)
                .where(where)
            ).all()
            books: dict[str, list[Any]] = {}
            for row in rows:
                books.setdefault(row.market_key, []).append(row)
            for key in sorted(books):
                members = books[key]
                label = book_label(head.name, head.address, key)
                positions = [AtRiskPosition(label, *r[2:]) for r in members]
                with_debt = [a for a in positions if a.total_debt_base > 0 or a.liquidatable]
                tiers = {
                    tier: TierTotals(
                        sum(1 for a in with_debt if a.risk_tier == tier),
                        sum(a.total_collateral_base for a in with_debt if a.risk_tier == tier),
                        sum(a.total_debt_base for a in with_debt if a.risk_tier == tier),
                    )
                    for tier in TIERS
                }
                out.append(
                    BookReport(
                        market=head.name,
                        market_key=key,
                        label=label,
                        chain=head.chain,
                        protocol=head.protocol,
                        block_number=head.block_number,
                        block_hash=head.block_hash,
                        block_timestamp=head.block_timestamp,
                        taken_at=head.taken_at,
                        base_currency_decimals=members[0].base_currency_decimals,
                        positions=len(positions),
                        with_debt=len(with_debt),
                        total_collateral_base=sum(a.total_collateral_base for a in positions),
                        total_debt_base=sum(a.total_debt_base for a in positions),
                        tiers=tiers,
                        at_risk=sorted((a for a in positions if a.risk_tier != "SAFE"), key=_rank),
                    )
                )
    return out
