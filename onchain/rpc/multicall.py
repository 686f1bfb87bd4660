"""Multicall3's address and the aggregate3 encoding, shared by readers and the devnet installer."""

from __future__ import annotations

from collections.abc import Sequence

from eth_abi import decode, encode
from eth_utils import function_signature_to_4byte_selector

# Same address on mainnet and most EVM chains; the devnet puts its own build here.
MULTICALL3_ADDRESS = "0xcA11bde05977b3631167028862bE2a173976CA11"
AGGREGATE3_SELECTOR = function_signature_to_4byte_selector("aggregate3((address,bool,bytes)[])")
_CALLS_TYPE = ["(address,bool,bytes)[]"]
_RESULTS_TYPE = ["(bool,bytes)[]"]


def encode_aggregate3(calls: Sequence[tuple[str, bool, bytes]]) -> bytes:
    """Calldata for aggregate3 over (target, allow_failure, calldata); one eth_abi pass."""
    return AGGREGATE3_SELECTOR + encode(_CALLS_TYPE, [calls])


def decode_aggregate3(data: bytes) -> list[tuple[bool, bytes]]:
    """(success, return data) per call from aggregate3's return value; one eth_abi pass."""
    return list(decode(_RESULTS_TYPE, data)[0])
