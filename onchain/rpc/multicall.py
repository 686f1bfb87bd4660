"""Multicall3's address and the aggregate3 encoding, shared by readers and the devnet installer.

The (address,bool,bytes)[] layout is written and read by hand: with thousands of calls per
refresh, eth_abi's generic codec was most of a scan's time (bench/bench_scan.py). A test checks
both directions against eth_abi."""

from __future__ import annotations

from collections.abc import Sequence

from eth_utils import function_signature_to_4byte_selector

from onchain.errors import RpcError

# Same address on mainnet and most EVM chains; the devnet puts its own build here.
MULTICALL3_ADDRESS = "0xcA11bde05977b3631167028862bE2a173976CA11"
AGGREGATE3_SELECTOR = function_signature_to_4byte_selector("aggregate3((address,bool,bytes)[])")
_WORD = 32


def _word(value: int) -> bytes:
    return value.to_bytes(_WORD, "big")


def _padded(data: bytes) -> bytes:
    return data + b"\x00" * (-len(data) % _WORD)


def encode_aggregate3(calls: Sequence[tuple[str, bool, bytes]]) -> bytes:
    """Calldata for aggregate3 over (target, allow_failure, calldata)."""
    tails: list[bytes] = []
    for target, allow_failure, data in calls:
        tails.append(
            b"\x00" * 12
            + bytes.fromhex(target[2:])
            + _word(1 if allow_failure else 0)
            + _word(3 * _WORD)
            + _word(len(data))
            + _padded(data)
        )
    offsets: list[bytes] = []
    position = _WORD * len(calls)
    for tail in tails:
        offsets.append(_word(position))
        position += len(tail)
    return (
        AGGREGATE3_SELECTOR + _word(_WORD) + _word(len(calls)) + b"".join(offsets) + b"".join(tails)
    )


def decode_aggregate3(data: bytes) -> list[tuple[bool, bytes]]:
    """(success, return data) per call from aggregate3's return value."""
    try:
        start = int.from_bytes(data[0:32], "big") + _WORD
        count = int.from_bytes(data[start - _WORD : start], "big")
        out: list[tuple[bool, bytes]] = []
        for i in range(count):
            item = start + int.from_bytes(data[start + i * _WORD : start + (i + 1) * _WORD], "big")
            success = data[item + 31] == 1
            blob = item + int.from_bytes(data[item + _WORD : item + 2 * _WORD], "big")
            length = int.from_bytes(data[blob : blob + _WORD], "big")
            payload = data[blob + _WORD : blob + _WORD + length]
            if len(payload) != length:
                raise ValueError("truncated")
            out.append((success, payload))
        return out
    except (IndexError, ValueError) as exc:
        raise RpcError(f"malformed aggregate3 result ({exc})") from None
