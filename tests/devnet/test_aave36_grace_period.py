"""The liquidation grace period (Aave 3.1+) on the devnet's 3.6 market: while a reserve's
grace period runs, an account below the threshold is not liquidatable now and says why (the
reason and the last second of the grace), exactly when the Pool's liquidationCall reverts
LiquidationGraceSentinelCheckFailed; from the next second on both say liquidatable again."""

from __future__ import annotations

from typing import Any

import pytest

from onchain.app.pipeline import scan
from onchain.devnet.build import DevnetInfo
from onchain.devnet.chain import DEPLOYER, DevChain, calldata
from onchain.jobs.assess import risk_assessed
from onchain.output import position_json, status_text
from onchain.protocols.aave_v3.adapter import AaveV3Adapter
from onchain.protocols.base import MarketRef, Position
from onchain.risk.verdict import RiskVerdict
from onchain.rpc.client import RpcClient
from tests.helpers.aave36_support import (
    LIQUIDATOR,
    fund_liquidator,
    liquidation_call_data,
    quotes,
    simulate,
)

GRACE_S = 3600


def _scan(devnet: DevnetInfo) -> tuple[Any, dict[str, Position]]:
    assert devnet.aave36 is not None
    client = RpcClient(devnet.rpc_url, expected_chain_id=devnet.chain_id)
    result = scan(client, MarketRef("aave-v3", devnet.aave36.addresses_provider))
    return result.market_state, {p.account: p for p in result.positions}


def _calls(state: Any, position: Position) -> list[bytes]:
    """One liquidationCall per (collateral, debt) pair the account holds, for its whole debt."""
    return [
        liquidation_call_data(c.asset, d.asset, position.account, 2**256 - 1)
        for c in position.assets
        if c.collateral_enabled and c.collateral_raw
        for d in position.assets
        if d.debt_raw
    ]


def _estimate_reverts(chain: DevChain, pool: str, data: bytes) -> bool:
    """eth_estimateGas of the call from the funded liquidator at the head: True if it reverts."""
    reply = chain.session.post(
        chain.url,
        json={
            "jsonrpc": "2.0",
            "id": 1,
            "method": "eth_estimateGas",
            "params": [{"from": LIQUIDATOR, "to": pool, "data": "0x" + data.hex()}],
        },
        timeout=60,
    ).json()
    return "error" in reply


@pytest.fixture(scope="module")
def picked(devnet: DevnetInfo) -> tuple[Position, str]:
    """A liquidatable account with one debt asset and a quote for it: (position, debt asset)."""
    fund_liquidator(DevChain(devnet.rpc_url), devnet)
    state, positions = _scan(devnet)
    adapter = AaveV3Adapter()
    for p in positions.values():
        debts = [a.asset for a in p.assets if a.debt_raw]
        hf = p.health_factor or 0
        if p.liquidatable and len(debts) == 1 and hf < 97 * 10**16 and quotes(adapter, state, p):
            return p, debts[0]
    raise AssertionError("no liquidatable account with a single debt asset on the devnet")


