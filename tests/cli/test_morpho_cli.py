"""`onchain scan` on Morpho Blue as a user meets it: the real console script against the devnet,
the same JSON contract as Aave (`market` = the Morpho market id), and one clear error with exit
code 2 for an unknown market id, a market whose oracle reverts, or a config that points a Morpho
entry at a contract that is not Morpho."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from onchain.app.pipeline import scan
from onchain.devnet.build import DevnetInfo
from onchain.devnet.chain import DEPLOYER, DevChain, calldata
from onchain.devnet.config_file import write_devnet_config
from onchain.devnet.morpho import PARAMS
from onchain.protocols.base import MarketRef, Position
from onchain.protocols.morpho_blue.math import WAD, market_id
from onchain.rpc.client import RpcClient
from tests.helpers.cli_support import assert_one_clear_error, run
from tests.helpers.morpho_support import contract_debts, contract_verdicts, fund_liquidator


@pytest.fixture(scope="module")
def config(devnet: DevnetInfo, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The config `onchain devnet --write-config` writes for this devnet."""
    path = tmp_path_factory.mktemp("cfg") / "devnet.toml"
    write_devnet_config(path, devnet)
    assert 'protocol = "morpho-blue"' in path.read_text()
    fund_liquidator(DevChain(devnet.rpc_url), devnet.morpho)  # type: ignore[arg-type]
    return path


def _as_positions(rows: list[dict], devnet: DevnetInfo) -> list[Position]:
    """The library's positions for the JSON rows (same block), to ask the contract about them."""
    assert devnet.morpho is not None
    same_block = scan(
        RpcClient(devnet.rpc_url),
        MarketRef("morpho-blue", devnet.morpho.morpho, devnet.morpho.deploy_block),
        block_number=rows[0]["block_number"],
        accounts=sorted({r["account"] for r in rows}),
    )
    by_key = {(p.market, p.account): p for p in same_block.positions}
    return [by_key[(r["market"], r["account"])] for r in rows]


def test_scan_json_is_the_same_contract_and_the_contract_agrees(
    devnet: DevnetInfo, config: Path
) -> None:
    morpho = devnet.morpho
    assert morpho is not None
    result = run("scan", "--config", str(config), "--protocol", "morpho-blue", "--json")
    assert result.returncode == 0, result.stderr
    rows = json.loads(result.stdout)
    assert len(rows) > 150
    ids = {m.id for m in morpho.markets}
    block_hash = rows[0]["block_hash"]
    for row in rows:
        assert row["protocol"] == "morpho-blue"
        assert row["market"] in ids
        assert row["block_hash"] == block_hash
        hf = int(row["health_factor"])
        assert row["liquidatable"] == (hf < WAD)
        details = row["details"]
        assert int(details["liquidation_incentive_factor"]) > WAD
        assert "bad_debt_if_fully_liquidated" in details
        assert int(details["liquidation_oracle_price"]) > 0
        collateral = row["assets"][0]
        assert collateral["collateral_enabled"] and collateral["liquidation_price_base"]
    hfs = [int(r["health_factor"]) for r in rows]
    assert hfs == sorted(hfs)  # riskiest first
    positions = _as_positions(rows, devnet)
    chain = DevChain(devnet.rpc_url)
    block = rows[0]["block_number"]
    verdicts = contract_verdicts(chain, morpho, positions, block)
    assert [v for v, _why in verdicts] == [r["liquidatable"] for r in rows]
    debts = contract_debts(chain, morpho, positions, block)
    assert debts == [int(r["total_debt_base"]) for r in rows]


def test_scan_one_market_by_id_from_config_or_deployment(devnet: DevnetInfo, config: Path) -> None:
    morpho = devnet.morpho
    assert morpho is not None
    target = morpho.market("wstETH/WETH")
    by_config = run("scan", "--config", str(config), "--market", target.id, "--json")
    assert by_config.returncode == 0, by_config.stderr
    rows = json.loads(by_config.stdout)
    assert rows and {r["market"] for r in rows} == {target.id}
    by_flags = run(
        "scan",
        "--rpc",
        devnet.rpc_url,
        "--protocol",
        "morpho-blue",
        "--market",
        target.id,
        "--deployment",
        morpho.morpho,
        "--json",
    )
    assert by_flags.returncode == 0, by_flags.stderr
    assert [r["account"] for r in json.loads(by_flags.stdout)] == [r["account"] for r in rows]
    table = run("scan", "--config", str(config), "--market", target.id)
    assert table.returncode == 0, table.stderr
    assert "wstETH/WETH 94.5%" in table.stdout and "liquidatable now" in table.stdout


def test_unknown_market_id_is_one_clear_error(config: Path) -> None:
    unknown = "0x" + "ab" * 32
    assert_one_clear_error(
        run("scan", "--config", str(config), "--market", unknown), "no Morpho Blue market", unknown
    )


def test_config_pointing_morpho_at_another_contract_is_one_clear_error(
    devnet: DevnetInfo, tmp_path: Path
) -> None:
    for address, words in (
        (devnet.aave.pool, ("not a Morpho Blue contract",)),
        (devnet.aave.tokens["WETH"], ("not a Morpho Blue contract",)),
        (devnet.borrowers[3], ("no contract",)),
    ):
        bad = tmp_path / "bad.toml"
        bad.write_text(
            f'[chains.devnet]\nchain_id = {devnet.chain_id}\nrpc_url = "{devnet.rpc_url}"\n\n'
            '[[markets]]\nname = "m"\nprotocol = "morpho-blue"\nchain = "devnet"\n'
            f'address = "{address}"\n'
        )
        assert_one_clear_error(run("scan", "--config", str(bad), "--market", "m"), *words)
        assert_one_clear_error(run("watch", devnet.borrowers[0], "--config", str(bad)), *words)


def test_market_whose_oracle_reverts_is_one_clear_error_and_skipped_among_all(
    devnet: DevnetInfo, config: Path
) -> None:
    """A market created with an oracle that has no `price()` (the IRM's address): naming it is an
    error; scanning every market skips it with a warning, the others still answer."""
    morpho = devnet.morpho
    assert morpho is not None
    weth_usdc = morpho.market("WETH/USDC")
    params = (weth_usdc.loan_token, weth_usdc.collateral_token, morpho.irm, morpho.irm, 86 * 10**16)
    DevChain(devnet.rpc_url).send(
        DEPLOYER, morpho.morpho, calldata(f"createMarket({PARAMS})", params), gas=1_000_000
    )
    broken = market_id(*params)
    assert_one_clear_error(
        run("scan", "--config", str(config), "--market", broken), "oracle", "reverts", broken
    )
    everything = run("scan", "--config", str(config), "--protocol", "morpho-blue", "--json")
    assert everything.returncode == 0, everything.stderr
    assert "skipped 1 market" in everything.stderr
    rows = json.loads(everything.stdout)
    assert rows and broken not in {r["market"] for r in rows}
