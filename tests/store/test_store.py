"""The store on SQLite and PostgreSQL: exact uint256, one block = one transaction, idempotent
refreshes, reorg replacement, protocol-neutral rows, retention, tiers and alerts."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, inspect, select, text

from onchain.config import TierThresholds, load_config
from onchain.errors import ConfigError
from onchain.jobs.assess import assess, tier_of
from onchain.jobs.context import JobContext
from onchain.jobs.maintenance import assess_job
from onchain.protocols.base import Position
from onchain.rpc.client import BlockRef
from onchain.store import crud, queries
from onchain.store.db import (
    SQLITE_CACHE_KIB,
    Store,
    StoreError,
    make_engine,
    open_store,
    parse_db_url,
    upgrade,
)
from onchain.store.types import UINT256_MAX
from tests.helpers.cli_support import assert_one_clear_error
from tests.helpers.cli_support import run as run_cli
from tests.helpers.store_rows import (
    MARKET,
    WAD,
    account,
    block,
    counts,
    market_snapshot,
    position,
)


def config(tmp_path: Path, extra: str = "") -> Any:
    path = tmp_path / "onchain.toml"
    path.write_text(
        f'[chains.devnet]\nchain_id = 31337\nrpc_url = "http://127.0.0.1:1"\n\n'
        f'[[markets]]\nname = "m"\nprotocol = "aave-v3"\nchain = "devnet"\naddress = "{MARKET}"\n'
        + extra
    )
    return load_config(path)


def market_of(store: Store, tmp_path: Path) -> crud.MarketInfo:
    return crud.sync_markets(store, config(tmp_path))[0]


def write(store: Store, market: crud.MarketInfo, blk: BlockRef, positions: list[Position]) -> str:
    assessed = assess(positions, TierThresholds())
    return crud.write_snapshot(store, market, blk, positions, assessed, market_snapshot()).outcome


def test_uint256_round_trips_exactly_and_refuses_what_does_not_fit(
    store: Store, tmp_path: Path
) -> None:
    market = market_of(store, tmp_path)
    extremes = [UINT256_MAX, 2**255 + 12345, 10**77 + 1, 2**64, 1, 0]
    positions = [
        position(i, block(5), hf, collateral=hf, debt=max(hf - 1, 0))
        for i, hf in enumerate(extremes)
    ]
    assert write(store, market, block(5), positions) == "written"
    with store.read() as conn:
        p = crud.T_POSITIONS
        stored = dict(
            conn.execute(
                select(crud.T_ACCOUNTS.c.address, p.c.health_factor).join(
                    crud.T_ACCOUNTS, crud.T_ACCOUNTS.c.id == p.c.account_id
                )
            ).all()
        )
        raw = {
            r.collateral_raw
            for r in conn.execute(select(crud.T_ASSET_POSITIONS.c.collateral_raw)).all()
        }
        if store.dialect == "postgresql":  # NUMERIC(78,0): exact in SQL too
            kind = conn.execute(
                text(
                    "SELECT data_type, numeric_precision, numeric_scale FROM "
                    "information_schema.columns WHERE table_name = 'position_snapshots' "
                    "AND column_name = 'health_factor'"
                )
            ).one()
            assert tuple(kind) == ("numeric", 78, 0)
            top = conn.execute(text("SELECT max(health_factor) FROM position_snapshots")).scalar()
            assert int(top) == UINT256_MAX
    assert stored == {account(i): hf for i, hf in enumerate(extremes)}
    assert raw == set(extremes)
    assert all(type(v) is int for v in stored.values())
    for bad in (UINT256_MAX + 1, -1):
        with pytest.raises(Exception, match="outside uint256"):
            write(store, market, block(6), [position(0, block(6), bad)])
    assert counts(store)["market_snapshots"] == 1  # the refused block left nothing behind


def test_a_block_is_stored_whole_or_not_at_all(
    store: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    market = market_of(store, tmp_path)
    write(store, market, block(10), [position(i, block(10), 2 * WAD) for i in range(50)])
    before = counts(store)
    real = crud._bulk_insert
    calls = []

    def fail_on_asset_rows(conn: Any, table: Any, rows: list[dict[str, Any]]) -> None:
        calls.append(table.name)
        if table.name == "asset_positions":
            raise RuntimeError("disk full (simulated) after the positions were inserted")
        real(conn, table, rows)

    monkeypatch.setattr(crud, "_bulk_insert", fail_on_asset_rows)
    with pytest.raises(RuntimeError, match="simulated"):
        write(store, market, block(11), [position(i, block(11), 2 * WAD) for i in range(50)])
    assert calls == ["position_snapshots", "asset_positions"]  # it failed halfway through
    assert counts(store) == before
    assert crud.get_cursor(store, market.id, "refresh") == crud.CursorState(10, block(10).hash)


def test_refreshing_the_same_block_again_changes_nothing(store: Store, tmp_path: Path) -> None:
    market = market_of(store, tmp_path)
    positions = [position(i, block(20), (i + 1) * WAD // 2) for i in range(30)]
    assert write(store, market, block(20), positions) == "written"
    with store.read() as conn:
        first = conn.execute(select(crud.T_SNAPSHOTS)).all()
    before = counts(store)
    assert write(store, market, block(20), positions) == "unchanged"
    with store.read() as conn:
        assert conn.execute(select(crud.T_SNAPSHOTS)).all() == first
    assert counts(store) == before


def test_a_block_whose_hash_is_no_longer_canonical_is_replaced(
    store: Store, tmp_path: Path
) -> None:
    market = market_of(store, tmp_path)
    write(store, market, block(30, "a"), [position(i, block(30, "a"), 2 * WAD) for i in range(20)])
    write(store, market, block(31, "a"), [position(i, block(31, "a"), 2 * WAD) for i in range(20)])
    replacement = [position(i, block(31, "b"), WAD // 2) for i in range(25)]
    assert write(store, market, block(31, "b"), replacement) == "replaced"
    assert crud.snapshot_hashes(store, market.id) == {30: block(30).hash, 31: block(31, "b").hash}
    with store.read() as conn:
        rows = conn.execute(
            select(crud.T_POSITIONS.c.health_factor, crud.T_POSITIONS.c.block_hash).where(
                crud.T_POSITIONS.c.block_number == 31
            )
        ).all()
    assert len(rows) == 25 and {r for r in rows} == {(WAD // 2, block(31, "b").hash)}
    assert counts(store) == {
        "market_snapshots": 2,
        "position_snapshots": 45,
        "asset_positions": 90,
        "reserve_snapshots": 2,
    }
    assert crud.delete_snapshots_from(store, market.id, [31]) == 1
    assert counts(store)["position_snapshots"] == 20


def test_a_new_protocol_needs_no_schema_change(store: Store, tmp_path: Path) -> None:
    """Several books per account (a market id per position, as Morpho Blue has), another base
    currency, and protocol-only fields in JSON: same tables, nothing to migrate."""
    cfg = config(tmp_path)
    market = crud.sync_markets(store, cfg)[0]
    book_a, book_b = "0x" + "ab" * 32, "0x" + "cd" * 32
    blk = block(40)
    positions = [
        position(0, blk, 9 * WAD // 10, market=book_a, protocol="new-protocol",
                 extra={"lltv": 860_000_000_000_000_000, "shares": 2**200, "id": b"\x01"}),
        position(0, blk, 3 * WAD, market=book_b, protocol="new-protocol"),
        position(1, blk, 104 * WAD // 100, market=book_b, protocol="new-protocol"),
    ]  # fmt: skip
    crud.write_snapshot(store, market, blk, positions, assess(positions, TierThresholds()), None)
    books = {b.market_key: b for b in queries.at_risk_report(store)}
    assert set(books) == {book_a, book_b}
    assert books[book_a].tiers["LIQUIDATABLE"].positions == 1
    assert books[book_b].tiers["CRITICAL"].positions == 1
    assert books[book_b].tiers["SAFE"].positions == 1
    assert books[book_b].label.startswith("m 0xcdcdcdcd")
    with store.read() as conn:
        extras = [r[0] for r in conn.execute(select(crud.T_POSITIONS.c.extra))]
    assert {"lltv": 860_000_000_000_000_000, "shares": 2**200, "id": "0x01"} in extras
    history = queries.account_history(store, account(0))
    assert [(h.market_key, h.points[0].risk_tier) for h in history] == [
        (book_a, "LIQUIDATABLE"),
        (book_b, "SAFE"),
    ]
    # one deployment, configured as two markets that each cover one market id
    scoped = "".join(
        f'\n[[markets]]\nname = "{n}"\nprotocol = "new-protocol"\nchain = "devnet"\n'
        f'address = "{MARKET}"\nmarket_id = "{key}"\n'
        for n, key in (("only-a", book_a), ("only-b", book_b))
    )
    infos = crud.sync_markets(store, config(tmp_path, scoped), ["only-a", "only-b", "m"])
    assert len({i.id for i in infos}) == 3
    assert [i.market_id for i in infos] == [book_a, book_b, None]
    assert crud.sync_markets(store, config(tmp_path, scoped), ["only-b"])[0].id == infos[1].id


def test_prune_keeps_full_resolution_then_one_snapshot_per_bucket(
    store: Store, tmp_path: Path
) -> None:
    market = market_of(store, tmp_path)
    step, base, n_blocks = 1200, 1_700_000_000, 3 * 72  # every 20 minutes of chain time, 3 days
    for n in range(n_blocks):
        blk = BlockRef(n, f"0x{n:064x}", base + step * n)
        crud.write_snapshot(
            store, market, blk, [position(0, blk, 2 * WAD)], [crud.Assessed("SAFE", "")], None
        )
    newest = base + step * (n_blocks - 1)
    deleted = crud.prune_market(store, market.id, full_s=86_400, downsample_s=3600, keep_s=0)
    times = [base + step * n for n in sorted(crud.snapshot_hashes(store, market.id))]
    recent = [t for t in times if t >= newest - 86_400]
    old = [t for t in times if t < newest - 86_400]
    assert len(recent) == 73  # every snapshot of the newest day (both ends included)
    assert len({t // 3600 for t in old}) == len(old)  # one per hour before that...
    # ...the last of its hour (but in the hour the full-resolution window cuts in two)
    assert all(t // 3600 != (t + step) // 3600 for t in old[:-1])
    assert deleted == n_blocks - len(times) > 0
    assert crud.prune_market(store, market.id, full_s=86_400, downsample_s=3600, keep_s=0) == 0
    crud.prune_market(store, market.id, full_s=86_400, downsample_s=3600, keep_s=2 * 86_400)
    assert base + step * min(crud.snapshot_hashes(store, market.id)) >= newest - 2 * 86_400
    assert counts(store)["position_snapshots"] == counts(store)["market_snapshots"]


def test_tiers_come_from_the_exact_health_factor() -> None:
    tiers = TierThresholds()
    assert tier_of(None, False, tiers).tier == "SAFE"
    assert tier_of(None, False, tiers).reason == "no debt"
    assert tier_of(WAD - 1, True, tiers).tier == "LIQUIDATABLE"
    assert tier_of(WAD, False, tiers).tier == "CRITICAL"
    assert tier_of(105 * 10**16 - 1, False, tiers).tier == "CRITICAL"  # one wei below 1.05
    assert tier_of(105 * 10**16, False, tiers).tier == "HIGH"
    assert tier_of(110 * 10**16 - 1, False, tiers).tier == "HIGH"
    assert tier_of(125 * 10**16 - 1, False, tiers).tier == "WATCH"
    assert tier_of(125 * 10**16, False, tiers).tier == "SAFE"
    assert tier_of(WAD - 1, True, tiers).reason == "liquidatable now: health factor 0.9999 < 1"
    assert tier_of(1_049_999_999_999_999_999, False, tiers).reason == "health factor 1.0499 < 1.05"


def test_assess_retiers_stored_positions_and_decides_no_alert(store: Store, tmp_path: Path) -> None:
    """The assess job re-tiers with the configured thresholds; alerts are the outbox's alone
    (the first alerts table is gone: 0006_retire_old_alerts)."""
    from onchain.alerts.outbox import T_OUTBOX

    cfg = config(tmp_path, "\n[risk.tiers]\ncritical = 1.05\nhigh = 1.2\nwatch = 1.5\n")
    market = crud.sync_markets(store, cfg)[0]
    ctx = JobContext(cfg, store, [market])
    hfs = [9 * WAD // 10, 11 * WAD // 10, 14 * WAD // 10, 2 * WAD]
    blk = block(50)
    positions = [position(i, blk, hf) for i, hf in enumerate(hfs)]
    crud.write_snapshot(store, market, blk, positions, assess(positions, TierThresholds()), None)
    counts_ = __import__("collections").Counter()
    assert assess_job(ctx, counts_) == []
    # thresholds from this config: 1.1 is HIGH (< 1.2), 1.4 is WATCH (< 1.5)
    # 1.1 was WATCH, 1.4 was SAFE with the defaults; 2.0 stays SAFE with a new reason (>= 1.5)
    assert counts_["tiers_changed"] == 3 and "alerts" not in counts_
    assert assess_job(ctx, counts_) == [] and counts_["tiers_changed"] == 3  # nothing new
    stored = crud.latest_health(store, market.id)
    assert stored is not None
    assert sorted(s.risk_tier for s in stored.stored) == ["HIGH", "LIQUIDATABLE", "SAFE", "WATCH"]
    with store.read() as conn:
        assert conn.execute(select(func.count()).select_from(T_OUTBOX)).scalar_one() == 0
        assert "alerts" not in inspect(conn).get_table_names()


def test_job_runs_of_a_killed_process_are_marked_crashed(store: Store) -> None:
    run = crud.start_run(store, "refresh")
    with store.write() as conn:  # as if a process that no longer exists had started it
        conn.execute(crud.T_JOB_RUNS.update().values(pid=2**22 + 12345))
    assert crud.mark_crashed_runs(store) == 1
    assert queries.recent_runs(store)[0].outcome == "crashed"
    mine = crud.start_run(store, "assess")
    assert crud.mark_crashed_runs(store) == 0  # a live process's run is left alone
    crud.finish_run(store, mine, "ok", {"positions": 3})
    summary = {s.job: s for s in queries.job_summaries(store)}
    assert summary["assess"].last.outcome == "ok" and summary["assess"].last.counts == {
        "positions": 3
    }
    assert summary["refresh"].failed_24h == 1 and run == 1


def test_database_urls_are_validated_before_anything_is_opened() -> None:
    assert parse_db_url("postgresql://u@h/db").drivername == "postgresql+psycopg"
    assert parse_db_url("sqlite:///x.sqlite").database == "x.sqlite"
    for bad, words in [
        ("not a url", "malformed"),
        ("mysql://u@h/db", "unsupported database"),
        ("postgresql+psycopg2://u@h/db", "psycopg"),
        ("sqlite://", "must name a file"),
        ("postgresql://u@h", "must name a database"),
    ]:
        with pytest.raises(StoreError, match=words):
            parse_db_url(bad)


def test_broken_daemon_config_is_one_clear_error(tmp_path: Path) -> None:
    for extra, words in [
        ('\n[jobs.refresh]\nat = "sometimes"\n', "'at' must be one of"),
        ("\n[jobs.refresh]\nevery_s = -1\n", "every_s"),
        ("\n[jobs.prune]\nfull_dayz = 3\n", "unknown key(s) full_dayz"),
        ('\n[jobs]\nmarkets = ["nope"]\n', "not defined: nope"),
        ("\n[risk.tiers]\ncritical = 1.3\nhigh = 1.2\n", "critical <= high"),
        ('\n[risk.tiers]\nwatch = "lots"\n', "health factor like"),
        ("\n[store]\nurl = 5\n", "'url' must be a string"),
    ]:
        with pytest.raises(ConfigError, match=words.replace("(", r"\(").replace(")", r"\)")):
            config(tmp_path, extra)


def test_cli_bad_input_exits_2_with_one_line_and_writes_nothing(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere" / "x.sqlite"
    assert_one_clear_error(run_cli("status", "--db", "::not a url::"), "malformed database URL")
    assert_one_clear_error(run_cli("report", "--db", f"sqlite:///{missing}"), "no database at")
    broken = tmp_path / "broken.toml"
    broken.write_text(
        f'[chains.c]\nchain_id = 1\n\n[store]\npath = "{missing}"\n[jobs.refresh]\nat = 3\n'
    )
    assert_one_clear_error(run_cli("run", "--config", str(broken)), "'at' must be one of")
    assert not missing.parent.exists()
    password = run_cli("db", "upgrade", "--db", "postgresql://me:s3cret@127.0.0.1:1/x")
    assert_one_clear_error(password, "cannot open database", "127.0.0.1:1")
    assert "s3cret" not in password.stderr
    empty = tmp_path / "empty.sqlite"
    empty.touch()
    cfg = tmp_path / "ok.toml"
    cfg.write_text(
        f'[chains.devnet]\nchain_id = 31337\nrpc_url = "http://127.0.0.1:1"\n\n[[markets]]\n'
        f'name = "m"\nprotocol = "aave-v3"\nchain = "devnet"\naddress = "{MARKET}"\n\n'
        f'[store]\npath = "{empty}"\n'
    )
    assert_one_clear_error(run_cli("run", "--config", str(cfg)), "run `onchain db upgrade`")
    assert empty.stat().st_size == 0  # a database without our schema is not touched


def test_sqlite_connections_get_their_settings(tmp_path: Path) -> None:
    """Every SQLite connection of a store: foreign keys on, a lock wait, synchronous NORMAL (WAL)
    and a page cache of `SQLITE_CACHE_KIB` (the latest view of a large book stays in it)."""
    url = f"sqlite:///{tmp_path / 'settings.sqlite'}"
    engine = make_engine(parse_db_url(url), create_sqlite_dir=True)
    upgrade(engine)
    engine.dispose()
    store = open_store(url)
    try:
        for _ in range(2):  # a second connection too
            with store.read() as conn:
                got = {
                    name: conn.exec_driver_sql(f"PRAGMA {name}").scalar()
                    for name in ("cache_size", "foreign_keys", "synchronous", "journal_mode")
                }
            assert got == {
                "cache_size": -SQLITE_CACHE_KIB,
                "foreign_keys": 1,
                "synchronous": 1,  # NORMAL
                "journal_mode": "wal",
            }
    finally:
        store.close()


def test_the_refresh_keeps_tracked_accounts_while_the_store_counts_the_same(
    store: Store, tmp_path: Path
) -> None:
    from onchain.jobs.refresh import tracked_accounts

    market = market_of(store, tmp_path)
    ctx = JobContext(config(tmp_path), store, [market])
    a, b, c, d = (account(i) for i in range(4))

    def both(number: int) -> list[str]:
        ours = tracked_accounts(ctx, market, block(number))
        assert ours == crud.tracked_accounts(store, market.id, number)
        return ours

    crud.record_discovery(store, market, {a: 5, b: 7}, block(7))
    kept = both(8)
    assert sorted(kept) == sorted([a, b])
    assert both(9) is kept  # nothing new: the list kept from the last block
    crud.record_discovery(store, market, {c: 12}, block(12))  # another writer meanwhile
    assert both(10) is kept  # c is tracked from block 12 on
    assert c in both(12)
    crud.record_discovery(store, market, {d: 20}, block(20))
    assert d not in both(13)
    crud.record_discovery(store, market, {d: 11}, block(20))  # d's first block moved earlier
    assert d in both(13)
    assert both(6) == [a]  # an earlier block than the kept one
