"""Recent block headers: block times, fullness and base fees, for the confirmation-latency
estimate. One JSON-RPC batch of eth_getBlockByNumber."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from onchain.rpc.client import BlockRef, RpcClient


@dataclass(frozen=True)
class RecentBlocks:
    timestamps_s: npt.NDArray[np.float64]
    gas_used: npt.NDArray[np.float64]
    gas_limit: npt.NDArray[np.float64]
    base_fee_wei: npt.NDArray[np.float64]


def recent_blocks(client: RpcClient, head: BlockRef, count: int = 64) -> RecentBlocks:
    first = max(0, head.number - count + 1)
    headers = client.batch(
        [("eth_getBlockByNumber", [hex(n), False]) for n in range(first, head.number + 1)]
    )

    def field(name: str) -> npt.NDArray[np.float64]:
        return np.array([int(h.get(name) or "0x0", 16) for h in headers], dtype=np.float64)

    return RecentBlocks(
        field("timestamp"), field("gasUsed"), field("gasLimit"), field("baseFeePerGas")
    )
