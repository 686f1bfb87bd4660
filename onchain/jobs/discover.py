"""discover: new accounts from the market's event logs since the discovery cursor."""

from __future__ import annotations

import logging
from typing import Any

from onchain.app.incremental import MarketRefresher
from onchain.app.pipeline import discovery_logs, load_market
from onchain.errors import InputError
from onchain.jobs.context import Counts, JobContext, market_ref
from onchain.protocols.base import DiscoveryNotes
from onchain.protocols.registry import get_adapter
from onchain.rpc.client import BlockRef, RpcClient
from onchain.rpc.logs import Log, LogPage
from onchain.store import crud
from onchain.store.crud import MarketInfo

log = logging.getLogger("onchain.jobs.discover")


def _is_canonical(client: RpcClient, number: int, block_hash: str) -> bool:
    try:
        return client.pin_block(number).hash == block_hash
    except InputError:  # beyond the head now: the chain got shorter
        return False


def _carry_notes(
    ctx: JobContext, client: RpcClient, market: MarketInfo, market_state: Any, cursor: Any
) -> None:
    """Give this block's market state the notes discovery made so far (Morpho: the markets each
    account used). After a restart they are rebuilt once from the logs up to the cursor."""
    adapter = get_adapter(market.protocol)
    if not isinstance(adapter, DiscoveryNotes):
        return
    notes = ctx.discovery_notes.get(market.id)
    if notes is None:
        if cursor is not None and cursor.block_number >= market.start_block:
            discovery_logs(
                client, market.protocol, market_state, market.start_block, cursor.block_number
            )
        ctx.discovery_notes[market.id] = adapter.discovery_notes(market_state)
    else:
        adapter.adopt_discovery_notes(market_state, notes)


def discover_market(
    ctx: JobContext,
    client: RpcClient,
    market: MarketInfo,
    market_state: Any,
    up_to: BlockRef,
    counts: Counts,
) -> int:
    """Scan logs from the cursor to `up_to` and track the accounts found, each with the first
    block it appeared in (the same discovery as `scan`). Idempotent; rescans the reorg window
    when the cursor's block left the canonical chain. Returns the number of accounts new to the
    market."""
    cursor = crud.get_cursor(ctx.store, market.id, "discover")
    _carry_notes(ctx, client, market, market_state, cursor)
    rewound = False
    if cursor is None:
        start = market.start_block
    elif cursor.block_number >= up_to.number:
        return 0
    elif cursor.block_hash and not _is_canonical(client, cursor.block_number, cursor.block_hash):
        start = max(market.start_block, cursor.block_number - ctx.config.jobs.refresh.reorg_window)
        rewound = True
        log.warning("%s: discovery cursor left the canonical chain, rescanning", market.name)
    else:
        start = cursor.block_number + 1

    def on_page(page: LogPage) -> None:
        counts["log_blocks_scanned"] += page.to_block - page.from_block + 1

    found = discovery_logs(
        client, market.protocol, market_state, start, up_to.number, on_page=on_page
    )
    new = crud.record_discovery(ctx.store, market, found, up_to, forward_only=not rewound)
    counts["accounts_new"] += new
    if new:
        log.info("%s: %d new accounts up to block %d", market.name, new, up_to.number)
    return new


def discover_from_refresher(
    ctx: JobContext,
    client: RpcClient,
    market: MarketInfo,
    refresher: MarketRefresher,
    logs: list[Log],
    up_to: BlockRef,
    counts: Counts,
) -> bool:
    """Discovery from the logs the refresher read for its next range (no request of its own):
    when the cursor stands on the refresher's block, those logs are exactly what a scan from
    the cursor to `up_to` would read. Tracks the accounts and moves the cursor as
    `discover_market` does; False (nothing done) when the cursor is elsewhere."""
    cursor = crud.get_cursor(ctx.store, market.id, "discover")
    kept = refresher.block
    if cursor is None or kept is None or cursor.block_number >= up_to.number:
        return cursor is not None and cursor.block_number >= up_to.number
    if cursor.block_number != kept.number or cursor.block_hash != kept.hash:
        return False
    _carry_notes(ctx, client, market, refresher.state, cursor)
    found = refresher.first_seen(logs)
    counts["log_blocks_scanned"] += up_to.number - cursor.block_number
    new = crud.record_discovery(ctx.store, market, found, up_to)
    counts["accounts_new"] += new
    if new:
        log.info("%s: %d new accounts up to block %d", market.name, new, up_to.number)
    return True


def discover_job(ctx: JobContext, counts: Counts) -> list[str]:
    """Every market: discover up to the latest block (a safe block when refresh waits for
    confirmations). Returns the errors, one line per market that failed."""
    errors = []
    for market in ctx.active_markets():
        if ctx.stop.is_set():
            break
        try:
            with ctx.client(market) as client:
                head = client.pin_block()
                confirmations = ctx.config.jobs.refresh.confirmations
                if ctx.config.jobs.refresh.at != "latest" and confirmations:
                    head = client.pin_block(max(0, head.number - confirmations))
                state = load_market(client, market_ref(market), head)
                discover_market(ctx, client, market, state, head, counts)
                counts["rpc_requests"] += client.requests_sent
            counts["markets"] += 1
        except Exception as exc:  # one market failing must not stop the others
            errors.append(f"{market.name}: {one_line(exc)}")
    return errors


def one_line(exc: BaseException) -> str:
    """An error in one line, without SQL statements or parameters (they can be huge)."""
    inner = getattr(exc, "orig", None) or exc
    lines = [line.strip() for line in str(inner).splitlines() if line.strip()]
    text = lines[0] if lines else ""
    return f"{type(inner).__name__}: {text}" if text else type(inner).__name__
