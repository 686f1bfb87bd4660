"""The liquidation price we report for a Morpho position is exact: with the market's `OracleMock`
set one unit above it the contract refuses to liquidate; at it and one unit below, it liquidates.
Blocks keep the scanned block's timestamp, so no interest accrues between our reading and the
contract's."""

from __future__ import annotations

import random

from onchain.app.pipeline import scan
from onchain.devnet.build import DevnetInfo
from onchain.devnet.chain import DevChain
from onchain.devnet.morpho import set_oracle_price
from onchain.protocols.base import MarketRef, Position
from onchain.rpc.client import RpcClient
from tests.helpers.morpho_support import HEALTHY, contract_verdicts, fund_liquidator


def test_one_oracle_unit_either_side_of_our_liquidation_price_flips_the_contract(
    devnet: DevnetInfo,
) -> None:
    morpho = devnet.morpho
    assert morpho is not None
    chain = DevChain(devnet.rpc_url)
    fund_liquidator(chain, morpho)
    chain.increase_time(3 * 86400)  # interest has accrued since the last touch of each market
    chain.mine()
    client = RpcClient(devnet.rpc_url)
    deployment = MarketRef("morpho-blue", morpho.morpho, morpho.deploy_block)
    first = scan(client, deployment)
    rng = random.Random(5)
    picked: list[Position] = []
    for m in morpho.markets:
        in_market = sorted(
            (p for p in first.positions if p.market == m.id and p.has_debt),
            key=lambda p: p.health_factor or 0,
        )
        picked += in_market[:1] + rng.sample(in_market[1:], 2)  # the riskiest and two others
    checked = 0
    for position in picked:
        flip = position.extra["liquidation_oracle_price"]
        one_market = MarketRef(
            "morpho-blue", morpho.morpho, morpho.deploy_block, market_id=position.market
        )
        for price, expect_liquidatable in ((flip + 1, False), (flip, True), (flip - 1, True)):
            block = set_oracle_price(
                devnet.rpc_url, morpho, position.market, price, same_timestamp=True
            )
            ours = scan(client, one_market, block_number=block, accounts=[position.account])
            assert ours.block.timestamp == first.block.timestamp
            (now,) = ours.positions
            assert now.extra["liquidation_oracle_price"] == flip  # same debt, same flip price
            assert now.liquidatable is expect_liquidatable
            (verdict, reason) = contract_verdicts(chain, morpho, [now], block)[0]
            assert verdict is expect_liquidatable, (position.account, price, reason)
            if not verdict:
                assert reason == HEALTHY
            checked += 1
        collateral = now.assets[0]
        assert collateral.liquidation_price_base == flip * 10**collateral.decimals // 10**36
    assert checked == 3 * 3 * len(morpho.markets)
