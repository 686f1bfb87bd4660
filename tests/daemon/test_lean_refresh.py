"""The change layout's per-block path whose cost follows what changed (`refresh.lean_block`)
against the path that builds every Position (`layout = "both"` keeps it), on the same devnet
blocks, one store each: price moves in both protocols, a new borrower, repays, a borrower
walked into an alert episode and liquidated by a real `liquidationCall`, reconciliations.
At every stored block both stores hold the same market states, account states, verdict rows
and snapshot heads, the same alerts queued and the same rule states; after each refresh the
lean store's latest view, its older details rebuilt from the stored states, equals the full
path's row for row, and the API's reads of it equal the full path's, while most of its rows
were not written whole."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from sqlalchemy import Table, select

from onchain.alerts import outbox
from onchain.app.stored_book import rebuild_book
from onchain.config import load_config
from onchain.devnet.build import DevnetInfo
from onchain.devnet.chain import DevChain, calldata
from onchain.devnet.config_file import risk_section
from onchain.devnet.morpho import set_prices_everywhere
from onchain.jobs.context import JobContext
from onchain.jobs.refresh import refresh_job
from onchain.store import api_queries as Q
from onchain.store import changes, crud
from onchain.store.db import Store, make_engine, open_store, parse_db_url, upgrade
from onchain.store.models import TIERS
from tests.helpers.aave_liquidator import LIQUIDATOR, _fund_liquidator
from tests.helpers.aave_oracle import BORROWER, UINT256_MAX, weth_price_for
from tests.helpers.incremental_daemon import _config, _move

pytestmark = pytest.mark.devnet

WAD = 10**18
ALERTS = (
    '\n[[alerts.rules]]\nname = "book"\nfrom_tier = "WATCH"\ncooldown_s = 0\n\n'
    f'[[alerts.rules]]\nname = "borrower"\naccounts = ["{BORROWER}"]\n'
    "below_hf = 1.10\nrearm_hf = 1.15\ncooldown_s = 0\n\n"
    '[[alerts.channels]]\nname = "out"\nurl = "console://"\n'
)
RISKIEST = 20  # [store] whole_riskiest: the riskiest rows written whole at every block


def _context(devnet: DevnetInfo, folder: Path, url: str, layout: str) -> JobContext:
    folder.mkdir()
    engine = make_engine(parse_db_url(url), create_sqlite_dir=True)
    upgrade(engine)
    engine.dispose()
    lines = f'layout = "{layout}"\nwhole_riskiest = {RISKIEST}\n'
    path = _config(folder, devnet, url, store=lines)
    path.write_text(path.read_text() + risk_section(devnet) + ALERTS)
    cfg = load_config(path)
    store = open_store(url)
    return JobContext(cfg, store, crud.sync_markets(store, cfg))


def _names(store: Store) -> tuple[dict[int, str], dict[int, str]]:
    with store.read() as conn:
        markets = dict(conn.execute(select(crud.T_MARKETS.c.id, crud.T_MARKETS.c.name)).all())
        accounts = dict(conn.execute(select(crud.T_ACCOUNTS.c.id, crud.T_ACCOUNTS.c.address)).all())
    return markets, accounts


def _rows(store: Store, table: Table, drop: tuple[str, ...] = ()) -> list[tuple[Any, ...]]:
    """Every row of `table`, ids as names (the two stores number them alike or not), sorted."""
    markets, accounts = _names(store)
    out = []
    with store.read() as conn:
        for row in conn.execute(select(table)):
            values = dict(row._mapping)
            if "market_id" in values:
                values["market_id"] = markets[values["market_id"]]
            if "account_id" in values:
                values["account_id"] = accounts[values["account_id"]]
            for name in ("id", *drop):
                values.pop(name, None)
            out.append(tuple(sorted((k, _canon(v)) for k, v in values.items())))
    return sorted(out)


def _canon(value: Any) -> str:
    """A value as text, JSON with its keys sorted (JSONB keeps its own key order)."""
    if isinstance(value, (dict, list)):
        return json.dumps(value, sort_keys=True)
    return repr(value)


def _heads(store: Store) -> list[tuple[Any, ...]]:
    """The snapshot heads as both paths write them (the layout named aside; `asset_rows`
    counts the asset rows written, which the lean path writes only for whole rows)."""
    markets, _ = _names(store)
    s = crud.T_SNAPSHOTS
    with store.read() as conn:
        rows = conn.execute(select(s)).all()
    return sorted(
        (
            markets[r.market_id],
            r.block_number,
            r.block_hash,
            r.positions,
            r.with_debt,
            r.liquidatable,
            r.at_risk,
            json.dumps({k: v for k, v in r.details.items() if k != "layout"}, sort_keys=True),
        )
        for r in rows
    )


def _latest(store: Store, *, rebuilt: bool) -> tuple[dict[tuple[str, str, str], Any], int]:
    """The latest view row by row (details rebuilt where older than the row's block), and how
    many rows held older details."""
    markets, accounts = _names(store)
    with store.read() as conn:
        rows = conn.execute(changes.latest_with_details()).all()
        stale = sum(1 for r in rows if changes.stale_details(r))
        if rebuilt:
            rows = Q.fresh(conn, rows, rebuild_book)
    out = {}
    for r in rows:
        values = dict(vars(r) if isinstance(r, SimpleNamespace) else r._mapping)
        values.pop("detail_block")
        key = (markets[values.pop("market_id")], accounts[values.pop("account_id")], r.market_key)
        out[key] = values
    return out, stale


def _compare_latest(today: Store, lean: Store) -> int:
    full, none_stale = _latest(today, rebuilt=False)
    assert none_stale == 0
    rebuilt, stale = _latest(lean, rebuilt=True)
    assert rebuilt.keys() == full.keys()
    for key, values in full.items():
        assert rebuilt[key] == values, key
    # what the API serves: every position, and the riskiest page
    assert Q.latest_positions(lean, rebuild=rebuild_book) == Q.latest_positions(today)
    where = Q.PositionFilter()
    assert Q.positions_page(lean, where, limit=100, rebuild=rebuild_book) == Q.positions_page(
        today, where, limit=100
    )
    if stale:  # a reader that cannot rebuild says so, rather than serve older details
        with pytest.raises(ValueError, match="rebuild"):
            Q.latest_positions(lean)
    return stale


def _riskiest_are_fresh(store: Store) -> int:
    """Each market's riskiest rows at risk in the latest view (the API's risk order: worst
    tier, then the lowest health factor) hold details from their own block: all of them where
    there are at most RISKIEST, else those strictly ahead of the RISKIEST-th (ties at the edge
    go either way). Returns how many rows were checked."""
    rank = {t: i for i, t in enumerate(TIERS)}
    with store.read() as conn:
        rows = conn.execute(select(changes.T_LATEST)).all()

    def key(r: Any) -> tuple[int, bool, float]:
        hf = r.health_factor_float
        return (rank[r.risk_tier], hf is None, hf or 0.0)

    checked = 0
    for market_id in {r.market_id for r in rows}:
        ranked = sorted(
            (r for r in rows if r.market_id == market_id and r.risk_tier != "SAFE"), key=key
        )
        if len(ranked) > RISKIEST:
            edge = key(ranked[RISKIEST - 1])
            ranked = [r for r in ranked if key(r) < edge]
        assert all(r.detail_block == r.block_number for r in ranked), market_id
        checked += len(ranked)
    return checked


def _alerts(ctx: JobContext) -> list[tuple[Any, ...]]:
    """The alerts queued, the config's path (their "see more" line) named alike."""
    o = outbox.T_OUTBOX
    with ctx.store.read() as conn:
        rows = conn.execute(select(o).order_by(o.c.uid)).all()
    path = str(ctx.config.path)
    return [
        (
            r.uid,
            r.rule,
            r.kind,
            r.account,
            r.market_key,
            r.block_number,
            r.tier,
            r.health_factor,
            r.text.replace(path, "CONFIG"),
            json.loads(json.dumps(r.payload).replace(path, "CONFIG")),
        )
        for r in rows
    ]


