"""Two risk books compared whole: columns, rows and every array, to the bit; the devnet's
three markets the risk tests assess."""

from __future__ import annotations

import numpy as np

from onchain.devnet.build import DevnetInfo
from onchain.protocols.base import MarketRef
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


def risk_markets(devnet: DevnetInfo) -> dict[str, MarketRef]:
    """The seeded devnet's Aave 3.0.2, Aave 3.6 and Morpho Blue markets, by name."""
    assert devnet.morpho is not None and devnet.aave36 is not None
    return {
        "aave-3.0.2": MarketRef("aave-v3", devnet.aave.addresses_provider),
        "aave-3.6": MarketRef("aave-v3", devnet.aave36.addresses_provider),
        "morpho": MarketRef("morpho-blue", devnet.morpho.morpho),
    }
