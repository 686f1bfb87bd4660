"""The latest view's buckets (onchain/store/buckets.py, 0009), on SQLite and PostgreSQL: blocks
written the lean way (most rows' moving columns updated in place) move health factors,
amounts and tiers across buckets; every row's stored buckets stay those of its values, and
every page of every sort, in both orders, with and without a tier filter, is the slice of
the whole book sorted as the snapshot rows sort it. 0009 moves the latest view's extras and
asset rows aside and back without losing a row."""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import random
import sys
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import inspect, select, text

from onchain.config import TierThresholds
from onchain.jobs.assess import assess
from onchain.protocols.base import Position
from onchain.rpc.client import BlockRef
from onchain.store import api_queries as Q
from onchain.store import buckets, changes, crud
from onchain.store.db import (
    Store,
    downgrade,
    head_revision,
    make_engine,
    open_store,
    parse_db_url,
    upgrade,
)
from onchain.store.models import TIERS
from tests.helpers.store_rows import WAD, position
from tests.store.test_change_layout_store import BANDS, Figures, _market

ACCOUNTS = 40
SORTS = ("risk", "health_factor", "debt", "collateral", "probability", "account")


def _block(n: int) -> BlockRef:
    return BlockRef(n, "0x" + f"b{n:x}".rjust(64, "0"), 1_700_000_000 + 12 * n)


def _positions(n: int, blk: BlockRef) -> list[Position]:
    """Block n's book: health factors from 0.9 to 3 drifting a few percent a block (across
    the fine health-factor buckets and the tiers), collateral drifting across its buckets,
    equal values on purpose (ties), and a few positions without debt."""
    out = []
    for i in range(ACCOUNTS):
        if i % 9 == 4:
            out.append(position(i, blk, None, debt=0))
            continue
        hf = WAD * 9 // 10 + WAD * ((7 * n + 13 * i) % 40) // 19
        collateral = 10**24 + 10**22 * ((n * (i % 5) + 3 * i) % 50)
        debt = 10**23 * (1 + i % 4)  # four debts shared by many: ties by account
        out.append(position(i, blk, hf, collateral=collateral, debt=debt))
    return out


def _rebuild(_protocol: str, book: changes.StoredBook) -> list[Position]:
    """The test's own book at the stored block (the blobs here are opaque: the devnet tests
    prove the adapters' rebuild)."""
    mine = set(book.accounts)
    return [p for p in _positions(book.block.number, book.block) if p.account in mine]


def _write(
    store: Store,
    market: crud.MarketInfo,
    n: int,
    lean: bool = True,
    standing: changes.Standing | None = None,
    tiers: TierThresholds | None = None,
) -> crud.WriteResult:
    """Block n, every fifth account written whole (lean), or every row whole; `standing`: the
    writer's memory across blocks, as the daemon keeps it; `tiers`: the health factors the
    tiers change at."""
    blk = _block(n)
    positions = _positions(n, blk)
    assessed = assess(positions, tiers or TierThresholds())
    if standing is not None:  # as the risk module tiers (a health-factor rule's is not kept)
        assessed = [
            dataclasses.replace(a, reasons=[], probability=(i % 7) / 10, horizon_s=21600.0)
            for i, a in enumerate(assessed)
        ]
    whole = [i for i in range(len(positions)) if not lean or i % 5 == n % 5]
    figures = Figures.of(positions)
    blobs = {p.account: f"{p.account}:{n}".encode() for p in positions}
    return crud.write_snapshot(
        store,
        market,
        blk,
        [positions[i] for i in whole],
        [assessed[i] for i in whole],
        None,
        kept=changes.KeptState(b"market %d" % n, blobs, BANDS, standing),
        layout="changes",
        book=changes.LeanBook(figures, assessed) if lean else None,
    )


def _rows(store: Store) -> dict[tuple[int, str], Any]:
    with store.read() as conn:
        rows = conn.execute(changes.latest_with_details()).all()
    return {(r.account_id, r.market_key): r for r in rows}


def _expected(rows: list[Any], sort: str, descending: bool, addresses: dict[int, str]) -> list:
    """The snapshot rows' order (`api_queries._whole_order`), computed here."""

    def key(r: Any) -> tuple[Any, ...]:
        hf, prob = r.health_factor_float, r.liquidation_probability
        by = {
            "risk": (TIERS.index(r.risk_tier), hf is None, hf or 0.0),
            "health_factor": (hf is None, hf or 0.0),
            "probability": (prob is None, prob or 0.0),
            "debt": (int(r.total_debt_base),),
            "collateral": (int(r.total_collateral_base),),
            "account": (addresses[r.account_id],),
        }[sort]
        return (*by, r.account_id, r.market_key)

    ordered = [addresses[r.account_id] for r in sorted(rows, key=key)]
    return ordered[::-1] if descending else ordered


