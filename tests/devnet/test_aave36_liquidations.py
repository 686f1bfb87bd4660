"""Real liquidations on the devnet's Aave V3.6.0 market: for a call in each branch of 3.3+'s
rules (all the reserve debt, 50% of the position, shrunk to leave no dust, all collateral seized
with the rest burned into the deficit) our quote equals what the Pool did: the LiquidationCall
event, the protocol fee sent to the treasury and the DeficitCreated events. No self-liquidation
(3.4)."""

from __future__ import annotations

from typing import Any

import pytest
from eth_abi import decode
from eth_utils import keccak, to_checksum_address

from onchain.app.pipeline import scan
from onchain.devnet.build import DevnetInfo
from onchain.devnet.chain import DevChain
from onchain.protocols.aave_v3.adapter import AaveV3Adapter
from onchain.protocols.base import LiquidationQuote, MarketRef, Position
from onchain.rpc.client import RpcClient
from tests.helpers.aave36_support import (
    LIQUIDATOR,
    fund_liquidator,
    liquidation_call_data,
    quotes,
    simulate,
)

LIQUIDATION_CALL = (
    "0x"
    + keccak(text="LiquidationCall(address,address,address,uint256,uint256,address,bool)").hex()
)
DEFICIT_CREATED = "0x" + keccak(text="DeficitCreated(address,address,uint256)").hex()
TRANSFER = "0x" + keccak(text="Transfer(address,address,uint256)").hex()
BRANCHES = ("debt", "close_factor", "dust", "collateral")


def _address(topic: str) -> str:
    return to_checksum_address("0x" + topic[-40:])


@pytest.fixture(scope="module")
def seeded(devnet: DevnetInfo) -> tuple[Any, list[Position]]:
    assert devnet.aave36 is not None
    fund_liquidator(DevChain(devnet.rpc_url), devnet)
    client = RpcClient(devnet.rpc_url, expected_chain_id=devnet.chain_id)
    result = scan(client, MarketRef("aave-v3", devnet.aave36.addresses_provider))
    return result.market_state, result.positions


def _pick(
    state: Any, positions: list[Position], branch: str, taken: set[str]
) -> tuple[Position, LiquidationQuote]:
    """A liquidatable account (not in `taken`) with a quote limited by `branch`."""
    adapter = AaveV3Adapter()
    for p in positions:
        if p.liquidatable and p.account not in taken:
            for q in quotes(adapter, state, p):
                if q.limited_by == branch and (branch != "collateral" or q.bad_debt_by_asset):
                    taken.add(p.account)
                    return p, q
    raise AssertionError(f"no seeded position whose liquidation is limited by {branch}")


def test_each_branch_quote_equals_the_pools_real_liquidation(devnet: DevnetInfo, seeded) -> None:
    assert devnet.aave36 is not None
    d = devnet.aave36
    chain = DevChain(devnet.rpc_url)
    state, positions = seeded
    taken: set[str] = set()
    picked = [_pick(state, positions, branch, taken) for branch in BRANCHES]
    atoken_of = {to_checksum_address(d.tokens[s]): d.atokens[s] for s in d.tokens}
    for branch, (position, q) in zip(BRANCHES, picked, strict=True):
        # mined at the scanned block's timestamp: no interest in between, the same state
        head = chain.rpc("eth_getBlockByNumber", ["latest", False])
        assert int(head["timestamp"], 16) == state.block.timestamp
        chain.rpc("evm_setNextBlockTimestamp", [head["timestamp"]])
        data = liquidation_call_data(
            q.collateral_asset, q.debt_asset, position.account, q.call_args["debt_to_cover"]
        )
        receipt = chain.send(LIQUIDATOR, d.pool, data, gas=5_000_000)
        logs = receipt["logs"]
        (event,) = [log for log in logs if log["topics"][0] == LIQUIDATION_CALL]
        repaid, seized, _liquidator, _receive = decode(
            ["uint256", "uint256", "address", "bool"], bytes.fromhex(event["data"][2:])
        )
        assert (repaid, seized) == (q.debt_to_cover_raw, q.collateral_seized_raw), branch
        fee = [
            int(log["data"], 16)
            for log in logs
            if log["address"].lower() == atoken_of[q.collateral_asset].lower()
            and log["topics"][0] == TRANSFER
            and _address(log["topics"][1]) == position.account
            and _address(log["topics"][2]) == to_checksum_address(d.treasury)
        ]
        assert fee == [q.protocol_fee_raw], branch
        deficit = {
            _address(log["topics"][2]): int(log["data"], 16)
            for log in logs
            if log["topics"][0] == DEFICIT_CREATED
        }
        assert deficit == q.bad_debt_by_asset, branch
        if branch == "collateral":
            assert deficit and q.bad_debt_raw == deficit.get(q.debt_asset, 0)
            # the remaining debt is gone from the account, into the reserves' deficit
            after = chain.view(
                d.pool, "getUserAccountData(address)", ["uint256"] * 6, position.account
            )
            assert after[1] == 0
            for asset, amount in deficit.items():
                assert chain.view(d.pool, "getReserveDeficit(address)", ["uint256"], asset) >= (
                    amount
                )
        print(f"\n{branch}: repaid {repaid}, seized {seized}, fee {fee[0]}, deficit {deficit}")


def test_no_self_liquidation_since_3_4(devnet: DevnetInfo, seeded) -> None:
    assert devnet.aave36 is not None
    chain = DevChain(devnet.rpc_url)
    state, positions = seeded
    adapter = AaveV3Adapter()
    position = next(p for p in positions if p.liquidatable and quotes(adapter, state, p))
    q = quotes(adapter, state, position)[0]
    kwargs = {"liquidator": position.account}
    assert (
        adapter.liquidation_quote(state, position, q.collateral_asset, q.debt_asset, **kwargs)
        is None
    )
    assert (
        adapter.liquidation_quote(
            state, position, q.collateral_asset, q.debt_asset, liquidator=LIQUIDATOR
        )
        == q
    )
    body = liquidation_call_data(
        q.collateral_asset, q.debt_asset, position.account, q.call_args["debt_to_cover"]
    )
    reply = chain.session.post(
        chain.url,
        json={
            "jsonrpc": "2.0",
            "id": 1,
            "method": "eth_call",
            "params": [
                {"from": position.account, "to": devnet.aave36.pool, "data": "0x" + body.hex()},
                hex(state.block.number),  # before the test above liquidated anyone
            ],
        },
        timeout=60,
    ).json()
    assert reply["error"]["data"][:10] == "0x" + keccak(text="SelfLiquidation()")[:4].hex()
    assert simulate(chain, devnet.aave36.pool, [body], state.block.number) == [None]
