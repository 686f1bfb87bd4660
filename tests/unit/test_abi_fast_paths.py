"""The hand-written encoders on the hot path agree with eth_abi byte for byte."""

from __future__ import annotations

import random

from eth_abi import decode, encode

from onchain.abi import function
from onchain.rpc.multicall import AGGREGATE3_SELECTOR, decode_aggregate3, encode_aggregate3


def _random_address(rng: random.Random) -> str:
    return "0x" + rng.randbytes(20).hex()


def test_aggregate3_encoding_matches_eth_abi() -> None:
    rng = random.Random(1)
    for n in (0, 1, 2, 7, 50):
        calls = [
            (_random_address(rng), rng.random() < 0.5, rng.randbytes(rng.randrange(0, 100)))
            for _ in range(n)
        ]
        assert encode_aggregate3(calls) == AGGREGATE3_SELECTOR + encode(
            ["(address,bool,bytes)[]"], [calls]
        )


def test_aggregate3_decoding_matches_eth_abi() -> None:
    rng = random.Random(2)
    for n in (0, 1, 3, 40):
        results = [(rng.random() < 0.7, rng.randbytes(rng.randrange(0, 130))) for _ in range(n)]
        blob = encode(["(bool,bytes)[]"], [results])
        assert decode_aggregate3(blob) == list(decode(["(bool,bytes)[]"], blob)[0])


def test_single_address_calls_and_uint_results_match_eth_abi() -> None:
    rng = random.Random(3)
    scaled = function("aave_v3", "ScaledBalanceToken", "scaledBalanceOf")
    for _ in range(20):
        who = _random_address(rng)
        assert scaled.encode(who) == scaled.selector + encode(["address"], [who])
        value = rng.randrange(2**256)
        assert scaled.decode(encode(["uint256"], [value])) == value
