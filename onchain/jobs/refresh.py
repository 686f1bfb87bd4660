"""refresh: every tracked account of every market at the latest block, a safe block, or each new
block; one transaction per block. Reorgs are found by comparing stored block hashes with the
canonical chain: the orphaned blocks' snapshots are replaced (or dropped if the chain got
shorter), and the cursors rewind so nothing is skipped."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

import numpy as np

from onchain.alerts.outbox import block_alerts, rules_watch
from onchain.app.incremental import MarketRefresher, read_account_states
from onchain.app.pipeline import load_market, market_snapshot, read_positions
from onchain.app.risk_context import PriceSeries
from onchain.gc_pause import without_cycle_collection
from onchain.jobs import metrics
from onchain.jobs.assess import TierColumns, assess, risk_tier_columns, risk_tiers, tier_of
from onchain.jobs.context import Counts, JobContext, market_ref, note
from onchain.jobs.discover import discover_from_refresher, discover_market, one_line
from onchain.jobs.restart import resume_from_store
from onchain.protocols.base import (
    BookHealth,
    IncrementalAdapter,
    MarketSnapshot,
    Position,
    RiskRows,
)
from onchain.protocols.registry import get_incremental
from onchain.risk.reactive import LOOKBACK_STEPS
from onchain.rpc.client import BlockRef, RpcClient
from onchain.store import changes, crud
from onchain.store.changes import KeptState, columns_of
from onchain.store.crud import Assessed, MarketInfo, WriteResult
from onchain.store.leases import LeaseLost
from onchain.store.models import TIERS
from onchain.store.price_history import hourly_stored_prices

log = logging.getLogger("onchain.jobs.refresh")
WAD = 10**18


def canonical_hashes(client: RpcClient, numbers: list[int]) -> dict[int, str | None]:
    """Hash of each block number on the node's canonical chain (None: no such block)."""
    if not numbers:
        return {}
    replies = client.batch([("eth_getBlockByNumber", [hex(n), False]) for n in numbers])
    return {n: (r or {}).get("hash") for n, r in zip(numbers, replies, strict=True)}


def orphaned_blocks(
    ctx: JobContext, client: RpcClient, market: MarketInfo, head: BlockRef
) -> list[int]:
    """Stored snapshot heights whose block left the canonical chain. Block hashes commit to
    their ancestors, so a canonical newest snapshot means all older ones are canonical too:
    usually one request; the whole reorg window is checked only when the newest is not."""
    newest = crud.newest_snapshot(ctx.store, market.id)
    if newest is None:
        return []
    number, stored_hash = newest
    if number == head.number and stored_hash == head.hash:
        return []
    if number == head.number - 1 and stored_hash == head.parent_hash:
        return []  # the head names it as its parent: canonical, no request
    if number < head.number and canonical_hashes(client, [number])[number] == stored_hash:
        return []
    window = ctx.config.jobs.refresh.reorg_window
    stored = crud.snapshot_hashes(ctx.store, market.id, from_block=max(0, number - window + 1))
    canonical = canonical_hashes(client, sorted(n for n in stored if n <= head.number))
    return sorted(n for n, h in stored.items() if n > head.number or canonical.get(n) != h)


def stored_prices(ctx: JobContext, market: MarketInfo, block: BlockRef) -> list[PriceSeries]:
    """The market's stored oracle prices over the model's lookback, hourly (a volatility
    source that covers every hour the daemon ran, even where a feed keeps no past rounds)."""
    since = int(block.timestamp) - (LOOKBACK_STEPS + 1) * 3600
    found = hourly_stored_prices(ctx.store, market.id, since, int(block.timestamp) - 1)
    return [PriceSeries(s.symbol, s.times_s, s.prices) for s in found.values()]


def tier_block(
    ctx: JobContext,
    client: RpcClient,
    market: MarketInfo,
    block: BlockRef,
    positions: list[Position],
    snapshot: MarketSnapshot | None,
    counts: Counts,
) -> tuple[list[Assessed], dict[str, Any]]:
    """The block's tiers from the risk module, or, when it cannot run, from the health-factor
    rule (`tiered`)."""

    def run(prices: list[PriceSeries]) -> tuple[list[Assessed], Any]:
        cfg = ctx.config
        return risk_tiers(
            client, block, positions, cfg.risk_settings, snapshot, cfg.health_floors, prices
        )

    return tiered(ctx, market, block, counts, run, lambda: assess(positions, ctx.config.tiers))


