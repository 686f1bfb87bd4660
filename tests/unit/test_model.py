"""The typed model: what a position's stored details give back, and the Aave protocol fee in a book."""

from __future__ import annotations

import numpy as np

from onchain.model import (
    AssetPosition,
    CloseFactorRule,
    Position,
    RiskTerms,
    fields_from_details,
)
from onchain.risk.book import book_from_positions
from onchain.rpc.client import BlockRef

WETH = "0x00000000000000000000000000000000000000e1"
USDC = "0x00000000000000000000000000000000000000c1"


def _position(**typed: object) -> Position:
    return Position(
        protocol="p",
        market="0xm",
        account="0xa",
        block=BlockRef(1, "0x01", 0),
        health_factor=10**18,
        liquidatable=False,
        total_collateral_base=3000,
        total_debt_base=2000,
        available_borrows_base=0,
        liquidation_threshold_bps=8000,
        ltv_bps=7500,
        base_currency_decimals=0,
        assets=(
            AssetPosition(WETH, "WETH", 18, 3000, 10**18, 0, 3000, 0, True, 8000),
            AssetPosition(USDC, "USDC", 6, 1, 0, 2000 * 10**6, 0, 2000, False, 0),
        ),
        **typed,  # type: ignore[arg-type]
    )


def test_stored_details_give_back_the_typed_fields() -> None:
    details = {
        "liquidation_bonus": {WETH: 0.05},
        "liquidation_protocol_fee": {WETH: 0.1},
        "close_factor_rule": "HALF_OF_POSITION_ABOVE_HF_0_95",
        "version": "3.6.0",
        "emode_category": 0,
    }
    typed = fields_from_details(details)
    assert typed["terms"] == RiskTerms(
        {WETH: 0.05}, CloseFactorRule.HALF_OF_POSITION_ABOVE_HF_0_95, {WETH: 0.1}
    )
    assert typed["version"] == "3.6.0" and "base_currency" not in typed
    morpho = fields_from_details(
        {"liquidation_bonus": {WETH: 0.04}, "close_factor_rule": "FULL", "base_currency": "USDC"}
    )
    assert morpho["terms"].close_factor_rule is CloseFactorRule.FULL
    assert morpho["base_currency"] == "USDC"
    assert fields_from_details({"close_factor_rule": "NO_SUCH"}) == {}


def test_the_protocol_fee_an_adapter_publishes_reaches_the_book() -> None:
    terms = RiskTerms({WETH: 0.05}, CloseFactorRule.HALF_ABOVE_HF_0_95, {WETH: 0.1})
    book = book_from_positions([_position(terms=terms)])
    np.testing.assert_allclose(book.protocol_fee, [0.1, 0.0])
    assert book.liquidation_bonus[0, 0] == 0.05
    # config wins over what the adapter published; no terms: no fee
    np.testing.assert_allclose(
        book_from_positions(
            [_position(terms=terms)], protocol_fee_by_asset={"WETH": 0.2}
        ).protocol_fee,
        [0.2, 0.0],
    )
    np.testing.assert_allclose(book_from_positions([_position()]).protocol_fee, [0.0, 0.0])
