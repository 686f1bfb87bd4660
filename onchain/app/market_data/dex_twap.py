"""A Uniswap V3 pool's own price history from its observations: hourly time-weighted prices
from ``observe`` (tick cumulatives), as far back as the pool's oldest stored observation. The
volatility of a cold start, when neither an oracle's history nor a store reaches far enough."""

from __future__ import annotations

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


def _oldest_observation(client: RpcClient, block: BlockRef, pool: str) -> int | None:
    """Time of the pool's oldest stored observation (the one after the newest, once the ring
    buffer has wrapped; the first otherwise)."""
    (slot0,) = execute(client, [Call(pool, _SLOT0, lambda d: decode(SLOT0_TYPES, d))], block)
    index, cardinality = int(slot0[2]), int(slot0[3])
    if cardinality == 0:
        return None
    after = Call(
        pool, _OBSERVATIONS + encode(["uint256"], [(index + 1) % cardinality]), _observation
    )
    first = Call(pool, _OBSERVATIONS + encode(["uint256"], [0]), _observation)
    (t_after, init_after), (t_first, init_first) = execute(client, [after, first], block)
    if init_after:
        return t_after
    return t_first if init_first else None


def hourly_twap(
    client: RpcClient, block: BlockRef, pool: str, max_hours: int, *, step_s: int = 3600
) -> PoolTwap | None:
    """The pool's hourly TWAPs over up to ``max_hours`` back from the block (as far as its
    observations reach); None when the pool cannot say (no ``observe``, or under one hour)."""
    try:
        oldest = _oldest_observation(client, block, pool)
        if oldest is None:
            return None
        hours = min(max_hours, int((block.timestamp - oldest) // step_s))
        if hours < 1:
            return None
        ago = [step_s * h for h in range(hours, -1, -1)]
        (cumulatives,) = execute(
            client,
            [
                Call(
                    pool,
                    _OBSERVE + encode(["uint32[]"], [ago]),
                    lambda d: decode(["int56[]", "uint160[]"], d)[0],
                )
            ],
            block,
        )
    except (CallReverted, RpcError):
        return None
    cum = [int(c) for c in cumulatives]  # exact differences: int56 sums lose bits as floats
    ticks = np.array([(b - a) / step_s for a, b in pairwise(cum)], dtype=np.float64)
    times = int(block.timestamp) - np.asarray(ago[1:], dtype=np.int64)
    return PoolTwap(pool, times, np.power(1.0001, ticks))
