"""The Python API takes the caller's own web3: `onchain.read_market(Web3(HTTPProvider(url)), ...)`
reads through that provider and gives what `onchain scan --json` prints at the same block (exact
health factors, the same accounts), and `onchain.assess` the same risk tiers."""

from __future__ import annotations

import json

import pytest
from web3 import HTTPProvider, Web3

import onchain
from onchain.devnet.build import DevnetInfo
from tests.helpers.cli_support import run


@pytest.mark.devnet
def test_read_market_through_the_callers_web3_matches_scan_json(devnet: DevnetInfo) -> None:
    w3 = Web3(HTTPProvider(devnet.rpc_url))
    block = w3.eth.block_number
    provider = devnet.aave.addresses_provider
    reading = onchain.read_market(w3, provider, block=block)
    assert reading.block.number == block
    assert reading.block.hash == w3.eth.get_block(block)["hash"].to_0x_hex()

    result = run(
        "scan", "--rpc", devnet.rpc_url, "--market", provider, "--block", str(block),
        "--json", "--horizon", "1h",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    rows = {r["account"]: r for r in json.loads(result.stdout)}
    with_debt = [p for p in reading.positions if p.has_debt]
    assert len(with_debt) == len(rows) > 0
    for p in with_debt:  # exact, bit for bit
        row = rows[p.account]
        assert str(p.health_factor) == row["health_factor"]
        assert p.liquidatable == row["liquidatable"]
        assert str(p.total_debt_base) == row["total_debt_base"]

    verdicts = onchain.assess(w3, reading, horizon_s=3600.0)
    assert len(verdicts) == len(reading.positions)
    by_account = {p.account: v for p, v in zip(reading.positions, verdicts, strict=True)}
    for account, row in rows.items():
        verdict = by_account[account]
        assert (verdict.tier, list(verdict.reasons)) == (row["tier"], row["reasons"])
        assert verdict.liquidation_probability == pytest.approx(row["liquidation_probability"])


@pytest.mark.devnet
def test_a_bare_provider_and_morpho_markets_read_the_same(devnet: DevnetInfo) -> None:
    assert devnet.morpho is not None
    w3 = Web3(HTTPProvider(devnet.rpc_url))
    block = w3.eth.block_number
    ref = onchain.MarketRef("morpho-blue", devnet.morpho.morpho, devnet.morpho.deploy_block)
    through_web3 = onchain.read_market(w3.provider, ref, block=block)
    through_url = onchain.read_market(devnet.rpc_url, ref, block=block)
    assert through_web3.positions == through_url.positions
    assert any(p.has_debt for p in through_web3.positions)
