"""Feeds read from their events, block after block: one eth_getLogs for all of them (the
prefetch's, or the incremental refresher's range read) gives the same history as each feed read
alone from scratch."""

from __future__ import annotations

from onchain.app.incremental import MarketRefresher
from onchain.app.market_data import feed_history as fh
from onchain.devnet.build import DevnetInfo
from onchain.devnet.morpho import set_prices_everywhere
from onchain.protocols.base import MarketRef, PriceFeedLogs
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


def test_the_refresher_s_range_read_brings_each_feed_s_history_up_to_date(
    devnet: DevnetInfo,
) -> None:
    """The Aave refresher's one eth_getLogs carries the feeds' logs: afterwards each feed's
    history is what it reads alone from scratch, and costs no request."""
    assert devnet.morpho is not None
    feeds = sorted(devnet.aave.price_feeds.values())
    client = RpcClient(devnet.rpc_url)
    refresher = MarketRefresher(client, MarketRef("aave-v3", devnet.aave.addresses_provider))
    start = client.pin_block()
    refresher.start(start, [])
    assert isinstance(refresher.incremental, PriceFeedLogs)
    assert {f.lower() for f in refresher.incremental.price_feeds(refresher.state)} == {
        f.lower() for f in feeds
    }
    for feed in feeds:  # each feed's history known up to the refresher's block
        assert fh.feed_history(client, start, feed, SINCE_S) is not None
    for step in range(2):
        set_prices_everywhere(
            devnet.rpc_url, devnet.aave, devnet.morpho, {"WETH": 2700.0 + 10 * step}
        )
        block = client.pin_block()
        logs = refresher.logs_to(block)
        assert any(g.address.lower() == devnet.aave.price_feeds["WETH"].lower() for g in logs)
        assert refresher.incremental.touched_accounts(refresher.state, logs) == set()
        refresher.advance(block, [], logs=logs)
        sent = client.requests_sent
        fh.prefetch_logs(client, block, feeds)
        for feed in feeds:
            hist = fh.feed_history(client, block, feed, SINCE_S)
            assert hist is not None
            assert (list(hist.times_s), list(hist.answers)) == _alone(devnet.rpc_url, feed)
        assert client.requests_sent == sent  # the range read carried every feed's logs
