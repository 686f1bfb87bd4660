"""Move a running devnet: set oracle prices, mine blocks, advance time."""

from __future__ import annotations

from collections.abc import Mapping

from onchain.devnet.aave import AaveDeployment
from onchain.devnet.chain import DEPLOYER, DevChain, calldata
from onchain.errors import InputError


def set_prices(url: str, market: AaveDeployment, prices_usd: Mapping[str, float]) -> int:
    """Publish new feed answers (8 decimals) for the given symbols in ONE block; returns it."""
    chain = DevChain(url)
    unknown = set(prices_usd) - set(market.price_feeds)
    if unknown:
        raise InputError(f"unknown devnet asset(s): {', '.join(sorted(unknown))}")
    txs = [
        (
            DEPLOYER,
            market.price_feeds[symbol],
            calldata("setAnswer(int256)", round(usd * 10**8)),
            200_000,
        )
        for symbol, usd in prices_usd.items()
    ]
    return _in_one_block(chain, txs)


def set_raw_price(
    url: str, market: AaveDeployment, symbol: str, answer: int, *, same_timestamp: bool = False
) -> int:
    """Set a feed's integer answer exactly (8 decimals), for one-unit-either-side tests. With
    `same_timestamp` the block keeps the head's timestamp, so no interest accrues in between."""
    chain = DevChain(url)
    if same_timestamp:
        head = chain.rpc("eth_getBlockByNumber", ["latest", False])
        chain.rpc("evm_setNextBlockTimestamp", [head["timestamp"]])
    return _in_one_block(
        chain,
        [(DEPLOYER, market.price_feeds[symbol], calldata("setAnswer(int256)", answer), 200_000)],
    )


def _in_one_block(chain: DevChain, txs: list[tuple[str, str, bytes, int]]) -> int:
    chain.set_automine(False)
    try:
        chain.send_many(txs)
        chain.mine()
    finally:
        chain.set_automine(True)
    return chain.block_number()


def mine(url: str, blocks: int = 1) -> int:
    chain = DevChain(url)
    chain.mine(blocks)
    return chain.block_number()
