"""Cold start on a DEX pool: with no oracle history and no store, the volatility of an asset is
fitted on its reference pool's hourly TWAPs (Uniswap V3 ``observe``), labelled `dex twap` with
the pool and its age, and it rises when the pool's price crashes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from eth_abi import decode

from onchain.app.market_data import feed_history
from onchain.app.market_data.dex_twap import SLOT0_TYPES
from onchain.app.pipeline import run_plan, scan
from onchain.app.risk_context import RiskSettings, VolatilitySource, assess_positions
from onchain.config import load_config
from onchain.devnet.build import DevnetInfo
from onchain.devnet.chain import DEPLOYER, DevChain, calldata
from onchain.devnet.config_file import devnet_config_text
from onchain.protocols.base import MarketRef
from onchain.protocols.registry import get_adapter
from onchain.rpc.client import RpcClient
from tests.helpers.oracle_sources import new_feed
from tests.helpers.uniswap_support import _pool_weth_price_usd, _swap_weth_for_usdc

HOUR = 3600

pytestmark = [pytest.mark.devnet, pytest.mark.slow]


def _eth_volatility(devnet: DevnetInfo, config: Path) -> VolatilitySource:
    client = RpcClient(devnet.rpc_url)
    result = scan(client, MarketRef("aave-v3", devnet.aave.addresses_provider))
    positions = [p for p in result.positions if p.has_debt]
    plan = get_adapter("aave-v3").plan_market_snapshot(result.market_state, result.block)
    snapshot = run_plan(client, plan, result.block)
    settings = RiskSettings.from_config(load_config(config).risk)
    report = assess_positions(
        client, result.block, positions, settings, horizon_s=6 * HOUR, market_snapshots=[snapshot]
    )
    return report.volatility["ETH"]


def _cardinality(chain: DevChain, pool: str) -> int:
    return int(decode(SLOT0_TYPES, chain.call(pool, calldata("slot0()")))[3])


def test_a_cold_monitor_starts_on_the_pools_twap_and_follows_its_crash(
    devnet: DevnetInfo, tmp_path: Path
) -> None:
    # the feeds' history is cached per address for the process; other modules' devnets used
    # the same addresses: this one's feeds have published nothing
    feed_history._CACHE.clear()
    feed_history._NO_ROUNDS.clear()
    config = tmp_path / "devnet.toml"
    config.write_text(devnet_config_text(devnet))
    chain = DevChain(devnet.rpc_url)
    assert devnet.uniswap is not None
    pool = devnet.uniswap.pools["WETH/USDC"]["pool"]
    cold = _eth_volatility(devnet, config)
    assert cold.source == "config default"  # one observation: no TWAP history yet

    assert _cardinality(chain, pool) < 40
    chain.send(DEPLOYER, pool, calldata("increaseObservationCardinalityNext(uint16)", 64))
    rng = np.random.default_rng(16)
    for _ in range(30):  # 30 quiet hours: one small trade an hour writes an observation
        chain.increase_time(HOUR)
        _swap_weth_for_usdc(devnet, int(rng.uniform(0.5, 3.0) * 10**18))
    assert _cardinality(chain, pool) == 64
    # the oracle's WETH source was just replaced: the new feed's history is minutes long
    new_feed(chain, devnet, "WETH", _pool_weth_price_usd(devnet))
    calm = _eth_volatility(devnet, config)
    assert calm.source == "dex twap" and calm.feed == pool
    assert calm.hourly_closes >= 25 and calm.age_s is not None and calm.age_s < HOUR

    start = _pool_weth_price_usd(devnet)
    for hour in range(1, 4):  # three hours of heavy selling: about 3% lower each hour
        chain.increase_time(HOUR)
        for _ in range(40):
            if _pool_weth_price_usd(devnet) <= start * 0.97**hour:
                break
            _swap_weth_for_usdc(devnet, 300 * 10**18)
    chain.increase_time(HOUR)
    chain.mine()  # the last hour's TWAP holds the crash
    crash = _eth_volatility(devnet, config)
    assert crash.source == "dex twap" and crash.hourly_closes > calm.hourly_closes
    assert crash.annual_volatility > 2 * calm.annual_volatility
    print("dex twap ETH", calm.annual_volatility, "->", crash.annual_volatility)
