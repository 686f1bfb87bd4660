"""A restart of an incremental daemon whose store keeps account states (layout "both") takes
them up from the store at the refresh cursor and moves on with the logs since: no full read,
and every block it stores equals a one-shot `scan` at that block field for field. When the
stored block left the canonical chain it reads everything again and stays exact."""

from __future__ import annotations

import itertools
from collections import Counter
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pytest

from onchain.app.pipeline import scan
from onchain.config import Config, load_config
from onchain.devnet.build import DevnetInfo
from onchain.devnet.chain import DevChain
from onchain.devnet.control import _in_one_block as in_one_block
from onchain.devnet.morpho import set_prices_everywhere
from onchain.jobs.context import JobContext
from onchain.jobs.refresh import refresh_job
from onchain.protocols.base import MarketRef
from onchain.rpc.client import RpcClient
from onchain.store import crud
from onchain.store.db import Store
from tests.helpers.incremental_daemon import _config, _move, _scanned, _stored, repay_txs

pytestmark = pytest.mark.devnet

STEPS = itertools.count(20)  # each test moves the shared devnet with accounts of its own


def _daemon(
    devnet: DevnetInfo, store: Store, tmp_path: Path, refresh: str, at: str = "each-block"
) -> tuple[Config, list[crud.MarketInfo]]:
    url = store.engine.url.render_as_string(False)
    path = _config(tmp_path, devnet, url, store='layout = "both"\n', refresh=refresh, at=at)
    cfg = load_config(path)
    return cfg, crud.sync_markets(store, cfg)


def _run(ctx: JobContext, counts: Counter[str] | None = None) -> Counter[str]:
    counts = Counter() if counts is None else counts
    assert refresh_job(ctx, counts) == []
    return counts


def _assert_exact(
    devnet: DevnetInfo, store: Store, markets: list[crud.MarketInfo], first: int, last: int
) -> int:
    return _assert_exact_at(devnet, store, markets, range(first, last + 1))


def _assert_exact_at(
    devnet: DevnetInfo, store: Store, markets: list[crud.MarketInfo], numbers: Iterable[int]
) -> int:
    client = RpcClient(devnet.rpc_url, expected_chain_id=devnet.chain_id)
    compared = 0
    for number in numbers:
        for market in markets:
            ref = MarketRef(market.protocol, market.address)
            full = scan(client, ref, block_number=number).positions
            assert _stored(store, number, market.id) == _scanned(full), (market.name, number)
            compared += len(full)
    return compared


def test_a_restart_takes_up_the_stored_states_and_reads_only_what_moved(
    devnet: DevnetInfo, store: Store, tmp_path: Path
) -> None:
    # no reconciliation: the accounts read again are then only those the blocks since named
    cfg, markets = _daemon(devnet, store, tmp_path, "reconcile_every_blocks = 0\n")
    ctx = JobContext(cfg, store, markets)
    first_run = _run(ctx)
    for _ in range(2):
        _move(devnet, next(STEPS))
        _run(ctx)
    assert first_run["incremental_full_reads"] == 2
    _move(devnet, next(STEPS))
    restart = JobContext(cfg, store, markets)  # a new process: nothing kept in memory
    cursor = crud.get_cursor(store, markets[0].id, "refresh")
    assert cursor is not None
    first = cursor.block_number + 1
    again = _run(restart)
    _move(devnet, next(STEPS))
    _run(restart, again)
    last = DevChain(devnet.rpc_url).block_number()

    assert again["incremental_full_reads"] == 0, again
    assert again["incremental_restarts_from_store"] == 2
    assert again["incremental_blocks"] >= 2 * 2
    # a full read reads every account again (500 here); the restart only those the logs name
    assert first_run["accounts_reread"] >= 500 and again["accounts_reread"] <= 10
    # the kept state taken up from the store is the chain's: a full comparison repairs nothing
    client = RpcClient(devnet.rpc_url, expected_chain_id=devnet.chain_id)
    for refresher in restart.refreshers.values():
        refresher.client = client
        assert refresher.reconcile() == []
    now = crud.get_cursor(store, markets[0].id, "refresh")
    assert now is not None and now.block_number == last
    assert _assert_exact(devnet, store, markets, first, last) > 2 * 300 * 2


