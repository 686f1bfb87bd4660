"""Two risk books compared whole: columns, rows and every array, to the bit."""

from __future__ import annotations

import numpy as np

from onchain.risk.book import Book

BOOK_ARRAYS = (
    "collateral",
    "debt",
    "liquidation_threshold",
    "liquidation_bonus",
    "close_factor_rule",
    "price_base",
    "is_stable",
    "protocol_fee",
)


def assert_same_book(ours: Book, theirs: Book) -> None:
    assert ours.assets == theirs.assets
    assert ours.symbols == theirs.symbols
    assert ours.accounts == theirs.accounts
    for name in BOOK_ARRAYS:
        np.testing.assert_array_equal(getattr(ours, name), getattr(theirs, name), err_msg=name)
