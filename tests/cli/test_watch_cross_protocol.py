"""`onchain watch 0xW1 0xW2 ... --config FILE`: every configured market of the chain, every
protocol, one table at one block; wallets that borrow on Aave V3 and on Morpho Blue show both,
and both verdicts are the contracts' own."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from onchain.app.pipeline import watch_everywhere
from onchain.devnet.build import DevnetInfo
from onchain.devnet.chain import DevChain
from onchain.devnet.config_file import write_devnet_config
from onchain.devnet.morpho import set_prices_everywhere
from onchain.protocols.base import MarketRef, Position
from onchain.rpc.client import RpcClient
from tests.helpers.aave_oracle import pool_account_data
from tests.helpers.cli_support import run
from tests.helpers.morpho_support import contract_debts, contract_verdicts, fund_liquidator

WAD = 10**18


@pytest.fixture(scope="module")
def setup(devnet: DevnetInfo, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[str]]:
    """ETH -6% on both protocols (one block) so both verdicts occur; wallets in both protocols."""
    assert devnet.morpho is not None
    fund_liquidator(DevChain(devnet.rpc_url), devnet.morpho)
    set_prices_everywhere(devnet.rpc_url, devnet.aave, devnet.morpho, {"WETH": 2820.0})
    path = tmp_path_factory.mktemp("cfg") / "devnet.toml"
    write_devnet_config(path, devnet)
    shared = [a for a in devnet.morpho.borrowers if a in set(devnet.borrowers)]
    return path, shared[:40]


def test_watch_json_shows_both_protocols_with_both_verdicts_exact(
    devnet: DevnetInfo, setup: tuple[Path, list[str]]
) -> None:
    config, wallets = setup
    morpho = devnet.morpho
    assert morpho is not None
    result = run("watch", *wallets, "--config", str(config), "--json")
    assert result.returncode == 0, result.stderr
    rows = json.loads(result.stdout)
    assert {r["block_hash"] for r in rows} == {rows[0]["block_hash"]}  # one pinned block
    block = rows[0]["block_number"]
    for wallet in wallets:
        assert {r["protocol"] for r in rows if r["account"] == wallet} == {"aave-v3", "morpho-blue"}
    chain = DevChain(devnet.rpc_url)
    aave_rows = [r for r in rows if r["protocol"] == "aave-v3"]
    truth = pool_account_data(chain, devnet.aave.pool, [r["account"] for r in aave_rows], block)
    for row, expected in zip(aave_rows, truth, strict=True):
        assert int(row["total_debt_base"]) == expected[1]
        assert int(row["health_factor"]) == expected[5]
        assert row["liquidatable"] == (expected[5] < WAD)
    # the Morpho rows against the contract, through the library's view of the same block
    same = watch_everywhere(
        RpcClient(devnet.rpc_url),
        [MarketRef("morpho-blue", morpho.morpho, morpho.deploy_block)],
        wallets,
        block_number=block,
    )
    by_key: dict[tuple[str, str], Position] = {(p.market, p.account): p for p in same.positions}
    morpho_rows = [r for r in rows if r["protocol"] == "morpho-blue"]
    positions = [by_key[(r["market"], r["account"])] for r in morpho_rows]
    verdicts = contract_verdicts(chain, morpho, positions, block)
    assert [v for v, _why in verdicts] == [r["liquidatable"] for r in morpho_rows]
    with_debt = [(r, p) for r, p in zip(morpho_rows, positions, strict=True) if p.has_debt]
    debts = contract_debts(chain, morpho, [p for _r, p in with_debt], block)
    assert debts == [int(r["total_debt_base"]) for r, _p in with_debt]
    verdict_mix = {(r["protocol"], r["liquidatable"]) for r in rows}
    assert ("morpho-blue", True) in verdict_mix and ("morpho-blue", False) in verdict_mix
    assert ("aave-v3", False) in verdict_mix
    print(
        f"\nwatch: {len(wallets)} wallets, {len(aave_rows)} Aave + {len(morpho_rows)} Morpho "
        f"positions, every verdict equal to the contracts'"
    )


def test_watch_table_has_one_row_per_position_with_liquidation_price_and_distance(
    devnet: DevnetInfo, setup: tuple[Path, list[str]]
) -> None:
    config, wallets = setup
    nobody = "0x000000000000000000000000000000000000dEaD"
    result = run("watch", wallets[0], wallets[1], nobody, "--config", str(config))
    assert result.returncode == 0, result.stderr
    text = result.stdout
    for word in ("aave-v3", "morpho-blue", "liq. price", "move to liq.", "health"):
        assert word in text
    assert wallets[0][:12] in text and wallets[1][:12] in text
    assert f"{nobody}: no position" in text.replace("\n", "")


def test_watch_without_market_needs_a_chain_when_the_config_has_several(
    devnet: DevnetInfo,
) -> None:
    mainnet = Path(__file__).resolve().parents[2] / "config" / "mainnet.toml"
    result = run("watch", devnet.borrowers[0], "--config", str(mainnet))
    assert result.returncode == 2 and result.stdout == ""
    assert "--chain" in result.stderr
