"""Real Uniswap V3 on the devnet (from `@uniswap/v3-core` and `@uniswap/v3-periphery`): factory,
position manager, router, QuoterV2, and one pool per pair with liquidity around the oracle
price. The pools are the reference market price the oracle lags behind, and the depth seized
collateral is sold into."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

from eth_utils import to_checksum_address

from onchain.devnet.aave import DEFAULT_ASSETS, AaveDeployment
from onchain.devnet.anvil import NODE_MODULES
from onchain.devnet.artifacts import linked_bytecode, load_artifact
from onchain.devnet.chain import DEPLOYER, DevChain, calldata

UNISWAP = NODE_MODULES / "@uniswap"
CORE = UNISWAP / "v3-core" / "artifacts" / "contracts"
PERIPHERY = UNISWAP / "v3-periphery" / "artifacts" / "contracts"
UINT256_MAX = 2**256 - 1
DEADLINE = 2**40
TICK_SPACING = {100: 1, 500: 10, 3000: 60, 10000: 200}

# (asset, quote, fee, USD of liquidity in a +-12% band, USD in a wide band)
POOLS: tuple[tuple[str, str, int, float, float], ...] = (
    ("WETH", "USDC", 500, 8_000_000, 4_000_000),
    ("WBTC", "USDC", 3000, 6_000_000, 3_000_000),
    ("DAI", "USDC", 100, 4_000_000, 1_000_000),
    ("WBTC", "WETH", 3000, 2_000_000, 1_000_000),
)


@dataclass
class UniswapDeployment:
    factory: str
    position_manager: str
    router: str
    quoter: str
    pools: dict[str, dict[str, Any]] = field(default_factory=dict)  # "WETH/USDC" -> pool info

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def sqrt_price_x96(price_token1_per_token0_raw: float) -> int:
    return int(math.sqrt(price_token1_per_token0_raw) * 2**96)


def tick_at(price_raw: float, spacing: int) -> int:
    tick = math.floor(math.log(price_raw) / math.log(1.0001))
    return tick - tick % spacing


def deploy_uniswap(
    chain: DevChain, market: AaveDeployment, liquidity_provider: str
) -> UniswapDeployment:
    """Deploy the real contracts and seed each pool at the devnet's oracle prices."""
    factory = chain.deploy(
        DEPLOYER,
        linked_bytecode(load_artifact("UniswapV3Factory.sol/UniswapV3Factory.json", CORE), {}),
    )
    chain.send(DEPLOYER, factory, calldata("enableFeeAmount(uint24,int24)", 100, 1), gas=200_000)
    weth = market.tokens["WETH"]
    npm = chain.deploy(
        DEPLOYER,
        linked_bytecode(
            load_artifact(
                "NonfungiblePositionManager.sol/NonfungiblePositionManager.json", PERIPHERY
            ),
            {},
        ),
        ["address", "address", "address"],
        [factory, weth, DEPLOYER],  # the descriptor only serves tokenURI
    )
    router = chain.deploy(
        DEPLOYER,
        linked_bytecode(load_artifact("SwapRouter.sol/SwapRouter.json", PERIPHERY), {}),
        ["address", "address"],
        [factory, weth],
    )
    quoter = chain.deploy(
        DEPLOYER,
        linked_bytecode(load_artifact("lens/QuoterV2.sol/QuoterV2.json", PERIPHERY), {}),
        ["address", "address"],
        [factory, weth],
    )
    deployment = UniswapDeployment(factory, npm, router, quoter)
    specs = {a.symbol: a for a in DEFAULT_ASSETS}
    lp = liquidity_provider
    chain.set_balance([lp], 10**24)
    for token in market.tokens.values():
        chain.send(lp, token, calldata("approve(address,uint256)", npm, UINT256_MAX), gas=100_000)
    for base, quote, fee, band_usd, wide_usd in POOLS:
        a, b = market.tokens[base], market.tokens[quote]
        token0, token1 = sorted([a, b], key=lambda x: int(x, 16))
        s0 = specs[base] if token0 == a else specs[quote]
        s1 = specs[quote] if token0 == a else specs[base]
        price_raw = (
            s0.price_usd / s1.price_usd * 10 ** (s1.decimals - s0.decimals)
        )  # token1 per token0
        chain.send(
            lp,
            npm,
            calldata(
                "createAndInitializePoolIfNecessary(address,address,uint24,uint160)",
                token0,
                token1,
                fee,
                sqrt_price_x96(price_raw),
            ),
            gas=6_000_000,
        )
        spacing = TICK_SPACING[fee]
        for usd, width in ((band_usd, 0.12), (wide_usd, 0.9)):
            lower = tick_at(price_raw * (1 - width), spacing)
            upper = tick_at(price_raw * (1 + width), spacing) + spacing
            amount0 = int(usd / s0.price_usd * 10**s0.decimals)
            amount1 = int(usd / s1.price_usd * 10**s1.decimals)
            chain.send(lp, token0, calldata("mint(uint256)", amount0), gas=200_000)
            chain.send(lp, token1, calldata("mint(uint256)", amount1), gas=200_000)
            params = (token0, token1, fee, lower, upper, amount0, amount1, 0, 0, lp, DEADLINE)
            chain.send(
                lp,
                npm,
                calldata(
                    "mint((address,address,uint24,int24,int24,uint256,uint256,uint256,uint256,address,uint256))",
                    params,
                ),
                gas=6_000_000,
            )
        pool = to_checksum_address(
            chain.view(factory, "getPool(address,address,uint24)", ["address"], token0, token1, fee)
        )
        deployment.pools[f"{base}/{quote}"] = {
            "pool": pool,
            "fee": fee,
            "token0": token0,
            "token1": token1,
        }
    return deployment
