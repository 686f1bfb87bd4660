"""The Aave liquidation protocol fee set on the chain reaches the risk book: the devnet's 3.6
market configures a 10% fee on every reserve (`setLiquidationProtocolFee`); the adapter reads it
from the reserve configuration into the position's typed terms, and the Book the assessment runs
on carries it (it used to be 0: the fee travelled in the untyped `extra` nobody read)."""

from __future__ import annotations

import pytest

from onchain.app.pipeline import scan
from onchain.app.risk_context import RiskSettings, assess_positions
from onchain.devnet.aave36 import RESERVES
from onchain.devnet.build import DevnetInfo
from onchain.protocols.base import MarketRef
from onchain.rpc.client import RpcClient

pytestmark = pytest.mark.devnet


def test_the_aave_liquidation_protocol_fee_reaches_the_book(devnet: DevnetInfo) -> None:
    m36 = devnet.aave36
    assert m36 is not None
    client = RpcClient(devnet.rpc_url)
    ref = MarketRef("aave-v3", m36.addresses_provider, m36.deploy_block, m36.version)
    result = scan(client, ref)
    positions = [p for p in result.positions if p.has_debt]
    assert positions

    report = assess_positions(client, result.block, positions, RiskSettings(), horizon_s=3600.0)
    book = report.book
    fee_by_symbol = {r.symbol: r.liquidation_protocol_fee / 10_000 for r in RESERVES}
    held_as_collateral = {
        a.symbol for p in positions for a in p.assets if a.collateral_enabled and a.collateral_raw
    }
    assert held_as_collateral
    for j, symbol in enumerate(book.symbols):
        if symbol in held_as_collateral:
            assert book.protocol_fee[j] == pytest.approx(fee_by_symbol[symbol]), symbol
    assert book.protocol_fee.max() > 0
