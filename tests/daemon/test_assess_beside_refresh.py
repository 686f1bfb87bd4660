"""The assess job beside the refresh, as the daemon runs them (parallel threads, one store).

The assess job reads a market's newest block, re-tiers the rows the health-factor rule tiered
with this config's thresholds, and writes the changed tiers back. In the change layout a
verdict row stands from its block on, until a later block writes the position's verdict again;
a block is written against the verdicts standing before it. So an assessment of block N that
lands after block N+1 was written against N's old verdicts would change what N+1 reads back:
a position N+1 did not write (its tier the same as N's old one) would read N's new tier there.
The assessment therefore writes only while its block is still the market's newest, checked in
its own transaction, which waits for a block being written.

The lean block writes against its memory of what stands (`changes.Standing`), not the store:
no assessment may change that behind it. The memory is kept only for blocks the risk module
tiered, whose rows the assess job leaves as they are."""

from __future__ import annotations

import threading
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from onchain.config import load_config
from onchain.devnet.build import DevnetInfo
from onchain.devnet.chain import DevChain
from onchain.devnet.config_file import risk_section
from onchain.devnet.morpho import set_prices_everywhere
from onchain.jobs.assess import assess_stored
from onchain.jobs.context import JobContext
from onchain.jobs.maintenance import assess_job
from onchain.jobs.refresh import refresh_job
from onchain.store import changes, crud
from onchain.store.crud import MarketInfo
from onchain.store.db import Store, make_engine, open_store, parse_db_url, upgrade
from tests.helpers.aave_oracle import BORROWER, weth_price_for
from tests.helpers.incremental_daemon import _config, _move

pytestmark = pytest.mark.devnet

# a reference pool with no code: the risk module cannot run, every tier is the health-factor
# rule's (the rows the assess job re-tiers)
NO_RISK = (
    '\n[risk]\n[risk.references.WETH]\npool = "0x000000000000000000000000000000000000dEaD"\n'
    'quote = "USDC"\n'
)
# the restarted daemon's thresholds: a health factor of 1.30, SAFE under the defaults (WATCH
# below 1.25), is WATCH below 1.40
WATCH_AT_1_40 = "\n[risk.tiers]\ncritical = 1.05\nhigh = 1.1\nwatch = 1.4\n"


def _context(
    devnet: DevnetInfo, folder: Path, store: Store, name: str, tiers: str = ""
) -> JobContext:
    """A daemon's context on `store` in the change layout, the market `name` alone."""
    folder.mkdir()
    url = store.engine.url.render_as_string(False)
    path = _config(folder, devnet, url, store='layout = "changes"\n')
    path.write_text(path.read_text() + NO_RISK + tiers)
    cfg = load_config(path)
    market = [m for m in crud.sync_markets(store, cfg) if m.name == name]
    return JobContext(cfg, store, market)


def _borrower_at(chain: DevChain, devnet: DevnetInfo, hf: float) -> None:
    price = weth_price_for(chain, devnet, hf)
    assert devnet.morpho is not None
    set_prices_everywhere(devnet.rpc_url, devnet.aave, devnet.morpho, {"WETH": price})


def _newest(store: Store, market: MarketInfo) -> int:
    with store.read() as conn:
        number = conn.execute(
            select(crud.T_SNAPSHOTS.c.block_number)
            .where(crud.T_SNAPSHOTS.c.market_id == market.id)
            .order_by(crud.T_SNAPSHOTS.c.block_number.desc())
            .limit(1)
        ).scalar_one()
    return int(number)


def _latest_tiers(store: Store, market: MarketInfo) -> tuple[int, dict[tuple[str, str], Any]]:
    """The latest view's block and each row's (tier, reason codes): what its block stored."""
    t, a = changes.T_LATEST, changes.T_ACCOUNTS
    with store.read() as conn:
        rows = conn.execute(
            select(a.c.address, t.c.market_key, t.c.block_number, t.c.risk_tier, t.c.risk_reasons)
            .join(a, a.c.id == t.c.account_id)
            .where(t.c.market_id == market.id)
        ).all()
    (block,) = {r.block_number for r in rows}
    return block, {(r.address, r.market_key): (r.risk_tier, r.risk_reasons) for r in rows}


