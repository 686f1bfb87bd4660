"""Book, health and distance: the closed forms land exactly on HF = 1 and the integer flip is
one oracle unit wide."""

from __future__ import annotations

import numpy as np
import pytest

from onchain.model import AssetPosition, Position, RiskTerms
from onchain.protocols.aave_v3 import math as aave
from onchain.risk.book import CloseFactorRule, book_from_positions, make_book
from onchain.risk.distance import exact_flip_price, liquidation_price, uniform_shock
from onchain.risk.health import health_factor, liquidatable_mask
from onchain.rpc.client import BlockRef

WETH, WBTC, USDC = "0xC02a", "0x2260", "0xA0b8"
PRICES = np.array([3000.0, 60000.0, 1.0])


def _asset(
    addr: str, sym: str, dec: int, price: int, coll: int, debt: int, lt: int
) -> AssetPosition:
    unit = 10**dec
    return AssetPosition(
        asset=addr,
        symbol=sym,
        decimals=dec,
        price_base=price,
        collateral_raw=coll,
        debt_raw=debt,
        collateral_base=coll * price // unit,
        debt_base=debt * price // unit,
        collateral_enabled=coll > 0,
        liquidation_threshold_bps=lt,
    )


def _position(
    account: str,
    assets: tuple[AssetPosition, ...],
    liquidation_bonus: dict[str, float] | None = None,
    close_factor_rule: CloseFactorRule | None = None,
    protocol_fee: dict[str, float] | None = None,
) -> Position:
    terms = None
    if liquidation_bonus is not None or close_factor_rule is not None or protocol_fee is not None:
        rule = close_factor_rule or CloseFactorRule.HALF_ABOVE_HF_0_95
        terms = RiskTerms(liquidation_bonus or {}, rule, protocol_fee or {})
    return Position(
        protocol="proto-x",
        market="0xmarket",
        account=account,
        block=BlockRef(1, "0x01", 0),
        health_factor=None,
        liquidatable=False,
        total_collateral_base=sum(a.collateral_base for a in assets),
        total_debt_base=sum(a.debt_base for a in assets),
        available_borrows_base=0,
        liquidation_threshold_bps=0,
        ltv_bps=0,
        base_currency_decimals=8,
        assets=assets,
        terms=terms,
    )


def mixed_book():
    """Rows: ETH/USDC, ETH+BTC/USDC, USDC/ETH (short ETH), ETH loop (ETH coll + ETH debt + USDC
    debt), no debt, debt without collateral."""
    c = np.array([[2.0, 0, 0], [1.0, 0.05, 0], [0, 0, 10_000], [3.0, 0, 0], [1.0, 0, 0], [0, 0, 0]])
    d = np.array([[0, 0, 3000], [0, 0, 4000], [2.0, 0, 0], [1.0, 0, 3000], [0, 0, 0], [0, 0, 100]])
    return make_book(
        c,
        d,
        [0.83, 0.78, 0.87],
        PRICES,
        is_stable=[False, False, True],
        symbols=("WETH", "WBTC", "USDC"),
    )


def test_book_from_positions_maps_assets_by_address_and_units() -> None:
    p1 = _position(
        "0xA",
        (
            _asset(WETH, "WETH", 18, 3000 * 10**8, 2 * 10**18, 0, 8300),
            _asset(USDC, "USDC", 6, 10**8, 0, 3000 * 10**6, 0),
        ),
        liquidation_bonus={WETH: 0.075},
        protocol_fee={WETH: 0.1},
    )
    p2 = _position(
        "0xB",
        (
            _asset(WBTC.lower(), "WBTC", 8, 60000 * 10**8, 10**7, 0, 7800),
            _asset(USDC, "USDC", 6, 10**8, 0, 10**9, 0),
        ),
        close_factor_rule=CloseFactorRule.FULL,
    )
    book = book_from_positions([p1, p2], bonus_by_asset={"WBTC": 0.1})
    assert book.assets == (WETH.lower(), USDC.lower(), WBTC.lower())
    assert book.symbols == ("WETH", "USDC", "WBTC")
    np.testing.assert_allclose(book.price_base, [3000.0, 1.0, 60000.0])
    np.testing.assert_allclose(book.collateral, [[2.0, 0, 0], [0, 0, 0.1]])
    np.testing.assert_allclose(book.debt, [[0, 3000.0, 0], [0, 1000.0, 0]])
    np.testing.assert_allclose(book.liquidation_threshold[0], [0.83, 0.0, 0.0])
    assert book.liquidation_bonus[0, 0] == 0.075  # from the adapter's terms
    np.testing.assert_allclose(book.protocol_fee, [0.1, 0.0, 0.0])  # published by p1's terms
    assert book.liquidation_bonus[1, 2] == 0.1  # from config, by symbol
    assert book.liquidation_bonus[1, 1] == 0.05  # default
    assert list(book.close_factor_rule) == [
        CloseFactorRule.HALF_ABOVE_HF_0_95,
        CloseFactorRule.FULL,
    ]
    assert list(book.is_stable) == [False, True, False]
    assert book.accounts == ("0xA", "0xB")
    np.testing.assert_allclose(
        health_factor(book), [2 * 3000 * 0.83 / 3000, 0.1 * 60000 * 0.78 / 1000]
    )


def test_book_from_positions_rejects_two_prices_for_one_asset() -> None:
    a = _position("0xA", (_asset(WETH, "WETH", 18, 3000 * 10**8, 10**18, 0, 8300),))
    b = _position("0xB", (_asset(WETH, "WETH", 18, 3001 * 10**8, 10**18, 0, 8300),))
    with pytest.raises(ValueError, match="two prices"):
        book_from_positions([a, b])