def test_a_restart_whose_stored_block_was_orphaned_reads_everything_again(
    devnet: DevnetInfo, store: Store, tmp_path: Path
) -> None:
    """A reorg deeper than the reorg window leaves the rewound cursor on an orphaned block: the
    stored states there (a repay the new branch does not have) must not be taken up."""
    assert devnet.morpho is not None
    cfg, markets = _daemon(devnet, store, tmp_path, "reorg_window = 1\n")
    ctx = JobContext(cfg, store, markets)
    _run(ctx)
    _move(devnet, next(STEPS))
    _run(ctx)
    chain = DevChain(devnet.rpc_url)
    checkpoint = chain.rpc("evm_snapshot")
    step = next(STEPS)
    in_one_block(chain, repay_txs(devnet, devnet.borrowers[step]))  # orphaned below
    chain.mine(3)
    _run(ctx)
    orphaned_top = chain.block_number()
    assert chain.rpc("evm_revert", [checkpoint]) is True
    prices: dict[str, Any] = {"WETH": 2500.0}
    set_prices_everywhere(devnet.rpc_url, devnet.aave, devnet.morpho, prices)
    chain.mine(max(1, orphaned_top - chain.block_number()))
    restart = JobContext(cfg, store, markets)
    again = _run(restart)
    _move(devnet, next(STEPS))
    _run(restart, again)
    last = chain.block_number()

    assert again["blocks_orphaned"] >= 1
    assert again["incremental_full_reads"] == 2 and not again["incremental_restarts_from_store"]
    assert "left the canonical chain" in str(again["incremental_full_read_reason"])
    assert _assert_exact(devnet, store, markets, orphaned_top, last) > 2 * 300 * 2


def test_a_restart_after_more_than_resume_max_gap_blocks_reads_everything_again(
    devnet: DevnetInfo, store: Store, tmp_path: Path
) -> None:
    """With `at = "latest"` the first block after a stop is the head, and taking up the stored
    states means reading the logs of the whole gap: up to `resume_max_gap_blocks` the store's
    states are taken up, past it every account is read again, counted with the reason."""
    chain = DevChain(devnet.rpc_url)
    refresh = "reconcile_every_blocks = 0\nresume_max_gap_blocks = {}\n"
    cfg, markets = _daemon(devnet, store, tmp_path, refresh.format(0), at="latest")
    first_run = _run(JobContext(cfg, store, markets))
    assert first_run["incremental_full_reads"] == 2
    stored = [chain.block_number()]

    cursor = crud.get_cursor(store, markets[0].id, "refresh")
    assert cursor is not None
    _move(devnet, next(STEPS))
    most = chain.block_number() - cursor.block_number  # this gap is exactly the limit
    assert most >= 1
    cfg, markets = _daemon(devnet, store, tmp_path, refresh.format(most), at="latest")
    near = _run(JobContext(cfg, store, markets))
    stored.append(chain.block_number())
    assert near["incremental_full_reads"] == 0, near
    assert near["incremental_restarts_from_store"] == 2
    assert not near["incremental_resume_gap_too_long"]
    assert near["accounts_reread"] <= 10

    _move(devnet, next(STEPS))
    chain.mine(most)  # the same stop and a few blocks more: past the limit
    far = _run(JobContext(cfg, store, markets))
    stored.append(chain.block_number())
    assert far["incremental_full_reads"] == 2 and not far["incremental_restarts_from_store"], far
    assert far["incremental_resume_gap_too_long"] == 2
    assert f"more than resume_max_gap_blocks ({most})" in str(far["incremental_full_read_reason"])
    assert far["accounts_reread"] >= 500
    now = crud.get_cursor(store, markets[0].id, "refresh")
    assert now is not None and now.block_number == stored[-1]
    assert _assert_exact_at(devnet, store, markets, stored) > 3 * 500
