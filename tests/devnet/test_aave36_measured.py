"""The issue's measured 3.5 case, rebuilt on the devnet's Aave V3.6 market: $1,000 of WETH
(LT 83%) + $300 of WBTC (LT 78%) against 1,020 USDC, WETH then at $2,841.00. The Pool says
healthy (HF >= 1, liquidationCall refused); so do we, to the wei; 3.0.2's rules (truncated
average LT) would have called it liquidatable."""

from __future__ import annotations

from onchain.app.pipeline import scan
from onchain.devnet.build import DevnetInfo
from onchain.devnet.chain import DevChain, calldata
from onchain.devnet.control import set_raw_price
from onchain.protocols.aave_v3 import math as am
from onchain.protocols.aave_v3.adapter import scaled_balances, user_reserve_inputs
from onchain.protocols.aave_v3.rules import V3_0_2
from onchain.protocols.base import MarketRef
from onchain.rpc.client import RpcClient
from tests.helpers.aave36_support import fund_liquidator, liquidation_call_data, simulate
from tests.helpers.aave_oracle import ours_as_pool_tuple, pool_account_data

WAD = 10**18
USER = "0x0000000000000000000000000000000000035035"


def test_weth_wbtc_vs_usdc_at_2841_is_healthy_as_the_pool_says(devnet: DevnetInfo) -> None:
    assert devnet.aave36 is not None
    d = devnet.aave36
    chain = DevChain(devnet.rpc_url)
    fund_liquidator(chain, devnet)
    chain.set_balance([USER], 10**20)
    weth, wbtc, usdc = d.tokens["WETH"], d.tokens["WBTC"], d.tokens["USDC"]
    supply = "supply(address,uint256,address,uint16)"
    for token, amount in ((weth, 10**18 // 3), (wbtc, 500_000)):  # $1,000 and $300
        chain.send(USER, token, calldata("mint(uint256)", amount), gas=200_000)
        chain.send(USER, token, calldata("approve(address,uint256)", d.pool, 2**256 - 1))
        chain.send(USER, d.pool, calldata(supply, token, amount, USER, 0), gas=800_000)
    borrow = calldata(
        "borrow(address,uint256,uint256,uint16,address)", usdc, 1_020 * 10**6, 2, 0, USER
    )
    chain.send(USER, d.pool, borrow, gas=1_000_000)
    before = int(chain.view(d.price_feeds["WETH"], "latestAnswer()", ["int256"]))
    block = set_raw_price(devnet.rpc_url, devnet.aave, "WETH", 2_841 * 10**8, same_timestamp=True)
    try:
        client = RpcClient(devnet.rpc_url)
        result = scan(client, MarketRef("aave-v3", d.addresses_provider), accounts=[USER])
        (position,) = result.positions
        assert result.block.number == block
        truth = pool_account_data(chain, d.pool, [USER], block)[0]
        assert ours_as_pool_tuple(position) == truth
        assert WAD <= truth[5] < WAD + WAD // 10_000 and not position.liquidatable
        call = liquidation_call_data(weth, usdc, USER, 2**256 - 1)
        assert simulate(chain, d.pool, [call], block) == ["HealthFactorNotBelowThreshold"]
        # the same balances under 3.0.2's rules: liquidatable
        state = result.market_state
        inputs = user_reserve_inputs(
            state, int(position.extra["user_configuration"]), scaled_balances(position)
        )
        old = am.calculate_user_account_data(inputs, rules=V3_0_2)
        assert old.health_factor < WAD
        print(f"\nWETH $2,841: Pool and ours HF {truth[5]}, 3.0.2 rules {old.health_factor}")
    finally:
        set_raw_price(devnet.rpc_url, devnet.aave, "WETH", before, same_timestamp=True)
