"""One reader: scan, watch, targets, stress and the backtest read through `read_markets` (pin one
block, load each market, discover or take the accounts, read positions); what each command gets
is that reading, at the same block, position for position."""

from __future__ import annotations

import pytest

from onchain.app.pipeline import read_markets, scan, watch_everywhere
from onchain.app.stress_report import read_book_positions
from onchain.devnet.build import DevnetInfo
from onchain.protocols.base import MarketRef
from onchain.rpc.client import RpcClient

pytestmark = pytest.mark.devnet


def _refs(devnet: DevnetInfo) -> list[MarketRef]:
    assert devnet.morpho is not None
    return [
        MarketRef("aave-v3", devnet.aave.addresses_provider),
        MarketRef("morpho-blue", devnet.morpho.morpho, devnet.morpho.deploy_block),
    ]


def test_every_command_reads_what_the_one_reader_reads(devnet: DevnetInfo) -> None:
    client = RpcClient(devnet.rpc_url)
    refs = _refs(devnet)
    head = client.pin_block().number
    reading = read_markets(client, refs, block_number=head)
    assert reading.block.number == head
    assert [m.ref for m in reading.markets] == refs
    assert all(m.positions for m in reading.markets)
    assert {p.block for p in reading.positions} == {reading.block}  # one pinned block

    for ref, market in zip(refs, reading.markets, strict=True):
        alone = scan(client, ref, block_number=head)
        assert alone.accounts == market.accounts
        assert alone.positions == market.positions

    block, book, states = read_book_positions(client, refs, head)  # stress
    assert (block, book) == (reading.block, reading.positions)
    assert len(states) == len(refs)

    wallets = reading.markets[0].accounts[:5]
    watched = watch_everywhere(client, refs, wallets, block_number=head)
    mine = [p for p in reading.positions if p.account in set(wallets)]
    assert sorted(watched.positions, key=repr) == sorted(mine, key=repr)


def test_given_accounts_are_checked_before_any_read(devnet: DevnetInfo) -> None:
    client = RpcClient(devnet.rpc_url)
    with pytest.raises(Exception, match="malformed wallet address"):
        read_markets(client, _refs(devnet), accounts=["0x1234"])
    assert client.requests_sent == 0
