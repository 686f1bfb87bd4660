"""Our Morpho Blue verdicts equal the real contract's, for every seeded borrower at every step of
a price and time path: `liquidate` succeeds exactly for the positions we call liquidatable, the
debt we compute equals what `repay` charges after accrual (to the wei), our off-chain accrual
equals `market()` after `accrueInterest` in the same block, and a real full liquidation leaves
exactly the bad debt we predicted."""

from __future__ import annotations

from typing import Any

import pytest
from eth_abi import decode
from eth_utils import keccak

from onchain.app.pipeline import load_market, read_positions, scan
from onchain.devnet.build import DevnetInfo
from onchain.devnet.chain import DevChain, calldata
from onchain.devnet.morpho import PARAMS, MorphoDeployment, set_prices_everywhere
from onchain.protocols.base import MarketRef, Position
from onchain.protocols.morpho_blue import math
from onchain.protocols.morpho_blue.adapter import MorphoState
from onchain.rpc.client import RpcClient
from onchain.rpc.multicall import MULTICALL3_ADDRESS, decode_aggregate3, encode_aggregate3
from tests.helpers.morpho_support import (
    HEALTHY,
    LIQUIDATOR,
    contract_debts,
    contract_verdicts,
    fund_liquidator,
)

LIQUIDATE_TOPIC_SIG = "Liquidate(bytes32,address,address,uint256,uint256,uint256,uint256,uint256)"

# (label, USD prices moved, seconds of time before the step). Interest alone makes the closest
# borrowers liquidatable on the first step; the last leaves some with bad debt.
PATH: list[tuple[str, dict[str, float], int]] = [
    ("seeded + 2 days of interest", {}, 2 * 86400),
    ("ETH -5%", {"WETH": 2850.0}, 3600),
    ("BTC -8%, a week of interest", {"WBTC": 55200.0}, 7 * 86400),
    (
        "ETH -12%, BTC -10%, wstETH/ETH -1%",
        {"WETH": 2640.0, "WBTC": 54000.0, "wstETH": 3057.912},
        0,
    ),
    ("30 days of interest", {}, 30 * 86400),
    ("ETH -25%, BTC -30%", {"WETH": 2250.0, "WBTC": 42000.0}, 600),
]


# -- the contract as the reference --------------------------------------------------------------


def contract_markets_after_accrual(
    chain: DevChain, morpho: MorphoDeployment, block: int
) -> dict[str, tuple[int, ...]]:
    """`accrueInterest` then `market()` for every market, inside one eth_call at `block`."""
    calls = []
    for m in morpho.markets:
        calls.append((morpho.morpho, False, calldata(f"accrueInterest({PARAMS})", m.params)))
        calls.append((morpho.morpho, False, calldata("market(bytes32)", bytes.fromhex(m.id[2:]))))
    raw = chain.call(MULTICALL3_ADDRESS, encode_aggregate3(calls), hex(block))
    results = decode_aggregate3(raw)
    return {
        m.id: tuple(decode(["uint128"] * 6, results[2 * i + 1][1]))
        for i, m in enumerate(morpho.markets)
    }


# -- the path -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def morpho_path(devnet: DevnetInfo) -> list[tuple[str, int, MorphoState, list[Position]]]:
    """Walk the path once; at each step keep our state and positions at the step's block."""
    assert devnet.morpho is not None
    chain = DevChain(devnet.rpc_url)
    fund_liquidator(chain, devnet.morpho)
    client = RpcClient(devnet.rpc_url, expected_chain_id=devnet.chain_id)
    market = MarketRef("morpho-blue", devnet.morpho.morpho, devnet.morpho.deploy_block)
    steps = []
    for label, prices, seconds in PATH:
        if seconds:
            chain.increase_time(seconds)
        set_prices_everywhere(devnet.rpc_url, devnet.aave, devnet.morpho, prices)
        result = scan(client, market)
        steps.append((label, result.block.number, result.market_state, result.positions))
    return steps


def test_every_seeded_morpho_borrower_is_discovered(devnet: DevnetInfo, morpho_path) -> None:
    _label, _block, state, positions = morpho_path[0]
    assert devnet.morpho is not None
    assert sorted({p.account for p in positions}) == sorted(devnet.morpho.borrowers)
    assert len(state.markets) == len(devnet.morpho.markets) == 4
    shared = set(devnet.morpho.borrowers) & set(devnet.borrowers)
    assert len(shared) >= len(devnet.morpho.borrowers) // 3  # many hold Aave positions too


def test_off_chain_accrual_equals_market_after_accrueInterest(
    devnet: DevnetInfo, morpho_path
) -> None:
    chain = DevChain(devnet.rpc_url)
    assert devnet.morpho is not None
    compared = 0
    grew = 0
    for label, block, state, _positions in morpho_path:
        truth = contract_markets_after_accrual(chain, devnet.morpho, block)
        for m in state.markets:
            assert m.accrued.as_tuple() == truth[m.id], (label, m.label)
            compared += 1
            grew += m.accrued.total_borrow_assets > m.stored.total_borrow_assets
    assert compared == 4 * len(PATH)
    assert grew >= 3 * len(PATH) - 1  # the three IRM markets accrue at (nearly) every step


