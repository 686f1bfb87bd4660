"""A small typed position for unit tests of the model, the book and the verdicts: 1 WETH of
collateral at 3,000 against 2,000 USDC of debt, health factor 1 unless changed."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from onchain.model import AssetPosition, Position
from onchain.rpc.client import BlockRef

WETH = "0x00000000000000000000000000000000000000e1"
USDC = "0x00000000000000000000000000000000000000c1"


def weth_usdc_position(**changes: Any) -> Position:
    """The position, with any field replaced (`terms=...`, `health_factor=...`)."""
    base = Position(
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
    )
    return replace(base, **changes)
