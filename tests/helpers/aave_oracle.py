"""Ask the real contracts: the reference every exactness test compares against."""

from __future__ import annotations

from collections.abc import Sequence

from eth_abi import decode

from onchain.devnet.chain import DevChain, calldata
from onchain.protocols.base import Position

UINT256_MAX = 2**256 - 1


def pool_account_data(
    chain: DevChain, pool: str, accounts: Sequence[str], block: int
) -> list[tuple[int, ...]]:
    """`Pool.getUserAccountData` for each account at `block`, one eth_call each (in one batch)."""
    calls = [
        (
            "eth_call",
            [
                {"to": pool, "data": "0x" + calldata("getUserAccountData(address)", a).hex()},
                hex(block),
            ],
        )
        for a in accounts
    ]
    results = []
    for start in range(0, len(calls), 500):
        for raw in chain.rpc_batch(calls[start : start + 500]):
            results.append(tuple(decode(["uint256"] * 6, bytes.fromhex(raw[2:]))))
    return results


def ours_as_pool_tuple(p: Position) -> tuple[int, ...]:
    """Our position in getUserAccountData's return order."""
    return (
        p.total_collateral_base,
        p.total_debt_base,
        p.available_borrows_base,
        p.liquidation_threshold_bps,
        p.ltv_bps,
        UINT256_MAX if p.health_factor is None else p.health_factor,
    )
