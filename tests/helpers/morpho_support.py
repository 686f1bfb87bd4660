"""Shared by several test modules (moved out of test_morpho_exactness.py)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from eth_abi import decode

from onchain.devnet.chain import DevChain, calldata
from onchain.devnet.morpho import PARAMS, MorphoDeployment
from onchain.protocols.base import Position
from tests.helpers.aave_oracle import UINT256_MAX

LIQUIDATOR = "0x000000000000000000000000000000000000bEEF"
HEALTHY = "position is healthy"


def fund_liquidator(chain: DevChain, morpho: MorphoDeployment) -> None:
    """Loan tokens and approvals for a keyless liquidator (anvil impersonates it)."""
    chain.set_balance([LIQUIDATOR], 10**22)
    for symbol in {m.loan_symbol for m in morpho.markets}:
        token = morpho.tokens[symbol]
        chain.send(
            LIQUIDATOR,
            token,
            calldata("setBalance(address,uint256)", LIQUIDATOR, 10**36),
            gas=200_000,
        )
        chain.send(
            LIQUIDATOR,
            token,
            calldata("approve(address,uint256)", morpho.morpho, UINT256_MAX),
            gas=200_000,
        )


def _eth_calls(chain: DevChain, datas: Sequence[tuple[str, bytes]], block: int) -> list[Any]:
    """eth_call each (to, data) from the liquidator at `block`: ('ok', bytes) or ('revert', why)."""
    out: list[Any] = []
    for start in range(0, len(datas), 400):
        body = [
            {
                "jsonrpc": "2.0",
                "id": i,
                "method": "eth_call",
                "params": [
                    {
                        "from": LIQUIDATOR,
                        "to": to,
                        "data": "0x" + data.hex(),
                        "gas": hex(8_000_000),
                    },
                    hex(block),
                ],
            }
            for i, (to, data) in enumerate(datas[start : start + 400])
        ]
        replies = sorted(
            chain.session.post(chain.url, json=body, timeout=120).json(), key=lambda r: r["id"]
        )
        for reply in replies:
            if "error" not in reply:
                out.append(("ok", bytes.fromhex(reply["result"][2:])))
                continue
            payload = reply["error"].get("data") or ""
            if isinstance(payload, str) and payload.startswith("0x08c379a0"):
                out.append(("revert", str(decode(["string"], bytes.fromhex(payload[10:]))[0])))
            else:
                out.append(("revert", str(reply["error"].get("message"))))
    return out


def liquidate_data(params: tuple[Any, ...], account: str, borrow_shares: int) -> bytes:
    """A small liquidation (1% of the shares, at least one): succeeds iff `_isHealthy` is false."""
    return calldata(
        f"liquidate({PARAMS},address,uint256,uint256,bytes)",
        params,
        account,
        0,
        max(1, borrow_shares // 100),
        b"",
    )


def contract_verdicts(
    chain: DevChain, morpho: MorphoDeployment, positions: Sequence[Position], block: int
) -> list[tuple[bool, str | None]]:
    """(liquidatable, revert reason) per position, from `liquidate` at `block`."""
    params = {m.id: m.params for m in morpho.markets}
    answers = _eth_calls(
        chain,
        [
            (
                morpho.morpho,
                liquidate_data(params[p.market], p.account, p.extra["borrow_shares"]),
            )
            for p in positions
        ],
        block,
    )
    return [(kind == "ok", None if kind == "ok" else value) for kind, value in answers]


def contract_debts(
    chain: DevChain, morpho: MorphoDeployment, positions: Sequence[Position], block: int
) -> list[int]:
    """What `repay` of all shares charges at `block` (after its own accrual): the debt, rounded
    up from shares exactly as `_isHealthy` counts it."""
    params = {m.id: m.params for m in morpho.markets}
    answers = _eth_calls(
        chain,
        [
            (
                morpho.morpho,
                calldata(
                    f"repay({PARAMS},uint256,uint256,address,bytes)",
                    params[p.market],
                    0,
                    p.extra["borrow_shares"],
                    p.account,
                    b"",
                ),
            )
            for p in positions
        ],
        block,
    )
    debts = []
    for kind, value in answers:
        assert kind == "ok", value
        debts.append(int(decode(["uint256", "uint256"], value)[0]))
    return debts
