"""The daemon's refresh is incremental: after one full read it re-reads only what each block's
logs touched, its reconciliations find nothing to repair, a restart rebuilds from a full read,
and every stored snapshot equals a one-shot `scan` at the same block (Aave 3.0.2 and Morpho)."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from onchain.app.pipeline import scan
from onchain.config import load_config
from onchain.devnet.build import DevnetInfo
from onchain.devnet.chain import DevChain
from onchain.jobs.context import JobContext
from onchain.jobs.refresh import refresh_job
from onchain.protocols.base import MarketRef
from onchain.rpc.client import RpcClient
from onchain.store import crud
from onchain.store.db import Store
from tests.helpers.incremental_daemon import _config, _move, _scanned, _stored


def test_the_daemon_refreshes_incrementally_and_stores_what_scan_reads(
    devnet: DevnetInfo, store: Store, tmp_path: Path
) -> None:
    assert devnet.morpho is not None
    cfg = load_config(_config(tmp_path, devnet, store.engine.url.render_as_string(False)))
    markets = crud.sync_markets(store, cfg)
    ctx = JobContext(cfg, store, markets)
    counts: Counter[str] = Counter()
    assert refresh_job(ctx, counts) == []
    first = DevChain(devnet.rpc_url).block_number()
    for step in range(4):
        _move(devnet, step)
        assert refresh_job(ctx, counts) == []
    # a restart: a new process has no kept state and begins with a full read
    restarted = JobContext(cfg, store, markets)
    _move(devnet, 4)
    again: Counter[str] = Counter()
    assert refresh_job(restarted, again) == []
    last = DevChain(devnet.rpc_url).block_number()

    assert counts["incremental_full_reads"] == 2  # one per market, on the first block only
    assert counts["incremental_blocks"] >= 2 * 8
    assert counts["reconcile_runs"] >= 2 * 4 and counts["reconcile_repairs"] == 0
    assert counts["accounts_reread"] < 2 * 300  # far fewer than a full read per block
    assert again["incremental_full_reads"] == 2 and again["reconcile_repairs"] == 0

    client = RpcClient(devnet.rpc_url, expected_chain_id=devnet.chain_id)
    refs = {m.id: MarketRef(m.protocol, m.address) for m in markets}
    compared = 0
    for number in range(first, last + 1):
        for market in markets:
            full = scan(client, refs[market.id], block_number=number).positions
            assert _stored(store, number, market.id) == _scanned(full), (market.name, number)
            compared += len(full)
    assert compared > 2 * 300 * 8