Tiers = TypeVar("Tiers", list[Assessed], TierColumns)


def tiered(
    ctx: JobContext,
    market: MarketInfo,
    block: BlockRef,
    counts: Counts,
    run: Callable[[list[PriceSeries]], tuple[Tiers, Any]],
    fallback: Callable[[], Tiers],
) -> tuple[Tiers, dict[str, Any]]:
    """The block's tiers from the risk module (`run`, given the market's stored prices), or,
    when it cannot run, from the health-factor rule (`fallback`); the fallback is never silent:
    the run's counts say how often and why, the snapshot's details say so for that block, and
    the log warns. Each tier from the risk module carries its typed verdict (the alerts'
    advice and price moves)."""
    started = time.perf_counter()
    try:
        assessed, report = run(stored_prices(ctx, market, block))
    except Exception as exc:  # a risk failure must not cost the block: fall back, say why
        why = one_line(exc)
        counts["risk_fallback_blocks"] += 1
        note(counts, "risk_fallback_reason", why)
        log.warning(
            "%s block %d: risk assessment failed (%s); tiers from health factor thresholds",
            market.name,
            block.number,
            why,
        )
        return fallback(), {"risk": {"fallback": why}}
    counts["risk_blocks"] += 1
    counts["risk_ms"] += round((time.perf_counter() - started) * 1000)
    if report is None:
        return assessed, {"risk": {"positions": 0}}
    volatility = {name: v.as_json() for name, v in sorted(report.volatility.items())}
    return assessed, {
        "risk": {"horizon_s": report.horizon_s, "sources": report.sources, "volatility": volatility}
    }


def market_refresher(
    ctx: JobContext, client: RpcClient, market: MarketInfo
) -> MarketRefresher | None:
    """The market's incremental refresher (kept for the daemon's life, given this run's
    client); None where the config or the protocol says full reads."""
    if not ctx.config.jobs.refresh.incremental or get_incremental(market.protocol) is None:
        return None
    refresher = ctx.refreshers.get(market.id)
    if refresher is None:
        refresher = ctx.refreshers[market.id] = MarketRefresher(client, market_ref(market))
    refresher.client = client
    return refresher


def incremental_advance(
    ctx: JobContext,
    client: RpcClient,
    market: MarketInfo,
    block: BlockRef,
    refresher: MarketRefresher,
    counts: Counts,
) -> tuple[set[str] | None, list[Position] | None]:
    """The kept state moved to `block`: a full read on the first block (and after a restart or
    a reorg), then only what the logs touched; every `reconcile_every_blocks` the kept state is
    checked against a full read, and each repaired account counted and logged. Where the store
    keeps account states, a refresher with none takes them up from the store at the refresh
    cursor and moves on from there instead of reading everything.

    Returns the accounts whose kept state was read again at this block (touched, new, stale,
    repaired; None: every account) and, after a full read, every position (else None: the
    caller recomputes what it needs)."""
    if refresher.block is None and store_layout(ctx, market) != "snapshots":
        resume_from_store(ctx, client, market, refresher, block, counts)
    moving = refresher.block is not None and block.number > refresher.block.number
    logs = None
    if moving:  # the range's logs once: the refresher's and discovery's
        logs = refresher.logs_to(block)
        if not discover_from_refresher(ctx, client, market, refresher, logs, block, counts):
            discover_market(ctx, client, market, refresher.state, block, counts)
    else:
        state = load_market(client, market_ref(market), block)
        discover_market(ctx, client, market, state, block, counts)
    accounts = tracked_accounts(ctx, market, block)
    reread: set[str] | None = None
    positions: list[Position] | None = None
    if moving:
        refresher.advance(block, accounts, logs=logs)
        assert refresher.last is not None
        reread = set(refresher.last.read_again)
        counts["incremental_blocks"] += 1
    else:
        positions = refresher.start(block, accounts, notes=ctx.discovery_notes.get(market.id))
        counts["incremental_full_reads"] += 1
    if refresher.last is not None:
        counts["accounts_reread"] += refresher.last.accounts_read
    every = ctx.config.jobs.refresh.reconcile_every_blocks
    if every and refresher.advances >= every:
        repairs = refresher.reconcile()
        counts["reconcile_runs"] += 1
        counts["reconcile_repairs"] += len(repairs)
        metrics.record_reconciliation(market.name, len(repairs))
        if repairs:
            note(counts, "reconcile_repaired", ", ".join(r.account for r in repairs[:10]))
            positions = None
            if reread is not None:
                reread |= {r.account for r in repairs}
    return reread, positions


