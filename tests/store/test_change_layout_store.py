"""The change layout's store rules, on SQLite and PostgreSQL (the blobs are opaque here: the
devnet test in tests/daemon proves the rebuild through the adapters): account states and
verdicts are written only when they change, a replaced block replaces its change rows, and
retention keeps every kept block's states and verdicts exactly as they were."""

from __future__ import annotations

from dataclasses import astuple, dataclass
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select, text

from onchain.config import TierThresholds, load_config
from onchain.errors import ConfigError
from onchain.jobs.assess import assess
from onchain.protocols.base import Position
from onchain.rpc.client import BlockRef
from onchain.store import changes, crud
from onchain.store.db import (
    Store,
    current_revision,
    downgrade,
    head_revision,
    make_engine,
    parse_db_url,
    upgrade,
)
from tests.helpers.cli_support import assert_one_clear_error
from tests.helpers.cli_support import run as run_cli
from tests.helpers.store_rows import MARKET, WAD, account, position

BASE, STEP = 1_700_000_000, 1200  # a block every 20 minutes of chain time
BANDS = (1.0, 1.1, 1.5)
PREVIOUS = "0006_retire_old_alerts"


def _market(store: Store, tmp_path: Path) -> crud.MarketInfo:
    path = tmp_path / "c.toml"
    path.write_text(
        '[chains.devnet]\nchain_id = 31337\nrpc_url = "http://127.0.0.1:1"\n\n'
        f'[[markets]]\nname = "m"\nprotocol = "aave-v3"\nchain = "devnet"\naddress = "{MARKET}"\n'
    )
    return crud.sync_markets(store, load_config(path))[0]


def _block(n: int, tag: str = "a") -> BlockRef:
    return BlockRef(n, "0x" + f"{tag}{n:x}".rjust(64, "0"), BASE + STEP * n)


