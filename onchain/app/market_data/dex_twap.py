"""A Uniswap V3 pool's own price history from its observations: hourly time-weighted prices
from ``observe`` (tick cumulatives), as far back as the pool's oldest stored observation. The
volatility of a cold start, when neither an oracle's history nor a store reaches far enough."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from itertools import pairwise

import numpy as np
import numpy.typing as npt
from eth_abi import decode, encode
from eth_utils import function_signature_to_4byte_selector

from onchain.errors import CallReverted, RpcError
from onchain.rpc.calls import Call, execute
from onchain.rpc.client import BlockRef, RpcClient

_SLOT0 = function_signature_to_4byte_selector("slot0()")
_OBSERVATIONS = function_signature_to_4byte_selector("observations(uint256)")
_OBSERVE = function_signature_to_4byte_selector("observe(uint32[])")
SLOT0_TYPES = ["uint160", "int24", "uint16", "uint16", "uint16", "uint8", "bool"]
OBSERVATION_TYPES = ["uint32", "int56", "uint160", "bool"]


@dataclass(frozen=True)
class PoolTwap:
    """Hourly TWAP prices (token1 per token0, raw units) ending at the block, oldest first:
    ``prices[i]`` is the mean-tick price over the hour ending at ``times_s[i]``."""

    pool: str
    times_s: npt.NDArray[np.int64]
    prices: npt.NDArray[np.float64]


def _observation(data: bytes) -> tuple[int, bool]:
    timestamp, _tick_cum, _liq_cum, initialized = decode(OBSERVATION_TYPES, data)
    return int(timestamp), bool(initialized)


def _observation_call(pool: str, index: int) -> Call:
    return Call(pool, _OBSERVATIONS + encode(["uint256"], [index]), _observation)


def _oldest_observations(
    client: RpcClient, block: BlockRef, pools: Sequence[str]
) -> dict[str, int]:
    """Time of each pool's oldest stored observation: the one after the newest once the ring
    buffer has wrapped, the first otherwise. One batch for pools with a single observation
    slot (most pools), a second for the others."""
    calls: list[Call] = []
    for pool in pools:
        calls += [
            Call(pool, _SLOT0, lambda d: decode(SLOT0_TYPES, d), allow_failure=True),
            Call(pool, _OBSERVATIONS + encode(["uint256"], [0]), _observation, allow_failure=True),
        ]
    got = execute(client, calls, block)
    oldest: dict[str, int] = {}
    ring: dict[str, int] = {}  # pool -> the slot after the newest
    for k, pool in enumerate(pools):
        slot0, first = got[2 * k], got[2 * k + 1]
        if slot0 is None or first is None or not first[1] or int(slot0[3]) == 0:
            continue
        oldest[pool] = first[0]
        index, cardinality = int(slot0[2]), int(slot0[3])
        if cardinality > 1:
            ring[pool] = (index + 1) % cardinality
    if ring:
        after = execute(client, [_observation_call(p, i) for p, i in ring.items()], block)
        for pool, (timestamp, initialized) in zip(ring, after, strict=True):
            if initialized:
                oldest[pool] = timestamp
    return oldest


def hourly_twaps(
    client: RpcClient,
    block: BlockRef,
    pools: Sequence[str],
    max_hours: int,
    *,
    step_s: int = 3600,
) -> dict[str, PoolTwap]:
    """Each pool's hourly TWAPs over up to ``max_hours`` back from the block (as far as its
    observations reach); pools that cannot say (no ``observe``, under one hour) are left out."""
    try:
        oldest = _oldest_observations(client, block, pools)
    except (CallReverted, RpcError):
        return {}
    out: dict[str, PoolTwap] = {}
    for pool, first in oldest.items():
        hours = min(max_hours, int((block.timestamp - first) // step_s))
        if hours < 1:
            continue
        ago = [step_s * h for h in range(hours, -1, -1)]
        call = Call(
            pool,
            _OBSERVE + encode(["uint32[]"], [ago]),
            lambda d: decode(["int56[]", "uint160[]"], d)[0],
            allow_failure=True,
        )
        try:
            (cumulatives,) = execute(client, [call], block)
        except (CallReverted, RpcError):
            continue
        if cumulatives is None:
            continue
        cum = [int(c) for c in cumulatives]  # exact differences: int56 sums lose bits as floats
        ticks = np.array([(b - a) / step_s for a, b in pairwise(cum)], dtype=np.float64)
        times = int(block.timestamp) - np.asarray(ago[1:], dtype=np.int64)
        out[pool] = PoolTwap(pool, times, np.power(1.0001, ticks))
    return out
