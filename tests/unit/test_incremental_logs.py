"""Which accounts a block's logs touch, and which logs discovery keeps: decided in memory from
the one eth_getLogs the incremental refresh makes, the way the node would filter them."""

from __future__ import annotations

from eth_utils import to_checksum_address

from onchain.app.incremental import _matches
from onchain.protocols.base import indexed_addresses
from onchain.rpc.logs import Log

ALICE = "0x00000000000000000000000000000000000a11ce"
BOB = "0x0000000000000000000000000000000000000b0b"
TOPIC = bytes.fromhex("ab" * 32)
OTHER = bytes.fromhex("cd" * 32)


def _word(address: str) -> bytes:
    return bytes(12) + bytes.fromhex(address[2:])


def _log(address: str, *topics: bytes) -> Log:
    return Log(address, tuple(topics), b"", 1, "0x" + "00" * 32, "0x" + "00" * 32, 0)


def test_indexed_addresses_are_the_accounts_a_log_names() -> None:
    transfer = _log(BOB, TOPIC, _word(ALICE), _word(BOB))
    referral = _log(BOB, TOPIC, (7).to_bytes(32, "big"))  # a small number looks like an address
    market_id = _log(BOB, TOPIC, bytes.fromhex("ff" * 32))  # a full 32-byte word is not one
    found = indexed_addresses([transfer, referral, market_id])
    assert {to_checksum_address(ALICE), to_checksum_address(BOB)} <= found
    assert not any(a.lower().startswith("0xffff") for a in found)
    assert indexed_addresses([_log(BOB, TOPIC, bytes(32))]) == set()  # the zero address: nobody


def test_a_log_passes_a_filter_as_the_node_decides() -> None:
    item = _log(ALICE, TOPIC, _word(BOB))
    assert _matches(item, [to_checksum_address(ALICE)], ["0x" + TOPIC.hex()])
    assert _matches(item, [], [["0x" + OTHER.hex(), "0x" + TOPIC.hex()]])  # an OR-list
    assert _matches(item, [ALICE], [None, "0x" + _word(BOB).hex()])  # a wildcard first
    assert not _matches(item, [BOB], [])  # another contract
    assert not _matches(item, [ALICE], ["0x" + OTHER.hex()])
    assert not _matches(item, [ALICE], [None, None, "0x" + TOPIC.hex()])  # too few topics
    assert _matches(item, [ALICE], [TOPIC])  # bytes in the filter, as adapters may give them
