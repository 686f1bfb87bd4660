"""`onchain stress` against the devnet, reconciled with the contracts.

For a --drop scenario and a historical one, the stress report (floats, read at block B) says
which positions become liquidatable and what they hold. We then publish exactly those prices on
the devnet in ONE block with B's timestamp (no interest accrues in between) and ask the chain:
Aave's ``Pool.getUserAccountData`` (HF < 1e18) and, for Morpho, the adapter's exact verdict
(``!_isHealthy``, proven against ``liquidate`` in test_morpho_exactness) through a scan at the
shocked block. The sets must be equal, except for positions whose exact HF lies within 1e-9 of 1
(float and integer math may round them apart; the exact re-check is the scan); their number is
reported and, on the seeded devnet, is 0. The collateral and debt of the positions we flag must
equal what the chain reports for them to 1e-9 relative. Each scenario runs on an anvil snapshot
that is reverted afterwards.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from onchain.app.pipeline import scan
from onchain.devnet.build import DevnetInfo
from onchain.devnet.chain import DevChain
from onchain.devnet.config_file import write_devnet_config
from onchain.devnet.morpho import oracle_prices, set_prices_everywhere
from onchain.protocols.base import MarketRef
from onchain.rpc.client import RpcClient
from tests.helpers.aave_oracle import pool_account_data
from tests.helpers.cli_support import assert_one_clear_error, run

WAD = 10**18
REL = 1e-9


@pytest.fixture(scope="module")
def config(devnet: DevnetInfo, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("stress") / "devnet.toml"
    write_devnet_config(path, devnet)
    return path


@pytest.fixture
def snapshot(devnet: DevnetInfo) -> Iterator[DevChain]:
    """Leave the devnet as we found it: the shock happens on a snapshot that is reverted."""
    chain = DevChain(devnet.rpc_url)
    checkpoint = chain.rpc("evm_snapshot")
    yield chain
    assert chain.rpc("evm_revert", [checkpoint]) is True


def usd_prices(chain: DevChain, devnet: DevnetInfo) -> dict[str, Fraction]:
    """Current USD prices of every devnet token: Aave feeds, wstETH through its Morpho market."""
    assert devnet.morpho is not None
    usd = {
        s: Fraction(int(chain.view(feed, "latestAnswer()", ["int256"])), 10**8)
        for s, feed in devnet.aave.price_feeds.items()
    }
    raw = oracle_prices(devnet.rpc_url, devnet.morpho)["wstETH/WETH"]
    usd["wstETH"] = Fraction(raw, 10**36) * usd["WETH"]  # both 18 decimals
    return usd


def stress_json(config: Path, *args: str) -> dict[str, Any]:
    result = run("stress", "--config", str(config), "--json", *args)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def close(ours: float, chain: float) -> bool:
    return abs(ours - chain) <= REL * max(abs(chain), 1e-300)


def reconcile(devnet: DevnetInfo, chain: DevChain, report: dict[str, Any]) -> dict[str, Any]:
    """Publish the scenario's prices and compare every market with the contracts' verdicts."""
    assert devnet.morpho is not None
    (scenario,) = report["scenarios"]
    factors = scenario["price_factors"]
    usd = usd_prices(chain, devnet)
    moved = {s: float(p * Fraction(factors[s])) for s, p in usd.items() if factors.get(s, 1) != 1}
    head = chain.block_number()
    assert head == report["block"]["number"]
    block = set_prices_everywhere(
        devnet.rpc_url, devnet.aave, devnet.morpho, moved, same_timestamp=True
    )
    client = RpcClient(devnet.rpc_url)
    aave = scan(client, MarketRef("aave-v3", devnet.aave.addresses_provider), block_number=block)
    morpho = scan(client, MarketRef("morpho-blue", devnet.morpho.morpho), block_number=block)
    by_market = {m["market"]: m for m in scenario["by_market"]}
    figures: dict[str, Any] = {"moved": moved, "markets": {}}
    near_one = 0

    # Aave: the Pool itself, for every account with debt before the shock
    ours = by_market[devnet.aave.addresses_provider]
    accounts = [p.account for p in aave.positions if p.has_debt]
    assert len(accounts) == ours["positions"]
    answers = pool_account_data(chain, devnet.aave.pool, accounts, block)
    truth = dict(zip(accounts, answers, strict=True))
    chain_set = {a for a, t in truth.items() if t[5] < WAD}
    our_set = set(ours["liquidatable_accounts"])
    for a in chain_set ^ our_set:
        assert abs(truth[a][5] - WAD) <= REL * WAD, (a, truth[a][5])
        near_one += 1
    assert chain_set == {p.account for p in aave.positions if p.liquidatable}  # adapter agrees
    coll = sum(truth[a][0] for a in our_set) / 1e8
    debt = sum(truth[a][1] for a in our_set) / 1e8
    assert close(ours["collateral_at_risk_base"], coll), (ours["collateral_at_risk_base"], coll)
    assert close(ours["debt_at_risk_base"], debt), (ours["debt_at_risk_base"], debt)
    figures["markets"]["aave"] = (len(our_set), len(chain_set), coll, debt)

    # Morpho: the adapter's exact verdict at the shocked block, market by market
    for info in devnet.morpho.markets:
        rows = [p for p in morpho.positions if p.market == info.id and p.has_debt]
        ours = by_market.get(info.id)
        if ours is None:
            assert not rows
            continue
        assert len(rows) == ours["positions"]
        positions = {p.account: p for p in rows}
        chain_set = {a for a, p in positions.items() if p.liquidatable}
        our_set = set(ours["liquidatable_accounts"])
        for a in chain_set ^ our_set:
            hf = positions[a].health_factor
            assert hf is not None and abs(hf - WAD) <= REL * WAD, (a, hf)
            near_one += 1
        unit = 10.0 ** rows[0].base_currency_decimals
        coll = sum(positions[a].total_collateral_base for a in our_set) / unit
        debt = sum(positions[a].total_debt_base for a in our_set) / unit
        assert close(ours["collateral_at_risk_base"], coll), (info.key, ours, coll)
        assert close(ours["debt_at_risk_base"], debt), (info.key, ours, debt)
        figures["markets"][info.key] = (len(our_set), len(chain_set), coll, debt)
    figures["near_one"] = near_one
    total = sum(m[0] for m in figures["markets"].values())
    assert total == scenario["totals"]["positions_liquidatable"]
    assert total > 0
    print(json.dumps(figures, indent=1, default=str))  # the figures, for the record (-s)
    return figures


def test_drop_scenario_reconciles_with_the_contracts(
    devnet: DevnetInfo, config: Path, snapshot: DevChain
) -> None:
    report = stress_json(config, "--drop", "ETH=-20%", "--drop", "BTC=-15%")
    (scenario,) = report["scenarios"]
    assert scenario["drops"] == {"ETH": 0.2, "BTC": 0.15}
    factors = scenario["price_factors"]
    assert factors["WETH"] == pytest.approx(0.8) and factors["wstETH"] == pytest.approx(0.8)
    assert factors["WBTC"] == pytest.approx(0.85)
    assert factors["USDC"] == 1.0 and factors["DAI"] == 1.0
    figures = reconcile(devnet, snapshot, report)
    assert figures["near_one"] == 0


def test_historical_scenario_reconciles_and_writes_the_chart(
    devnet: DevnetInfo, config: Path, snapshot: DevChain, tmp_path: Path
) -> None:
    chart = tmp_path / "curve.png"
    report = stress_json(config, "--scenario", "2022-06-13/24h", "--chart", str(chart))
    (scenario,) = report["scenarios"]
    assert scenario["name"] == "2022-06-13/24h" and scenario["window"] == "24h"
    # the LST takes ETH's move and the stETH/ETH discount
    assert scenario["price_factors"]["wstETH"] == pytest.approx((1 - 0.247) * (1 - 0.068))
    assert scenario["sources"]
    for key in ("block", "positions", "markets", "scenarios", "curve", "chart"):
        assert key in report
    for key in ("positions_liquidatable", "collateral_seized_usd", "debt_repaid_usd"):
        assert key in scenario["totals"]
    assert {"bad_debt_usd", "collateral_at_risk_usd", "usd_complete"} <= scenario["totals"].keys()
    for m in scenario["by_market"]:
        assert {"collateral_seized_base", "debt_repaid_base", "bad_debt_base"} <= m.keys()
    for a in scenario["by_asset"]:
        assert {
            "symbol",
            "collateral_seized_units",
            "debt_repaid_units",
            "bad_debt_usd",
        } <= a.keys()
    curve = report["curve"]
    assert curve["drops"][0] == 0 and curve["drops"][-1] == pytest.approx(0.6)
    assert len(curve["drops"]) == 13 == len(curve["collateral_at_risk_usd"])
    assert curve["positions_liquidatable"] == sorted(curve["positions_liquidatable"])
    data = chart.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 5_000
    with Image.open(chart) as image:
        image.verify()
    reconcile(devnet, snapshot, report)


def test_default_run_prints_every_library_scenario(devnet: DevnetInfo, config: Path) -> None:
    result = run("stress", "--config", str(config))
    assert result.returncode == 0, result.stderr
    for text in ("2020-03-12/1h", "2025-10-10/24h", "By market", "By asset", "Liquidation curve"):
        assert text in result.stdout


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["--scenario", "1999-01-01"], ["unknown scenario", "2020-03-12", "2025-10-10"]),
        (["--drop", "ETH30"], ["malformed --drop", "ETH=-30%"]),
        (["--drop", "ETH=-120%"], ["malformed --drop"]),
        (["--drop", "ETH=30"], ["give the sign", "ETH=-30% for a fall", "ETH=+30% for a rise"]),
        (["--drop", "ETH=-1%", "--drop", "WETH=-2%"], ["twice"]),
        (["--drop", "ETH=-10%", "--scenario", "2022-11-08"], ["not both"]),
        (["--chart", "/nonexistent-folder/x.png"], ["does not exist"]),
    ],
)
def test_bad_input_is_one_line_and_exit_2(args: list[str], words: list[str]) -> None:
    """Checked before any RPC call: no devnet needed (the config is never read)."""
    assert_one_clear_error(run("stress", "--config", "/nonexistent.toml", *args), *words)


def test_drop_of_an_asset_the_book_does_not_hold(config: Path) -> None:
    assert_one_clear_error(
        run("stress", "--config", str(config), "--drop", "DOGE=-50%"), "DOGE", "WETH"
    )