def test_grace_period_holds_exactly_while_the_pool_refuses(
    devnet: DevnetInfo, picked: tuple[Position, str]
) -> None:
    assert devnet.aave36 is not None
    d = devnet.aave36
    chain = DevChain(devnet.rpc_url)
    before, debt_asset = picked
    assert before.liquidation_hold is None
    # the risk/emergency admin resumes the debt reserve with a grace period (PoolConfigurator)
    chain.send(
        DEPLOYER,
        d.pool_configurator,
        calldata("setReservePause(address,bool,uint40)", debt_asset, False, GRACE_S),
        gas=300_000,
    )
    until = chain.view(d.pool, "getLiquidationGracePeriod(address)", ["uint40"], debt_asset)
    head = chain.rpc("eth_getBlockByNumber", ["latest", False])
    assert until == int(head["timestamp"], 16) + GRACE_S

    state, positions = _scan(devnet)
    held = positions[before.account]
    assert held.health_factor is not None and held.health_factor < 10**18
    assert not held.liquidatable
    assert held.liquidation_hold is not None
    assert held.liquidation_hold.reason == "grace_period"
    assert held.liquidation_hold.until == until
    assert held.liquidation_hold.assets == (debt_asset,)
    assert position_json(held)["liquidation_hold"] == {
        "reason": "grace_period",
        "until": until,
        "assets": [debt_asset],
    }
    assert "grace period until" in status_text(held)
    # the stored verdict: not LIQUIDATABLE whatever the screen says, and why
    screened = RiskVerdict("LIQUIDATABLE", ("HF_BELOW_1",), 1.0, 3600.0)
    verdict = risk_assessed(held, screened)
    assert verdict.tier == "CRITICAL" and verdict.reasons[:2] == ["HF_BELOW_1", "LIQUIDATION_HELD"]
    assert "not liquidatable now: liquidation grace period until" in verdict.reason
    assert quotes(AaveV3Adapter(), state, held) == []
    calls = _calls(state, held)
    assert simulate(chain, d.pool, calls, state.block.number) == (
        ["LiquidationGraceSentinelCheckFailed"] * len(calls)
    )
    assert _estimate_reverts(chain, d.pool, calls[0])

    # the last second of the grace: still held on both sides
    chain.rpc("evm_setNextBlockTimestamp", [hex(until)])
    chain.mine()
    state, positions = _scan(devnet)
    assert state.block.timestamp == until
    assert not positions[before.account].liquidatable
    assert positions[before.account].liquidation_hold is not None
    assert set(simulate(chain, d.pool, calls, state.block.number)) == {
        "LiquidationGraceSentinelCheckFailed"
    }

    # one second later the Pool accepts, and so do we
    chain.increase_time(1)
    chain.mine()
    state, positions = _scan(devnet)
    assert state.block.timestamp == until + 1
    after = positions[before.account]
    assert after.liquidatable and after.liquidation_hold is None
    assert status_text(after) == "LIQUIDATABLE"
    results = simulate(chain, d.pool, calls, state.block.number)
    assert None in results and "LiquidationGraceSentinelCheckFailed" not in results
    assert quotes(AaveV3Adapter(), state, after)
    assert not _estimate_reverts(chain, d.pool, calls[results.index(None)])


def test_a_grace_period_on_one_collateral_leaves_the_other_pairs(devnet: DevnetInfo) -> None:
    """An account with two quotable collaterals stays liquidatable through the other one: the
    quote of the held pair is gone exactly where the Pool refuses it."""
    assert devnet.aave36 is not None
    d = devnet.aave36
    chain = DevChain(devnet.rpc_url)
    state, positions = _scan(devnet)
    adapter = AaveV3Adapter()
    found = None
    for p in positions.values():
        if p.liquidatable:
            by_collateral = {q.collateral_asset: q for q in quotes(adapter, state, p)}
            if len(by_collateral) >= 2:
                found = p, list(by_collateral.values())
                break
    assert found is not None, "no liquidatable account with two quotable collaterals"
    position, (held_q, free_q, *_) = found
    chain.send(
        DEPLOYER,
        d.pool_configurator,
        calldata("setReservePause(address,bool,uint40)", held_q.collateral_asset, False, 600),
        gas=300_000,
    )
    state, positions = _scan(devnet)
    now = positions[position.account]
    assert now.liquidatable and now.liquidation_hold is None
    left = {(q.collateral_asset, q.debt_asset) for q in quotes(adapter, state, now)}
    assert (held_q.collateral_asset, held_q.debt_asset) not in left
    assert (free_q.collateral_asset, free_q.debt_asset) in left
    calls = [
        liquidation_call_data(q.collateral_asset, q.debt_asset, position.account, 2**256 - 1)
        for q in (held_q, free_q)
    ]
    assert simulate(chain, d.pool, calls, state.block.number) == [
        "LiquidationGraceSentinelCheckFailed",
        None,
    ]
