"""The horizon's recent headers, kept between runs over one endpoint set: block after block
they cost no request once the head is pinned, and after a reorg they equal a fresh read."""

from __future__ import annotations

from onchain.app.market_data.blocks import recent_blocks
from onchain.devnet.anvil import Anvil
from onchain.devnet.chain import DevChain
from onchain.rpc.client import RpcClient
from onchain.rpc.endpoints import EndpointSet


def _fresh(url: str) -> tuple[list[float], list[float]]:
    client = RpcClient(url)
    got = recent_blocks(client, client.pin_block(), 8)
    return list(got.timestamps_s), list(got.gas_used)


def test_kept_headers_cost_nothing_and_follow_a_reorg(anvil: Anvil) -> None:
    chain = DevChain(anvil.url)
    chain.mine(20)
    endpoints = EndpointSet.of(anvil.url)
    first = RpcClient(endpoints)
    recent_blocks(first, first.pin_block(), 8)

    chain.mine(1)  # the next run: a new client over the same endpoints
    client = RpcClient(endpoints)
    head = client.pin_block()
    sent = client.requests_sent
    got = recent_blocks(client, head, 8)
    assert client.requests_sent == sent  # the pinned head and the kept headers suffice
    assert (list(got.timestamps_s), list(got.gas_used)) == _fresh(anvil.url)

    snapshot = chain.rpc("evm_snapshot")
    chain.mine(2)
    client = RpcClient(endpoints)
    recent_blocks(client, client.pin_block(), 8)
    chain.rpc("evm_revert", [snapshot])  # a reorg: the last two blocks replaced
    chain.increase_time(100)
    chain.mine(2)
    client = RpcClient(endpoints)
    head = client.pin_block()
    sent = client.requests_sent
    got = recent_blocks(client, head, 8)
    assert client.requests_sent == sent + 1  # the replaced parent, read again
    assert (list(got.timestamps_s), list(got.gas_used)) == _fresh(anvil.url)
    assert got.timestamps_s[-1] == head.timestamp
