"""Shared by several test modules (moved out of test_store.py)."""

from __future__ import annotations

from typing import Any

from onchain.protocols.base import AssetPosition, MarketSnapshot, Position, ReserveSnapshot
from onchain.rpc.client import BlockRef

WAD = 10**18
MARKET = "0x5FbDB2315678afecb367f032d93F642f64180aa3"
WETH = "0xC02aaA39b223FE8D0A0e5C4F27eAD9083C756Cc2"
USDC = "0xA0b86991c6218b36c1d19D4a2e9Eb0cE3606eB48"


def account(i: int) -> str:
    from eth_utils import to_checksum_address

    return to_checksum_address(f"0x{i + 1:040x}")


def block(number: int, tag: str = "a") -> BlockRef:
    return BlockRef(number, "0x" + f"{tag}{number:x}".rjust(64, "0"), 1_700_000_000 + 12 * number)


def position(
    i: int,
    blk: BlockRef,
    hf: int | None,
    *,
    market: str = MARKET,
    protocol: str = "aave-v3",
    collateral: int = 10**24,
    debt: int = 10**23,
    extra: dict[str, Any] | None = None,
) -> Position:
    assets = (
        AssetPosition(WETH, "WETH", 18, 3000 * 10**8, collateral, 0, collateral // 10**10, 0, True,
                      8250, 1234.5),
        AssetPosition(USDC, "USDC", 6, 10**8, 0, debt, 0, debt // 10**10, False, 0, None),
    )  # fmt: skip
    return Position(
        protocol=protocol,
        market=market,
        account=account(i),
        block=blk,
        health_factor=hf,
        liquidatable=hf is not None and hf < WAD,
        total_collateral_base=collateral // 10**10,
        total_debt_base=debt // 10**10 if hf is not None else 0,
        available_borrows_base=0,
        liquidation_threshold_bps=8250,
        ltv_bps=8000,
        base_currency_decimals=8,
        assets=assets,
        extra=extra if extra is not None else {"emode_category": 0},
    )


def market_snapshot() -> MarketSnapshot:
    return MarketSnapshot(
        version="3.0.2",
        base_currency_decimals=8,
        addresses={"pool": account(900)},
        reserves=(
            ReserveSnapshot(
                WETH,
                "WETH",
                18,
                3000 * 10**8,
                10**27,
                10**27 + 5,
                10**22,
                10**21,
                0.0909,
                {"ltv_bps": 8000},
            ),
        ),
    )
