"""Governance on the devnet: point the Aave oracle at a new feed for an asset."""

from __future__ import annotations

from onchain.devnet.build import DevnetInfo
from onchain.devnet.chain import DEPLOYER, DevChain, calldata
from onchain.devnet.contracts_build import devnet_contract


def new_feed(chain: DevChain, info: DevnetInfo, symbol: str, usd: float) -> str:
    """Deploy a fresh feed answering `usd` (8 decimals) and make it the asset's oracle source:
    a feed with no past beyond this block."""
    feed = devnet_contract("DevnetPriceFeed")
    new = chain.deploy(DEPLOYER, feed.bytecode, ["int256", "uint8"], [round(usd * 10**8), 8])
    chain.send(
        DEPLOYER,
        info.aave.oracle,
        calldata("setAssetSources(address[],address[])", [info.aave.tokens[symbol]], [new]),
    )
    return new
