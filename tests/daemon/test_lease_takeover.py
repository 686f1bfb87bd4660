"""A market moving from one worker to another takes up the store's kept states: worker A
refreshes both devnet markets incrementally (layout "both"), worker B arrives, A gives back
its surplus market at its next lease tick and B takes it; B's first block of that market is
not a full read (the states at the refresh cursor are taken up from the store, the logs since
read), A goes on with the market it kept, and every block either writes equals a one-shot
`scan` at that block. In one process, each worker a `JobContext` with its own lease keeper
(the keepers tick by hand, so the hand-over happens exactly between two blocks)."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from onchain.app.pipeline import scan
from onchain.config import load_config
from onchain.devnet.build import DevnetInfo
from onchain.devnet.chain import DevChain
from onchain.jobs.context import JobContext
from onchain.jobs.refresh import refresh_job
from onchain.jobs.workers import LeaseKeeper
from onchain.protocols.base import MarketRef
from onchain.rpc.client import RpcClient
from onchain.store import crud, leases
from onchain.store.db import Store
from tests.helpers.incremental_daemon import _config, _move, _scanned, _stored

pytestmark = [
    pytest.mark.devnet,
    pytest.mark.parametrize("db_url", ["postgresql"], indirect=True),
]
LEASE_S = 600.0  # no keeper thread here: the leases must not run out between two ticks


def _run(ctx: JobContext, counts: Counter[str]) -> Counter[str]:
    assert refresh_job(ctx, counts) == []
    return counts


def test_a_market_taken_over_by_another_worker_resumes_from_the_store(
    devnet: DevnetInfo, store: Store, tmp_path: Path
) -> None:
    url = store.engine.url.render_as_string(False)
    # no reconciliation: the accounts read again are then only those the blocks since named
    path = _config(
        tmp_path, devnet, url, store='layout = "both"\n', refresh="reconcile_every_blocks = 0\n"
    )
    cfg = load_config(path)
    markets = crud.sync_markets(store, cfg)
    ids = [m.id for m in markets]
    keepers = {name: LeaseKeeper(store, name, markets, LEASE_S) for name in ("a", "b")}
    leases.register_worker(store, "a", LEASE_S)
    leases.ensure_lease_rows(store, ids)
    assert sorted(keepers["a"].tick().held) == sorted(ids)  # alone: A takes both
    a = JobContext(cfg, store, markets, keeper=keepers["a"])
    b = JobContext(cfg, store, markets, keeper=keepers["b"])
    chain = DevChain(devnet.rpc_url)

    before: Counter[str] = Counter()
    _run(a, before)
    first = chain.block_number()
    for step in (40, 41):
        _move(devnet, step)
        _run(a, before)
    assert before["incremental_full_reads"] == 2 and before["accounts_reread"] >= 500

    leases.register_worker(store, "b", LEASE_S)
    assert keepers["b"].tick().taken == []  # A's leases are live: B waits
    given = keepers["a"].tick()  # two live workers: A keeps one market, gives the other back
    assert len(given.released) == 1 and len(given.held) == 1, given
    taken = keepers["b"].tick()
    assert taken.taken == given.released
    moved = next(m for m in markets if m.id in taken.taken)
    kept = next(m for m in markets if m.id != moved.id)
    cursor = crud.get_cursor(store, moved.id, "refresh")
    assert cursor is not None and cursor.block_number == chain.block_number()

    after_a: Counter[str] = Counter()
    after_b: Counter[str] = Counter()
    for step in (42, 43):
        _move(devnet, step)
        _run(a, after_a)
        _run(b, after_b)
    last = chain.block_number()

    # B took the moved market up from the store at A's cursor: no full read, only the accounts
    # the logs since named read again; A kept its other market's state in memory
    assert after_b["incremental_full_reads"] == 0, after_b
    assert after_b["incremental_restarts_from_store"] == 1
    assert after_b["incremental_blocks"] >= 2
    assert after_b["accounts_reread"] <= 10
    assert after_a["incremental_full_reads"] == 0 and not after_a["incremental_restarts_from_store"]
    assert not a.refreshers.get(moved.id), "A still keeps the market it gave back"
    for market, holder in ((moved, "b"), (kept, "a")):
        now = crud.get_cursor(store, market.id, "refresh")
        assert now is not None and now.block_number == last, (market.name, holder)

    # every block of both markets, before and after the hand-over, is the chain's
    client = RpcClient(devnet.rpc_url, expected_chain_id=devnet.chain_id)
    compared = 0
    for number in range(first, last + 1):
        for market in markets:
            full = scan(client, MarketRef(market.protocol, market.address), block_number=number)
            assert _stored(store, number, market.id) == _scanned(full.positions), (
                market.name,
                number,
            )
            compared += len(full.positions)
    assert compared > (last - first + 1) * 300