def tracked_accounts(ctx: JobContext, market: MarketInfo, block: BlockRef) -> list[str]:
    """`crud.tracked_accounts`, the list kept from the last block where the count shows it is
    the same: the store only adds tracked accounts or moves their first block earlier, so the
    accounts up to a block include those up to an earlier one, and equal counts mean equal
    sets. Reading 30,000 addresses back costs more than the rest of a quiet block's reads."""
    kept = ctx.tracked.get(market.id)
    if (
        kept is not None
        and block.number >= kept[0]
        and crud.tracked_count(ctx.store, market.id, block.number) == len(kept[1])
    ):
        return kept[1]
    accounts = crud.tracked_accounts(ctx.store, market.id, block.number)
    ctx.tracked[market.id] = (block.number, accounts)
    return accounts


def store_layout(ctx: JobContext, market: MarketInfo) -> str:
    """The configured layout; a protocol that keeps no account state stores snapshots."""
    layout = ctx.config.store.layout
    return layout if get_incremental(market.protocol) is not None else "snapshots"


def encode_kept(
    ctx: JobContext,
    market: MarketInfo,
    incremental: IncrementalAdapter,
    market_state: Any,
    tracked: Sequence[str],
    states: Mapping[str, list[Any]],
    standing: changes.Standing | None = None,
    *,
    block: BlockRef | None = None,
    since: tuple[BlockRef, Collection[str]] | None = None,
) -> KeptState:
    """The block's kept state as the adapter encodes it (each of the `tracked` accounts' kept
    `states`, none where it has none); an account whose states equal the ones encoded before
    reuses their bytes. `standing`: the writer's memory of what stands in the store
    (`changes.Standing`), which the write uses where it can and brings up to date.

    `since` (block, accounts): only these accounts' states changed since `block`; where the
    last encoding (at `block`, remembered) was at that block with the same tracked
    accounts, only they are encoded again and the write compares only them (`changed`): a
    quiet block costs no pass over every account."""
    cache = ctx.encoded_states.setdefault(market.id, {})
    last = ctx.encoded_book.get(market.id)
    changed: tuple[tuple[int, str], frozenset[str]] | None = None
    accounts: dict[str, bytes]
    base = None if since is None else (since[0].number, since[0].hash)
    if since is not None and last is not None and last[0] == base and last[1] == tracked:
        accounts = dict(last[2])
        touched = frozenset(a for a in since[1] if a in accounts)
        for account in touched:
            accounts[account] = _encoded(cache, incremental, account, states)
        changed = (base, touched)
    else:
        accounts = {a: _encoded(cache, incremental, a, states) for a in tracked}
        if len(cache) != len(accounts):
            for gone in set(cache) - set(accounts):
                del cache[gone]
    if block is None:
        ctx.encoded_book.pop(market.id, None)
    else:
        ctx.encoded_book[market.id] = ((block.number, block.hash), list(tracked), accounts)
    return KeptState(
        incremental.encode_market_state(market_state),
        accounts,
        ctx.config.store.verdict_bands,
        standing,
        changed,
    )


def _encoded(
    cache: dict[str, tuple[tuple[Any, ...], bytes]],
    incremental: IncrementalAdapter,
    account: str,
    states: Mapping[str, list[Any]],
) -> bytes:
    """One account's kept states encoded, its bytes of before where they are the same."""
    key = tuple(states.get(account, ()))
    hit = cache.get(account)
    if hit is None or hit[0] != key:
        hit = cache[account] = (key, incremental.encode_account_states(list(key)))
    return hit[1]