def test_verdict_and_debt_equal_the_contract_for_every_position_at_every_step(
    devnet: DevnetInfo, morpho_path
) -> None:
    chain = DevChain(devnet.rpc_url)
    assert devnet.morpho is not None
    compared = 0
    mismatches: list[tuple[Any, ...]] = []
    per_step = []
    for label, block, _state, positions in morpho_path:
        verdicts = contract_verdicts(chain, devnet.morpho, positions, block)
        with_debt = [p for p in positions if p.has_debt]
        debts = dict(
            zip(
                (id(p) for p in with_debt),
                contract_debts(chain, devnet.morpho, with_debt, block),
                strict=True,
            )
        )
        yes = 0
        for position, (liquidatable, reason) in zip(positions, verdicts, strict=True):
            compared += 1
            if not liquidatable and reason != HEALTHY:
                mismatches.append((label, position.account, "unexpected revert", reason))
            if liquidatable != position.liquidatable:
                mismatches.append((label, position.account, position.health_factor, reason))
            if position.has_debt and debts[id(position)] != position.total_debt_base:
                mismatches.append(
                    (label, position.account, debts[id(position)], position.total_debt_base)
                )
            if position.health_factor is not None:
                assert (position.health_factor < math.WAD) == position.liquidatable
            yes += liquidatable
        per_step.append((label, len(positions), yes))
    print(f"\nMorpho exactness: {compared} position-steps compared, {len(mismatches)} mismatches")
    for label, n, yes in per_step:
        print(f"  {label:<40} {n:4d} positions, {yes:4d} liquidatable")
    assert mismatches == []
    assert compared >= 200 * len(PATH)
    for label, n, yes in per_step:  # both verdicts exercised at every step
        assert 0 < yes < n, label


def test_real_full_liquidations_leave_exactly_the_bad_debt_we_predict(
    devnet: DevnetInfo, morpho_path
) -> None:
    """Seize all collateral of the position with the most bad debt in each market, in a block at
    the scanned block's timestamp (no interest in between): the Liquidate event equals ours."""
    chain = DevChain(devnet.rpc_url)
    morpho = devnet.morpho
    assert morpho is not None
    _label, _block, state, positions = morpho_path[-1]
    by_market: dict[str, Position] = {}
    for p in positions:
        if p.liquidatable and p.extra["bad_debt_if_fully_liquidated"] > 0:
            best = by_market.get(p.market)
            if (
                best is None
                or p.extra["bad_debt_if_fully_liquidated"]
                > best.extra["bad_debt_if_fully_liquidated"]
            ):
                by_market[p.market] = p
    assert len(by_market) >= 2
    markets = {m.id: m for m in state.markets}
    expected = {}
    txs = []
    for market_id, p in by_market.items():
        m = markets[market_id]
        collateral = p.assets[0].collateral_raw
        full = math.full_liquidation(
            collateral, p.extra["borrow_shares"], m.accrued, m.price, m.lltv
        )
        assert full.bad_debt_assets == p.extra["bad_debt_if_fully_liquidated"]
        expected[p.account.lower()] = (
            full.repaid_assets,
            full.repaid_shares,
            full.seized_assets,
            full.bad_debt_assets,
            full.bad_debt_shares,
        )
        data = calldata(
            f"liquidate({PARAMS},address,uint256,uint256,bytes)",
            m.params,
            p.account,
            collateral,
            0,
            b"",
        )
        txs.append((LIQUIDATOR, morpho.morpho, data, 2_000_000))
    head = chain.rpc("eth_getBlockByNumber", ["latest", False])
    chain.rpc("evm_setNextBlockTimestamp", [head["timestamp"]])
    chain.set_automine(False)
    try:
        chain.send_many(txs)
        chain.mine()
    finally:
        chain.set_automine(True)
    logs = chain.rpc(
        "eth_getLogs",
        [
            {
                "address": morpho.morpho,
                "fromBlock": "latest",
                "toBlock": "latest",
                "topics": ["0x" + keccak(text=LIQUIDATE_TOPIC_SIG).hex()],
            }
        ],
    )
    assert len(logs) == len(txs)
    for log in logs:
        borrower = "0x" + log["topics"][3][-40:]
        emitted = tuple(int(v) for v in decode(["uint256"] * 5, bytes.fromhex(log["data"][2:])))
        assert emitted == expected[borrower.lower()]
    # the liquidator's own view afterwards: no debt left, the bad debt written off
    after = scan(
        RpcClient(devnet.rpc_url),
        MarketRef("morpho-blue", morpho.morpho, morpho.deploy_block),
        accounts=[p.account for p in by_market.values()],
    )
    liquidated = {(p.market, p.account) for p in by_market.values()}
    assert [q for q in after.positions if (q.market, q.account) in liquidated] == []


def test_one_refresh_of_every_morpho_position_takes_a_handful_of_requests(
    devnet: DevnetInfo, morpho_path
) -> None:
    """Known accounts, a new block: pin it, read every market and every position. The cost is a
    fixed number of HTTP requests, not one per position."""
    assert devnet.morpho is not None
    _label, block_number, _state, positions = morpho_path[-1]
    accounts = sorted({p.account for p in positions})
    client = RpcClient(devnet.rpc_url)
    block = client.pin_block(block_number)
    market = MarketRef("morpho-blue", devnet.morpho.morpho, devnet.morpho.deploy_block)
    state = load_market(client, market, block)
    again = read_positions(client, "morpho-blue", state, accounts, block)
    assert [(p.market, p.account, p.health_factor) for p in again] == [
        (p.market, p.account, p.health_factor) for p in positions
    ]
    print(
        f"\nrefresh of {len(again)} Morpho positions in {len(state.markets)} markets: "
        f"{client.requests_sent} HTTP requests ({client.calls_sent} JSON-RPC calls)"
    )
    assert client.requests_sent <= 8