def _pages(store: Store, sort: str, descending: bool, tier: str | None, size: int) -> list:
    where = Q.PositionFilter(tier=tier)
    first = Q.positions_page(
        store, where, sort=sort, descending=descending, limit=size, rebuild=_rebuild
    )
    got = [p.position.account for p in first.positions]
    for offset in range(size, first.total, size):
        page = Q.positions_page(
            store,
            where,
            sort=sort,
            descending=descending,
            limit=size,
            offset=offset,
            rebuild=_rebuild,
        )
        assert page.total == first.total
        got += [p.position.account for p in page.positions]
    assert len(got) == first.total
    return got


@pytest.mark.parametrize("remember", [False, True], ids=["read", "remembered"])
def test_buckets_follow_the_values_and_every_page_is_the_sorted_book(
    store: Store, tmp_path: Path, remember: bool
) -> None:
    """`remembered`: the writer keeps what it wrote (`changes.Standing`: the rows' indexed
    values and the account ids) and reads neither back; the store must be the same."""
    market = _market(store, tmp_path)
    standing = changes.Standing() if remember else None
    sqlite = store.engine.dialect.name == "sqlite"
    _write(store, market, 1, lean=False, standing=standing)
    seen: dict[tuple[int, str], tuple[Any, ...]] = {}
    moved = 0
    for n in range(2, 7):
        result = _write(store, market, n, standing=standing)
        if standing is not None:
            assert (result.change_rows or {})["remembered"] == 1, n
            assert (result.change_rows or {})["rows_by_column"] == (n > 2), n
            with store.read() as conn:
                indexed, rowids = changes._stored_indexed(conn, market.id, with_rowids=sqlite)
                assert standing.latest == indexed, n
                assert standing.latest_rowids == rowids, n  # SQLite: as stored; else None
        rows = _rows(store)
        assert len(rows) == ACCOUNTS
        for key, r in rows.items():
            stored = (r.hf_bucket, r.debt_bucket)
            values = buckets.buckets(r.health_factor_float, int(r.total_debt_base))
            assert stored == values, (n, key)
            if key in seen and seen[key] != (r.risk_tier, *stored) and r.detail_block != n:
                moved += 1  # re-bucketed or re-tiered by the update in place
            seen[key] = (r.risk_tier, *stored)
    assert moved > 20  # the update in place moved rows between buckets and tiers
    rows = list(_rows(store).values())
    assert {r.risk_tier for r in rows} >= {"SAFE", "LIQUIDATABLE"}
    assert sum(r.detail_block != r.block_number for r in rows) > ACCOUNTS // 2
    _every_page_is_the_sorted_book(store, ("SAFE", "LIQUIDATABLE"))


def _every_page_is_the_sorted_book(store: Store, tiers: tuple[str, ...]) -> None:
    rows = list(_rows(store).values())
    with store.read() as conn:
        addresses = dict(
            conn.execute(select(crud.T_ACCOUNTS.c.id, crud.T_ACCOUNTS.c.address)).all()
        )
    for sort in SORTS:
        for descending in (False, True):
            expected = _expected(rows, sort, descending, addresses)
            for size in (3, 7):
                got = _pages(store, sort, descending, None, size)
                assert got == expected, (sort, descending, size)
            for tier in tiers:
                mine = [r for r in rows if r.risk_tier == tier]
                want = _expected(mine, sort, descending, addresses)
                assert _pages(store, sort, descending, tier, 5) == want, (sort, descending, tier)


def test_pages_read_ahead_in_tiers_that_span_many_buckets(store: Store, tmp_path: Path) -> None:
    """Every tier over several health-factor buckets (the first pages are counted from each
    tier's first buckets, `api_queries._bucket_head`): every page is still the sorted book."""
    wide = TierThresholds(critical_wad=13 * 10**17, high_wad=18 * 10**17, watch_wad=24 * 10**17)
    market = _market(store, tmp_path)
    _write(store, market, 1, lean=False, tiers=wide)
    for n in (2, 3):
        _write(store, market, n, tiers=wide)
    rows = list(_rows(store).values())
    spans = {
        tier: len({r.hf_bucket for r in rows if r.risk_tier == tier and r.hf_bucket is not None})
        for tier in TIERS
    }
    assert sum(n > 4 for n in spans.values()) >= 3, spans
    _every_page_is_the_sorted_book(store, TIERS)


