"""The Pool's revision picks the rules: both devnet markets are read with their own release, and
a revision onchain does not know (or a config pin that contradicts the Pool) is one clear error,
exit 2, with nothing written."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

from onchain.app.pipeline import scan
from onchain.devnet.build import DevnetInfo
from onchain.devnet.chain import DEPLOYER, DevChain, calldata
from onchain.devnet.solc import compile_sources
from onchain.protocols.base import MarketRef
from onchain.rpc.client import RpcClient
from tests.helpers.aave_oracle import ours_as_pool_tuple, pool_account_data
from tests.helpers.cli_support import assert_one_clear_error, run

# A stand-in for a Pool release that does not exist yet (revision 11): it answers the three
# reads that come before the rules are chosen, as a real Pool does.
FUTURE_POOL = """// SPDX-License-Identifier: MIT
pragma solidity 0.8.19;
contract FuturePool {
    address public immutable ADDRESSES_PROVIDER;
    constructor(address provider) { ADDRESSES_PROVIDER = provider; }
    function POOL_REVISION() external pure returns (uint256) { return 11; }
    function getReservesList() external pure returns (address[] memory) { return new address[](0); }
}
"""


def _config(tmp_path: Path, info: DevnetInfo, version: str, db: Path) -> Path:
    assert info.aave36 is not None
    path = tmp_path / f"pinned-{version}.toml"
    path.write_text(
        f'[chains.devnet]\nchain_id = {info.chain_id}\nrpc_url = "{info.rpc_url}"\n\n'
        f'[[markets]]\nname = "aave36"\nprotocol = "aave-v3"\nchain = "devnet"\n'
        f'address = "{info.aave36.addresses_provider}"\nversion = "{version}"\n\n'
        f'[store]\npath = "{db}"\n'
    )
    return path


def test_each_devnet_market_is_read_with_its_release(devnet: DevnetInfo) -> None:
    assert devnet.aave36 is not None
    for provider, version in (
        (devnet.aave.addresses_provider, "3.0.2"),
        (devnet.aave36.addresses_provider, "3.6"),
    ):
        result = run(
            "scan", "--rpc", devnet.rpc_url, "--protocol", "aave-v3", "--market", provider,
            "--json", "--no-risk", "--limit", "1",
        )  # fmt: skip
        assert result.returncode == 0, result.stderr
        positions = json.loads(result.stdout)
        assert positions and {p["protocol_version"] for p in positions} == {version}


def test_a_pin_that_contradicts_the_pool_is_refused_and_nothing_is_written(
    devnet: DevnetInfo, tmp_path: Path
) -> None:
    db = tmp_path / "store.sqlite"
    assert run("db", "upgrade", "--db", f"sqlite:///{db}").returncode == 0
    wrong = _config(tmp_path, devnet, "3.0.2", db)
    result = run("scan", "--config", str(wrong), "--market", "aave36", "--no-risk")
    assert_one_clear_error(result, "pins Aave V3 3.0.2", "revision 10 (3.6)")
    unknown = _config(tmp_path, devnet, "3.9", db)
    result = run("scan", "--config", str(unknown), "--market", "aave36", "--no-risk")
    assert_one_clear_error(result, "'3.9' ", "not one onchain knows")
    # the daemon records the market's failure and stores no snapshot of it
    daemon = run("run", "--config", str(wrong), "--once", "--job", "refresh")
    assert daemon.returncode == 1 and "revision 10 (3.6)" in daemon.stderr
    with sqlite3.connect(db) as conn:
        (status, error), *_ = conn.execute("select outcome, error from job_runs").fetchall()
        assert status == "error" and "UnknownProtocolVersion" in error
        for table in ("market_snapshots", "reserve_snapshots", "position_snapshots"):
            assert conn.execute(f"select count(*) from {table}").fetchone() == (0,), table


def test_stored_snapshots_record_the_release_the_pool_runs(
    devnet: DevnetInfo, tmp_path: Path
) -> None:
    assert devnet.aave36 is not None
    db = tmp_path / "store.sqlite"
    assert run("db", "upgrade", "--db", f"sqlite:///{db}").returncode == 0
    config = _config(tmp_path, devnet, "3.6.0", db)  # the pin agrees with revision 10
    daemon = run("run", "--config", str(config), "--once", "--job", "discover", "--job", "refresh")
    assert daemon.returncode == 0, daemon.stderr
    with sqlite3.connect(db) as conn:
        assert conn.execute("select version from markets").fetchall() == [("3.6",)]
        ((details, positions),) = conn.execute("select details, positions from market_snapshots")
        assert json.loads(details)["version"] == "3.6" and positions == len(
            devnet.aave36.all_borrowers
        )
        extras = [json.loads(e) for (e,) in conn.execute("select extra from position_snapshots")]
        assert {(e["version"], e["pool_revision"]) for e in extras} == {("3.6", 10)}
        assert {e["close_factor_rule"] for e in extras} == {"HALF_OF_POSITION_ABOVE_HF_0_95"}
        assert {e["emode_category"] for e in extras} == {0, 1, 2, 3}


def test_an_account_in_a_category_no_reserve_names_is_read_not_fatal(devnet: DevnetInfo) -> None:
    """3.0.2: categories are listed from the reserves' eMode bits; an account in a category
    that no reserve names (here a new, empty category 7) is read at its block, and the scan
    goes on with every other account."""
    chain = DevChain(devnet.rpc_url)
    aave = devnet.aave
    sig = "setEModeCategory(uint8,uint16,uint16,uint16,address,string)"
    zero = "0x" + "00" * 20
    chain.send(DEPLOYER, aave.pool_configurator, calldata(sig, 7, 9000, 9300, 10100, zero, "new"))
    user = "0x00000000000000000000000000000000000e0de7"
    weth = aave.tokens["WETH"]
    chain.set_balance([user], 10**20)
    chain.send(user, weth, calldata("mint(uint256)", 10**18), gas=200_000)
    chain.send(user, weth, calldata("approve(address,uint256)", aave.pool, 2**256 - 1))
    supply = calldata("supply(address,uint256,address,uint16)", weth, 10**18, user, 0)
    chain.send(user, aave.pool, supply, gas=800_000)
    chain.send(user, aave.pool, calldata("setUserEMode(uint8)", 7), gas=800_000)
    client = RpcClient(devnet.rpc_url)
    result = scan(client, MarketRef("aave-v3", aave.addresses_provider), accounts=[user])
    (position,) = result.positions
    assert position.extra["emode_category"] == 7
    assert result.market_state.emode_categories[7].label == "new"
    truth = pool_account_data(chain, aave.pool, [user], result.block.number)[0]
    assert ours_as_pool_tuple(position) == truth
    everyone = scan(client, MarketRef("aave-v3", aave.addresses_provider))
    assert len(everyone.positions) == len(devnet.borrowers)


def test_an_unknown_pool_revision_is_one_clear_error_naming_it(devnet: DevnetInfo) -> None:
    """Runs last in this module: it points the 3.6 provider at the stand-in Pool."""
    assert devnet.aave36 is not None
    chain = DevChain(devnet.rpc_url)
    fake = compile_sources({"FuturePool.sol": FUTURE_POOL})["FuturePool"]
    provider = devnet.aave36.addresses_provider
    pool = chain.deploy(DEPLOYER, fake.bytecode, ["address"], [provider])
    chain.send(
        DEPLOYER,
        provider,
        calldata("setAddress(bytes32,address)", b"POOL".ljust(32, b"\0"), pool),
        gas=200_000,
    )
    result = run("scan", "--rpc", devnet.rpc_url, "--protocol", "aave-v3", "--market", provider)
    assert_one_clear_error(result, "Aave Pool revision 11", provider, "not one onchain knows")
