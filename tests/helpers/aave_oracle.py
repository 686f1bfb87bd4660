"""Ask the real contracts: the reference every exactness test compares against."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from eth_abi import decode

from onchain.devnet.chain import DevChain, calldata
from onchain.protocols.base import Position

UINT256_MAX = 2**256 - 1
WAD = 10**18
# seed 7's borrower with WETH collateral and DAI debt: its health factor moves with WETH alone
BORROWER = "0x5D40dE08230C7171537a9494E0F394C09E1Bb94e"


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


def weth_price_for(chain: DevChain, info: Any, hf: float, account: str = BORROWER) -> float:
    """The WETH oracle price (USD) that puts `account` (WETH collateral alone) at this health
    factor: it is linear in the price."""
    block = chain.block_number()
    call = {
        "to": info.aave.oracle,
        "data": "0x" + calldata("getAssetPrice(address)", info.aave.tokens["WETH"]).hex(),
    }
    now = int(chain.rpc("eth_call", [call, hex(block)]), 16) / 10**8
    (data,) = pool_account_data(chain, info.aave.pool, [account], block)
    return now * hf * WAD / data[5]
