"""The change layout on a devnet run with real activity (price moves, a new borrower and a repay
per block, both protocols): for every stored block, the book rebuilt from the stored market
state, account states and verdicts equals a one-shot `scan` at that block field for field, and
the snapshot rows the same daemon wrote beside it (tiers and reasons included); account states
are written only when they changed. Incremental and full reads alike."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from onchain.app.pipeline import scan
from onchain.config import load_config
from onchain.devnet.build import DevnetInfo
from onchain.devnet.chain import DevChain
from onchain.jobs.context import JobContext
from onchain.jobs.refresh import refresh_job
from onchain.protocols.base import MarketRef, Position
from onchain.protocols.registry import get_incremental
from onchain.rpc.client import RpcClient
from onchain.store import changes, crud
from onchain.store.db import Store, make_engine, open_store, parse_db_url, upgrade
from tests.helpers.cli_support import run as run_cli
from tests.helpers.incremental_daemon import _config, _move, _scanned, _stored

pytestmark = pytest.mark.devnet


def _key(p: Position) -> tuple[str, str]:
    return (p.account.lower(), p.market)


def _tiers(store: Store, number: int, market_id: int) -> dict[tuple[str, str], tuple[Any, ...]]:
    p = crud.T_POSITIONS
    with store.read() as conn:
        rows = conn.execute(
            select(crud.T_ACCOUNTS.c.address, p.c.market_key, p.c.risk_tier, p.c.risk_reasons)
            .join(crud.T_ACCOUNTS, crud.T_ACCOUNTS.c.id == p.c.account_id)
            .where((p.c.block_number == number) & (p.c.market_id == market_id))
        ).all()
    return {(a.lower(), k): (t, r) for a, k, t, r in rows}


def _run(
    devnet: DevnetInfo, store: Store, tmp_path: Path, *, incremental: bool, layout: str
) -> tuple[Any, int, int]:
    cfg = load_config(
        _config(
            tmp_path,
            devnet,
            store.engine.url.render_as_string(False),
            incremental=incremental,
            store=f'layout = "{layout}"\n',
        )
    )
    markets = crud.sync_markets(store, cfg)
    ctx = JobContext(cfg, store, markets)
    counts: Counter[str] = Counter()
    assert refresh_job(ctx, counts) == []
    first = DevChain(devnet.rpc_url).block_number()
    for step in range(4):
        _move(devnet, step)
        assert refresh_job(ctx, counts) == []
    last = DevChain(devnet.rpc_url).block_number()
    return markets, first, last


def _rebuilt(store: Store, market: crud.MarketInfo, number: int) -> tuple[list[Position], Any]:
    book = changes.stored_book(store, market.id, number)
    assert book is not None, (market.name, number)
    incremental = get_incremental(market.protocol)
    assert incremental is not None
    return changes.rebuild_positions(book, incremental), book


def test_every_block_rebuilds_to_what_the_chain_and_the_snapshots_say(
    devnet: DevnetInfo, store: Store, tmp_path: Path
) -> None:
    markets, first, last = _run(devnet, store, tmp_path, incremental=True, layout="both")
    client = RpcClient(devnet.rpc_url, expected_chain_id=devnet.chain_id)
    compared = 0
    for number in range(first, last + 1):
        for market in markets:
            rebuilt, book = _rebuilt(store, market, number)
            full = scan(client, MarketRef(market.protocol, market.address), block_number=number)
            assert sorted(rebuilt, key=_key) == sorted(full.positions, key=_key), (
                market.name,
                number,
            )
            assert _scanned(rebuilt) == _stored(store, number, market.id)
            stored_tiers = _tiers(store, number, market.id)
            verdicts = {k: (v.risk_tier, v.risk_reasons) for k, v in book.verdicts.items()}
            assert {(a.lower(), k): v for (a, k), v in verdicts.items()} == stored_tiers
            compared += len(rebuilt)
    assert compared > 2 * 300 * 8

    with store.read() as conn:
        states = conn.execute(select(func.count()).select_from(changes.T_ACCOUNT_STATES))
        n_states = states.scalar_one()
        n_positions = conn.execute(select(func.count()).select_from(crud.T_POSITIONS)).scalar_one()
        latest = conn.execute(select(func.count()).select_from(changes.T_LATEST)).scalar_one()
    blocks = last - first + 1
    # one state per account at the first block, then only what the blocks' events changed
    assert n_states < n_positions / blocks + 10 * blocks
    newest = sum(len(_rebuilt(store, m, last)[0]) for m in markets)
    assert latest == newest


def test_a_daemon_reading_in_full_stores_only_the_states_that_changed(
    devnet: DevnetInfo, store: Store, tmp_path: Path
) -> None:
    markets, first, last = _run(devnet, store, tmp_path, incremental=False, layout="changes")
    client = RpcClient(devnet.rpc_url, expected_chain_id=devnet.chain_id)
    with store.read() as conn:
        assert conn.execute(select(func.count()).select_from(crud.T_POSITIONS)).scalar_one() == 0
        grouped = conn.execute(
            select(changes.T_ACCOUNT_STATES.c.block_number, func.count()).group_by(
                changes.T_ACCOUNT_STATES.c.block_number
            )
        )
        per_block = {n: c for n, c in grouped}
    assert per_block[first] >= 300
    assert all(per_block.get(n, 0) < 20 for n in range(first + 1, last + 1)), per_block
    for number in range(first, last + 1):
        for market in markets:
            rebuilt, _book = _rebuilt(store, market, number)
            full = scan(client, MarketRef(market.protocol, market.address), block_number=number)
            assert sorted(rebuilt, key=_key) == sorted(full.positions, key=_key)


def test_report_and_the_assess_job_read_the_latest_view_as_they_read_snapshots(
    devnet: DevnetInfo, store: Store, tmp_path: Path
) -> None:
    """Two daemons on the same chain, one store each: `onchain report --json` of the change
    layout's store equals the snapshot layout's, byte for byte, and so do the stored healths
    the assess job re-tiers."""
    url = store.engine.url.render_as_string(False)
    other_url = f"sqlite:///{tmp_path / 'changes.sqlite'}"
    engine = make_engine(parse_db_url(other_url), create_sqlite_dir=True)
    upgrade(engine)
    engine.dispose()
    other = open_store(other_url)
    contexts = []
    for where, s, layout in (
        (tmp_path / "a", store, "snapshots"),
        (tmp_path / "b", other, "changes"),
    ):
        where.mkdir()
        db = url if s is store else other_url
        cfg = load_config(_config(where, devnet, db, store=f'layout = "{layout}"\n'))
        contexts.append(JobContext(cfg, s, crud.sync_markets(s, cfg)))
    for step in range(3):
        for ctx in contexts:
            assert refresh_job(ctx, Counter()) == []
        _move(devnet, 10 + step)
    for ctx in contexts:
        assert refresh_job(ctx, Counter()) == []

    reports = [run_cli("report", "--json", "--limit", "0", "--db", db) for db in (url, other_url)]
    assert all(r.returncode == 0 for r in reports), [r.stderr for r in reports]
    assert reports[0].stdout == reports[1].stdout
    assert '"tier": ' in reports[0].stdout  # at-risk rows, not only empty books

    def healths(s: Store, market_id: int) -> list[Any]:
        found = crud.latest_health(s, market_id)
        assert found is not None
        return [(h.account, h.market_key, h.health_factor, h.risk_tier) for h in found.stored]

    for a, b in zip(contexts[0].markets, contexts[1].markets, strict=True):
        assert healths(store, a.id) == healths(other, b.id)
        # `history`: the change layout's blocks rebuilt point by point, the same JSON
        for who in {h[0] for h in healths(store, a.id)[:3]}:
            shown = [
                run_cli("history", who, "--market", a.name, "--json", "--db", db)
                for db in (url, other_url)
            ]
            assert all(r.returncode == 0 for r in shown), [r.stderr for r in shown]
            assert shown[0].stdout == shown[1].stdout, (a.name, who)
            assert shown[0].stdout.count('"block_number"') >= 4
    other.close()
