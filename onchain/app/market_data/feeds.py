"""Chainlink-style price feeds: when did the feed last publish, and what. The risk module needs
this to say what the next oracle update will most likely publish (deviation or heartbeat)."""

from __future__ import annotations

from dataclasses import dataclass

from eth_abi import decode
from eth_utils import function_signature_to_4byte_selector

from onchain.rpc.calls import Call

_LATEST_ROUND_DATA = function_signature_to_4byte_selector("latestRoundData()")


@dataclass(frozen=True)
class FeedRound:
    feed: str
    answer: int
    updated_at: int


def latest_round_call(feed: str) -> Call:
    def parse(data: bytes) -> FeedRound:
        _round, answer, _started, updated_at, _answered = decode(
            ["uint80", "int256", "uint256", "uint256", "uint80"], data
        )
        return FeedRound(feed, int(answer), int(updated_at))

    return Call(feed, _LATEST_ROUND_DATA, parse, allow_failure=True)
