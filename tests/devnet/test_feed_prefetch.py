"""Feeds read from their events, block after block: one eth_getLogs for all of them gives the
same history as each feed read alone from scratch."""

from __future__ import annotations

from onchain.app.market_data import feed_history as fh
from onchain.devnet.build import DevnetInfo
from onchain.devnet.morpho import set_prices_everywhere
from onchain.rpc.client import RpcClient

SINCE_S = 0


def _alone(url: str, feed: str) -> tuple[list[int], list[float]]:
    """The feed's history read from scratch, without the process's cache."""
    saved = dict(fh._CACHE)
    fh._CACHE.clear()
    try:
        client = RpcClient(url)
        hist = fh.feed_history(client, client.pin_block(), feed, SINCE_S)
    finally:
        fh._CACHE.clear()
        fh._CACHE.update(saved)
    assert hist is not None
    return list(hist.times_s), list(hist.answers)


def test_one_request_for_every_feed_gives_each_feed_s_history(devnet: DevnetInfo) -> None:
    assert devnet.morpho is not None
    feeds = sorted(devnet.aave.price_feeds.values())
    assert len(feeds) >= 2
    client = RpcClient(devnet.rpc_url)
    block = client.pin_block()
    for feed in feeds:
        assert fh.feed_history(client, block, feed, SINCE_S) is not None
    chain = fh._chain(client)
    assert all(
        (chain, f.lower()) in fh._NO_ROUNDS for f in feeds
    )  # the devnet's feeds: events only
    for step in range(3):
        set_prices_everywhere(
            devnet.rpc_url, devnet.aave, devnet.morpho, {"WETH": 2500.0 + 10 * step}
        )
        client = RpcClient(devnet.rpc_url)
        block = client.pin_block()
        sent = client.requests_sent
        fh.prefetch_logs(client, block, feeds)
        assert client.requests_sent == sent + 1
        for feed in feeds:
            hist = fh.feed_history(client, block, feed, SINCE_S)
            assert hist is not None
            assert (list(hist.times_s), list(hist.answers)) == _alone(devnet.rpc_url, feed)
        assert client.requests_sent == sent + 1  # each feed found up to date
