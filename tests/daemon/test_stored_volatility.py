"""The daemon's own store as a volatility source: after governance points an asset at a new
oracle feed (whose own history is only hours long), the daemon fits that asset's volatility on
the oracle prices it stored at every block, says so (`stored oracle prices`, with their age),
and the estimate rises within hours of a crash published by the new feed."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from sqlalchemy import select

from onchain.config import load_config
from onchain.devnet.build import DevnetInfo
from onchain.devnet.chain import DEPLOYER, DevChain, calldata
from onchain.devnet.config_file import risk_section
from onchain.devnet.control import set_prices
from onchain.jobs.context import JobContext
from onchain.jobs.refresh import refresh_job
from onchain.store import crud
from onchain.store.db import Store
from onchain.store.price_history import hourly_stored_prices
from tests.helpers.oracle_sources import new_feed

HOUR = 3600

pytestmark = [pytest.mark.devnet, pytest.mark.slow]


@pytest.fixture
def devchain(devnet: DevnetInfo) -> Any:
    chain = DevChain(devnet.rpc_url)
    checkpoint = chain.rpc("evm_snapshot")
    yield chain
    assert chain.rpc("evm_revert", [checkpoint]) is True


def _context(tmp_path: Path, info: DevnetInfo, store: Store) -> JobContext:
    path = tmp_path / "stored.toml"
    path.write_text(
        f'[chains.devnet]\nchain_id = {info.chain_id}\nrpc_url = "{info.rpc_url}"\n\n'
        f'[[markets]]\nname = "aave-v3-devnet"\nprotocol = "aave-v3"\nchain = "devnet"\n'
        f'address = "{info.aave.addresses_provider}"\n\n'
        f'[store]\nurl = "{store.engine.url.render_as_string(False)}"\n\n'
        '[jobs.refresh]\nat = "each-block"\n\n[jobs.prune]\nenabled = false\n' + risk_section(info)
    )
    cfg = load_config(path)
    return JobContext(cfg, store, crud.sync_markets(store, cfg))


def _volatility(ctx: JobContext, counts: Counter[str]) -> dict[str, Any]:
    """Refresh the new blocks; the volatility per asset the newest snapshot was assessed with."""
    assert refresh_job(ctx, counts) == []
    assert counts["risk_fallback_blocks"] == 0, counts
    s = crud.T_SNAPSHOTS
    with ctx.store.read() as conn:
        details = conn.execute(
            select(s.c.details).order_by(s.c.block_number.desc()).limit(1)
        ).scalar_one()
    return dict(details["risk"]["volatility"])


def test_a_new_feed_falls_back_on_the_stored_prices_and_they_follow_a_crash(
    devnet: DevnetInfo, devchain: DevChain, store: Store, tmp_path: Path
) -> None:
    del devchain  # only for its revert
    ctx = _context(tmp_path, devnet, store)
    chain = DevChain(devnet.rpc_url)
    rng = np.random.default_rng(16)
    eth, btc = 3000.0, 60000.0
    counts: Counter[str] = Counter()
    for _ in range(30):  # 30 calm hours (about 50%/yr), the daemon refreshing each one
        eth *= float(np.exp(rng.normal(0, 0.005)))
        btc *= float(np.exp(rng.normal(0, 0.005)))
        chain.increase_time(HOUR)
        set_prices(devnet.rpc_url, devnet.aave, {"WETH": eth, "WBTC": btc})
        assert refresh_job(ctx, counts) == []
    assert counts["risk_fallback_blocks"] == 0 and counts["risk_blocks"] >= 30
    (market,) = ctx.markets
    stored = hourly_stored_prices(store, market.id, 0, 2**62)
    weth = stored[devnet.aave.tokens["WETH"].lower()]
    assert len(weth.times_s) >= 30 and weth.prices[-1] == round(eth * 10**8)
    # the feed's events cover as many hours as the store: the feed's own history is kept
    before = _volatility(ctx, counts)
    assert before["ETH"]["source"] == "oracle feed events"

    new = new_feed(chain, devnet, "WETH", eth)
    calm = _volatility(ctx, counts)
    weth_vol = calm["ETH"]
    assert weth_vol["source"] == "stored oracle prices" and weth_vol["feed"] == new
    assert weth_vol["hourly_closes"] >= 30 and 0 <= weth_vol["age_s"] < HOUR
    assert 0.1 < weth_vol["annual_volatility"] < 1.5
    assert calm["BTC"]["source"] == "oracle feed events"  # its feed did not change

    for step in range(4):  # the new feed publishes a crash, 5% an hour
        eth *= 0.95
        chain.increase_time(HOUR)
        chain.send(DEPLOYER, new, calldata("setAnswer(int256)", round(eth * 10**8)), gas=200_000)
        crash = _volatility(ctx, counts)
        assert crash["ETH"]["source"] == "stored oracle prices", step
    assert crash["ETH"]["annual_volatility"] > 2 * weth_vol["annual_volatility"]
    assert crash["ETH"]["age_s"] == 0
