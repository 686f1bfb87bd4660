"""Volatility that stays current with no file: scan, watch and the daemon fit the backtested model
on what the oracle feeds themselves published (their past rounds or AnswerUpdated events), say
where each estimate came from and how old it is, and refit as new prices arrive."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from onchain.app.pipeline import run_plan, scan
from onchain.app.risk_context import RiskSettings, assess_positions
from onchain.config import load_config
from onchain.devnet.build import DevnetInfo
from onchain.devnet.chain import DevChain
from onchain.devnet.config_file import devnet_config_text
from onchain.devnet.control import set_prices
from onchain.protocols.base import MarketRef
from onchain.protocols.registry import get_adapter
from onchain.risk.reactive import hourly_closes, reactive_volatility
from onchain.rpc.client import RpcClient

ONCHAIN = str(Path(sys.executable).with_name("onchain"))
HOUR = 3600
YEAR_S = 365 * 86_400

pytestmark = pytest.mark.devnet


@pytest.fixture(scope="module")
def config_path(devnet: DevnetInfo, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("cfg") / "devnet.toml"
    path.write_text(devnet_config_text(devnet))
    return path


def _publish(devnet: DevnetInfo, eth: np.ndarray, btc: np.ndarray) -> list[int]:
    """One block per hour, each publishing the next ETH and BTC answers; their timestamps."""
    chain = DevChain(devnet.rpc_url)
    stamps = []
    for e, b in zip(eth, btc, strict=True):
        chain.increase_time(HOUR)
        set_prices(devnet.rpc_url, devnet.aave, {"WETH": float(e), "WBTC": float(b)})
        head = chain.rpc("eth_getBlockByNumber", ["latest", False])
        stamps.append(int(head["timestamp"], 16))
    return stamps


def _assess(client: RpcClient, devnet: DevnetInfo, config_path: Path):
    result = scan(client, MarketRef("aave-v3", devnet.aave.addresses_provider))
    positions = [p for p in result.positions if p.has_debt]
    adapter = get_adapter("aave-v3")
    plan = adapter.plan_market_snapshot(result.market_state, result.block)
    snapshot = run_plan(client, plan, result.block)
    settings = RiskSettings.from_config(load_config(config_path).risk)
    return assess_positions(
        client, result.block, positions, settings, horizon_s=6 * HOUR, market_snapshots=[snapshot]
    ), result.block


def _scan_json(config_path: Path) -> list[dict]:
    run = subprocess.run(
        [ONCHAIN, "scan", "--config", str(config_path), "--market", "aave-v3-devnet", "--json"],
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert run.returncode == 0, run.stderr
    return json.loads(run.stdout)


def test_feeds_history_replaces_the_defaults_and_follows_a_crash(
    devnet: DevnetInfo, config_path: Path
) -> None:
    rows = _scan_json(config_path)
    weth_rows = [r for r in rows if "ETH" in r.get("volatility", {})]
    assert weth_rows, "rows holding WETH say where its volatility came from"
    # a fresh devnet's feeds have a few answers at most: too little history, the default holds
    assert {r["volatility"]["ETH"]["source"] for r in weth_rows} == {"config default"}
    assert weth_rows[0]["volatility"]["ETH"]["annual_volatility"] == pytest.approx(0.75)

    chain = DevChain(devnet.rpc_url)
    feed = devnet.aave.price_feeds["WETH"]
    first = (
        int(chain.view(feed, "latestTimestamp()", ["uint256"])),
        int(chain.view(feed, "latestAnswer()", ["int256"])) / 1e8,
    )
    rng = np.random.default_rng(5)
    calm_eth = 3000.0 * np.exp(np.cumsum(rng.normal(0, 0.003, 48)))
    calm_btc = 60000.0 * np.exp(np.cumsum(rng.normal(0, 0.003, 48)))
    stamps = _publish(devnet, calm_eth, calm_btc)
    client = RpcClient(devnet.rpc_url)
    calm_report, block = _assess(client, devnet, config_path)
    eth = calm_report.volatility["ETH"]
    assert eth.source == "oracle feed events"  # the devnet feed keeps no rounds, only events
    assert eth.feed is not None and eth.feed.lower() == devnet.aave.price_feeds["WETH"].lower()
    assert eth.age_s == block.timestamp - stamps[-1] == 0
    # the same model the backtest validates, on the hourly closes the feed published
    grid, closes = hourly_closes([first[0], *stamps], [first[1], *calm_eth], block.timestamp)
    assert eth.hourly_closes == grid.size >= 48
    expected = reactive_volatility(closes, grid, ["ETH"])
    assert eth.annual_volatility == pytest.approx(
        float(np.sqrt(expected.sigma2_next[0] * YEAR_S / HOUR)), rel=1e-9
    )
    assert 0.1 < eth.annual_volatility < 0.6  # 0.3%/h is ~28%/yr; the fit keeps that order

    # a crash: -3% an hour for six hours; the same client refits on what is new
    crash_eth = calm_eth[-1] * np.exp(-0.03 * np.arange(1, 7))
    crash_btc = calm_btc[-1] * np.exp(-0.02 * np.arange(1, 7))
    crash_stamps = _publish(devnet, crash_eth, crash_btc)
    DevChain(devnet.rpc_url).increase_time(600)
    DevChain(devnet.rpc_url).mine()
    crash_report, block = _assess(client, devnet, config_path)
    after = crash_report.volatility["ETH"]
    grid, closes = hourly_closes(
        [first[0], *stamps, *crash_stamps], [first[1], *calm_eth, *crash_eth], block.timestamp
    )
    assert after.hourly_closes == grid.size and after.age_s == 600
    expected = reactive_volatility(closes, grid, ["ETH"])
    assert after.annual_volatility == pytest.approx(
        float(np.sqrt(expected.sigma2_next[0] * YEAR_S / HOUR)), rel=1e-9
    )
    assert after.annual_volatility > 3 * eth.annual_volatility
    assert any("oracle feeds' own history" in note for note in crash_report.sources)

    # and the CLI says so in every row holding ETH
    rows = _scan_json(config_path)
    vol = next(r["volatility"]["ETH"] for r in rows if "ETH" in r.get("volatility", {}))
    assert vol["source"] == "oracle feed events"
    assert vol["hourly_closes"] == after.hourly_closes
    assert vol["age_s"] == 600
    assert vol["annual_volatility"] == pytest.approx(after.annual_volatility)
