"""Uniswap V3 pools as a reference market price and as the depth seized collateral is sold into.

Reads are plain `Call`s (slot0, liquidity, QuoterV2 quotes) executed by the pipeline at one
pinned block; QuoterV2 simulates a swap and reverts internally, so it is only ever eth_call-ed."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from eth_abi import decode, encode
from eth_utils import function_signature_to_4byte_selector

from onchain.rpc.calls import Call

Q96 = 2**96
_SLOT0 = function_signature_to_4byte_selector("slot0()")
_LIQUIDITY = function_signature_to_4byte_selector("liquidity()")
_QUOTE_SIG = "quoteExactInputSingle((address,address,uint256,uint24,uint160))"
_QUOTE = function_signature_to_4byte_selector(_QUOTE_SIG)


@dataclass(frozen=True)
class PoolState:
    pool: str
    token0: str
    token1: str
    fee: int
    sqrt_price_x96: int
    tick: int
    liquidity: int

    def price_token1_per_token0_raw(self) -> float:
        return (self.sqrt_price_x96 / Q96) ** 2

    def price_of(self, token: str, decimals0: int, decimals1: int) -> float:
        """Units of the other token per whole `token`, decimals applied."""
        p = self.price_token1_per_token0_raw() * 10 ** (decimals0 - decimals1)
        return p if token.lower() == self.token0.lower() else 1 / p


@dataclass(frozen=True)
class Quote:
    amount_out: int
    sqrt_price_x96_after: int
    ticks_crossed: int
    gas_estimate: int


def pool_state_calls(pool: str) -> list[Call]:
    return [
        Call(pool, _SLOT0, lambda d: decode(["uint160", "int24"], d[:64])),
        Call(pool, _LIQUIDITY, lambda d: decode(["uint128"], d)[0]),
    ]


def pool_state(pool: str, token0: str, token1: str, fee: int, results: list[Any]) -> PoolState:
    (sqrt_price, tick), liquidity = results
    return PoolState(pool, token0, token1, fee, int(sqrt_price), int(tick), int(liquidity))


def quote_call(quoter: str, token_in: str, token_out: str, fee: int, amount_in: int) -> Call:
    data = _QUOTE + encode(
        ["(address,address,uint256,uint24,uint160)"], [(token_in, token_out, amount_in, fee, 0)]
    )
    return Call(
        quoter,
        data,
        lambda d: Quote(*decode(["uint256", "uint160", "uint32", "uint256"], d)),
        allow_failure=True,
    )


_GET_POOL = function_signature_to_4byte_selector("getPool(address,address,uint24)")
ZERO_ADDRESS = "0x0000000000000000000000000000000000000000"


def get_pool_call(factory: str, token_a: str, token_b: str, fee: int) -> Call:
    """`UniswapV3Factory.getPool`: the pool of a pair and fee tier (the zero address: none)."""
    data = _GET_POOL + encode(["address", "address", "uint24"], [token_a, token_b, fee])
    return Call(factory, data, lambda d: str(decode(["address"], d)[0]), allow_failure=True)