def test_the_lean_path_stores_what_the_full_path_stores(
    devnet: DevnetInfo, devchain: DevChain, db_url: str, tmp_path: Path
) -> None:
    today = _context(devnet, tmp_path / "today", f"sqlite:///{tmp_path / 'today.sqlite'}", "both")
    lean = _context(devnet, tmp_path / "lean", db_url, "changes")
    counts: dict[str, Counter[str]] = {"today": Counter(), "lean": Counter()}
    stale_seen = []

    fresh_checked = []

    def refresh_both(writer: JobContext | None = None) -> None:
        """Both stores refreshed; `writer`: another process's context writes the lean store."""
        for name, ctx in (("today", today), ("lean", writer or lean)):
            assert refresh_job(ctx, counts[name]) == []
        stale_seen.append(_compare_latest(today.store, lean.store))
        fresh_checked.append(_riskiest_are_fresh(lean.store))

    def weth(hf: float) -> None:
        price = weth_price_for(devchain, devnet, hf)
        assert devnet.morpho is not None
        set_prices_everywhere(devnet.rpc_url, devnet.aave, devnet.morpho, {"WETH": price})

    refresh_both()  # the first block: everything read
    _move(devnet, 0)  # prices, a new borrower, a repay
    refresh_both()
    weth(1.07)  # BORROWER enters an episode
    refresh_both()
    weth(0.97)  # liquidatable
    refresh_both()
    _fund_liquidator(devchain, devnet)
    data = calldata(
        "liquidationCall(address,address,address,uint256,bool)",
        devnet.aave.tokens["WETH"],
        devnet.aave.tokens["DAI"],
        BORROWER,
        UINT256_MAX,
        False,
    )
    receipt = devchain.send(LIQUIDATOR, devnet.aave.pool, data, gas=5_000_000)
    assert int(receipt["status"], 16) == 1
    refresh_both()
    for step in (1, 2, 3):
        _move(devnet, step)
        refresh_both()
    # a reorg: the block just stored leaves the chain for a longer branch
    checkpoint = devchain.rpc("evm_snapshot")
    _move(devnet, 4)
    refresh_both()
    assert devchain.rpc("evm_revert", [checkpoint]) is True
    _move(devnet, 5)
    devchain.mine(1)
    refresh_both()
    # another process (a restart, a worker that took the market over) writes a block: what
    # the first one remembers no longer stands, and its next block reads the store again
    refresh_both()  # nothing new: the same blocks
    _move(devnet, 6)
    refresh_both(JobContext(lean.config, lean.store, lean.markets))
    _move(devnet, 7)
    refresh_both()

    # every stored block: the same change rows, heads, alerts and rule states
    for table in (changes.T_MARKET_STATES, changes.T_ACCOUNT_STATES, changes.T_VERDICTS):
        assert _rows(lean.store, table) == _rows(today.store, table), table.name
    assert _heads(lean.store) == _heads(today.store)
    alerts = _alerts(today)
    assert _alerts(lean) == alerts
    kinds = Counter(a[2] for a in alerts)
    assert kinds["liquidated"] >= 1 and kinds["enter"] >= 2 and kinds["recover"] >= 1, kinds
    assert any(a[2] == "liquidated" and a[3] == BORROWER for a in alerts)
    assert _rows(lean.store, outbox.T_STATE, ("last_fired_at", "updated_at")) == _rows(
        today.store, outbox.T_STATE, ("last_fired_at", "updated_at")
    )

    # and it did follow what changed: most rows kept their details, few were written whole
    today_blocks = counts["today"]["incremental_blocks"] + counts["today"]["incremental_full_reads"]
    assert counts["lean"]["lean_blocks"] == today_blocks
    assert counts["lean"]["reconcile_runs"] >= 2
    for name in ("today", "lean"):  # the risk module tiered every block, both ways
        assert counts[name]["risk_fallback_blocks"] == 0 and counts[name]["risk_blocks"] > 10
    assert counts["lean"]["positions_whole"] < counts["lean"]["positions"] / 3, counts["lean"]
    assert max(stale_seen) > 300, stale_seen
    assert min(fresh_checked) >= 1 and max(fresh_checked) >= RISKIEST, fresh_checked
    # what stood came from memory at most blocks, from the store after a first read, a reorg
    # and another writer's block
    remembered = counts["lean"]["standing_remembered"]
    assert today_blocks / 2 < remembered < today_blocks - 4, (remembered, today_blocks)
    # and the account states compared were only those read again, where the memory held
    changed_only = counts["lean"]["states_changed_only"]
    assert today_blocks / 3 < changed_only <= remembered, (changed_only, remembered)
    # and what stands for each row was compared column by column where the rows stayed
    by_column = counts["lean"]["rows_by_column"]
    assert today_blocks / 3 < by_column <= remembered, (by_column, remembered)
    for ctx in (today, lean):
        ctx.store.close()
