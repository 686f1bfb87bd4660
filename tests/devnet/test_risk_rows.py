"""The risk book from the incremental adapters' arrays (`RiskRows.risk_rows`) is the Position-based
book, to the bit, and the tiers, probabilities and reasons of every position equal `risk_tiers`'s:
on the devnet's Aave 3.0.2, Aave 3.6 and Morpho Blue markets at a block after a price drop (some
positions liquidatable, others close), from the kept states the incremental refresher holds."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from onchain.app.incremental import MarketRefresher
from onchain.app.pipeline import market_snapshot
from onchain.app.risk_context import RiskSettings
from onchain.config import load_config
from onchain.devnet.build import DevnetInfo
from onchain.devnet.chain import DEPLOYER, DevChain, calldata
from onchain.devnet.config_file import devnet_config_text
from onchain.devnet.control import _in_one_block, set_prices
from onchain.jobs.assess import exact_inputs, risk_tier_columns, risk_tiers, risk_tiers_rows
from onchain.protocols.base import RiskRows
from onchain.risk.book import book_from_positions, book_from_rows
from onchain.rpc.client import RpcClient
from onchain.symbols import STABLE_SYMBOLS
from tests.helpers.books import assert_same_book, risk_markets


@pytest.fixture(scope="module")
def at_risk(devnet: DevnetInfo, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A block where ETH fell 12% on Aave's feeds and every Morpho oracle 8%; each market's
    kept states read whole by its incremental refresher at that block."""
    assert devnet.morpho is not None and devnet.aave36 is not None
    chain = DevChain(devnet.rpc_url)
    txs = []
    for m in devnet.morpho.markets:
        now = int(chain.view(m.oracle, "price()", ["uint256"]))
        txs.append((DEPLOYER, m.oracle, calldata("setPrice(uint256)", now * 92 // 100), 100_000))
    _in_one_block(chain, txs)
    number = set_prices(devnet.rpc_url, devnet.aave, {"WETH": 2640.0})
    config = tmp_path_factory.mktemp("rows") / "devnet.toml"
    config.write_text(devnet_config_text(devnet))
    client = RpcClient(devnet.rpc_url, expected_chain_id=devnet.chain_id)
    block = client.pin_block(number)
    markets = risk_markets(devnet)
    out: dict[str, Any] = {"client": client, "block": block, "config": config}
    for name, ref in markets.items():
        refresher = MarketRefresher(client, ref)
        positions = refresher.start(block)
        states = [s for a in refresher.accounts for s in refresher.kept.get(a, ())]
        incremental = refresher.incremental
        assert isinstance(incremental, RiskRows)
        rows = incremental.risk_rows(refresher.state, states)
        snapshot = market_snapshot(client, ref.protocol, refresher.state, block)
        out[name] = (positions, rows, snapshot)
    return out


@pytest.mark.parametrize("market", ["aave-3.0.2", "aave-3.6", "morpho"])
def test_the_book_from_rows_is_the_book_from_positions(
    at_risk: dict[str, Any], market: str
) -> None:
    positions, rows, _snapshot = at_risk[market]
    assert len(positions) >= 20 and rows.accounts == tuple(p.account for p in positions)
    assert [rows.market_of(i) for i in range(len(rows))] == [p.market for p in positions]
    assert sum(p.liquidatable for p in positions) >= 1
    stable = sorted(STABLE_SYMBOLS)
    assert_same_book(
        book_from_rows(rows, stable_assets=stable),
        book_from_positions(positions, per_market_columns=True, stable_assets=stable),
    )
    if market != "morpho":  # one market: plain asset columns too, with the default rules
        assert_same_book(
            book_from_rows(rows, per_market_columns=False), book_from_positions(positions)
        )


@pytest.mark.parametrize("market", ["aave-3.0.2", "aave-3.6", "morpho"])
def test_tiers_from_rows_are_the_tiers_from_positions(at_risk: dict[str, Any], market: str) -> None:
    positions, rows, snapshot = at_risk[market]
    client, block = at_risk["client"], at_risk["block"]
    cfg = load_config(Path(at_risk["config"]))
    settings = RiskSettings.from_config(cfg.risk)
    floors = cfg.tiers  # [risk.tiers] floors as the daemon may set them: HF_BELOW_* too
    theirs, their_report = risk_tiers(client, block, positions, settings, snapshot, floors)
    health, liquidatable = exact_inputs(positions)
    ours, our_report = risk_tiers_rows(
        client, block, rows, health, liquidatable, settings, snapshot, floors
    )
    assert our_report is not None and their_report is not None
    assert our_report.sources == their_report.sources
    assert len(ours) == len(theirs) == len(positions)
    for p, a, b in zip(positions, ours, theirs, strict=True):
        assert (a.tier, a.reason, a.reasons) == (b.tier, b.reason, b.reasons), p.account
        assert a.probability == b.probability, p.account
        assert a.pending_health_factor == b.pending_health_factor, p.account
        assert a.horizon_s == b.horizon_s and a.verdict == b.verdict, p.account
    # the bare verdict (HF below 1, holds not applied) gives the same: the rows apply them
    below = [hf is not None and hf < 10**18 for hf in health]
    markets = [p.market for p in positions]
    again, _ = risk_tiers_rows(
        client, block, rows, health, below, settings, snapshot, floors, accounts=rows.accounts,
        markets=markets,
    )  # fmt: skip
    assert again == ours
    # the columns the daemon's lean block stores (texts formatted without an Assessed per row)
    columns, _ = risk_tier_columns(
        client, block, rows, health, liquidatable, settings, snapshot, floors
    )
    as_columns = list(
        zip(
            columns.tier, columns.reason, columns.reasons, columns.probability,
            columns.pending_health_factor, columns.horizon_s, strict=True,
        )
    )  # fmt: skip
    assert as_columns == [
        (a.tier, a.reason, a.reasons, a.probability, a.pending_health_factor, a.horizon_s)
        for a in ours
    ]
    assert sum(t == "SAFE" and not why for t, _r, why, *_ in as_columns) >= 5
    with pytest.raises(ValueError, match="account order"):
        risk_tiers_rows(client, block, rows, health, below, settings, accounts=rows.accounts[::-1])
    tiers = {a.tier for a in ours}
    assert "LIQUIDATABLE" in tiers and len(tiers - {"LIQUIDATABLE", "SAFE"}) >= 1, tiers
