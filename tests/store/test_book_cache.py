"""The rebuilt positions' cache (`onchain.app.stored_book.BookCache`) behind the API's pages over
the change layout: a page read again within a block rebuilds nothing, and nothing it keeps is
served for other stored states: a new block (its market state, even the same bytes at another
block), an account's new state, or another account. Every answer equals the uncached rebuild,
in the same order."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from onchain.app.stored_book import BookCache
from onchain.protocols.base import Position
from onchain.rpc.client import BlockRef
from onchain.store.changes import StoredBook, rebuild_positions
from tests.helpers.store_rows import account, block, position


@dataclass
class _Adapter:
    """An incremental adapter whose positions are a function of the market state's bytes, the
    block and each account state's bytes (a state names its account and a debt); it counts the
    positions it builds."""

    built: int = 0
    decoded: int = 0

    def decode_market_state(self, data: bytes) -> int:
        return int(data.decode().split(":")[1])  # "price:<n>"

    def decode_account_states(self, data: bytes) -> list[tuple[int, int]]:
        self.decoded += 1
        i, debt = data.decode().split(":")
        return [(int(i), int(debt))]

    def positions_from_states(
        self, market_state: int, states: list[Any], blk: BlockRef, *, flip_prices: bool = True
    ) -> list[Position]:
        self.built += len(states)
        extra: dict[str, Any] = {"price": market_state}
        if not flip_prices:  # (a real adapter leaves the liquidation prices None)
            extra["unpriced"] = True
        return [
            replace(position(i, blk, 10**18 * market_state // debt), extra=extra)
            for i, debt in states
        ]


def _book(n: int, price: int, debts: dict[int, int], tag: str = "a") -> StoredBook:
    return StoredBook(
        block(n, tag),
        f"price:{price}".encode(),
        {account(i): f"{i}:{d}".encode() for i, d in debts.items()},
        {},
    )


def _check(cache: BookCache, adapter: _Adapter, book: StoredBook) -> list[Position]:
    got = cache.positions("aave-v3", book, adapter)  # type: ignore[arg-type]
    assert got == rebuild_positions(book, _Adapter())  # type: ignore[arg-type]
    return got


def test_a_page_read_again_rebuilds_nothing_and_a_new_block_rebuilds_it() -> None:
    cache, adapter = BookCache(), _Adapter()
    cache.BOOKS = 16  # none dropped here
    page = _book(10, 3000, {1: 5, 2: 7, 3: 9})
    _check(cache, adapter, page)
    assert adapter.built == 3
    _check(cache, adapter, page)
    _check(cache, adapter, _book(10, 3000, {3: 9, 1: 5}))  # fewer rows, in another order
    assert adapter.built == 3
    # rows kept and rows not: only these are built, the answer in the book's order
    _check(cache, adapter, _book(10, 3000, {4: 11, 1: 5, 5: 13}))
    assert adapter.built == 5

    # the next block: a new market state, the accounts' states unchanged
    after = _check(cache, adapter, _book(11, 2000, {1: 5, 2: 7, 3: 9}))
    assert adapter.built == 8
    assert [p.health_factor for p in after] == [10**18 * 2000 // d for d in (5, 7, 9)]
    assert {p.block.number for p in after} == {11}
    # the block before still kept answers as it did
    again = _check(cache, adapter, _book(10, 3000, {1: 5, 2: 7, 3: 9}))
    assert adapter.built == 8
    assert [p.extra for p in again] == [{"price": 3000}] * 3

    # the same market state's bytes at another block, or the same block number replaced (a
    # reorg): the positions name their block
    _check(cache, adapter, _book(12, 2000, {1: 5}))
    _check(cache, adapter, _book(11, 2000, {1: 5}, tag="c"))
    assert adapter.built == 10

    # the same block with another market state (the block written again)
    other = _check(cache, adapter, _book(11, 2500, {1: 5}))
    assert adapter.built == 11
    assert other[0].extra == {"price": 2500}

    # an account's new state at the same block (written again)
    moved = _check(cache, adapter, _book(11, 2000, {1: 6, 2: 7}))
    assert adapter.built == 12
    assert moved[0].health_factor == 10**18 * 2000 // 6


def test_it_keeps_a_bounded_number_of_books_and_accounts() -> None:
    cache, adapter = BookCache(), _Adapter()
    cache.ACCOUNTS = 2
    _check(cache, adapter, _book(1, 100, {1: 5, 2: 7, 3: 9}))
    _check(cache, adapter, _book(1, 100, {1: 5, 2: 7, 3: 9}))
    assert adapter.built == 3 + 1  # the third account was not kept
    for n in range(2, 2 + BookCache.BOOKS):
        _check(cache, adapter, _book(n, 100 + n, {1: 5}))
    assert adapter.built == 4 + BookCache.BOOKS
    _check(cache, adapter, _book(1, 100, {1: 5}))  # the oldest book was dropped
    assert adapter.built == 5 + BookCache.BOOKS
    cache.clear()
    _check(cache, adapter, _book(1, 100, {1: 5}))
    assert adapter.built == 6 + BookCache.BOOKS


def test_a_whole_book_read_again_rebuilds_nothing_and_only_the_last_is_kept() -> None:
    """Books of more than `ACCOUNTS` accounts (every position) are kept whole, the last
    `WHOLE`: read again with the same states they rebuild nothing; an account's other state, a
    missing account, another block or market state rebuild the book."""
    cache, adapter = BookCache(), _Adapter()
    every = _book(1, 100, {i: 5 + i for i in range(6)})

    def whole(book: StoredBook) -> list[Position]:
        got = cache.whole("aave-v3", book, adapter)  # type: ignore[arg-type]
        assert got == rebuild_positions(book, _Adapter())  # type: ignore[arg-type]
        return got

    first = whole(every)
    assert adapter.built == 6
    first.clear()  # a caller's list is its own, kept or not
    whole(every).clear()
    assert whole(every) and adapter.built == 6
    whole(_book(1, 100, {**{i: 5 + i for i in range(6)}, 3: 99}))  # one account's new state
    assert adapter.built == 12
    whole(_book(1, 100, {i: 5 + i for i in range(5)}))  # one account fewer
    assert adapter.built == 17
    whole(_book(1, 101, {i: 5 + i for i in range(5)}))  # another market state
    whole(_book(2, 101, {i: 5 + i for i in range(5)}))  # another block
    assert adapter.built == 27
    whole(_book(1, 101, {i: 5 + i for i in range(5)}))  # dropped: only the last is kept
    assert adapter.built == 32
    cache.clear()
    whole(_book(1, 101, {i: 5 + i for i in range(5)}))
    assert adapter.built == 37


def test_a_whole_book_without_liquidation_prices_and_the_next_blocks_decoding() -> None:
    """A whole book rebuilt without the liquidation prices (stress, targets) is kept for such
    reads only; one rebuilt with them answers both. The next block's book, whole or a page,
    decodes only the account states that changed since the last whole book."""
    cache, adapter = BookCache(), _Adapter()
    debts = {i: 5 + i for i in range(6)}
    every = _book(1, 100, debts)

    def whole(book: StoredBook, flip_prices: bool = True, *, like: bool | None = None) -> None:
        got = cache.whole("aave-v3", book, adapter, flip_prices=flip_prices)  # type: ignore[arg-type]
        want = flip_prices if like is None else like
        assert got == rebuild_positions(book, _Adapter(), flip_prices=want)  # type: ignore[arg-type]

    whole(every, flip_prices=False)
    whole(every, flip_prices=False)
    assert (adapter.built, adapter.decoded) == (6, 6)
    whole(every)  # with the prices: built again, from the states decoded before
    assert (adapter.built, adapter.decoded) == (12, 6)
    whole(every, flip_prices=False, like=True)  # answered by the book with the prices
    assert adapter.built == 12

    after = _book(2, 101, {**debts, 3: 99})  # the next block: one account's new state
    whole(after, flip_prices=False)
    assert (adapter.built, adapter.decoded) == (18, 7)
    _check(cache, adapter, _book(2, 101, {1: 6, 3: 99}))  # a page of it decodes nothing
    assert (adapter.built, adapter.decoded) == (20, 7)
    cache.clear()
    whole(after)
    assert (adapter.built, adapter.decoded) == (26, 13)


def test_a_pages_account_states_are_decoded_once_across_blocks() -> None:
    """A page's accounts whose states did not change are not decoded again at the next block;
    the pages keep the last `ACCOUNTS` decoded states."""
    cache, adapter = BookCache(), _Adapter()
    cache.ACCOUNTS = 3
    _check(cache, adapter, _book(1, 100, {1: 5, 2: 7}))
    assert adapter.decoded == 2
    _check(cache, adapter, _book(2, 101, {1: 5, 2: 8}))  # account 2's new state
    assert (adapter.built, adapter.decoded) == (4, 3)
    _check(cache, adapter, _book(3, 102, {4: 9}))  # a fourth state: the least used goes
    _check(cache, adapter, _book(4, 103, {1: 5, 2: 8, 4: 9}))
    assert (adapter.built, adapter.decoded) == (8, 4)
    _check(cache, adapter, _book(5, 104, {2: 7}))  # the one that went: decoded again
    assert adapter.decoded == 5


def test_a_page_without_liquidation_prices_is_kept_apart() -> None:
    """A page rebuilt without the liquidation prices (the dashboard's tables) answers only such
    reads; an account rebuilt with them answers both."""
    cache, adapter = BookCache(), _Adapter()

    def page(book: StoredBook, flip_prices: bool, like: bool | None = None) -> None:
        got = cache.positions("aave-v3", book, adapter, flip_prices=flip_prices)  # type: ignore[arg-type]
        want = flip_prices if like is None else like
        assert got == rebuild_positions(book, _Adapter(), flip_prices=want)  # type: ignore[arg-type]

    page(_book(1, 100, {1: 5, 2: 7}), False)
    page(_book(1, 100, {1: 5, 2: 7}), False)
    assert adapter.built == 2
    page(_book(1, 100, {1: 5, 2: 7}), True)  # with the prices: built again
    assert adapter.built == 4
    got = cache.positions("aave-v3", _book(1, 100, {2: 7, 3: 9}), adapter, flip_prices=False)  # type: ignore[arg-type]
    assert adapter.built == 5  # account 2 taken as rebuilt with the prices, 3 built without
    assert [p.extra.get("unpriced", False) for p in got] == [False, True]