def test_health_conventions() -> None:
    book = mixed_book()
    hf = health_factor(book)
    assert hf[0] == pytest.approx(2 * 3000 * 0.83 / 3000)
    assert hf[4] == np.inf  # no debt
    assert hf[5] == 0.0  # debt, no collateral
    assert list(liquidatable_mask(book)) == [False, False, False, False, False, True]
    # several scenarios at once: (s, m) prices -> (s, n)
    scen = np.array([PRICES, PRICES * [0.5, 0.5, 1.0]])
    both = health_factor(book, scen)
    assert both.shape == (2, 6)
    np.testing.assert_allclose(both[0], hf)


def test_liquidation_price_round_trip_gives_hf_one() -> None:
    book = mixed_book()
    lp = liquidation_price(book)
    for r in range(book.n_positions):
        for i in range(book.n_assets):
            if lp.side[r, i] == 0:
                assert np.isnan(lp.price_base[r, i])
                continue
            p = PRICES.copy()
            p[i] = lp.price_base[r, i]
            assert health_factor(book.subset([r]), p)[0] == pytest.approx(1.0, rel=1e-12)
    # collateral falls, debt rises, the loop asset moves with its NET exposure
    assert lp.side[0, 0] == -1 and lp.price_base[0, 0] == pytest.approx(3000 / (2 * 0.83))
    assert lp.side[2, 0] == 1 and lp.price_base[2, 0] == pytest.approx(10_000 * 0.87 / 2.0)
    assert lp.side[0, 2] == 1  # the stable debt "rising" also liquidates
    net = 3.0 * 0.83 - 1.0
    assert lp.price_base[3, 0] == pytest.approx(3000 / net)
    assert np.all(lp.side[4] == 0)  # no debt: never
    assert np.all(np.isnan(lp.move(PRICES)[4]))


def test_uniform_drop_round_trip_and_conventions() -> None:
    book = mixed_book()
    us = uniform_shock(book)
    for r in (0, 1, 3):
        drop = us.drop_fraction[r]
        assert 0 < drop < 1
        p = PRICES * np.where(book.is_stable, 1.0, 1.0 - drop)
        assert health_factor(book.subset([r]), p)[0] == pytest.approx(1.0, rel=1e-12)
        assert us.rise_fraction[r] == np.inf
    # short volatile: a drop never liquidates, a rise does
    assert us.drop_fraction[2] == np.inf
    rise = us.rise_fraction[2]
    p = PRICES * np.where(book.is_stable, 1.0, 1.0 + rise)
    assert health_factor(book.subset([2]), p)[0] == pytest.approx(1.0, rel=1e-12)
    assert us.drop_fraction[4] == np.inf and us.rise_fraction[4] == np.inf  # no debt
    assert us.drop_fraction[5] == 0.0  # liquidatable now
    # stable collateral covering stable debt: no volatile drop liquidates
    covered = make_book(
        [[1.0, 0, 2000]], [[0, 0, 1000]], [0.8, 0.8, 0.8], PRICES, is_stable=[False, False, True]
    )
    assert uniform_shock(covered).drop_fraction[0] == np.inf


def test_exact_flip_price_is_one_oracle_unit_wide() -> None:
    """With Aave's integer HF (percentMul, wadDiv), the float root is refined to the exact flip."""
    coll_units, debt_base = 2 * 10**18, 4_980_000_000_00  # 2 WETH, 4,980 USD (8 decimals)

    def liquidatable_at(price: int) -> bool:
        coll_base = coll_units * price // 10**18
        hf = aave.calculate_health_factor(coll_base, debt_base, 8300)
        return aave.is_liquidatable(hf)

    guess = debt_base / (2 * 0.83)
    flip = exact_flip_price(liquidatable_at, guess, liquidatable_below=True)
    assert flip is not None
    assert liquidatable_at(flip) and not liquidatable_at(flip + 1)
    assert abs(flip - guess) < 10

    # debt asset rising: liquidatable above the flip
    def debt_liquidatable_at(price: int) -> bool:
        debt = 10**6 * price // 10**6  # 1 unit of a 6-decimal asset
        hf = aave.calculate_health_factor(1000 * 10**8, debt, 8000)
        return aave.is_liquidatable(hf)

    up = exact_flip_price(debt_liquidatable_at, 800 * 10**8 * 1.001, liquidatable_below=False)
    assert up is not None and debt_liquidatable_at(up) and not debt_liquidatable_at(up - 1)
    assert exact_flip_price(lambda p: False, 100.0) is None


def test_per_market_columns_keep_two_oracles_apart() -> None:
    """Two markets pricing WETH differently (Morpho-style) fit one book with per-market columns."""
    a = _position("0xA", (_asset(WETH, "WETH", 18, 3000 * 10**8, 10**18, 0, 8600),))
    b = _position("0xB", (_asset(WETH, "WETH", 18, 3001 * 10**8, 10**18, 0, 9150),))
    b = Position(**{**b.__dict__, "market": "0xother"})
    book = book_from_positions([a, b], per_market_columns=True, stable_assets=["usdc"])
    assert book.assets == ("0xmarket:" + WETH.lower(), "0xother:" + WETH.lower())
    assert book.symbols == ("WETH", "WETH")
    np.testing.assert_allclose(book.price_base, [3000.0, 3001.0])
    assert not book.is_stable.any()
