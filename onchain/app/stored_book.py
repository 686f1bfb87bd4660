"""Positions from the change layout's stored bytes, through the adapter's own exact math: what
the store's readers are handed (`onchain.store.queries.account_history(rebuild=...)`,
`onchain.store.api_queries.tier_series(rebuild=...)`), since the store never decodes a
protocol's state itself."""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

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
    read gives it (the latest view's rows whose details are older than their block), through
    `BOOKS`: the same page (a small book) or the same whole book read again within a block
    rebuilds nothing."""
    return _through_books(protocol, book, flip_prices=True)


def rebuild_book_without_prices(protocol: str, book: StoredBook) -> list[Position]:
    """`rebuild_book` for readers that show no asset's liquidation price (stress and targets
    price their own scenarios; the dashboard's tables show none): every field but those, which
    may be left None (their search is most of an Aave position's cost)."""
    return _through_books(protocol, book, flip_prices=False)


def _through_books(protocol: str, book: StoredBook, *, flip_prices: bool) -> list[Position]:
    """`BOOKS`' answer: a book of more than `ACCOUNTS` accounts kept whole, a page by account."""
    incremental = _incremental(protocol)
    if len(book.accounts) > BookCache.ACCOUNTS:
        return BOOKS.whole(protocol, book, incremental, flip_prices=flip_prices)
    return BOOKS.positions(protocol, book, incremental, flip_prices=flip_prices)


class BookCache:
    """Rebuilt positions by what they are a function of: the protocol, the market state's
    bytes, the block, and each account's state bytes (so no entry can stand for other stored
    states: a new block, a reorg or an account's new state is another key). The `BOOKS` market
    states read last are kept, each with the decoded market state and at most `ACCOUNTS`
    accounts' positions. The Positions handed out are shared: readers copy what they keep."""

    # a book per market and block: the pages of up to 16 markets (the newest blocks'), each
    # read again when its block lands (`onchain.api.ahead`); most pages hold tens of accounts
    BOOKS = 16
    ACCOUNTS = 2048  # ~3 KB an Aave Position: ~6 MB a book at most
    # books of more accounts kept whole, the last read (~2.8 KB an Aave position: ~85 MB at
    # 30,000 accounts, what one read of every position holds anyway while it is served)
    WHOLE = 1

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._books: OrderedDict[tuple[str, bytes, BlockRef], _CachedBook] = OrderedDict()
        self._whole: OrderedDict[tuple[str, bytes, BlockRef], _WholeBook] = OrderedDict()
        # the last whole book's accounts' decoded states by protocol and bytes: a block moves
        # prices and indexes, seldom an account's state, so the next block's book (a whole one
        # or a page of it) decodes only the states that changed (~1 KB an Aave state)
        self._decoded: dict[tuple[str, bytes], list[Any]] = {}
        # and the pages' (small books'), the last `ACCOUNTS` decoded
        self._page_states: OrderedDict[tuple[str, bytes], list[Any]] = OrderedDict()

    def clear(self) -> None:
        """Every entry dropped (a reader timed cold)."""
        with self._lock:
            self._books.clear()
            self._whole.clear()
            self._decoded = {}
            self._page_states.clear()

    def whole(
        self,
        protocol: str,
        book: StoredBook,
        incremental: IncrementalAdapter,
        *,
        flip_prices: bool = True,
    ) -> list[Position]:
        """`rebuild_positions(book, incremental, flip_prices=...)` for a book of more than
        `ACCOUNTS` accounts (every position of a block): the last `WHOLE` such books kept
        whole, each answering only for the same key and the very same accounts' states (each
        account's bytes); one rebuilt with the liquidation prices also answers without."""
        key = (protocol, book.market_state, book.block)
        with self._lock:
            kept = self._whole.get(key)
            if kept is not None:
                self._whole.move_to_end(key)
            decoded = self._decoded
        if (
            kept is not None
            and (kept.flip_prices or not flip_prices)
            and kept.accounts == book.accounts
        ):
            return list(kept.positions)
        states: dict[tuple[str, bytes], list[Any]] = {}
        every: list[Any] = []  # in the book's account order (two accounts' bytes may agree)
        for blob in book.accounts.values():
            known = decoded.get((protocol, blob))
            if known is None:
                known = incremental.decode_account_states(blob)
            states[(protocol, blob)] = known
            every += known
        got = incremental.positions_from_states(
            incremental.decode_market_state(book.market_state),
            every,
            book.block,
            flip_prices=flip_prices,
        )
        with self._lock:
            self._decoded = states
            if self.WHOLE > 0:
                self._whole[key] = _WholeBook(dict(book.accounts), got, flip_prices)
                self._whole.move_to_end(key)
                while len(self._whole) > self.WHOLE:
                    self._whole.popitem(last=False)
        return list(got)

    def positions(
        self,
        protocol: str,
        book: StoredBook,
        incremental: IncrementalAdapter,
        *,
        flip_prices: bool = True,
    ) -> list[Position]:
        """`rebuild_positions(book, incremental, flip_prices=...)`, the accounts rebuilt before
        taken from here (the others rebuilt together, as one book), in the book's account
        order; an account rebuilt with the liquidation prices also answers without."""
        key = (protocol, book.market_state, book.block)
        with self._lock:
            cached = self._books.get(key)
            if cached is not None:
                self._books.move_to_end(key)
        if cached is None:
            cached = _CachedBook(incremental.decode_market_state(book.market_state))
            with self._lock:
                self._books[key] = cached
                while len(self._books) > self.BOOKS:
                    self._books.popitem(last=False)
        known = cached.accounts
        plain = cached.unpriced if not flip_prices else {}
        missing = [
            (a, blob)
            for a, blob in book.accounts.items()
            if (a, blob) not in known and (a, blob) not in plain
        ]
        built: dict[str, list[Position]] = {a: [] for a, _blob in missing}
        if missing:
            states = [s for _a, blob in missing for s in self._states(protocol, blob, incremental)]
            got = incremental.positions_from_states(
                cached.market_state, states, book.block, flip_prices=flip_prices
            )
            if any(p.account not in built for p in got):  # not the book's addresses: no cache
                return rebuild_positions(book, incremental, flip_prices=flip_prices)
            for p in got:
                built[p.account].append(p)
            kept = known if flip_prices else cached.unpriced
            with self._lock:
                room = self.ACCOUNTS - len(known) - len(cached.unpriced)
                for a, blob in missing[: max(0, room)]:
                    kept[(a, blob)] = built[a]
            if len(missing) == len(book.accounts):  # nothing was kept: the adapter's order
                return got
        return [
            p
            for a, blob in book.accounts.items()
            for p in (
                built[a]
                if a in built
                else known[(a, blob)]
                if (a, blob) in known
                else plain[(a, blob)]
            )
        ]

    def _states(self, protocol: str, blob: bytes, incremental: IncrementalAdapter) -> list[Any]:
        """An account's decoded states, from those kept (the last whole book's, the pages'
        last ones) or decoded now and kept for the pages."""
        key = (protocol, blob)
        with self._lock:
            known = self._decoded.get(key)
            if known is None:
                known = self._page_states.get(key)
                if known is not None:
                    self._page_states.move_to_end(key)
        if known is not None:
            return known
        known = incremental.decode_account_states(blob)
        with self._lock:
            self._page_states[key] = known
            while len(self._page_states) > self.ACCOUNTS:
                self._page_states.popitem(last=False)
        return known


@dataclass(frozen=True)
class _WholeBook:
    accounts: dict[str, bytes]
    positions: list[Position]
    flip_prices: bool


@dataclass
class _CachedBook:
    market_state: Any
    accounts: dict[tuple[str, bytes], list[Position]] = field(default_factory=dict)
    # rebuilt without the liquidation prices (readers that show none)
    unpriced: dict[tuple[str, bytes], list[Position]] = field(default_factory=dict)


BOOKS = BookCache()


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
