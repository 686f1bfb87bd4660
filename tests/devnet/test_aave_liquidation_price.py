"""The liquidation price we report is exact: with the oracle at that price the Pool calls the
position liquidatable, and one oracle unit on the safe side it does not."""

from __future__ import annotations

import random

from onchain.app.pipeline import scan
from onchain.devnet.build import DevnetInfo
from onchain.devnet.chain import DevChain
from onchain.devnet.control import set_raw_price
from onchain.protocols.base import MarketRef
from onchain.rpc.client import RpcClient
from tests.helpers.aave_oracle import pool_account_data

WAD = 10**18


def test_one_oracle_unit_either_side_of_the_liquidation_price_flips_the_pool_verdict(
    devnet: DevnetInfo,
) -> None:
    chain = DevChain(devnet.rpc_url)
    client = RpcClient(devnet.rpc_url)
    symbol_of = {address: symbol for symbol, address in devnet.aave.tokens.items()}
    result = scan(client, MarketRef("aave-v3", devnet.aave.addresses_provider))
    rng = random.Random(5)
    with_debt = [p for p in result.positions if p.has_debt]
    sample = sorted(with_debt, key=lambda p: p.health_factor or 0)[:4] + rng.sample(with_debt, 8)
    checked = 0
    for position in sample:
        for asset in position.assets:
            flip = asset.liquidation_price_base
            if flip is None:
                continue
            symbol = symbol_of[asset.asset]
            falling = (
                asset.collateral_raw > 0
                and asset.collateral_base * asset.liquidation_threshold_bps
                >= (asset.debt_base * 10_000)
            )
            safe_side = flip + 1 if falling else flip - 1
            # the current position must still be the one we computed: same timestamp, no accrual
            block = set_raw_price(devnet.rpc_url, devnet.aave, symbol, flip, same_timestamp=True)
            at_flip = pool_account_data(chain, devnet.aave.pool, [position.account], block)[0][5]
            block = set_raw_price(
                devnet.rpc_url, devnet.aave, symbol, safe_side, same_timestamp=True
            )
            beside = pool_account_data(chain, devnet.aave.pool, [position.account], block)[0][5]
            set_raw_price(
                devnet.rpc_url, devnet.aave, symbol, asset.price_base, same_timestamp=True
            )
            assert at_flip < WAD <= beside, (position.account, symbol, flip, at_flip, beside)
            checked += 1
    assert checked >= 15