# The change layout's per-block path whose cost follows what changed (`lean_block`); the
# benchmarks turn it off to measure the path that builds every Position against it.
LEAN = True


@dataclass(frozen=True)
class PositionsHealth(BookHealth):
    """`BookHealth` read off whole Position objects (where the refresher built them anyway: a
    full read), keeping `positions` themselves so nothing builds them twice."""

    positions: list[Position] = field(default_factory=list)

    @classmethod
    def of(cls, positions: Sequence[Position]) -> PositionsHealth:
        return cls(**vars(BookHealth.of(positions)), positions=list(positions))


def book_health(
    refresher: MarketRefresher,
    positions: list[Position] | None = None,
    rows: list[Any] | None = None,
) -> Any:
    """Every position's exact contract-level figures at the refresher's block, in
    `positions_from_states`' order: the refresher's own (`health`, no Position built) where it
    has them, else from whole positions (`positions`, when the caller built them already).
    `rows`: the refresher's `rows()`, where the caller has them."""
    if positions is None:
        return refresher.health(rows)
    return PositionsHealth.of(positions)


def book_tiers(
    ctx: JobContext,
    client: RpcClient,
    market: MarketInfo,
    block: BlockRef,
    refresher: MarketRefresher,
    health: Any,
    snapshot: MarketSnapshot | None,
    counts: Counts,
    rows: list[Any] | None = None,
) -> tuple[TierColumns, dict[str, Any]]:
    """Every position's tier, reasons and probability, row by row as `health`, as columns
    (`TierColumns`: a row's whole Assessed only when asked for), with `tiered`'s fallback (the
    health-factor rule, counted) when the risk module fails: from the adapter's risk rows and
    the exact figures where both exist (no Position built), else from whole positions."""
    positions = getattr(health, "positions", None)
    adapter = refresher.incremental
    if positions is not None or not isinstance(adapter, RiskRows):
        whole = refresher.positions() if positions is None else positions
        assessed, details = tier_block(ctx, client, market, block, whole, snapshot, counts)
        return TierColumns.of(assessed), details
    states = refresher.rows() if rows is None else rows
    cfg = ctx.config

    def run(prices: list[PriceSeries]) -> tuple[TierColumns, Any]:
        rows = adapter.risk_rows(refresher.state, states)
        return risk_tier_columns(
            client,
            block,
            rows,
            health.health_factor,
            health.liquidatable.tolist(),
            cfg.risk_settings,
            snapshot,
            cfg.health_floors,
            prices,
            accounts=health.accounts,
        )

    def fallback() -> TierColumns:
        pairs = zip(health.health_factor, health.liquidatable, strict=True)
        return TierColumns.of([tier_of(hf, bool(v), cfg.tiers) for hf, v in pairs])

    return tiered(ctx, market, block, counts, run, fallback)


def riskiest(tiers: Sequence[str], health_factors: Sequence[int | None], k: int) -> list[int]:
    """The rows of the `k` riskiest positions at risk (not SAFE) as the API's risk sort puts
    them first: worst tier first, then the lowest health factor (no debt last in a tier)."""
    at_risk = [i for i, t in enumerate(tiers) if t != "SAFE"]
    if k <= 0 or not at_risk:
        return []
    rank = {t: i for i, t in enumerate(TIERS)}
    ranks = np.fromiter((rank.get(tiers[i], len(TIERS)) for i in at_risk), int, len(at_risk))
    floats = np.fromiter(
        (np.inf if (hf := health_factors[i]) is None else hf / WAD for i in at_risk),
        float,
        len(at_risk),
    )
    return sorted(at_risk[j] for j in np.lexsort((floats, ranks))[:k].tolist())