def test_the_migrations_bucket_functions_are_the_stores() -> None:
    """0009 repeats the bucket functions (migrations import nothing from onchain)."""
    path = Path(changes.__file__).parents[1] / "migrations" / "versions" / "0009_latest_buckets.py"
    spec = importlib.util.spec_from_file_location("m0009", path)
    assert spec is not None and spec.loader is not None
    migration = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(migration)
    rng = random.Random(9)
    floats = [0.0, -0.0, 5e-324, 1.0, 1.5, 2.0, -3.0, float("nan"), None]
    floats += [rng.uniform(0, 4) for _ in range(2000)] + [
        10 ** rng.uniform(-30, 30) for _ in range(2000)
    ]
    ints = [0, 1, 7, 8, 15, 16, 2**255, 2**256 - 1] + [
        rng.getrandbits(rng.randint(1, 256)) for _ in range(4000)
    ]
    for value in floats:
        assert migration.float_bucket(value, migration.HF_PER_OCTAVE) == buckets.float_bucket(
            value, buckets.HF_PER_OCTAVE
        )
        assert migration.float_bucket(value) == buckets.float_bucket(value)
    for value in ints:
        assert migration.int_bucket(value) == buckets.int_bucket(value)
    subnormal = [5e-324 * k for k in range(1, 50)] + [
        2.2250738585072014e-308,
        1.7976931348623157e308,
    ]
    column = [*floats, *subnormal, *(1.0 + k * 2**-52 for k in range(40))]
    for per_octave in (buckets.PER_OCTAVE, buckets.HF_PER_OCTAVE):  # the whole column at once
        one_by_one = [buckets.float_bucket(v, per_octave) for v in column]
        assert buckets.float_buckets(column, per_octave) == one_by_one
    near_2_53 = [2**53 + d for d in range(-40, 40)] + [
        2**k + d for k in range(64) for d in (-1, 0, 1)
    ]
    int_column = [v for v in [*ints, *near_2_53] if v >= 0]
    for per_octave in (buckets.PER_OCTAVE, buckets.HF_PER_OCTAVE, 2, 8):
        one_by_one = [buckets.int_bucket(v, per_octave) for v in int_column]
        assert buckets.int_buckets(int_column, per_octave) == one_by_one
    for infinite in (float("inf"), float("-inf")):  # no bucket either way
        with pytest.raises(OverflowError):
            buckets.float_bucket(infinite)
        with pytest.raises(OverflowError):
            buckets.float_buckets([1.0, infinite])
    ordered = sorted(v for v in floats if v is not None and v == v)
    for per_octave in (buckets.PER_OCTAVE, buckets.HF_PER_OCTAVE):
        got = [buckets.float_bucket(v, per_octave) for v in ordered]
        assert got == sorted(got)  # type: ignore[type-var]
        got_ints = [buckets.int_bucket(v, per_octave) for v in sorted(ints)]
        assert got_ints == sorted(got_ints)


def _json(value: Any) -> Any:
    return json.loads(value) if isinstance(value, str) else value


def test_0009_moves_the_details_aside_and_back_on_a_filled_store(
    db_url: str, tmp_path: Path
) -> None:
    """0008 -> 0009 -> 0008 -> 0009 over a latest view written the lean way: every row, its
    extras and asset rows, and every page come back as they were; the buckets are filled."""
    engine = make_engine(parse_db_url(db_url), create_sqlite_dir=True)
    upgrade(engine)
    store = Store(engine)
    market = _market(store, tmp_path)
    _write(store, market, 1, lean=False)
    for n in (2, 3):
        _write(store, market, n)
    before = {k: r._asdict() for k, r in _rows(store).items()}
    pages = {sort: _pages(store, sort, False, None, 9) for sort in SORTS}

    assert downgrade(engine, "0008_latest_detail_block") == "0008_latest_detail_block"
    tables = set(inspect(engine).get_table_names())
    assert "positions_latest_details" not in tables
    columns = {c["name"] for c in inspect(engine).get_columns("positions_latest")}
    assert {"extra", "assets"} <= columns and "hf_bucket" not in columns
    with engine.connect() as conn:
        old = {
            (r[0], r[1]): (_json(r[2]), _json(r[3]))
            for r in conn.execute(
                text("SELECT account_id, market_key, extra, assets FROM positions_latest")
            )
        }
    assert old == {k: (r["extra"], r["assets"]) for k, r in before.items()}

    assert upgrade(engine) == head_revision()
    after = {k: r._asdict() for k, r in _rows(store).items()}
    assert after == before  # buckets filled from the values, details moved back aside
    assert {sort: _pages(store, sort, False, None, 9) for sort in SORTS} == pages
    engine.dispose()


