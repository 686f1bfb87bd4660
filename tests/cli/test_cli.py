"""The `onchain` command as a user meets it: the real console script against the devnet."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from eth_abi import decode

from onchain.devnet.anvil import free_port
from onchain.devnet.build import DevnetInfo
from onchain.devnet.chain import DevChain, calldata
from tests.helpers.cli_support import assert_one_clear_error, run


def test_scan_json_is_the_documented_machine_interface_and_exact(devnet: DevnetInfo) -> None:
    result = run(
        "scan", "--rpc", devnet.rpc_url, "--market", devnet.aave.addresses_provider, "--json"
    )
    assert result.returncode == 0, result.stderr
    rows = json.loads(result.stdout)
    assert len(rows) == 300
    required = {
        "account",
        "protocol",
        "market",
        "block_number",
        "block_hash",
        "health_factor",
        "liquidatable",
        "total_collateral_base",
        "total_debt_base",
        "assets",
    }
    chain = DevChain(devnet.rpc_url)
    block_hash = rows[0]["block_hash"]
    for row in rows[:40]:
        assert required <= row.keys()
        assert row["protocol"] == "aave-v3"
        assert row["market"] == devnet.aave.addresses_provider
        assert row["block_hash"] == block_hash
        truth = decode(
            ["uint256"] * 6,
            chain.call(
                devnet.aave.pool,
                calldata("getUserAccountData(address)", row["account"]),
                hex(row["block_number"]),
            ),
        )
        assert int(row["total_collateral_base"]) == truth[0]
        assert int(row["total_debt_base"]) == truth[1]
        assert int(row["health_factor"]) == truth[5]
        assert row["liquidatable"] == (truth[5] < 10**18)
        assert row["assets"] and all("liquidation_price_base" in a for a in row["assets"])
    hfs = [int(r["health_factor"]) for r in rows]
    assert hfs == sorted(hfs)  # riskiest first


def test_scan_csv_has_a_header_and_one_row_per_position(devnet: DevnetInfo) -> None:
    result = run(
        "scan", "--rpc", devnet.rpc_url, "--market", devnet.aave.addresses_provider, "--csv"
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.strip().splitlines()
    assert lines[0].startswith("account,protocol,market,block_number,block_hash,health_factor")
    assert len(lines) == 301


def test_watch_shows_the_breakdown_and_how_far_prices_may_fall(devnet: DevnetInfo) -> None:
    wallet = devnet.borrowers[0]
    result = run(
        "watch", wallet, "--rpc", devnet.rpc_url, "--market", devnet.aave.addresses_provider
    )
    assert result.returncode == 0, result.stderr
    assert wallet in result.stdout.replace("\n", "")
    assert "move to liq." in result.stdout
    as_json = json.loads(
        run(
            "watch",
            wallet,
            "--rpc",
            devnet.rpc_url,
            "--market",
            devnet.aave.addresses_provider,
            "--json",
        ).stdout
    )
    assert [row["account"] for row in as_json] == [wallet]


def test_malformed_address_is_one_clear_error(devnet: DevnetInfo) -> None:
    assert_one_clear_error(run("scan", "--rpc", devnet.rpc_url, "--market", "0x12345"), "malformed")
    assert_one_clear_error(
        run(
            "watch",
            "0xnot-an-address",
            "--rpc",
            devnet.rpc_url,
            "--market",
            devnet.aave.addresses_provider,
        ),
        "malformed",
    )


def test_rpc_that_does_not_answer_is_one_clear_error_without_the_secret() -> None:
    url = f"http://127.0.0.1:{free_port()}/v3/SECRET-API-KEY?key=SECRET"
    result = run(
        "scan",
        "--rpc",
        url,
        "--market",
        "0x2f39d218133AFaB8F2B819B1066c7E434Ad94E9e",
        "--timeout",
        "2",
    )
    assert_one_clear_error(result)
    assert "SECRET" not in result.stderr


def test_chain_id_that_differs_from_config_is_one_clear_error(
    devnet: DevnetInfo, tmp_path: Path
) -> None:
    result = run(
        "scan",
        "--rpc",
        devnet.rpc_url,
        "--market",
        devnet.aave.addresses_provider,
        "--chain-id",
        "1",
    )
    assert_one_clear_error(result, "chain")
    config = tmp_path / "wrong.toml"
    config.write_text(
        '[chains.ethereum]\nchain_id = 1\n\n[[markets]]\nname = "m"\nprotocol = "aave-v3"\n'
        f'chain = "ethereum"\naddress = "{devnet.aave.addresses_provider}"\n'
    )
    assert_one_clear_error(
        run("scan", "--config", str(config), "--market", "m", "--rpc", devnet.rpc_url), "chain"
    )


@pytest.mark.parametrize("what", ["an account without code", "the Pool itself", "an ERC-20 token"])
def test_address_that_is_not_an_aave_addresses_provider_is_one_clear_error(
    devnet: DevnetInfo, what: str
) -> None:
    address = {
        "an account without code": devnet.borrowers[1],
        "the Pool itself": devnet.aave.pool,
        "an ERC-20 token": devnet.aave.tokens["WETH"],
    }[what]
    assert_one_clear_error(run("scan", "--rpc", devnet.rpc_url, "--market", address), address)


def test_broken_config_is_one_clear_error(tmp_path: Path) -> None:
    config = tmp_path / "broken.toml"
    config.write_text("[chains.x\nchain_id = ")
    assert_one_clear_error(run("scan", "--config", str(config), "--market", "m"), "toml")
    config.write_text('[chains.x]\nchain_id = "one"\n')
    assert_one_clear_error(run("scan", "--config", str(config), "--market", "m"), "chain_id")