def _verdict_tiers(store: Store, market: MarketInfo, number: int) -> dict[tuple[str, str], Any]:
    """Each position's (tier, reason codes) at block `number`, from the verdict rows standing
    there (what a reader of that block gets once the latest view has moved on)."""
    with store.read() as conn:
        book = changes.book_at(conn, market.id, number)
    assert book is not None
    return {k: (v.risk_tier, v.risk_reasons) for k, v in book.verdicts.items()}


def _carried(store: Store, market: MarketInfo, number: int) -> set[tuple[int, str]]:
    """The positions whose verdict standing at block `number` is from an earlier block."""
    with store.read() as conn:
        verdicts = changes.verdicts_at(conn, market.id, number)
    return {key for key, v in verdicts.items() if v.block_number < number}


@pytest.mark.parametrize("name", ["aave", "morpho"])
def test_an_assessment_of_a_block_the_refresh_has_built_on_leaves_it_alone(
    devnet: DevnetInfo,
    devchain: DevChain,
    store: Store,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    name: str,
) -> None:
    """Block N stored by a daemon with the default thresholds (an Aave borrower at 1.30:
    SAFE); the daemon restarts with WATCH below 1.40, WETH rises 11.5% (the borrower at 1.45:
    SAFE again, in the same verdict band, so block N+1 writes no verdict row for it, nor for
    the other positions like it). The assess job reads block N and would re-tier those WATCH
    there, but the refresh writes block N+1 before the assessment is written (in the daemon:
    its other thread; here: the refresh runs in the assessment's read, then holds its
    transaction open while the assessment writes, as a slower commit would). Every block then
    reads back what its refresh stored. Morpho's blocks write no reserve snapshot (nothing
    else of theirs touches the market's row)."""
    first = _context(devnet, tmp_path / "first", store, name)
    _borrower_at(devchain, devnet, 1.30)
    counts: Counter[str] = Counter()
    assert refresh_job(first, counts) == [] and counts["risk_fallback_blocks"] == 1
    (market,) = first.markets
    block_n = _newest(store, market)

    second = _context(devnet, tmp_path / "second", store, name, WATCH_AT_1_40)
    _borrower_at(devchain, devnet, 1.45)

    # the refresh's block, written inside the assessment's read-then-write; its transaction
    # stays open until the assessment has started writing (and a moment more)
    writing, assessing = threading.Event(), threading.Event()
    write_changes, apply_assessment, read = (
        changes.write_changes,
        crud.apply_assessment,
        crud.latest_health,
    )

    def slow_write(*args: Any, **kwargs: Any) -> Any:
        written = write_changes(*args, **kwargs)
        writing.set()
        assert assessing.wait(60)
        threading.Event().wait(0.5)  # the assessment reaches its write meanwhile
        return written

    def apply(*args: Any, **kwargs: Any) -> int:
        assessing.set()
        return apply_assessment(*args, **kwargs)

    refreshed: list[list[str]] = []
    threads: list[threading.Thread] = []
    was_read: list[list[crud.StoredHealth]] = []

    def read_then_refresh(store: Store, market_id: int) -> Any:
        found = read(store, market_id)
        assert found is not None and found.block_number == block_n
        was_read.append(found.stored)
        thread = threading.Thread(target=lambda: refreshed.append(refresh_job(second, Counter())))
        thread.start()
        threads.append(thread)
        assert writing.wait(120)  # block N+1 read what stood at N, and is being written
        return found

    monkeypatch.setattr(changes, "write_changes", slow_write)
    monkeypatch.setattr(crud, "apply_assessment", apply)
    monkeypatch.setattr(crud, "latest_health", read_then_refresh)
    assert assess_job(second, Counter()) == []
    for thread in threads:
        thread.join(60)
    assert refreshed == [[]]
    monkeypatch.undo()

    block_n1, stored = _latest_tiers(store, market)
    assert block_n1 > block_n
    assert _verdict_tiers(store, market, block_n1) == stored
    # the positions the assessment would have re-tiered at N that N+1 carries from there
    (rows,) = was_read
    retiered = {
        (s.account_id, s.market_key)
        for s, a in zip(rows, assess_stored(rows, second.config.tiers), strict=True)
        if s.risk_tier != a.tier
    }
    exposed = retiered & _carried(store, market, block_n1)
    assert exposed, "no position of the block N+1 did not write changes tier at N"
    if name == "aave":
        assert any(s.account == BORROWER for s in rows if (s.account_id, s.market_key) in exposed)
    # the next block moves the latest view on: N+1 still reads what its refresh stored
    _borrower_at(devchain, devnet, 1.46)
    assert refresh_job(second, Counter()) == []
    assert _verdict_tiers(store, market, block_n1) == stored
    newest, now = _latest_tiers(store, market)
    assert newest > block_n1 and _verdict_tiers(store, market, newest) == now
    # and the assessment of the newest block, with nothing written beside it, changes nothing
    # (the block was tiered with these thresholds)
    again: Counter[str] = Counter()
    assert assess_job(second, again) == [] and again["tiers_changed"] == 0


