"""Shared by several test modules (moved out of test_risk_devnet.py)."""

from __future__ import annotations

from eth_abi import decode

from onchain.devnet.build import DevnetInfo
from onchain.devnet.chain import DevChain, calldata
from tests.helpers.aave_oracle import UINT256_MAX

TRADER = "0x000000000000000000000000000000000000dEaD"


def _swap_weth_for_usdc(devnet: DevnetInfo, amount_weth: int) -> None:
    chain = DevChain(devnet.rpc_url)
    weth, usdc = devnet.aave.tokens["WETH"], devnet.aave.tokens["USDC"]
    router = devnet.uniswap.router
    fee = devnet.uniswap.pools["WETH/USDC"]["fee"]
    chain.set_balance([TRADER], 10**22)
    chain.send(TRADER, weth, calldata("mint(uint256)", amount_weth), gas=200_000)
    chain.send(TRADER, weth, calldata("approve(address,uint256)", router, UINT256_MAX), gas=100_000)
    params = (weth, usdc, fee, TRADER, 2**40, amount_weth, 0, 0)
    chain.send(
        TRADER,
        router,
        calldata(
            "exactInputSingle((address,address,uint24,address,uint256,uint256,uint256,uint160))",
            params,
        ),
        gas=3_000_000,
    )


def _pool_weth_price_usd(devnet: DevnetInfo) -> float:
    chain = DevChain(devnet.rpc_url)
    info = devnet.uniswap.pools["WETH/USDC"]
    sqrt_price = decode(["uint160"], chain.call(info["pool"], calldata("slot0()"))[:32])[0]
    p01 = (sqrt_price / 2**96) ** 2  # token1 per token0, raw units
    weth_is_token0 = info["token0"].lower() == devnet.aave.tokens["WETH"].lower()
    raw = p01 if weth_is_token0 else 1 / p01
    return raw * 10 ** (18 - 6)  # USDC per WETH
