"""One vocabulary: stablecoins and aliases from one list, numbers truncated the one way."""

from __future__ import annotations

import random

import numpy as np

from onchain.app.risk_context import underlying
from onchain.numbers import format_wad, format_wads, health_text, truncated
from onchain.risk.book import DEFAULT_STABLE_SYMBOLS, make_book
from onchain.risk.stress import SYMBOL_ALIASES, scenario_prices
from onchain.symbols import STABLE_SYMBOLS


def test_scan_and_stress_agree_on_which_assets_are_stable() -> None:
    assert DEFAULT_STABLE_SYMBOLS is STABLE_SYMBOLS
    for symbol in ("USDC.e", "USDT0", "USDbC", "sDAI", "crvUSD", "RLUSD", "usdc"):
        assert underlying(symbol) == "STABLE", symbol  # scan's volatility: a stablecoin's
    assert underlying("wstETH") == "ETH" and underlying("cbBTC") == "BTC"
    assert underlying("UNI") == "UNI"


def test_stress_moves_follow_the_same_aliases() -> None:
    book = make_book(
        np.array([[1.0, 0.0, 0.0]]),
        np.array([[0.0, 0.0, 1000.0]]),
        [0.8, 0.8, 0.9],
        [3000.0, 3000.0, 1.0],
        is_stable=[False, False, True],
        symbols=("WETH", "weETH", "USDT0"),
    )
    shocked = scenario_prices(book, {"ETH": 0.5})
    np.testing.assert_allclose(shocked, [1500.0, 1500.0, 1.0])
    assert SYMBOL_ALIASES["WEETH"] == "ETH"


def test_a_health_factor_is_truncated_never_rounded_up_across_one() -> None:
    assert health_text(999_995 * 10**12) == "0.9999"
    assert health_text(10**18) == "1.0000"
    assert health_text(None) == "no debt"
    assert format_wad(1_234_567_890_000_000_000, 4) == "1.2345"
    assert format_wad(2 * 10**18) == "2"
    assert truncated(0.999995) == "0.9999"
    assert truncated(0.29, 2) == "0.29"
    assert truncated(1.5) == "1.5000"
    assert truncated(float("inf")) == "inf"


def test_a_whole_book_of_health_factors_reads_as_format_wad_reads_each() -> None:
    rng = random.Random(4)
    values = [0, 1, 10**14 - 1, 10**14, 10**18, 10**18 + 10**14, 105 * 10**16, 2**256 - 1]
    values += [rng.randrange(10**22) for _ in range(5000)]
    values += [rng.randrange(10**5) * 10 ** rng.randrange(14, 20) for _ in range(5000)]
    assert format_wads(values) == [format_wad(v) for v in values]
