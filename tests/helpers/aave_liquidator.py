"""Shared by several test modules (moved out of test_aave_exactness.py)."""

from __future__ import annotations

from onchain.devnet.build import DevnetInfo
from onchain.devnet.chain import DevChain, calldata
from tests.helpers.aave_oracle import UINT256_MAX

LIQUIDATOR = "0x000000000000000000000000000000000000Beef"


def _fund_liquidator(chain: DevChain, info: DevnetInfo) -> None:
    chain.set_balance([LIQUIDATOR], 10**22)
    for symbol, token in info.aave.tokens.items():
        amount = 10**12 * 10 ** info.aave.decimals[symbol]
        chain.send(LIQUIDATOR, token, calldata("mint(uint256)", amount), gas=200_000)
        chain.send(
            LIQUIDATOR,
            token,
            calldata("approve(address,uint256)", info.aave.pool, UINT256_MAX),
            gas=100_000,
        )
