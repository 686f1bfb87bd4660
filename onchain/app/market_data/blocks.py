"""Recent block headers: block times, fullness and base fees, for the confirmation-latency
estimate. One JSON-RPC batch of eth_getBlockByNumber."""

from __future__ import annotations

import weakref
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from onchain.rpc.client import BlockRef, RpcClient
from onchain.rpc.endpoints import EndpointSet


@dataclass(frozen=True)
class RecentBlocks:
    timestamps_s: npt.NDArray[np.float64]
    gas_used: npt.NDArray[np.float64]
    gas_limit: npt.NDArray[np.float64]
    base_fee_wei: npt.NDArray[np.float64]


# per endpoint set (one per chain in the daemon, which makes a client per run): headers by
# number, kept while they link to the head by parent hash
_HEADERS: weakref.WeakKeyDictionary[EndpointSet, dict[int, dict[str, Any]]] = (
    weakref.WeakKeyDictionary()
)


def _unproven(cache: dict[int, dict[str, Any]], head: BlockRef, first: int) -> list[int]:
    """Numbers from `first` to the head whose kept header is missing or not on the head's
    chain (each header names its parent's hash; the head's hash comes from the pin)."""
    expected: str | None = head.hash
    out = []
    for n in range(head.number, first - 1, -1):
        h = cache.get(n)
        if h is None or (expected is not None and h.get("hash") != expected):
            out.append(n)
            expected = None  # below a header we do not have, nothing is proven yet
        else:
            expected = h.get("parentHash") if expected is not None else None
            if expected is None:
                out.append(n)
    return sorted(out)


def recent_blocks(client: RpcClient, head: BlockRef, count: int = 64) -> RecentBlocks:
    """The last `count` headers up to `head`. A block after block caller asks only for the
    headers it has not seen (none when the head was pinned by the same client): kept headers
    are used only while they link to the head by parent hash, so a reorg reads them again."""
    first = max(0, head.number - count + 1)
    cache = _HEADERS.setdefault(client.endpoints, {})
    pinned = client.pinned_headers.get(head.hash)
    if pinned is not None:
        cache[head.number] = pinned
    for _round in range(2):
        missing = _unproven(cache, head, first)
        if not missing:
            break
        fetched = client.batch([("eth_getBlockByNumber", [hex(n), False]) for n in missing])
        cache.update(zip(missing, fetched, strict=True))
    else:
        if _unproven(cache, head, first):  # the chain moved under us: read them all as one
            numbers = list(range(first, head.number + 1))
            fetched = client.batch([("eth_getBlockByNumber", [hex(n), False]) for n in numbers])
            cache.update(zip(numbers, fetched, strict=True))
    for n in [n for n in cache if n < first - count]:  # markets behind may still need some
        del cache[n]
    headers = [cache[n] for n in range(first, head.number + 1)]

    def field(name: str) -> npt.NDArray[np.float64]:
        return np.array([int(h.get(name) or "0x0", 16) for h in headers], dtype=np.float64)

    return RecentBlocks(
        field("timestamp"), field("gasUsed"), field("gasLimit"), field("baseFeePerGas")
    )
