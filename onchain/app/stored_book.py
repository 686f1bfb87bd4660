"""Positions from the change layout's stored bytes, through the adapter's own exact math: what
the store's readers are handed (`onchain.store.queries.account_history(rebuild=...)`,
`onchain.store.api_queries.tier_series(rebuild=...)`), since the store never decodes a
protocol's state itself."""

from __future__ import annotations

from collections.abc import Sequence

from onchain.errors import InputError
from onchain.protocols.base import BookHealth, ExactHealth, IncrementalAdapter, Position
from onchain.protocols.registry import get_incremental
from onchain.rpc.client import BlockRef
from onchain.store.changes import StoredBook, rebuild_positions


def rebuild_account(
    protocol: str, account_state: bytes, at: Sequence[tuple[bytes, BlockRef]]
) -> list[list[Position]]:
    """One account's positions at each block of `at` (the market's stored state there, the
    block) from one stored state of the account, decoded once. For history points: the health
    factor and totals are exact, the per-asset liquidation prices left out (None), as they are
    most of an Aave position's cost and no point shows them."""
    incremental = _incremental(protocol)
    states = incremental.decode_account_states(account_state)
    return [
        incremental.positions_from_states(
            incremental.decode_market_state(market_state), states, block, flip_prices=False
        )
        for market_state, block in at
    ]


def rebuild_book(protocol: str, book: StoredBook) -> list[Position]:
    """A whole book at a block stored in the change layout, decoded once, every field as a live
    read gives it (the latest view's rows whose details are older than their block)."""
    return rebuild_positions(book, _incremental(protocol))


def rebuild_book_figures(protocol: str, book: StoredBook) -> BookHealth:
    """A whole book's exact figures at a block stored in the change layout (health factor,
    totals, liquidatable: row for row the positions `rebuild_book` gives), for readers that
    show no more (the API's tier series): over the whole book at once where the adapter
    computes them so (`ExactHealth`), else read off positions built without liquidation
    prices."""
    incremental = _incremental(protocol)
    if not isinstance(incremental, ExactHealth):
        return BookHealth.of(rebuild_positions(book, incremental, flip_prices=False))
    market_state = incremental.decode_market_state(book.market_state)
    states = [s for blob in book.accounts.values() for s in incremental.decode_account_states(blob)]
    rows = incremental.health_book(market_state, states)
    return incremental.exact_health(market_state, rows, book.block)


def _incremental(protocol: str) -> IncrementalAdapter:
    incremental = get_incremental(protocol)
    if incremental is None:
        raise InputError(f"{protocol} keeps no account state: its blocks are stored whole")
    return incremental