def _stored_rows(store: Store) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]:
    """Every verdict row and every latest-view row of the store, accounts by address and
    markets by name (two stores number them alike or not), sorted."""
    v, t, a, mk = changes.T_VERDICTS, changes.T_LATEST, changes.T_ACCOUNTS, crud.T_MARKETS
    out = []
    with store.read() as conn:
        for table, columns in (
            (v, [v.c.block_number, v.c.health_factor, v.c.risk_tier, v.c.risk_reason]),
            (t, [t.c.block_number, t.c.health_factor, t.c.risk_tier, t.c.risk_reason]),
        ):
            rows = conn.execute(
                select(
                    mk.c.name, a.c.address, table.c.market_key, *columns,
                    table.c.risk_reasons, table.c.liquidation_probability,
                )
                .join(mk, mk.c.id == table.c.market_id)
                .join(a, a.c.id == table.c.account_id)
            ).all()  # fmt: skip
            out.append(sorted((*r[:-2], repr(r[-2]), repr(r[-1])) for r in rows))
    return out[0], out[1]


class _Forgets(dict[int, Any]):
    """A writer's memory per market (`JobContext.standing`) that keeps nothing: each block gets
    an empty one, and so reads what stands from the store."""

    def setdefault(self, key: int, default: Any = None) -> Any:
        return default


def test_the_writers_memory_stands_through_the_assess_job(
    devnet: DevnetInfo, devchain: DevChain, store: Store, tmp_path: Path
) -> None:
    """The lean block remembers the verdicts it stored (`changes.Standing`) and writes the next
    block against that memory, not the store; the assess job, which the daemon runs beside it,
    changes the newest block's stored tiers. The memory stays true because it is kept only for
    blocks the risk module tiered, and the assess job keeps those rows' tiers (it re-tiers the
    health-factor rule's alone). Two stores on the same blocks, each assessed after every
    block: one writer remembers, the other forgets it before every block (reads what stands
    from the store); both store the same verdict rows and latest view, and no tier was changed."""
    other_url = f"sqlite:///{tmp_path / 'forgets.sqlite'}"
    engine = make_engine(parse_db_url(other_url), create_sqlite_dir=True)
    upgrade(engine)
    engine.dispose()
    other = open_store(other_url)
    contexts = {}
    for name, s in (("remembers", store), ("forgets", other)):
        folder = tmp_path / name
        folder.mkdir()
        url = s.engine.url.render_as_string(False)
        path = _config(folder, devnet, url, store='layout = "changes"\n')
        path.write_text(path.read_text() + risk_section(devnet))
        cfg = load_config(path)
        contexts[name] = JobContext(cfg, s, crud.sync_markets(s, cfg))
    contexts["forgets"].standing = _Forgets()
    counts = {name: Counter[str]() for name in contexts}
    assessed = {name: Counter[str]() for name in contexts}
    for step, hf in enumerate((1.45, 1.3, 1.08, 1.02, 0.97, 1.3)):
        if step:
            _move(devnet, step)
        _borrower_at(devchain, devnet, hf)
        for name, ctx in contexts.items():
            assert refresh_job(ctx, counts[name]) == []
            assert assess_job(ctx, assessed[name]) == []
        assert _stored_rows(store) == _stored_rows(other), step
    verdicts, _latest = _stored_rows(store)
    assert {r[5] for r in verdicts if r[1] == BORROWER} >= {"SAFE", "LIQUIDATABLE"}
    remembered = counts["remembers"]
    assert remembered["risk_fallback_blocks"] == 0 and remembered["lean_blocks"] >= 12
    assert remembered["standing_remembered"] >= remembered["lean_blocks"] - 2, remembered
    assert counts["forgets"]["standing_remembered"] == 0
    assert assessed["remembers"]["positions"] > 6 * 250  # each block's book, assessed
    assert assessed["remembers"]["tiers_changed"] == assessed["forgets"]["tiers_changed"] == 0
    other.close()
