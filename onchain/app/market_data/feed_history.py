"""A price feed's own past: what it published, when, read from the chain alone.

Two ways, the first that works: the aggregator's past rounds (Chainlink-style
``getRoundData(roundId)``, walked back from ``latestRoundData``), or its ``AnswerUpdated`` events
(what Chainlink aggregators, and the devnet's settable feeds, emit at each new answer). Both are
cached per feed for the process, so a monitor that asks at every block only reads what is new:
rounds after the newest it holds (checked unchanged), or logs after the last block it scanned.
"""

from __future__ import annotations

import hashlib
import weakref
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt
from eth_abi import decode, encode
from eth_utils import function_signature_to_4byte_selector, keccak

from onchain.errors import CallReverted, RpcError
from onchain.rpc.calls import Call, execute
from onchain.rpc.client import BlockRef, RpcClient
from onchain.rpc.logs import Log

_LATEST_ROUND_DATA = function_signature_to_4byte_selector("latestRoundData()")
_GET_ROUND_DATA = function_signature_to_4byte_selector("getRoundData(uint80)")
ANSWER_UPDATED = "0x" + keccak(text="AnswerUpdated(int256,uint256,uint256)").hex()
ROUNDS_PER_BATCH = 200
MAX_ROUNDS = 5_000  # 30 days of a feed that publishes every ~10 minutes
LOG_CHUNK_BLOCKS = 10_000  # what most providers accept per eth_getLogs
ROUND_TYPES = ["uint80", "int256", "uint256", "uint256", "uint80"]


@dataclass
class FeedHistory:
    """Published answers (raw integers as floats) with their update times, oldest first."""

    feed: str
    method: str  # "rounds" (getRoundData) or "logs" (AnswerUpdated)
    times_s: npt.NDArray[np.int64]
    answers: npt.NDArray[np.float64]


@dataclass
class _Cached:
    method: str
    rounds: dict[int, tuple[int, int]] = field(default_factory=dict)  # round -> (updated, answer)
    last_block: int = -1
    first_block: int = 0


# keyed by the chain the client reads (`_chain`) and the feed: one address on two chains, or on
# two devnets one after the other, is two feeds
_CACHE: dict[tuple[str, str, str], _Cached] = {}
_NO_ROUNDS: set[tuple[str, str]] = set()  # feeds without getRoundData: straight to their events


_CHAIN_OF: weakref.WeakKeyDictionary[RpcClient, str] = weakref.WeakKeyDictionary()


def _chain(client: RpcClient) -> str:
    """Which chain a client reads, as a cache key (a digest: endpoint URLs may carry keys).
    Worked out once per client: each lookup of every feed at every block asks for it."""
    key = _CHAIN_OF.get(client)
    if key is None:
        if client.provider is not None:
            key = f"provider-{id(client.provider)}"
        else:
            urls = "\n".join(e.url for e in client.endpoints.endpoints)
            key = hashlib.sha256(urls.encode()).hexdigest()[:16]
        _CHAIN_OF[client] = key
    return key


def _round(data: bytes) -> tuple[int, int, int]:
    round_id, answer, _started, updated_at, _answered = decode(ROUND_TYPES, data)
    return int(round_id), int(answer), int(updated_at)


def _get_round(feed: str, round_id: int) -> Call:
    return Call(feed, _GET_ROUND_DATA + encode(["uint80"], [round_id]), _round, allow_failure=True)


def _walk_rounds(
    client: RpcClient, block: BlockRef, feed: str, since_s: int, cached: _Cached
) -> bool:
    """Add the rounds back to ``since_s`` (or to one already cached, unchanged); False when the
    feed has no ``getRoundData``."""
    latest = execute(client, [Call(feed, _LATEST_ROUND_DATA, _round, allow_failure=True)], block)
    if latest[0] is None:
        return False
    top, answer, updated = latest[0]
    if cached.rounds.get(top) == (updated, answer):
        return True  # nothing published since the last call
    if cached.rounds and max(cached.rounds) > top:  # another chain at the same address
        cached.rounds.clear()
    phase_start = (top >> 64) << 64  # Chainlink proxies: phase in the high bits, rounds from 1
    next_id = top
    while next_id > phase_start and len(cached.rounds) < MAX_ROUNDS:
        ids = list(range(next_id, max(next_id - ROUNDS_PER_BATCH, phase_start), -1))
        got = execute(client, [_get_round(feed, i) for i in ids], block)
        if got[0] is None and next_id == top:
            return False  # latestRoundData without getRoundData
        for round_id, item in zip(ids, got, strict=True):
            if item is None or item[2] == 0:
                return True
            _rid, answer, updated = item
            if cached.rounds.get(round_id) == (updated, answer) or updated < since_s:
                cached.rounds.setdefault(round_id, (updated, answer))
                return True
            cached.rounds[round_id] = (updated, answer)
        next_id = ids[-1] - 1
    return True