def detail_rows(
    ctx: JobContext,
    market: MarketInfo,
    health: Any,
    verdicts: TierColumns,
    reread: set[str] | None,
) -> list[int]:
    """The rows of the book written whole, with a Position built for each: every position of
    an account read again at this block (a new one among them), among the `[store]
    whole_riskiest` riskiest at risk (`riskiest`: the first pages readers look at), or that the alert
    rules need whole (`outbox.RulesWatch`); and every other position of those accounts. The
    other rows' stored values, their verdict rows too, are all in `health` and `verdicts`;
    their details (assets, liquidation prices) stay those of an earlier block, which readers
    rebuild: a block's cost does not follow how many positions are at risk or change tier."""
    if reread is None:
        return list(range(len(verdicts)))
    tiers, accounts, k = verdicts.tier, health.accounts, ctx.config.store.whole_riskiest
    wanted = set(reread)
    wanted.update(accounts[i] for i in riskiest(tiers, health.health_factor, k))
    watch = rules_watch(ctx, market)
    if watch is not None and (watch.rules or watch.episodes):
        hfs, liquidatable = health.health_factor, health.liquidatable.tolist()
        wanted.update(
            account
            for i, (account, key) in enumerate(zip(accounts, health.markets, strict=True))
            if account not in wanted
            and watch.wants(account, key, hfs[i], liquidatable[i], tiers[i])
        )
    return [i for i, account in enumerate(accounts) if account in wanted]


def detail_positions(refresher: MarketRefresher, health: Any, rows: list[int]) -> list[Position]:
    """The Positions of these rows (their accounts' kept states recomputed), in row order."""
    built = getattr(health, "positions", None)
    if built is not None:
        return [built[i] for i in rows]
    accounts = {health.accounts[i] for i in rows}
    states = [s for a in refresher.accounts if a in accounts for s in refresher.kept.get(a, ())]
    assert refresher.block is not None
    found = refresher.incremental.positions_from_states(refresher.state, states, refresher.block)
    by_key = {(p.account, p.market): p for p in found}
    return [by_key[(health.accounts[i], health.markets[i])] for i in rows]


def lean_block(
    ctx: JobContext,
    client: RpcClient,
    market: MarketInfo,
    block: BlockRef,
    refresher: MarketRefresher,
    counts: Counts,
) -> tuple[WriteResult, Any, TierColumns]:
    """One block in the change layout at a cost that follows what changed: every position's
    exact figures and verdict as columns (no Position, no Assessed per row), a Position and
    an Assessed only for the rows written whole (`detail_rows`), the alert rules on those
    (they decide on them what they decide on the whole book: `outbox.RulesWatch`), the other
    rows of the latest view updated in place. What stands in the store (account states,
    verdicts) is kept in memory from block to block (`changes.Standing`), read back only when
    the store moved without this process. Stores what the full path stores, row for row, but
    the unchanged details."""
    incremental = get_incremental(market.protocol)
    assert incremental is not None
    reread, every = incremental_advance(ctx, client, market, block, refresher, counts)
    rows = refresher.rows() if every is None else None  # after a full read: the positions
    health = book_health(refresher, every, rows)
    standing = ctx.standing.setdefault(market.id, changes.Standing())
    assert refresher.block is not None and refresher.last is not None
    since_block = refresher.last.since_block
    since = None if reread is None or since_block is None else (since_block, reread)
    kept = encode_kept(
        ctx, market, incremental, refresher.state, refresher.accounts, refresher.kept, standing,
        block=refresher.block, since=since,
    )  # fmt: skip
    snapshot = market_snapshot(client, market.protocol, refresher.state, block)
    verdicts, details = book_tiers(
        ctx, client, market, block, refresher, health, snapshot, counts, rows
    )
    whole = detail_rows(ctx, market, health, verdicts, reread)
    positions = detail_positions(refresher, health, whole)
    chosen = [verdicts[i] for i in whole]
    counts["lean_blocks"] += 1
    counts["positions_whole"] += len(whole)
    book = changes.LeanBook(health, verdicts)
    result = store_block(
        ctx, market, block, positions, chosen, snapshot, details, counts, kept, book
    )
    counts["standing_remembered"] += (result.change_rows or {}).get("remembered", 0)
    for name in ("states_changed_only", "rows_by_column"):
        counts[name] += (result.change_rows or {}).get(name, 0)
    return result, health, verdicts


