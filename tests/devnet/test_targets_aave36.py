"""`targets` on the devnet's Aave V3.6 market: the same moves as tests/cli/test_targets.py (prices
down, WETH's pool under its oracle, base fee 100 gwei), then the top targets are EXECUTED by a
funded liquidator and their seized collateral sold on the real router: the realised profit
matches our estimate within 5%, with 3.3+'s close factor and dust rules in the quotes."""

from __future__ import annotations

import pytest

from onchain.app.targets import find_targets
from onchain.devnet.build import DevnetInfo
from onchain.devnet.chain import DevChain
from onchain.devnet.morpho import set_prices_everywhere
from onchain.protocols.aave_v3.adapter import LIQUIDATION_GAS
from onchain.protocols.base import MarketRef
from onchain.rpc.client import RpcClient
from tests.helpers.targets_support import (
    ARBITRAGEUR,
    BASE_FEE,
    LIQUIDATOR,
    LP,
    PRICES,
    UINT256_MAX,
    WETH_POOL_PRICE,
    Scenario,
    _executable,
    _execute,
    _in_snapshot,
    _move_pool,
    _settings,
)


@pytest.fixture(scope="module")
def scenario36(devnet: DevnetInfo) -> Scenario:
    assert devnet.morpho is not None and devnet.aave36 is not None
    chain = DevChain(devnet.rpc_url)
    chain.set_balance([LIQUIDATOR, ARBITRAGEUR, LP], 10**24)
    set_prices_everywhere(devnet.rpc_url, devnet.aave, devnet.morpho, PRICES)
    _move_pool(chain, devnet, "WETH/USDC", WETH_POOL_PRICE)
    _move_pool(chain, devnet, "WBTC/USDC", PRICES["WBTC"])
    _move_pool(chain, devnet, "WBTC/WETH", PRICES["WBTC"] / PRICES["WETH"])
    chain.rpc("anvil_setNextBlockBaseFeePerGas", [hex(BASE_FEE)])
    chain.mine()
    block = chain.block_number()
    client = RpcClient(devnet.rpc_url, expected_chain_id=devnet.chain_id)
    settings = _settings(devnet)
    market = MarketRef("aave-v3", devnet.aave36.addresses_provider)
    result = find_targets(client, [market], settings, block_number=block)
    return Scenario(devnet, block, settings, result.targets, result.native_price_usd)


def test_top_targets_of_the_36_market_realise_the_estimated_profit(scenario36: Scenario) -> None:
    info = scenario36.info
    assert info.aave36 is not None
    chain = DevChain(info.rpc_url)
    chosen = _executable(scenario36.targets, "aave-v3", 5)
    assert len(chosen) == 5
    assert {t.quote.limited_by for t in scenario36.targets} >= {"debt", "close_factor"}
    print("\naccount      pair        limit         estimated   realised   diff")
    for t in chosen:
        assert t.profitable
        r = _in_snapshot(
            chain,
            lambda t=t: _execute(chain, info, t, scenario36.native_usd, info.aave36.pool),
        )
        diff = r.profit_base / t.net_profit_base - 1
        print(
            f"{t.account[:10]}  {t.collateral_symbol}/{t.debt_symbol:5} {t.quote.limited_by:12}"
            f"{t.net_profit_base:11.2f} {r.profit_base:10.2f}  {diff:+.3%}  "
            f"(gas {r.liquidation_gas}+{r.swap_gas})"
        )
        assert abs(r.liquidation_gas / LIQUIDATION_GAS - 1) < 0.35
        assert abs(diff) < 0.05
        assert r.out_raw == pytest.approx(t.dex_out_raw, rel=1e-3)
        if t.quote.call_args["debt_to_cover"] == UINT256_MAX:  # all the debt, 12 s of interest
            assert r.repaid_raw == pytest.approx(t.quote.debt_to_cover_raw, rel=1e-5)
            assert r.seized_raw == pytest.approx(t.quote.collateral_seized_raw, rel=1e-5)
        else:  # an amount: the exact integers
            assert r.repaid_raw == t.quote.debt_to_cover_raw
            assert r.seized_raw == t.quote.collateral_seized_raw
