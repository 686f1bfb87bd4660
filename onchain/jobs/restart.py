"""A restart without a full read: where the change layout keeps account states, a refresher
with no kept state (a new process, a market taken over from another worker) takes them up from
the store at the market's refresh cursor, then moves on with the logs since. Any doubt reads
everything again, as before, counted and logged with the reason; so does a gap longer than
`[jobs.refresh] resume_max_gap_blocks`, whose logs would cost more than reading every account."""

from __future__ import annotations

import logging
from typing import Any

from eth_utils import to_checksum_address

from onchain.app.incremental import MarketRefresher
from onchain.app.pipeline import load_market, run_plan
from onchain.errors import InputError
from onchain.jobs.context import Counts, JobContext, market_ref, note
from onchain.jobs.discover import one_line
from onchain.protocols.registry import get_incremental
from onchain.rpc.client import BlockRef, RpcClient
from onchain.store import changes, crud
from onchain.store.crud import MarketInfo

log = logging.getLogger("onchain.jobs.restart")


class NoSeed(Exception):
    """Why the stored state cannot stand in for a full read."""


class NothingStored(NoSeed):
    """Nothing to take up yet (a new store, or a cursor at or past the block): no warning."""


class GapTooLong(NoSeed):
    """The stored block is further back than `resume_max_gap_blocks`: by design, no warning."""


def resume_from_store(
    ctx: JobContext,
    client: RpcClient,
    market: MarketInfo,
    refresher: MarketRefresher,
    block: BlockRef,
    counts: Counts,
) -> bool:
    """Seed `refresher` from the store at the refresh cursor (below `block`); True when it did.
    False leaves the refresher as it was (its first block is then a full read) and says why."""
    try:
        seed = _stored_seed(ctx, client, market, block)
    except NoSeed as why:
        reason = str(why)
        quiet = isinstance(why, (NothingStored, GapTooLong))
        if isinstance(why, GapTooLong):
            counts["incremental_resume_gap_too_long"] += 1
    except Exception as exc:  # a decode or read failure: the full read is always right
        reason, quiet = f"stored state unusable ({one_line(exc)})", False
    else:
        refresher.resume(*seed)
        counts["incremental_restarts_from_store"] += 1
        log.info(
            "%s: kept state of %d accounts taken up from the store at block %d",
            market.name,
            len(seed[2]),
            seed[0].number,
        )
        return True
    note(counts, "incremental_full_read_reason", f"{market.name}: {reason}")
    level = logging.INFO if quiet else logging.WARNING
    log.log(level, "%s: restart reads every account again: %s", market.name, reason)
    return False


def _stored_seed(
    ctx: JobContext, client: RpcClient, market: MarketInfo, block: BlockRef
) -> tuple[BlockRef, Any, list[str], dict[str, list[Any]]]:
    """The cursor block (canonical), the market state re-read there, the tracked accounts and
    their stored states decoded; NoSeed when any of it is missing or doubtful."""
    incremental = get_incremental(market.protocol)
    assert incremental is not None
    cursor = crud.get_cursor(ctx.store, market.id, "refresh")
    if cursor is None or cursor.block_number >= block.number:
        raise NothingStored("no refresh cursor below the block")
    gap = block.number - cursor.block_number
    most = ctx.config.jobs.refresh.resume_max_gap_blocks
    if most and gap > most:
        raise GapTooLong(
            f"{gap} blocks since the stored block {cursor.block_number}, more than "
            f"resume_max_gap_blocks ({most}): a full read costs less than their logs"
        )
    book = changes.stored_book(ctx.store, market.id, cursor.block_number)
    if book is None:
        raise NoSeed(f"no stored states at block {cursor.block_number}")
    try:
        at = client.pin_block(cursor.block_number)
    except InputError as exc:  # beyond the head now: the chain got shorter
        raise NoSeed(f"block {cursor.block_number} is gone") from exc
    if at.hash != book.block.hash:
        raise NoSeed(f"stored block {cursor.block_number} left the canonical chain")
    accounts = crud.tracked_accounts(ctx.store, market.id, at.number)
    stored = {str(to_checksum_address(a)): blob for a, blob in book.accounts.items()}
    wanted = [str(to_checksum_address(a)) for a in accounts]
    missing = [a for a in wanted if a not in stored]
    if missing:
        raise NoSeed(f"{len(missing)} tracked accounts have no stored state")
    kept = {a: incremental.decode_account_states(stored[a]) for a in wanted}
    state = load_market(client, market_ref(market), at)
    adopted = [s for a in wanted for s in kept[a]]
    state = run_plan(client, incremental.plan_adopt_states(state, adopted, at), at)
    return at, state, accounts, kept