def test_a_remembered_view_is_not_trusted_once_another_writers_block_left_it(
    store: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Writer A keeps what it wrote; another writer's block (other tiers) is written over it and
    then dropped by a reorg: its change rows go, its latest-view rows stay. A's next block must
    then read the view, not trust its memory: every row's tier is its newest verdict's."""
    quiet = _positions
    monkeypatch.setattr(sys.modules[__name__], "_positions", lambda n, blk: quiet(3, blk))
    market = _market(store, tmp_path)
    mine = changes.Standing()
    for n in (1, 2, 3):
        _write(store, market, n, lean=n > 1, standing=mine)
    wide = TierThresholds(critical_wad=13 * 10**17, high_wad=18 * 10**17, watch_wad=24 * 10**17)
    _write(store, market, 4, lean=False, standing=changes.Standing(), tiers=wide)
    crud.delete_snapshots_from(store, market.id, [4])
    result = _write(store, market, 4, standing=mine)
    assert (result.change_rows or {})["remembered"] == 1  # states and verdicts: still usable
    with store.read() as conn:
        view = dict(
            conn.execute(
                select(changes.T_LATEST.c.account_id, changes.T_LATEST.c.risk_tier).where(
                    changes.T_LATEST.c.market_id == market.id
                )
            ).all()
        )
        newest = {
            aid: tier
            for aid, tier in conn.execute(
                select(changes.T_VERDICTS.c.account_id, changes.T_VERDICTS.c.risk_tier)
                .where(changes.T_VERDICTS.c.market_id == market.id)
                .order_by(changes.T_VERDICTS.c.block_number)
            )
        }
        assert mine.latest == changes._stored_indexed(conn, market.id)[0]
    assert len(view) == ACCOUNTS and view == newest


@pytest.mark.parametrize("same_account", [False, True], ids=["other-account", "other-book"])
def test_a_remembered_rowid_that_names_another_row_fails_the_block(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, same_account: bool
) -> None:
    """SQLite finds the rows it updates in place by their remembered rowids (one search, not
    two); a rowid that names another position's row (a memory gone wrong), another account's
    or the same account's in another book (as Morpho's markets are), fails the block's
    transaction whole, instead of writing one position's figures into another's row."""
    book = _positions
    other_book = "0x" + "22" * 32

    def with_a_second_book(n: int, blk: BlockRef) -> list[Position]:
        first = book(n, blk)
        return [*first, dataclasses.replace(first[0], market=other_book)]

    monkeypatch.setattr(sys.modules[__name__], "_positions", with_a_second_book)
    url = f"sqlite:///{tmp_path / 'rowids.sqlite'}"
    engine = make_engine(parse_db_url(url), create_sqlite_dir=True)
    upgrade(engine)
    engine.dispose()
    store = open_store(url)
    market = _market(store, tmp_path)
    mine = changes.Standing()
    for n in (1, 2, 3):
        _write(store, market, n, lean=n > 1, standing=mine)
    assert mine.latest_rowids is not None and len(mine.latest_rowids) == ACCOUNTS + 1
    before = _rows(store)
    a, b = sorted(k for k in mine.latest_rowids if k[1] != other_book)[:2]
    if same_account:
        b = (a[0], other_book)
        assert b in mine.latest_rowids
    mine.latest_rowids[a], mine.latest_rowids[b] = mine.latest_rowids[b], mine.latest_rowids[a]
    # and as the last book's rows keep them, by row (the next block reads them there)
    assert mine.book_rows is not None and mine.book_rows.rowids is not None
    by_row = mine.book_rows.rowids
    i, j = mine.book_rows.keys.index(a), mine.book_rows.keys.index(b)
    assert (by_row[i], by_row[j]) == (mine.latest_rowids[b], mine.latest_rowids[a])
    by_row[i], by_row[j] = by_row[j], by_row[i]
    with pytest.raises(RuntimeError, match="rowids"):
        _write(store, market, 4, standing=mine)
    assert _rows(store) == before  # nothing of block 4 written
    with store.read() as conn:
        assert crud.snapshot_hash(store, market.id, 4) is None
        assert (
            conn.execute(
                select(changes.T_MARKET_STATES).where(changes.T_MARKET_STATES.c.block_number == 4)
            ).first()
            is None
        )
    store.close()