def _scan_logs(
    client: RpcClient, block: BlockRef, feed: str, since_s: int, seconds_per_block: float
) -> _Cached:
    """``AnswerUpdated`` logs from about ``since_s`` (estimated with ``seconds_per_block``) or
    from after the last scanned block."""
    cached = _CACHE.get((_chain(client), feed.lower(), "logs")) or _Cached("logs")
    if cached.last_block > block.number:  # another chain at the same address: start over
        cached = _Cached("logs")
    if cached.last_block < 0:
        back = int((block.timestamp - since_s) / max(seconds_per_block, 1e-3)) + 1
        cached.first_block = max(0, block.number - back)
    if cached.last_block == block.number:
        return cached
    start = max(cached.first_block, cached.last_block + 1)
    for lo in range(start, block.number + 1, LOG_CHUNK_BLOCKS):
        hi = min(lo + LOG_CHUNK_BLOCKS - 1, block.number)
        logs = client.logs(
            {"address": feed, "topics": [ANSWER_UPDATED], "fromBlock": hex(lo), "toBlock": hex(hi)},
            min_block=hi,
        )
        for log in logs:
            _keep_answer(cached, log)
    cached.last_block = block.number
    _CACHE[(_chain(client), feed.lower(), "logs")] = cached
    return cached


def _keep_answer(cached: _Cached, log: dict[str, Any]) -> None:
    """One AnswerUpdated(int256 indexed current, uint256 indexed roundId, uint256 updatedAt)."""
    topics = log["topics"]
    answer = int.from_bytes(bytes.fromhex(str(topics[1])[2:]), "big", signed=True)
    cached.rounds[int(str(topics[2]), 16)] = (int(str(log["data"]), 16), answer)


def prefetch_logs(client: RpcClient, block: BlockRef, feeds: Sequence[str]) -> None:
    """The new AnswerUpdated logs of every feed read from its events and scanned up to the
    same block, in one eth_getLogs (each `feed_history` then finds its feed up to date): block
    after block, one request for all of a market's feeds instead of one a feed."""
    groups: dict[int, dict[str, _Cached]] = defaultdict(dict)
    for feed in feeds:
        cached = _CACHE.get((_chain(client), feed.lower(), "logs"))
        if (_chain(client), feed.lower()) not in _NO_ROUNDS or cached is None:
            continue
        if 0 <= cached.last_block < block.number <= cached.last_block + LOG_CHUNK_BLOCKS:
            groups[cached.last_block][feed.lower()] = cached
    for last, group in groups.items():
        if len(group) < 2:
            continue  # alone, `feed_history` asks the same once
        try:
            logs = client.logs(
                {
                    "address": sorted(group),
                    "topics": [ANSWER_UPDATED],
                    "fromBlock": hex(last + 1),
                    "toBlock": hex(block.number),
                },
                min_block=block.number,
            )
        except RpcError:  # each feed then asks alone, and says None when it cannot
            continue
        for log in logs:
            cached = group.get(str(log["address"]).lower())
            if cached is not None:
                _keep_answer(cached, log)
        for cached in group.values():
            cached.last_block = block.number


def absorb_logs(
    client: RpcClient, feeds: Sequence[str], from_block: int, to_block: int, logs: Sequence[Log]
) -> None:
    """Logs another reader fetched for `from_block`..`to_block` with EVERY log of `feeds` in
    that range (the incremental refresher's one eth_getLogs): each of these feeds read from its
    events whose history ends right before `from_block` takes its AnswerUpdated logs and is up
    to date at `to_block`, without a request of its own."""
    topic = bytes.fromhex(ANSWER_UPDATED[2:])
    chain = _chain(client)
    ready = {}
    for feed in feeds:
        cached = _CACHE.get((chain, feed.lower(), "logs"))
        if (chain, feed.lower()) in _NO_ROUNDS and cached and cached.last_block == from_block - 1:
            ready[feed.lower()] = cached
    if not ready:
        return
    for log in logs:
        cached = ready.get(log.address.lower())
        if cached is not None and len(log.topics) == 3 and log.topics[0] == topic:
            _keep_answer(
                cached,
                {"topics": ["0x" + t.hex() for t in log.topics], "data": "0x" + log.data.hex()},
            )
    for cached in ready.values():
        cached.last_block = to_block


def feed_history(
    client: RpcClient,
    block: BlockRef,
    feed: str,
    since_s: int,
    *,
    seconds_per_block: float = 12.0,
) -> FeedHistory | None:
    """What ``feed`` published from ``since_s`` up to ``block``; None when it cannot say
    (neither past rounds nor events readable)."""
    key = (_chain(client), feed.lower(), "rounds")
    cached = _CACHE.get(key) or _Cached("rounds")
    try:
        if key[:2] not in _NO_ROUNDS and _walk_rounds(client, block, feed, since_s, cached):
            _CACHE[key] = cached
        else:
            _NO_ROUNDS.add(key[:2])
            cached = _scan_logs(client, block, feed, since_s, seconds_per_block)
    except (CallReverted, RpcError):
        return None
    # a monitor runs for months: keep what the window still needs (and the answer before it)
    old = sorted((v[0], r) for r, v in cached.rounds.items() if v[0] < since_s)
    for _t, r in old[:-1]:
        del cached.rounds[r]
    items = sorted(v for v in cached.rounds.values() if v[0] <= block.timestamp)
    if not items:
        return None
    times = np.array([t for t, _ in items], dtype=np.int64)
    answers = np.array([a for _, a in items], dtype=np.float64)
    return FeedHistory(feed, cached.method, times, answers)
