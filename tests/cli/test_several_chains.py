"""Several chains in one command: a config that lists markets on two chains is scanned and
watched in one table with a chain column, one pinned block per chain; JSON and CSV carry each
item's `chain` and `market_name` (the config's names)."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest

from onchain.devnet.build import DevnetInfo
from onchain.devnet.config_file import write_devnet_config
from tests.helpers.cli_support import assert_one_clear_error, run

pytestmark = pytest.mark.devnet


@pytest.fixture(scope="module")
def two_chains(devnet: DevnetInfo, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The devnet's config with Morpho on a second chain (the same node: two chains to us, each
    with its own endpoint, client and pinned block)."""
    path = tmp_path_factory.mktemp("chains") / "two.toml"
    write_devnet_config(path, devnet)
    text = path.read_text()
    second = f'[chains.second]\nchain_id = {devnet.chain_id}\nrpc_url = "{devnet.rpc_url}"\n\n'
    text = text.replace("[[markets]]", second + "[[markets]]", 1)
    head, morpho = text.split('name = "morpho-blue-devnet"', 1)
    path.write_text(
        head
        + 'name = "morpho-blue-devnet"'
        + morpho.replace('chain = "devnet"', 'chain = "second"', 1)
    )
    return path


def test_scan_of_a_config_on_two_chains_is_one_list_with_the_chain_of_each_item(
    two_chains: Path, devnet: DevnetInfo
) -> None:
    result = run("scan", "--config", str(two_chains), "--json", "--no-risk")
    assert result.returncode == 0, result.stderr
    rows = json.loads(result.stdout)
    assert {(r["chain"], r["market_name"]) for r in rows} == {
        ("devnet", "aave-v3-devnet"),
        ("second", "morpho-blue-devnet"),
    }
    assert {r["protocol"] for r in rows if r["chain"] == "second"} == {"morpho-blue"}
    hfs = [int(r["health_factor"]) for r in rows]
    assert hfs == sorted(hfs)  # riskiest first across chains
    table = run("scan", "--config", str(two_chains), "--no-risk", "--limit", "0")
    assert table.returncode == 0, table.stderr
    lines = table.stdout.splitlines()
    assert any("chain" in ln and "market" in ln and "account" in ln for ln in lines[:4])
    assert any("second" in ln and "morpho-blue-devnet" in ln for ln in lines)
    assert any("devnet" in ln and "aave-v3-devnet" in ln for ln in lines)
    assert f"{len(rows)} positions in 2 chain(s)" in table.stdout
    one = run("scan", "--config", str(two_chains), "--chain", "second", "--csv", "--no-risk")
    parsed = list(csv.DictReader(io.StringIO(one.stdout)))
    assert parsed and {(r["chain"], r["market_name"]) for r in parsed} == {
        ("second", "morpho-blue-devnet")
    }
    assert_one_clear_error(
        run("scan", "--config", str(two_chains), "--block", "5", "--json"), "--chain"
    )


def test_scan_json_of_a_named_market_carries_its_config_names(
    devnet: DevnetInfo, tmp_path: Path
) -> None:
    config = tmp_path / "devnet.toml"
    write_devnet_config(config, devnet)
    named = run(
        "scan", "--config", str(config), "--market", "aave-v3-devnet", "--json", "--no-risk"
    )
    rows = json.loads(named.stdout)
    assert rows and all(
        r["market_name"] == "aave-v3-devnet" and r["chain"] == "devnet" for r in rows
    )
    bare = run(
        "scan",
        "--rpc",
        devnet.rpc_url,
        "--market",
        devnet.aave.addresses_provider,
        "--json",
        "--no-risk",
    )
    assert all(r["market_name"] is None and r["chain"] is None for r in json.loads(bare.stdout))


def test_watch_on_two_chains_is_one_table_with_a_chain_column(
    two_chains: Path, devnet: DevnetInfo
) -> None:
    morpho_borrower = devnet.morpho.borrowers[0] if devnet.morpho else None
    assert morpho_borrower is not None
    wallets = [devnet.borrowers[0], morpho_borrower]
    result = run("watch", *wallets, "--config", str(two_chains), "--json", "--no-risk")
    assert result.returncode == 0, result.stderr
    rows = json.loads(result.stdout)
    assert {r["chain"] for r in rows} == {"devnet", "second"}
    assert {r["market_name"] for r in rows if r["chain"] == "second"} == {"morpho-blue-devnet"}
    table = run("watch", *wallets, "--config", str(two_chains), "--no-risk")
    assert table.returncode == 0, table.stderr
    assert "chain" in table.stdout and "second at block" in table.stdout
