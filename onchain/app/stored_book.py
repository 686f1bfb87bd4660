"""Positions from the change layout's stored bytes, through the adapter's own exact math: what
the store's readers are handed (`onchain.store.queries.account_history(rebuild=...)`,
`onchain.store.api_queries.tier_series(rebuild=...)`), since the store never decodes a
protocol's state itself."""

from __future__ import annotations

from onchain.errors import InputError
from onchain.protocols.base import IncrementalAdapter, Position
from onchain.protocols.registry import get_incremental
from onchain.rpc.client import BlockRef
from onchain.store.changes import StoredBook, rebuild_positions


def rebuild_account(
    protocol: str, market_state: bytes, account_state: bytes, block: BlockRef
) -> list[Position]:
    """One account's positions at `block` from its stored state and the market's."""
    incremental = _incremental(protocol)
    market = incremental.decode_market_state(market_state)
    states = incremental.decode_account_states(account_state)
    return incremental.positions_from_states(market, states, block)


def rebuild_book(protocol: str, book: StoredBook) -> list[Position]:
    """A whole book at a block stored in the change layout alone, decoded once (what the API's
    tier series hands the store for such blocks)."""
    return rebuild_positions(book, _incremental(protocol))


def _incremental(protocol: str) -> IncrementalAdapter:
    incremental = get_incremental(protocol)
    if incremental is None:
        raise InputError(f"{protocol} keeps no account state: its blocks are stored whole")
    return incremental
