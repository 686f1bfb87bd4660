"""Helpers for proofs against the devnet's Aave V3.6 market: a funded liquidator, liquidationCall
simulated with eth_call at a pinned block (custom errors decoded), and every pair's quote."""

from __future__ import annotations

from typing import Any

from eth_utils import keccak

from onchain.devnet.build import DevnetInfo
from onchain.devnet.chain import DevChain, calldata
from onchain.protocols.aave_v3.adapter import AaveV3Adapter
from onchain.protocols.base import LiquidationQuote, Position

UINT256_MAX = 2**256 - 1
LIQUIDATOR = "0x000000000000000000000000000000000000bEEF"
# LiquidationLogic / ValidationLogic custom errors (3.4+) by selector
ERRORS = {
    "0x" + keccak(text=f"{name}()")[:4].hex(): name
    for name in (
        "HealthFactorNotBelowThreshold",
        "MustNotLeaveDust",
        "SelfLiquidation",
        "CollateralCannotBeLiquidated",
        "SpecifiedCurrencyNotBorrowedByUser",
        "LiquidationGraceSentinelCheckFailed",
        "ReserveInactive",
        "ReservePaused",
    )
}


def fund_liquidator(chain: DevChain, info: DevnetInfo) -> None:
    """Mint every devnet token to the liquidator and approve the 3.6 Pool."""
    assert info.aave36 is not None
    chain.set_balance([LIQUIDATOR], 10**22)
    for symbol, token in info.aave36.tokens.items():
        amount = 10**12 * 10 ** info.aave36.decimals[symbol]
        chain.send(LIQUIDATOR, token, calldata("mint(uint256)", amount), gas=200_000)
        chain.send(
            LIQUIDATOR,
            token,
            calldata("approve(address,uint256)", info.aave36.pool, UINT256_MAX),
            gas=100_000,
        )


def liquidation_call_data(collateral: str, debt: str, user: str, amount: int) -> bytes:
    return calldata(
        "liquidationCall(address,address,address,uint256,bool)",
        collateral,
        debt,
        user,
        amount,
        False,
    )


def simulate(chain: DevChain, pool: str, calls: list[bytes], block: int) -> list[str | None]:
    """eth_call each liquidationCall from the liquidator at `block` (one batch): None where it
    succeeds, else the error's name (or raw data)."""
    body = [
        {
            "jsonrpc": "2.0",
            "id": i,
            "method": "eth_call",
            "params": [
                {"from": LIQUIDATOR, "to": pool, "data": "0x" + data.hex(), "gas": hex(5_000_000)},
                hex(block),
            ],
        }
        for i, data in enumerate(calls)
    ]
    out: list[str | None] = []
    for start in range(0, len(body), 300):
        replies = chain.session.post(chain.url, json=body[start : start + 300], timeout=600).json()
        for reply in sorted(replies, key=lambda r: r["id"]):
            if "error" not in reply:
                out.append(None)
                continue
            payload: Any = reply["error"].get("data") or ""
            out.append(ERRORS.get(str(payload)[:10], str(payload) or reply["error"]["message"]))
    return out


def quotes(adapter: AaveV3Adapter, state: Any, position: Position) -> list[LiquidationQuote]:
    """The adapter's quote of every (collateral, debt) pair that has one."""
    found = []
    for c in position.assets:
        if not (c.collateral_enabled and c.collateral_raw):
            continue
        for d in position.assets:
            if d.debt_raw:
                q = adapter.liquidation_quote(state, position, c.asset, d.asset)
                if q is not None:
                    found.append(q)
    return found


def largest_pair(position: Position) -> tuple[str, str]:
    """The largest collateral and the largest debt."""
    collateral = max(
        (a for a in position.assets if a.collateral_enabled and a.collateral_raw),
        key=lambda a: a.collateral_base,
    )
    debt = max((a for a in position.assets if a.debt_raw), key=lambda a: a.debt_base)
    return collateral.asset, debt.asset
