"""`health_after` on the devnet's Aave V3.6 market: the health factor we predict for a supply or a
repay (3.5's rayDivFloor scaling, 3.5's HF formula, eMode bitmaps, LT-0 eMode collateral) is the
one the Pool reports once the real transaction lands in a block with the same timestamp."""

from __future__ import annotations

import random

from onchain.app.pipeline import scan
from onchain.devnet.build import DevnetInfo
from onchain.devnet.chain import DevChain, calldata
from onchain.protocols.aave_v3.adapter import health_after
from onchain.protocols.base import MarketRef, Position
from onchain.rpc.client import RpcClient
from tests.helpers.aave_oracle import pool_account_data

UINT256_MAX = 2**256 - 1


def _land(chain: DevChain, txs: list[tuple[str, str, bytes, int]], timestamp: str) -> int:
    """Mine `txs` in one block stamped `timestamp` (the scanned block's): no interest accrues."""
    chain.set_automine(False)
    try:
        chain.send_many(txs)
        chain.rpc("evm_setNextBlockTimestamp", [timestamp])
        chain.mine()
    finally:
        chain.set_automine(True)
    return chain.block_number()


def test_supply_and_repay_land_on_the_predicted_health_factor(devnet: DevnetInfo) -> None:
    assert devnet.aave36 is not None
    d = devnet.aave36
    chain = DevChain(devnet.rpc_url)
    client = RpcClient(devnet.rpc_url)
    market = MarketRef("aave-v3", d.addresses_provider)
    first = scan(client, market)
    rng = random.Random(35)
    with_debt = [p for p in first.positions if p.has_debt]
    lt0 = [p for p in with_debt if p.account in d.scenarios["emode_lt0_collateral"]]
    emode = [p for p in with_debt if p.extra["emode_category"] in (1, 2)]
    multi = [p for p in with_debt if sum(1 for a in p.assets if a.collateral_base) >= 2]
    sample: list[Position] = lt0[:2] + rng.sample(emode, 4) + rng.sample(multi, 4)
    checked = 0
    for account in dict.fromkeys(p.account for p in sample):
        result = scan(client, market, accounts=[account])
        state, position = result.market_state, result.positions[0]
        head = chain.rpc("eth_getBlockByNumber", ["latest", False])
        assert int(head["timestamp"], 16) == result.block.timestamp
        collateral = max(
            (a for a in position.assets if a.collateral_enabled and a.collateral_raw),
            key=lambda a: a.collateral_base,
        )
        debt = max((a for a in position.assets if a.debt_raw), key=lambda a: a.debt_base)
        supplied = collateral.collateral_raw // 37 + 12_345
        repaid = debt.debt_raw // 11 + 777
        predicted = health_after(
            state, position, supply={collateral.asset: supplied}, repay={debt.asset: repaid}
        )
        me = position.account
        block = _land(
            chain,
            [
                (me, collateral.asset, calldata("mint(uint256)", supplied), 200_000),
                (me, debt.asset, calldata("mint(uint256)", repaid), 200_000),
                (
                    me,
                    collateral.asset,
                    calldata("approve(address,uint256)", d.pool, UINT256_MAX),
                    100_000,
                ),
                (
                    me,
                    debt.asset,
                    calldata("approve(address,uint256)", d.pool, UINT256_MAX),
                    100_000,
                ),
                (
                    me,
                    d.pool,
                    calldata(
                        "supply(address,uint256,address,uint16)", collateral.asset, supplied, me, 0
                    ),
                    800_000,
                ),
                (
                    me,
                    d.pool,
                    calldata("repay(address,uint256,uint256,address)", debt.asset, repaid, 2, me),
                    800_000,
                ),
            ],
            head["timestamp"],
        )
        actual = pool_account_data(chain, d.pool, [me], block)[0][5]
        assert actual == predicted, (me, position.extra["emode_category"], actual, predicted)
        checked += 1
    assert checked >= 8
