"""Shared by several test modules (moved out of test_targets.py)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from onchain.app.risk_context import Reference
from onchain.app.targets import DexConfig, Target, TargetSettings
from onchain.devnet.build import DevnetInfo
from onchain.devnet.chain import DevChain, calldata
from onchain.devnet.uniswap import sqrt_price_x96
from tests.helpers.aave_oracle import UINT256_MAX

DEADLINE = 2**40
LIQUIDATOR = "0x000000000000000000000000000000000000Beef"
ARBITRAGEUR = "0x000000000000000000000000000000000000A4b1"
LP = "0x000000000000000000000000000000000000Ab1e"
BASE_FEE = 100 * 10**9  # a busy block: makes gas matter, so some targets lose money
PRICES = {"WETH": 2550.0, "WBTC": 52_000.0}
WETH_POOL_PRICE = 2510.0  # 1.6% below the oracle: deviation > 0.5% -> the next update
PARAMS = "(address,address,address,address,uint256)"
SWAP = "exactInputSingle((address,address,uint24,address,uint256,uint256,uint256,uint160))"


@dataclass(frozen=True)
class Scenario:
    info: DevnetInfo
    block: int
    settings: TargetSettings
    targets: list[Target]
    native_usd: float


def _view_balance(chain: DevChain, token: str, who: str) -> int:
    return int(chain.view(token, "balanceOf(address)", ["uint256"], who))


def _give(chain: DevChain, info: DevnetInfo, token: str, who: str, amount: int) -> None:
    """Aave's test tokens mint to the caller; Morpho's devnet tokens take setBalance."""
    if token in info.aave.tokens.values():
        chain.send(who, token, calldata("mint(uint256)", amount), gas=200_000)
    else:
        have = _view_balance(chain, token, who)
        chain.send(who, token, calldata("setBalance(address,uint256)", who, have + amount))


def _approve(chain: DevChain, token: str, who: str, spender: str) -> None:
    chain.send(who, token, calldata("approve(address,uint256)", spender, UINT256_MAX), gas=100_000)


def _pool_target_sqrt(token0: str, base: str, d0: int, d1: int, price_quote_per_base: float) -> int:
    """sqrtPriceX96 of a pool (token1 per token0, raw units) at a price of base in quote."""
    if token0.lower() == base.lower():
        return sqrt_price_x96(price_quote_per_base * 10 ** (d1 - d0))
    return sqrt_price_x96(1.0 / price_quote_per_base * 10 ** (d1 - d0))


def _move_pool(chain: DevChain, info: DevnetInfo, pair: str, price: float) -> None:
    """Arbitrage a devnet pool to `price` (quote per base) with one limit swap."""
    assert info.uniswap is not None
    pool = info.uniswap.pools[pair]
    base, quote = pair.split("/")
    tokens, decimals = info.aave.tokens, info.aave.decimals
    t0, t1 = pool["token0"], pool["token1"]
    d0 = decimals[base] if t0 == tokens[base] else decimals[quote]
    d1 = decimals[quote] if t0 == tokens[base] else decimals[base]
    target = _pool_target_sqrt(t0, tokens[base], d0, d1, price)
    current = int(chain.view(pool["pool"], "slot0()", ["uint160"]))
    token_in, token_out = (t0, t1) if target < current else (t1, t0)
    amount = 10**12 * 10 ** (d0 if token_in == t0 else d1)
    _give(chain, info, token_in, ARBITRAGEUR, amount)
    _approve(chain, token_in, ARBITRAGEUR, info.uniswap.router)
    params = (token_in, token_out, pool["fee"], ARBITRAGEUR, DEADLINE, amount, 0, target)
    chain.send(ARBITRAGEUR, info.uniswap.router, calldata(SWAP, params), gas=3_000_000)


def _settings(info: DevnetInfo) -> TargetSettings:
    assert info.uniswap is not None
    refs = tuple(
        Reference(
            symbol=s,
            pool=info.uniswap.pools[f"{s}/USDC"]["pool"],
            quote="USDC",
            feed=info.aave.price_feeds[s],
            deviation=0.005,
            heartbeat_s=3600,
        )
        for s in ("WETH", "WBTC")
    )
    return TargetSettings(dex=DexConfig(info.uniswap.factory, info.uniswap.quoter), references=refs)


@dataclass(frozen=True)
class Realised:
    repaid_raw: int
    seized_raw: int
    out_raw: int
    liquidation_gas: int
    swap_gas: int
    profit_base: float


def _execute(
    chain: DevChain, info: DevnetInfo, t: Target, native_usd: float, aave_pool: str | None = None
) -> Realised:
    """liquidate + sell the seized collateral on the real router, from a funded liquidator;
    gas is charged at each block's base fee, set to the one we estimated with. `aave_pool`: the
    Pool of the target's Aave market (default: the 3.0.2 market's)."""
    q = t.quote
    coll, debt = q.collateral_asset, q.debt_asset
    assert info.uniswap is not None
    _give(chain, info, debt, LIQUIDATOR, 2 * q.debt_to_cover_raw + 10**6)
    if t.protocol == "aave-v3":
        spender = aave_pool or info.aave.pool
        data = calldata(
            "liquidationCall(address,address,address,uint256,bool)",
            coll,
            debt,
            t.account,
            q.call_args["debt_to_cover"],
            False,
        )
    else:
        assert info.morpho is not None
        spender = info.morpho.morpho
        params = info.morpho.market(t.market).params
        data = calldata(
            f"liquidate({PARAMS},address,uint256,uint256,bytes)",
            params,
            t.account,
            q.call_args["seized_assets"],
            q.call_args["repaid_shares"],
            b"",
        )
    _approve(chain, debt, LIQUIDATOR, spender)
    _approve(chain, coll, LIQUIDATOR, info.uniswap.router)
    d0, c0 = _view_balance(chain, debt, LIQUIDATOR), _view_balance(chain, coll, LIQUIDATOR)
    gas_wei = 0
    chain.rpc("anvil_setNextBlockBaseFeePerGas", [hex(t.gas_price_wei)])
    receipt = chain.send(LIQUIDATOR, spender, data, gas=3_000_000)
    liquidation_gas, gas_wei = _gas(chain, receipt)
    seized = _view_balance(chain, coll, LIQUIDATOR) - c0
    d1 = _view_balance(chain, debt, LIQUIDATOR)
    swap = (coll, debt, t.dex_fee, LIQUIDATOR, DEADLINE, seized, 0, 0)
    chain.rpc("anvil_setNextBlockBaseFeePerGas", [hex(t.gas_price_wei)])
    receipt = chain.send(LIQUIDATOR, info.uniswap.router, calldata(SWAP, swap), gas=3_000_000)
    swap_gas, swap_wei = _gas(chain, receipt)
    out = _view_balance(chain, debt, LIQUIDATOR) - d1
    debt_price = t.debt_to_cover_base / q.debt_to_cover_raw  # base per raw debt unit
    gas_base = (gas_wei + swap_wei) / 1e18 * native_usd / t.base_usd
    profit = (out - (d0 - d1)) * debt_price - gas_base
    return Realised(d0 - d1, seized, out, liquidation_gas, swap_gas, profit)


def _gas(chain: DevChain, receipt: dict[str, Any]) -> tuple[int, int]:
    """(gas used, gas used × the block's base fee)."""
    used = int(receipt["gasUsed"], 16)
    header = chain.rpc("eth_getBlockByNumber", [receipt["blockNumber"], False])
    return used, used * int(header["baseFeePerGas"], 16)


def _in_snapshot(chain: DevChain, action: Any) -> Any:
    snapshot = chain.rpc("evm_snapshot")
    try:
        return action()
    finally:
        assert chain.rpc("evm_revert", [snapshot]) is True


def _executable(targets: list[Target], protocol: str, n: int) -> list[Target]:
    return [
        t for t in targets if t.protocol == protocol and not t.pending and t.dex_source == "quoter"
    ][:n]
