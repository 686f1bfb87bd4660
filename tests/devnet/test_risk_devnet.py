"""The risk module against the real contracts: the JSON interface, the PENDING tier (one oracle
update away, proven by pushing the oracle to the DEX price), and margin advice that, applied on
chain, gives exactly the health factor we predicted and a probability under the target."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from onchain.app.pipeline import load_market, scan
from onchain.app.risk_context import RiskSettings, assess_positions
from onchain.config import load_config
from onchain.devnet.build import DevnetInfo
from onchain.devnet.chain import DevChain, calldata
from onchain.devnet.config_file import devnet_config_text
from onchain.devnet.control import set_prices
from onchain.protocols.aave_v3.adapter import health_after
from onchain.protocols.base import MarketRef
from onchain.rpc.client import RpcClient
from tests.helpers.aave_oracle import pool_account_data
from tests.helpers.uniswap_support import (
    UINT256_MAX,
    _pool_weth_price_usd,
    _swap_weth_for_usdc,
)

ONCHAIN = str(Path(sys.executable).with_name("onchain"))


@pytest.fixture(scope="module")
def config_path(devnet: DevnetInfo, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("cfg") / "devnet.toml"
    path.write_text(devnet_config_text(devnet))
    return path


def _scan_and_assess(devnet: DevnetInfo, config_path: Path, horizon_s: float | None = None):
    client = RpcClient(devnet.rpc_url)
    result = scan(client, MarketRef("aave-v3", devnet.aave.addresses_provider))
    positions = [p for p in result.positions if p.has_debt]
    settings = RiskSettings.from_config(load_config(config_path).risk)
    report = assess_positions(client, result.block, positions, settings, horizon_s=horizon_s)
    return client, result, positions, report


def test_scan_json_rows_carry_the_risk_fields(devnet: DevnetInfo, config_path: Path) -> None:
    run = subprocess.run(
        [
            ONCHAIN,
            "scan",
            "--config",
            str(config_path),
            "--market",
            "aave-v3-devnet",
            "--json",
            "--horizon",
            "1d",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0, run.stderr
    rows = json.loads(run.stdout)
    assert len(rows) == 300
    tiers = {"LIQUIDATABLE", "PENDING", "CRITICAL", "HIGH", "WATCH", "SAFE"}
    checked_drops = 0
    for row in rows:
        assert row["tier"] in tiers
        assert isinstance(row["reasons"], list)
        assert 0.0 <= row["liquidation_probability"] <= 1.0
        assert row["horizon_s"] == 86400
        assert row["pending_health_factor"] is not None  # the devnet config names DEX references
        for asset in row["assets"]:
            assert "liquidation_price" in asset
        drop = row["volatile_drop_to_liquidation"]
        assert drop is None or 0.0 <= drop <= 1.0
        collateral = [
            a for a in row["assets"] if a["collateral_enabled"] and int(a["collateral_raw"])
        ]
        stable_debt = all(
            a["symbol"] in ("USDC", "DAI") for a in row["assets"] if int(a["debt_raw"])
        )
        single = len(collateral) == 1 and collateral[0]["symbol"] == "WETH" and stable_debt
        if single and drop and not row["liquidatable"]:
            # WETH the only collateral, debt in stables: the uniform drop is WETH's own
            # distance to its exact flip price
            weth = collateral[0]
            exact = 1 - int(weth["liquidation_price_base"]) / int(weth["price_base"])
            checked_drops += 1
            assert abs(drop - exact) < 1e-6, (row["account"], row["assets"])
    assert checked_drops >= 10
    # within a day some seeded positions (HF just above 1 on volatile collateral) are at risk
    assert sum(r["liquidation_probability"] > 0.01 for r in rows) >= 5
    assert sum(r["tier"] == "SAFE" for r in rows) >= 150


def test_pending_tier_is_one_oracle_update_from_liquidation(
    devnet: DevnetInfo, config_path: Path
) -> None:
    oracle_weth = 3000.0
    # Sell WETH into the real pool until its price is well past the feed's 0.5% deviation threshold.
    for _ in range(40):
        if _pool_weth_price_usd(devnet) <= oracle_weth * 0.95:
            break
        _swap_weth_for_usdc(devnet, 300 * 10**18)
    pool_price = _pool_weth_price_usd(devnet)
    assert pool_price <= oracle_weth * 0.95
    _client, result, positions, report = _scan_and_assess(devnet, config_path)
    pending_rows = [i for i in range(len(positions)) if report.fields(i)["tier"] == "PENDING"]
    assert len(pending_rows) >= 3
    for i in pending_rows:
        assert not positions[i].liquidatable  # healthy at the oracle price, exactly
        assert "ONE_ORACLE_UPDATE_AWAY" in report.fields(i)["reasons"]
    clearly = [
        positions[i].account
        for i in pending_rows
        if report.fields(i)["pending_health_factor"] < 0.999
    ]
    assert clearly
    # The next oracle update publishes the DEX price: the contract now calls them liquidatable.
    block = set_prices(devnet.rpc_url, devnet.aave, {"WETH": round(pool_price, 8)})
    chain = DevChain(devnet.rpc_url)
    truth = pool_account_data(chain, devnet.aave.pool, clearly, block)
    assert all(row[5] < 10**18 for row in truth), [row[5] for row in truth]
    set_prices(devnet.rpc_url, devnet.aave, {"WETH": oracle_weth})  # leave the oracle as found
    _ = result


def test_applying_the_advised_top_up_gives_the_predicted_health_and_meets_the_target(
    devnet: DevnetInfo, config_path: Path
) -> None:
    horizon_s = 86_400.0
    client, result, positions, report = _scan_and_assess(devnet, config_path, horizon_s)
    target = report.settings.target_probability
    candidates = []
    for i, position in enumerate(positions):
        advice = report.fields(i)["advice"]
        if position.liquidatable or not advice or not advice["top_up_raw"]:
            continue
        candidates.append((i, position, advice))
    assert len(candidates) >= 3
    state = load_market(client, MarketRef("aave-v3", devnet.aave.addresses_provider), result.block)
    chain = DevChain(devnet.rpc_url)
    by_symbol = devnet.aave.tokens
    checked = 0
    for _i, position, advice in candidates[:4]:
        symbol, raw = next(iter(advice["top_up_raw"].items()))
        amount = int(raw)
        predicted = health_after(state, position, supply={by_symbol[symbol]: amount})
        # the top-up lands in a block with the scan's timestamp: no interest accrues in between
        head = chain.rpc("eth_getBlockByNumber", ["latest", False])
        me, token = position.account, by_symbol[symbol]
        chain.set_automine(False)
        try:
            chain.send_many(
                [
                    (me, token, calldata("mint(uint256)", amount), 200_000),
                    (
                        me,
                        token,
                        calldata("approve(address,uint256)", devnet.aave.pool, UINT256_MAX),
                        100_000,
                    ),
                    (
                        me,
                        devnet.aave.pool,
                        calldata("supply(address,uint256,address,uint16)", token, amount, me, 0),
                        600_000,
                    ),
                ]
            )
            chain.rpc("evm_setNextBlockTimestamp", [head["timestamp"]])
            chain.mine()
        finally:
            chain.set_automine(True)
        block = chain.block_number()
        actual = pool_account_data(chain, devnet.aave.pool, [me], block)[0][5]
        assert actual == predicted, (me, symbol, amount, actual, predicted)
        after = scan(client, MarketRef("aave-v3", devnet.aave.addresses_provider), accounts=[me])
        again = assess_positions(
            client, after.block, after.positions, report.settings, horizon_s=horizon_s
        )
        assert again.fields(0)["liquidation_probability"] <= target * 1.0001
        checked += 1
        # move the chain clock back onto its interval for the next candidate
        chain.rpc("evm_setNextBlockTimestamp", [hex(int(head["timestamp"], 16))])
    assert checked >= 3


def test_usd_reference_prices_never_apply_to_a_market_priced_in_weth(
    devnet: DevnetInfo, config_path: Path
) -> None:
    run = subprocess.run(
        [ONCHAIN, "scan", "--config", str(config_path), "--market", "morpho-blue-devnet", "--json"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0, run.stderr
    rows = json.loads(run.stdout)
    in_weth = [r for r in rows if r["details"].get("base_currency") == "WETH"]
    assert in_weth
    for row in in_weth:
        assert row["tier"] != "PENDING"
        if row["pending_health_factor"] is not None and row["health_factor"] is not None:
            now = int(row["health_factor"]) / 10**18
            assert abs(row["pending_health_factor"] - now) < 1e-6 * max(1.0, now)


def test_bad_risk_inputs_are_one_clear_error(
    devnet: DevnetInfo, config_path: Path, tmp_path: Path
) -> None:
    from tests.helpers.cli_support import assert_one_clear_error, run

    scan_args = ["scan", "--config", str(config_path), "--market", "aave-v3-devnet"]
    assert_one_clear_error(run(*scan_args, "--horizon", "inf"), "horizon")
    assert_one_clear_error(run(*scan_args, "--horizon", "soon"), "horizon")
    assert_one_clear_error(
        run(*scan_args, "--price-history", str(tmp_path / "nope.csv")), "not found"
    )
    only_eth = tmp_path / "eth_only.csv"
    only_eth.write_text(
        "timestamp,asset,price\n"
        + "".join(f"{1_700_000_000 + 3600 * i},ETH,{3000 + i % 7}\n" for i in range(400))
    )
    # the book holds WBTC too: an asset without history must not look riskless
    assert_one_clear_error(run(*scan_args, "--price-history", str(only_eth)), "BTC")
    zero = tmp_path / "zero.csv"
    zero.write_text("timestamp,asset,price\n1700000000,ETH,0\n1700003600,BTC,1\n")
    assert_one_clear_error(run(*scan_args, "--price-history", str(zero)), "not positive")
    assert_one_clear_error(
        run(*scan_args[:-2], "--market", "m", "--config", str(tmp_path)), "cannot be read"
    )
    odd = tmp_path / "[bold]odd.toml"
    odd.write_text("[chains.x\n")
    result = run("scan", "--config", str(odd), "--market", "m")
    assert_one_clear_error(result, "[bold]odd.toml")  # shown as written, not eaten as markup


def test_price_history_fits_the_model_the_backtest_validates(tmp_path: Path) -> None:
    """scan/watch/the daemon and `onchain backtest` use one model: the reactive one, on the last
    30 days of hourly closes, whether they come as a long CSV or an OHLC folder."""
    from onchain.app.risk_context import volatility_from_history
    from onchain.app.risk_io import load_ohlc_csv, shared_data_dir
    from onchain.risk.reactive import DEFAULT_DOF, DEFAULT_TAIL_SCALE, reactive_volatility

    eth = load_ohlc_csv(shared_data_dir() / "prices" / "eth_usdt_1h.csv")
    csv = tmp_path / "eth_closes.csv"
    rows = "".join(
        f"{t},ETH,{c}\n" for t, c in zip(eth.timestamp_s[-5000:], eth.close[-5000:], strict=True)
    )
    csv.write_text("timestamp,asset,price\n" + rows)
    model, note, sources = volatility_from_history(csv, ["WETH"])
    assert float(model.tail_scale[0, 0]) == DEFAULT_TAIL_SCALE
    assert float(model.tail_dof[0, 0]) == DEFAULT_DOF
    assert "reactive model" in note and "721 hourly closes" in note
    expected = reactive_volatility(eth.close[-721:], eth.timestamp_s[-721:], ["ETH"])
    assert model.sigma2_next[0] == expected.sigma2_next[0]
    assert sources["ETH"].source == "price history" and sources["ETH"].hourly_closes == 721
    assert sources["ETH"].newest_s == int(eth.timestamp_s[-1])
    folder_model, _, _ = volatility_from_history(shared_data_dir() / "prices", ["WETH"])
    assert folder_model.sigma2_next[0] == expected.sigma2_next[0]


def test_a_reference_pool_that_is_not_a_pool_is_skipped_with_a_note(
    devnet: DevnetInfo, tmp_path: Path
) -> None:
    text = devnet_config_text(devnet).replace(
        devnet.uniswap.pools["WETH/USDC"]["pool"], devnet.aave.tokens["WETH"]
    )
    config = tmp_path / "bad-reference.toml"
    config.write_text(text)
    run = subprocess.run(
        [ONCHAIN, "scan", "--config", str(config), "--market", "aave-v3-devnet"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0, run.stderr
    assert "reference pools unreadable, skipped" in run.stderr
    assert "risk tiers" in run.stdout
