"""`onchain targets` on the devnet: the targets we rank are real. Prices move, the pools follow
(WETH's pool a little below its oracle, so some positions are one oracle update away), base fee
100 gwei; then for the top targets of both protocols a funded liquidator EXECUTES the
liquidation and sells the seized collateral through the real SwapRouter, and the realised
profit (debt asset received - debt repaid - gas used × base fee, at oracle prices) matches our
estimate within 5%. Each execution runs in an anvil snapshot, reverted afterwards, so every
target is executed against the state we estimated at."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

from onchain.app.targets import DEFAULT_SWAP_GAS, find_targets
from onchain.devnet.build import DevnetInfo
from onchain.devnet.chain import DevChain, calldata
from onchain.devnet.config_file import write_devnet_config
from onchain.devnet.morpho import set_prices_everywhere
from onchain.devnet.uniswap import sqrt_price_x96, tick_at
from onchain.protocols.aave_v3.adapter import LIQUIDATION_GAS as AAVE_GAS
from onchain.protocols.base import MarketRef
from onchain.protocols.morpho_blue.adapter import LIQUIDATION_GAS as MORPHO_GAS
from onchain.rpc.client import RpcClient
from tests.helpers.targets_support import (
    ARBITRAGEUR,
    BASE_FEE,
    DEADLINE,
    LIQUIDATOR,
    LP,
    PRICES,
    WETH_POOL_PRICE,
    Realised,
    Scenario,
    _approve,
    _executable,
    _execute,
    _give,
    _in_snapshot,
    _move_pool,
    _settings,
)

ONCHAIN = [str(Path(sys.executable).with_name("onchain"))]


def _morpho_weth_usdc_pool(chain: DevChain, info: DevnetInfo, price: float) -> None:
    """A Uniswap V3 pool for the Morpho market's own tokens (the devnet ships none), so seized
    Morpho collateral can be sold through the same router."""
    assert info.uniswap is not None and info.morpho is not None
    weth, usdc = info.morpho.tokens["WETH"], info.morpho.tokens["USDC"]
    dec = info.morpho.decimals
    t0, t1 = sorted([weth, usdc], key=lambda x: int(x, 16))
    d0, d1 = (dec["WETH"], dec["USDC"]) if t0 == weth else (dec["USDC"], dec["WETH"])
    price_raw = (price if t0 == weth else 1 / price) * 10 ** (d1 - d0)
    npm = info.uniswap.position_manager
    create = "createAndInitializePoolIfNecessary(address,address,uint24,uint160)"
    chain.send(LP, npm, calldata(create, t0, t1, 500, sqrt_price_x96(price_raw)), gas=6_000_000)
    a0 = 4_000_000 / (price if t0 == weth else 1.0) * 10**d0
    a1 = 4_000_000 / (price if t1 == weth else 1.0) * 10**d1
    for token, amount in ((t0, int(a0)), (t1, int(a1))):
        _give(chain, info, token, LP, amount)
        _approve(chain, token, LP, npm)
    lower, upper = tick_at(price_raw * 0.88, 10), tick_at(price_raw * 1.12, 10) + 10
    mint = (
        "mint((address,address,uint24,int24,int24,uint256,uint256,uint256,uint256,address,uint256))"
    )
    params = (t0, t1, 500, lower, upper, int(a0), int(a1), 0, 0, LP, DEADLINE)
    chain.send(LP, npm, calldata(mint, params), gas=6_000_000)


def _markets(info: DevnetInfo) -> list[MarketRef]:
    assert info.morpho is not None
    return [
        MarketRef("aave-v3", info.aave.addresses_provider),
        MarketRef("morpho-blue", info.morpho.morpho, info.morpho.deploy_block),
    ]


@pytest.fixture(scope="module")
def scenario(devnet: DevnetInfo) -> Scenario:
    assert devnet.morpho is not None
    chain = DevChain(devnet.rpc_url)
    chain.set_balance([LIQUIDATOR, ARBITRAGEUR, LP], 10**24)
    set_prices_everywhere(devnet.rpc_url, devnet.aave, devnet.morpho, PRICES)
    _move_pool(chain, devnet, "WETH/USDC", WETH_POOL_PRICE)
    _move_pool(chain, devnet, "WBTC/USDC", PRICES["WBTC"])
    _move_pool(chain, devnet, "WBTC/WETH", PRICES["WBTC"] / PRICES["WETH"])
    _morpho_weth_usdc_pool(chain, devnet, PRICES["WETH"])
    chain.rpc("anvil_setNextBlockBaseFeePerGas", [hex(BASE_FEE)])
    chain.mine()
    block = chain.block_number()
    client = RpcClient(devnet.rpc_url, expected_chain_id=devnet.chain_id)
    settings = _settings(devnet)
    result = find_targets(client, _markets(devnet), settings, block_number=block)
    assert result.base_fee_wei == BASE_FEE
    assert result.native_price_usd == PRICES["WETH"]  # the WETH oracle price
    return Scenario(devnet, block, settings, result.targets, result.native_price_usd)


def test_top_targets_of_both_protocols_realise_the_estimated_profit(scenario: Scenario) -> None:
    chain = DevChain(scenario.info.rpc_url)
    chosen = _executable(scenario.targets, "aave-v3", 3) + _executable(
        scenario.targets, "morpho-blue", 2
    )
    assert len(chosen) == 5
    print("\nprotocol     account      pair        estimated   realised   diff")
    for t in chosen:
        assert t.profitable
        r = _in_snapshot(chain, lambda t=t: _execute(chain, scenario.info, t, scenario.native_usd))
        diff = r.profit_base / t.net_profit_base - 1
        print(
            f"{t.protocol:12} {t.account[:10]}  {t.collateral_symbol}/{t.debt_symbol:5} "
            f"{t.net_profit_base:11.2f} {r.profit_base:10.2f}  {diff:+.3%}  "
            f"(gas {r.liquidation_gas}+{r.swap_gas}, slippage {t.slippage_bps:.1f} bps)"
        )
        assert abs(diff) < 0.05
        assert r.out_raw == pytest.approx(t.dex_out_raw, rel=1e-3)
        if t.protocol == "aave-v3":  # same prices, same close factor: the exact integers
            assert r.repaid_raw == t.quote.debt_to_cover_raw
            assert r.seized_raw == t.quote.collateral_seized_raw
        else:  # 12 s of interest between the pinned block and the call
            assert r.repaid_raw == pytest.approx(t.quote.debt_to_cover_raw, rel=1e-5)
            assert r.seized_raw == pytest.approx(t.quote.collateral_seized_raw, rel=1e-5)
        default = AAVE_GAS if t.protocol == "aave-v3" else MORPHO_GAS
        assert abs(r.liquidation_gas / default - 1) < 0.35
        assert abs(r.swap_gas / DEFAULT_SWAP_GAS - 1) < 0.35


def test_a_target_ranked_unprofitable_loses_money_when_executed(scenario: Scenario) -> None:
    losers = [
        t
        for t in scenario.targets
        if not t.profitable and t.dex_source == "quoter" and not t.pending
    ]
    assert losers, "at 100 gwei some small positions cost more gas than their bonus"
    assert scenario.targets.index(losers[0]) > max(
        i for i, t in enumerate(scenario.targets) if t.profitable
    )  # ranked below every profitable one
    t = losers[-1]  # the worst one
    chain = DevChain(scenario.info.rpc_url)
    r = _in_snapshot(chain, lambda: _execute(chain, scenario.info, t, scenario.native_usd))
    assert r.profit_base < 0
    assert abs(r.profit_base - t.net_profit_base) < 0.05 * t.gas_cost_base


def test_pending_targets_are_one_oracle_update_away_and_pay_after_it(scenario: Scenario) -> None:
    pending = [t for t in scenario.targets if t.pending]
    assert pending, "WETH's pool sits 1.6% under its oracle: the next update liquidates some"
    for t in pending:
        assert t.health_factor is not None and t.health_factor >= 10**18
        assert t.health_factor_pending is not None and t.health_factor_pending < 1.0
    t = next(x for x in pending if x.protocol == "aave-v3" and x.dex_source == "quoter")
    info = scenario.info
    chain = DevChain(info.rpc_url)
    assert info.morpho is not None

    def after_the_update() -> Realised:
        set_prices_everywhere(info.rpc_url, info.aave, info.morpho, {"WETH": WETH_POOL_PRICE})
        return _execute(chain, info, t, scenario.native_usd)

    r = _in_snapshot(chain, after_the_update)
    print(f"\npending {t.account}: estimated {t.net_profit_base:.2f}, realised {r.profit_base:.2f}")
    assert abs(r.profit_base / t.net_profit_base - 1) < 0.05


def test_cli_json_lists_the_same_targets_with_every_field(
    scenario: Scenario, tmp_path: Path
) -> None:
    info = scenario.info
    assert info.uniswap is not None
    path = tmp_path / "devnet.toml"
    write_devnet_config(path, info)  # names the devnet's Uniswap factory and quoter
    assert info.uniswap.quoter in path.read_text()
    args = ["targets", "--config", str(path), "--block", str(scenario.block), "--json"]
    result = subprocess.run(ONCHAIN + args, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    rows = json.loads(result.stdout)
    fields = {
        "account",
        "protocol",
        "market",
        "block_number",
        "block_hash",
        "health_factor",
        "collateral_asset",
        "debt_asset",
        "debt_to_cover_raw",
        "collateral_seized_raw",
        "bonus",
        "gas_cost_base",
        "dex_out_raw",
        "slippage_bps",
        "net_profit_base",
        "tier",
        "pending",
    }
    assert rows and all(fields <= set(row) for row in rows)
    assert {r["protocol"] for r in rows} == {"aave-v3", "morpho-blue"}
    assert {r["block_number"] for r in rows} == {scenario.block}
    top = scenario.targets[0]
    assert (rows[0]["account"], rows[0]["debt_to_cover_raw"], rows[0]["dex_out_raw"]) == (
        top.account,
        str(top.quote.debt_to_cover_raw),
        str(top.dex_out_raw),
    )
    assert any(r["tier"] == "PENDING" for r in rows)
    assert any(not r["profitable"] and r["net_profit_base"] < 0 for r in rows)
    profits = [r["net_profit_usd"] for r in rows]
    assert profits == sorted(profits, reverse=True)
    # a profit resting on the DEX paying above the oracle (not on the bonus) is flagged
    gapped = [r for r in rows if r["profit_from_oracle_gap"]]
    assert all(r["dex_oracle_gap_base"] >= 0 for r in rows)
    assert all(r["profitable"] and r["dex_oracle_gap_base"] > 0 for r in gapped)
    assert ("DEX paying above the oracle price" in result.stderr) == bool(gapped)
    print(f"\n{len(gapped)} of {len(rows)} targets profit mostly from the DEX-oracle gap")
    table = subprocess.run(
        [*ONCHAIN, *args[:-1], "--limit", "0"], capture_output=True, text=True, timeout=120
    )
    assert table.returncode == 0, table.stderr
    assert "unprofitable" in table.stdout and "PENDING" in table.stdout


@pytest.mark.parametrize(
    ("extra", "words"),
    [
        (["--market", "0x1234"], "malformed market address"),
        (["--dex-quoter", "0x" + "11" * 20], "--dex-factory"),
        (["--native-price-usd", "-5"], "must be > 0"),
    ],
)
def test_bad_input_is_one_clear_error_and_exit_2(
    scenario: Scenario, extra: list[str], words: str
) -> None:
    args = ["targets", "--rpc", scenario.info.rpc_url, "--json"]
    if "--market" not in extra:
        args += ["--market", scenario.info.aave.addresses_provider]
    result = subprocess.run(ONCHAIN + args + extra, capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert result.stdout == ""
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and words in lines[0], result.stderr


def test_gas_and_slippage_are_priced_per_target(scenario: Scenario) -> None:
    for t in scenario.targets:
        expected = t.gas_units * BASE_FEE / 1e18 * scenario.native_usd / t.base_usd
        assert t.gas_cost_base == pytest.approx(expected)
        assert math.isfinite(t.slippage_bps)
        if t.dex_source == "quoter" and not t.pending:  # pools sit at (or under) the oracle
            assert t.slippage_bps > 0
