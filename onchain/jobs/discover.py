"""discover: new accounts from the market's event logs since the discovery cursor."""

from __future__ import annotations

import logging
from collections import defaultdict
from typing import Any

from onchain.errors import InputError
from onchain.jobs.context import Counts, JobContext, market_ref
from onchain.pipeline import load_market
from onchain.protocols.registry import get_adapter
from onchain.rpc.client import BlockRef, RpcClient
from onchain.rpc.logs import iter_logs
from onchain.store import crud
from onchain.store.crud import MarketInfo

log = logging.getLogger("onchain.jobs.discover")


def _is_canonical(client: RpcClient, number: int, block_hash: str) -> bool:
    try:
        return client.pin_block(number).hash == block_hash
    except InputError:  # beyond the head now: the chain got shorter
        return False


def discover_market(
    ctx: JobContext,
    client: RpcClient,
    market: MarketInfo,
    market_state: Any,
    up_to: BlockRef,
    counts: Counts,
) -> int:
    """Scan logs from the cursor to `up_to` and track the accounts found, each with the first
    block it appeared in. Idempotent; rescans the reorg window when the cursor's block left the
    canonical chain. Returns the number of accounts new to the market."""
    cursor = crud.get_cursor(ctx.store, market.id, "discover")
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
    adapter = get_adapter(market.protocol)
    addresses, topics = adapter.discovery_filter(market_state)
    found: dict[str, int] = {}
    for page in iter_logs(
        client, address=addresses, topics=topics, from_block=start, to_block=up_to.number
    ):
        by_block: dict[int, list[Any]] = defaultdict(list)
        for item in page.logs:
            by_block[item.block_number].append(item)
        for number in sorted(by_block):
            for account in adapter.accounts_from_logs(by_block[number]):
                found.setdefault(account, number)
        counts["log_blocks_scanned"] += page.to_block - page.from_block + 1
    new = crud.record_discovery(ctx.store, market, found, up_to, forward_only=not rewound)
    counts["accounts_new"] += new
    if new:
        log.info("%s: %d new accounts up to block %d", market.name, new, up_to.number)
    return new


def discover_job(ctx: JobContext, counts: Counts) -> list[str]:
    """Every market: discover up to the latest block (a safe block when refresh waits for
    confirmations). Returns the errors, one line per market that failed."""
    errors = []
    for market in ctx.markets:
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