def store_block(
    ctx: JobContext,
    market: MarketInfo,
    block: BlockRef,
    positions: list[Position],
    assessed: list[Assessed],
    snapshot: MarketSnapshot | None,
    details: dict[str, Any],
    counts: Counts,
    kept: KeptState | None,
    book: changes.LeanBook | None = None,
) -> WriteResult:
    """The block and the alerts its positions fire, in one transaction (`book`: the lean
    path's whole book, `positions` then the rows written whole)."""
    alerts = block_alerts(ctx, market, block, positions, assessed, counts)
    return crud.write_snapshot(
        ctx.store,
        market,
        block,
        positions,
        assessed,
        snapshot,
        details,
        alerts,
        guard=ctx.write_guard(market, block.number),
        kept=kept,
        layout="changes" if book is not None else store_layout(ctx, market),
        book=book,
    )


@without_cycle_collection()
def refresh_block(
    ctx: JobContext,
    client: RpcClient,
    market: MarketInfo,
    block: BlockRef,
    counts: Counts,
    *,
    market_state: Any = None,
) -> WriteResult:
    """Read every tracked account at `block` and store the block whole; a block already stored
    with this hash is left as it is (no reads, no writes). The cyclic collector waits meanwhile:
    a block makes and drops tens of thousands of objects without cycles, and its passes over the
    kept book cost as much as the block's own work (reference counting frees them as before)."""
    if crud.snapshot_hash(ctx.store, market.id, block.number) == block.hash:
        counts["blocks_unchanged"] += 1
        return WriteResult("unchanged")
    started = time.monotonic()
    layout = store_layout(ctx, market)
    incremental = get_incremental(market.protocol)
    kept_states: dict[str, list[Any]] | None = None
    refresher = market_refresher(ctx, client, market)
    if refresher is not None and layout == "changes" and LEAN:
        result, health, verdicts = lean_block(ctx, client, market, block, refresher, counts)
        return _logged(ctx, market, block, result, health, verdicts, counts, started)
    if refresher is not None:
        _reread, every = incremental_advance(ctx, client, market, block, refresher, counts)
        positions = refresher.positions() if every is None else every
        state = refresher.state
        kept_states = {a: refresher.kept.get(a, []) for a in refresher.accounts}
    else:
        state = market_state or load_market(client, market_ref(market), block)
        discover_market(ctx, client, market, state, block, counts)
        accounts = crud.tracked_accounts(ctx.store, market.id, block.number)
        if layout == "snapshots" or incremental is None:
            positions = read_positions(client, market.protocol, state, accounts, block)
        else:  # a full read as kept state: the positions are recomputed from it, exactly
            kept_states = read_account_states(client, incremental, state, accounts, block)
            flat = [s for a in accounts for s in kept_states[a]]
            positions = incremental.positions_from_states(state, flat, block)
    kept = None
    if layout != "snapshots" and incremental is not None and kept_states is not None:
        kept = encode_kept(ctx, market, incremental, state, list(kept_states), kept_states)
    snapshot = market_snapshot(client, market.protocol, state, block)
    assessed, details = tier_block(ctx, client, market, block, positions, snapshot, counts)
    result = store_block(ctx, market, block, positions, assessed, snapshot, details, counts, kept)
    return _logged(
        ctx, market, block, result, PositionsHealth.of(positions), assessed, counts, started
    )


def _logged(
    ctx: JobContext,
    market: MarketInfo,
    block: BlockRef,
    result: WriteResult,
    health: Any,
    assessed: Sequence[Assessed],
    counts: Counts,
    started: float,
) -> WriteResult:
    """The block counted and logged."""
    counts[f"blocks_{result.outcome}"] += 1
    counts["positions"] += result.positions
    counts["asset_rows"] += result.asset_rows
    tiers = list(columns_of(assessed).tier)
    at_risk = len(tiers) - tiers.count("SAFE")
    log.info(
        "%s block %d %s: %s %d positions (%d at risk, %d liquidatable) in %.2fs",
        market.name,
        block.number,
        block.hash[:10],
        result.outcome,
        len(assessed),
        at_risk,
        int(np.count_nonzero(health.liquidatable)),
        time.monotonic() - started,
    )
    return result