def _write(store: Store, market: crud.MarketInfo, n: int, tag: str = "a", bump: int = 0) -> Any:
    """Block n: account i's state changes every i + 2 blocks; its health factor drifts through
    the bands; account 3 leaves the book from block 40 on."""
    blk = _block(n, tag)
    accounts = [i for i in range(6) if not (i == 3 and n >= 40)]
    blobs = {account(i): f"{i}:{n // (i + 2) + bump}".encode() for i in accounts}
    positions = [position(i, blk, WAD + WAD * ((n + 7 * i) % 30) // 40) for i in accounts]
    kept = changes.KeptState(b"market %d" % n, blobs, BANDS)
    return crud.write_snapshot(
        store,
        market,
        blk,
        positions,
        assess(positions, TierThresholds()),
        None,
        kept=kept,
        layout="changes",
    )


def _at(store: Store, market_id: int, n: int) -> tuple[Any, Any]:
    with store.read() as conn:
        states = changes.states_at(conn, market_id, n)
        verdicts = {k: astuple(v)[1:] for k, v in changes.verdicts_at(conn, market_id, n).items()}
    return {k: v for k, v in states.items() if v is not None}, verdicts


def _count(store: Store, table: Any) -> int:
    with store.read() as conn:
        return int(conn.execute(select(func.count()).select_from(table)).scalar_one())


def test_only_changes_are_written_and_a_replaced_block_replaces_them(
    store: Store, tmp_path: Path
) -> None:
    market = _market(store, tmp_path)
    first = _write(store, market, 1)
    assert first.change_rows["account_states"] == 6 and first.change_rows["verdicts"] == 6
    assert _count(store, crud.T_POSITIONS) == _count(store, crud.T_ASSET_POSITIONS) == 0
    second = _write(store, market, 2)
    assert second.change_rows["account_states"] == 1  # only account 0 (every 2 blocks)
    assert _count(store, changes.T_LATEST) == 6
    before = _at(store, market.id, 2)
    replaced = _write(store, market, 2, tag="b", bump=1)  # a reorg: another block 2
    assert replaced.outcome == "replaced"
    states, _ = _at(store, market.id, 2)
    assert states != before[0] and set(states) == set(before[0])
    assert _count(store, changes.T_MARKET_STATES) == 2


def test_retention_keeps_every_kept_block_exact(store: Store, tmp_path: Path) -> None:
    market = _market(store, tmp_path)
    blocks = range(3 * 72)  # three days
    for n in blocks:
        _write(store, market, n)
    assert _count(store, changes.T_LATEST) == 5  # account 3 left the book
    before = {n: _at(store, market.id, n) for n in blocks}
    states_before = _count(store, changes.T_ACCOUNT_STATES)
    deleted = crud.prune_market(store, market.id, full_s=86_400, downsample_s=3 * 3600, keep_s=0)
    kept = sorted(crud.snapshot_hashes(store, market.id))
    assert deleted > 100 and len(kept) == len(blocks) - deleted
    for n in kept:
        assert _at(store, market.id, n) == before[n], n
    assert _count(store, changes.T_ACCOUNT_STATES) < states_before
    assert _count(store, changes.T_MARKET_STATES) == len(kept)

    crud.prune_market(store, market.id, full_s=86_400, downsample_s=3 * 3600, keep_s=86_400 * 1.5)
    kept_now = sorted(crud.snapshot_hashes(store, market.id))
    assert kept_now[0] > kept[0]
    for n in kept_now:
        assert _at(store, market.id, n) == before[n], n


def _snapshot_rows(store: Store) -> dict[str, int]:
    return {
        t.name: _count(store, t)
        for t in (crud.T_SNAPSHOTS, crud.T_POSITIONS, crud.T_ASSET_POSITIONS)
    }


def test_a_store_of_the_old_layout_upgrades_in_place_and_downgrades(
    db_url: str, tmp_path: Path
) -> None:
    """0006 -> 0007 keeps every stored block (the snapshot tables are untouched, the new ones
    start empty); 0007 -> 0006 works while every block is whole in the snapshot tables and is
    refused, with nothing dropped, while a block is stored in the change layout alone."""
    engine = make_engine(parse_db_url(db_url), create_sqlite_dir=True)
    upgrade(engine, PREVIOUS)
    store = Store(engine)  # the old schema: open_store would refuse it, as it should
    market = _market(store, tmp_path)
    for n in range(5):
        blk = _block(n)
        positions = [position(i, blk, WAD + WAD * i // 10) for i in range(4)]
        crud.write_snapshot(
            store, market, blk, positions, assess(positions, TierThresholds()), None
        )
    before = _snapshot_rows(store)
    assert before["position_snapshots"] == 20

    assert upgrade(engine) == head_revision()
    assert _snapshot_rows(store) == before
    assert crud.latest_health(store, market.id) is not None  # the old blocks read as before
    assert downgrade(engine, PREVIOUS) == PREVIOUS
    assert _snapshot_rows(store) == before

    upgrade(engine)
    _write(store, market, 10)  # a block in the change layout alone
    with pytest.raises(RuntimeError, match="change layout alone"):
        downgrade(engine, PREVIOUS)
    refused = run_cli("db", "downgrade", PREVIOUS, "--db", db_url, "--yes")
    assert_one_clear_error(refused, "change layout alone")
    assert current_revision(engine) == head_revision()
    assert _count(store, changes.T_ACCOUNT_STATES) > 0
    engine.dispose()


def test_a_wrong_layout_or_band_list_is_one_clear_config_error(tmp_path: Path) -> None:
    for line, words in (
        ('layout = "deltas"', "'layout' must be one of snapshots, changes, both"),
        ("verdict_bands = [1.5, 1.0]", "'verdict_bands' must be a rising list"),
        ("verdict_bands = [1.0, nan, 2.0]", "'verdict_bands' must be a rising list"),
        ("verdict_bands = [1.0, inf]", "'verdict_bands' must be a rising list"),
        ("whole_riskiest = -1", "'whole_riskiest' must be a whole number >= 0"),
        ("whole_riskiest = 2.5", "'whole_riskiest' must be a whole number >= 0"),
    ):
        path = tmp_path / "c.toml"
        path.write_text(f'[store]\npath = "s.sqlite"\n{line}\n')
        with pytest.raises(ConfigError, match=words):
            load_config(path)
    path.write_text('[store]\npath = "s.sqlite"\nlayout = "changes"\nverdict_bands = [1, 2]\n')
    store = load_config(path).store
    assert (store.layout, store.verdict_bands, store.whole_riskiest) == ("changes", (1.0, 2.0), 200)
    path.write_text('[store]\npath = "s.sqlite"\nwhole_riskiest = 0\n')
    assert load_config(path).store.whole_riskiest == 0


def test_a_later_assessment_re_tiers_the_blocks_verdict_rows(store: Store, tmp_path: Path) -> None:
    market = _market(store, tmp_path)
    _write(store, market, 1)
    found = crud.latest_health(store, market.id)
    assert found is not None
    again = [crud.Assessed("CRITICAL", "re-tiered by a later assessment") for _ in found.stored]
    assert crud.apply_assessment(store, found, again) == len(found.stored)
    _, verdicts = _at(store, market.id, found.block_number)
    assert {v[1] for v in verdicts.values()} == {"CRITICAL"}
    assert {v[2] for v in verdicts.values()} == {"re-tiered by a later assessment"}


def test_states_at_probed_per_account_equal_the_one_pass_read(
    store: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A long history is read account by account (one primary-key probe each) instead of in
    one pass over every row: both give every block's states alike, a left account's NULL
    included, with another market's rows beside them."""
    path = tmp_path / "two.toml"
    path.write_text(
        '[chains.devnet]\nchain_id = 31337\nrpc_url = "http://127.0.0.1:1"\n\n'
        f'[[markets]]\nname = "m"\nprotocol = "aave-v3"\nchain = "devnet"\naddress = "{MARKET}"\n'
        '[[markets]]\nname = "n"\nprotocol = "aave-v3"\nchain = "devnet"\n'
        f'address = "0x{"5" * 40}"\n'
    )
    market, other = crud.sync_markets(store, load_config(path))
    for n in range(60):
        _write(store, market, n)
        if n % 7 == 0:
            _write(store, other, n, bump=100)
    if store.dialect == "postgresql":
        with store.write() as conn:  # the planner's row count, which picks the probes
            conn.execute(text("ANALYZE account_states"))

    def read(n: int) -> dict[int, bytes | None]:
        with store.read() as conn:
            return changes.states_at(conn, market.id, n)

    monkeypatch.setattr(changes, "PROBE_ROWS_PER_ACCOUNT", 10**9)
    with store.read() as conn:
        assert not changes._long_history(conn)
    passed = {n: read(n) for n in range(-1, 62)}
    monkeypatch.setattr(changes, "PROBE_ROWS_PER_ACCOUNT", 0)
    with store.read() as conn:
        assert changes._long_history(conn)
    probed = {n: read(n) for n in range(-1, 62)}
    assert probed == passed
    assert passed[-1] == {} and passed[20] != passed[21]
    assert len(passed[61]) == 6 and sum(v is None for v in passed[61].values()) == 1


@dataclass(frozen=True)
class Figures:
    """A block's figures row by row (`changes.BookFigures`), as the lean refresh hands them."""

    accounts: list[str]
    markets: list[str]
    health_factor: list[int | None]
    total_collateral_base: list[int]
    total_debt_base: list[int]
    liquidatable: list[bool]

    @classmethod
    def of(cls, positions: list[Position]) -> Figures:
        return cls(
            [p.account for p in positions],
            [p.market for p in positions],
            [p.health_factor for p in positions],
            [p.total_collateral_base for p in positions],
            [p.total_debt_base for p in positions],
            [p.liquidatable for p in positions],
        )


def _write_lean(
    store: Store, market: crud.MarketInfo, n: int, whole: set[int], count: int = 6
) -> Any:
    """Block n with only the positions of accounts `whole` written whole (the others' moving
    columns updated in place), as the lean refresh writes a block."""
    blk = _block(n)
    positions = [position(i, blk, WAD + WAD * ((n + 7 * i) % 30) // 40) for i in range(count)]
    assessed = assess(positions, TierThresholds())
    figures = Figures.of(positions)
    blobs = {account(i): f"{i}:{n // (i + 2)}".encode() for i in range(count)}
    return crud.write_snapshot(
        store,
        market,
        blk,
        [positions[i] for i in sorted(whole)],
        [assessed[i] for i in sorted(whole)],
        None,
        kept=changes.KeptState(b"market %d" % n, blobs, BANDS),
        layout="changes",
        book=changes.LeanBook(figures, assessed),
    )


def _detail_blocks(store: Store) -> dict[int, tuple[int, int | None]]:
    t = changes.T_LATEST
    with store.read() as conn:
        rows = conn.execute(select(t.c.account_id, t.c.block_number, t.c.detail_block)).all()
    return {aid: (number, detail) for aid, number, detail in rows}


def test_0008_dates_the_latest_rows_details_and_a_downgrade_waits_for_whole_rows(
    db_url: str, tmp_path: Path
) -> None:
    """0007 -> 0008 dates every existing latest row's details at its block; a block written
    the lean way updates the other rows' moving columns alone and dates their details older;
    0008 -> 0007 is refused while such a row stands (nothing dropped), and goes through once
    a block wrote every row whole."""
    engine = make_engine(parse_db_url(db_url), create_sqlite_dir=True)
    upgrade(engine)
    store = Store(engine)
    market = _market(store, tmp_path)
    for n in range(3):
        _write(store, market, n)
    assert downgrade(engine, "0007_change_layout") == "0007_change_layout"
    assert upgrade(engine) == head_revision()
    assert set(_detail_blocks(store).values()) == {(2, 2)}  # filled from each row's block

    result = _write_lean(store, market, 3, whole={1})
    assert result.change_rows["latest"] == 6 and result.change_rows["latest_whole"] == 1
    dated = _detail_blocks(store)
    assert sorted(dated.values()) == [(3, 2)] * 5 + [(3, 3)]
    with store.read() as conn:  # the moving columns are the block's, the details the older
        t = changes.T_LATEST
        hf = dict(conn.execute(select(t.c.account_id, t.c.health_factor)).all())
    assert sorted(v for v in hf.values() if v is not None) == sorted(
        WAD + WAD * ((3 + 7 * i) % 30) // 40 for i in range(6)
    )
    with pytest.raises(RuntimeError, match="older than their block"):
        downgrade(engine, "0007_change_layout")
    refused = run_cli("db", "downgrade", "0007_change_layout", "--db", db_url, "--yes")
    assert_one_clear_error(refused, "older than their block")
    assert current_revision(engine) == head_revision()
    assert _detail_blocks(store) == dated
    with pytest.raises(ValueError, match="written whole"):  # a new position is never narrow
        _write_lean(store, market, 4, whole=set(), count=7)
    assert crud.snapshot_hash(store, market.id, 4) is None  # the block wrote nothing

    _write(store, market, 5)  # the full path: every row whole
    assert downgrade(engine, "0007_change_layout") == "0007_change_layout"
    assert _count(store, changes.T_LATEST) == 6
    engine.dispose()


def test_a_block_replaced_while_its_assessment_runs_is_written_and_the_assessment_is_not(
    store: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A reorg replaces the newest block while an assessment of the block it replaces is under
    way (it takes its lock between the block's delete of the old rows and its first insert):
    the new block is written and the assessment, overtaken, writes nothing. PostgreSQL: the
    block holds the market's row from before its delete, so neither waits for the other's rows
    while holding what the other waits for (before, PostgreSQL found a deadlock and aborted the
    block). SQLite gives the new snapshot the replaced one's id: the block's hash tells them
    apart (before, the assessment re-tiered the new block)."""
    import threading
    import time

    market = _market(store, tmp_path)
    _write(store, market, 1)
    found = crud.latest_health(store, market.id)
    assert found is not None
    again = [crud.Assessed("CRITICAL", "re-tiered") for _ in found.stored]
    deleted = threading.Event()
    real = crud._delete_snapshots

    def slow_delete(conn: Any, ids: Any) -> None:
        real(conn, ids)
        deleted.set()
        time.sleep(1.5)  # the assessment asks for its lock meanwhile

    monkeypatch.setattr(crud, "_delete_snapshots", slow_delete)
    out: dict[str, Any] = {}

    def reorg() -> None:
        try:
            out["block"] = _write(store, market, 1, tag="b").outcome
        except Exception as exc:  # what the test reports
            out["block"] = f"{type(exc).__name__}: {exc}"

    writer = threading.Thread(target=reorg)
    writer.start()
    assert deleted.wait(30)
    try:
        out["assessed"] = crud.apply_assessment(store, found, again)
    finally:
        writer.join(60)
    assert out == {"block": "replaced", "assessed": 0}