def refresh_market(ctx: JobContext, client: RpcClient, market: MarketInfo, counts: Counts) -> None:
    """One run for one market: reorg check, then the target blocks, oldest first."""
    cfg = ctx.config.jobs.refresh
    head = client.pin_block()
    safe = head.number if cfg.at == "latest" else max(0, head.number - cfg.confirmations)

    orphaned = orphaned_blocks(ctx, client, market, head)
    if orphaned:
        lowest = orphaned[0]
        log.warning(
            "%s: reorg: %d stored block(s) from %d left the canonical chain; replacing them",
            market.name,
            len(orphaned),
            lowest,
        )
        counts["blocks_orphaned"] += len(orphaned)
        for kind in ("refresh", "discover"):
            cursor = crud.get_cursor(ctx.store, market.id, kind)
            if cursor is not None and cursor.block_number >= lowest:
                crud.rewind_cursor(ctx.store, market.id, kind, lowest - 1, ctx.lease_guard(market))
        crud.delete_snapshots_from(
            ctx.store, market.id, [n for n in orphaned if n > head.number], ctx.lease_guard(market)
        )

    if cfg.at == "each-block":
        cursor = crud.get_cursor(ctx.store, market.id, "refresh")
        first = safe if cursor is None else cursor.block_number + 1
        targets = list(range(first, safe + 1))[: cfg.max_blocks_per_run]
        backlog = safe + 1 - first - len(targets)
        if backlog > 0:
            counts["blocks_behind"] = backlog
    else:
        targets = [safe]
        newest = crud.newest_snapshot(ctx.store, market.id)
        if newest is not None and safe < newest[0] and not orphaned:
            # a head that went back (a lagging endpoint, more confirmations) is not written
            # below the newest stored block: the change layout keeps an account's state from the
            # block it changed, so a block written below would stand for the blocks above it
            counts["blocks_below_stored"] += 1
            targets = []
    targets = sorted(set(targets) | {n for n in orphaned if n <= head.number})
    stored = crud.snapshot_hashes(ctx.store, market.id, targets[0]) if targets else {}
    blocks = []
    for number in targets:  # blocks already stored with this hash cost no reads at all
        block = head if number == head.number else client.pin_block(number)
        if stored.get(number) == block.hash:
            counts["blocks_unchanged"] += 1
        else:
            blocks.append(block)
    if not blocks:
        cursor = crud.get_cursor(ctx.store, market.id, "refresh")
        metrics.record_head(market.name, head.number, cursor.block_number if cursor else None)
        return

    # full reads: discover once up to the last block, so each block below finds the cursor
    # ahead of it; the incremental path discovers block by block from the refresher's logs
    last = blocks[-1]
    refresher = market_refresher(ctx, client, market)
    last_state = None
    if refresher is None:
        last_state = load_market(client, market_ref(market), last)
        discover_market(ctx, client, market, last_state, last, counts)

    for block in blocks:
        if ctx.stop.is_set():
            counts["stopped_early"] = 1
            return
        if not ctx.holds(market):  # a worker gave the market back: its new holder goes on
            return
        refresh_block(
            ctx,
            client,
            market,
            block,
            counts,
            market_state=last_state if block == last and refresher is None else None,
        )
        metrics.record_head(market.name, head.number, block.number)


def refresh_job(ctx: JobContext, counts: Counts) -> list[str]:
    errors = []
    for market in ctx.active_markets():
        if ctx.stop.is_set():
            break
        client = None
        try:
            client = ctx.client(market)
            refresh_market(ctx, client, market, counts)
            counts["markets"] += 1
        except LeaseLost as exc:  # another worker holds it now and carries on from its cursor
            counts["leases_lost"] += 1
            log.warning("%s: %s; block not written", market.name, exc)
            if ctx.keeper is not None:
                ctx.keeper.lost(market.id)
        except Exception as exc:  # one market failing must not stop the others
            errors.append(f"{market.name}: {one_line(exc)}")
        finally:
            if client is not None:
                counts["rpc_requests"] += client.requests_sent
                counts["rpc_calls"] += client.calls_sent
                client.close()
    return errors
