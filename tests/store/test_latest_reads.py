"""The latest view's reads kept as fast as the snapshot rows' (issue 17), on SQLite and
PostgreSQL: one account's positions are found through the accounts' unique index (chain,
address), not by a pass over every account, and find the account on every chain it is
registered on; a rebuilt row's extras are made JSON the short way, to the same result."""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import replace
from datetime import UTC, datetime
from decimal import Decimal
from enum import IntEnum
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import insert, select

from onchain.config import TierThresholds
from onchain.errors import InputError
from onchain.jobs.assess import assess
from onchain.model import AssetPosition
from onchain.rpc.client import BlockRef
from onchain.store import api_queries as Q
from onchain.store import changes, crud, queries, rows
from onchain.store.db import Store
from tests.helpers.store_rows import WAD, account, position
from tests.store.test_change_layout_store import BANDS, _market
from tests.store.test_latest_buckets import _rebuild, _write


def test_one_account_is_looked_up_by_the_index_on_every_chain(store: Store, tmp_path: Path) -> None:
    market = _market(store, tmp_path)
    _write(store, market, 1, lean=False)
    for n in range(2, 4):  # most rows' details then older than their block: rebuilt
        _write(store, market, n)
    who = account(7)
    with store.write() as conn:  # the same address on another chain: no position there
        conn.execute(
            insert(crud.T_CHAINS).values(chain_id=1, name="other", created_at=datetime.now(UTC))
        )
        conn.execute(insert(crud.T_ACCOUNTS).values(chain_id=1, address=who))
        ids = set(conn.execute(select(crud.T_ACCOUNTS.c.id).where(Q._address_is(who))).scalars())
        assert len(ids) == 2
        if conn.dialect.name == "sqlite":
            query = select(crud.T_ACCOUNTS.c.id).where(Q._address_is(who))
            compiled = query.compile(conn, compile_kwargs={"literal_binds": True})
            plan = " ".join(
                str(row[-1]) for row in conn.exec_driver_sql(f"EXPLAIN QUERY PLAN {compiled}")
            )
            assert "SCAN accounts" not in plan and "INDEX" in plan, plan
    assert Q.account_known(store, who)
    assert not Q.account_known(store, account(999))
    page = Q.positions_page(store, Q.PositionFilter(account=who), rebuild=_rebuild)
    assert [p.position.account for p in page.positions] == [who] and page.total == 1
    assert Q.positions_page(store, Q.PositionFilter(account=account(999))).total == 0


@pytest.mark.parametrize("layout", ["snapshots", "changes"])
def test_an_account_is_found_whatever_the_case_of_its_address(
    store: Store, tmp_path: Path, layout: str
) -> None:
    """Addresses are stored checksummed: a lowercase or uppercase address (or 0X) finds the
    same positions, history and account in either layout; a malformed one is a clear error."""
    market = _market(store, tmp_path)
    who = account(7)
    for n in (1, 2):
        blk = BlockRef(n, "0x" + f"{n:x}".rjust(64, "0"), 1_700_000_000 + 12 * n)
        books = [position(i, blk, WAD + i * WAD // 10) for i in range(9)]
        kept = None
        if layout == "changes":
            kept = changes.KeptState(b"market %d" % n, {p.account: b"s" for p in books}, BANDS)
        crud.write_snapshot(
            store, market, blk, books, assess(books, TierThresholds()), None, kept=kept,
            layout=layout,
        )  # fmt: skip
    spellings = [who, who.lower(), "0x" + who[2:].upper(), "0X" + who[2:].lower()]

    def rebuilt(_protocol: str, _state: bytes, at: Any) -> list[list[Any]]:
        return [[position(7, blk, WAD)] for _market_state, blk in at]  # the blobs are opaque

    for spelling in spellings:
        assert Q.account_known(store, spelling), spelling
        page = Q.positions_page(store, Q.PositionFilter(account=spelling), rebuild=_rebuild)
        assert [p.position.account for p in page.positions] == [who], spelling
        history = queries.account_history(store, spelling, rebuild=rebuilt)
        assert [h.account for h in history] == [who], spelling
        assert [p.block_number for p in history[0].points] == [1, 2], spelling
    for malformed in (who[:-1], who[2:], "0x" + "g" * 40, who + "0"):
        with pytest.raises(InputError, match="malformed account address"):
            Q.account_known(store, malformed)
        with pytest.raises(InputError, match="malformed account address"):
            Q.positions_page(store, Q.PositionFilter(account=malformed))
        with pytest.raises(InputError, match="malformed account address"):
            queries.account_history(store, malformed)


class _Code(IntEnum):
    ONE = 1


class _Name(str):
    pass


def _typed(value: Any) -> Any:
    """A value with each part's type beside it (True == 1 and 1 == 1.0 would hide a change)."""
    if isinstance(value, dict):
        return ("dict", [(_typed(k), _typed(v)) for k, v in value.items()])
    if isinstance(value, list):
        return ("list", [_typed(v) for v in value])
    return (type(value), value)


def test_jsonable_takes_a_short_way_to_the_long_ways_result() -> None:
    """`rows.jsonable` (a rebuilt row's extras, the latest view's asset rows) gives what the
    general conversion gives, types included, for plain and other dicts, keys and values."""
    values: list[Any] = [
        None,
        True,
        7,
        2**200,
        0.5,
        "x",
        b"\x01\xff",
        _Code.ONE,
        _Name("n"),
        {"a": 1, 2: [3, (4, 5)], True: {"b": b"\x02"}, _Name("k"): _Code.ONE, "f": 1.5},
        OrderedDict([("z", 1), ("a", [None, False])]),
        [{"x": (1, 2)}, {3}, frozenset({"s"}), Decimal("1.5")],
        ({"deep": [{"deeper": {1: 2}}]},),
    ]
    for value in values:
        assert _typed(rows.jsonable(value)) == _typed(rows._jsonable(value)), value


def test_a_rebuilt_positions_assets_are_the_rows_and_kept_where_they_are_already() -> None:
    """`_Assets.rebuilt`: each asset as the registry names it (address, symbol, decimals), by
    address; an asset the registry names as the adapter did, with an exact liquidation
    price, is the adapter's own object (nothing copied), the others are made anew."""
    weth, usdc, dai = "0x" + "c0" * 20, "0x" + "a0" * 20, "0x" + "b0" * 20
    registered = {
        weth: (weth, "WETH", 18),
        usdc: (usdc, "USDC", 6),
        dai: (dai, "DAI", 18),
    }
    known = Q._Assets({}, {1: registered})
    mine = AssetPosition(weth, "WETH", 18, 3 * 10**11, 10**18, 0, 3 * 10**11, 0, True, 8250, 10**9)
    renamed = AssetPosition(usdc, "USDC.e", 6, 10**8, 0, 10**9, 0, 10**9, False, 0, 11 * 10**7)
    estimated = AssetPosition(dai, "DAI", 18, 10**8, 0, 10**18, 0, 10**8, False, 0, 7.6e8)
    blk = BlockRef(5, "0x" + "5" * 64, 60)
    p = replace(position(1, blk, 2 * WAD), assets=(mine, renamed, estimated))
    got = known.rebuilt(1, p)
    assert [a.asset for a in got] == [usdc, dai, weth]  # by address
    assert got[2] is mine
    assert got[0] == replace(renamed, symbol="USDC") and got[0] is not renamed
    assert got[1] == replace(estimated, liquidation_price_base=760_000_000)
    assert type(got[1].liquidation_price_base) is int
    empty = replace(p, assets=())
    assert Q._Assets({}, {}).rebuilt(1, empty) == []  # a chain with no asset registered yet


@pytest.mark.parametrize("layout", ["snapshots", "changes"])
def test_one_accounts_positions_page_is_a_slice_of_them_sorted_whole(
    store: Store, tmp_path: Path, layout: str
) -> None:
    """An account's positions (here three books of one market) are read whole and sorted
    (`_whole_order`): a page is its slice, the total all of them, in either direction, with a
    tier or a least debt narrowing them; in the latest view (`changes`) by one statement."""
    market = _market(store, tmp_path)
    blk = BlockRef(9, "0x" + "9" * 64, 1_700_000_108)
    hfs = {"0x" + "a" * 64: 3 * WAD, "0x" + "b" * 64: WAD // 2, "0x" + "c" * 64: 2 * WAD}
    debts = {"0x" + "a" * 64: 10**23, "0x" + "b" * 64: 3 * 10**23, "0x" + "c" * 64: 2 * 10**23}
    mine = [position(7, blk, hf, market=key, debt=debts[key]) for key, hf in hfs.items()]
    others = [position(i, blk, WAD + i) for i in range(3)]
    books = [*mine, *others]
    assessed = assess(books, TierThresholds())
    kept = None
    if layout == "changes":
        blobs = {p.account: p.account.encode() for p in books}
        kept = changes.KeptState(b"market", blobs, BANDS)
    crud.write_snapshot(store, market, blk, books, assessed, None, kept=kept, layout=layout)
    ordered = sorted(hfs, key=lambda key: hfs[key])
    tiers = {p.market: a.tier for p, a in zip(books, assessed, strict=True) if p in mine}
    for descending in (False, True):
        want = ordered[::-1] if descending else ordered
        for offset, limit in ((0, 10), (1, 1), (1, 5), (2, 1), (3, 1)):
            page = Q.positions_page(
                store,
                Q.PositionFilter(account=account(7)),
                sort="health_factor",
                descending=descending,
                limit=limit,
                offset=offset,
            )
            assert page.total == 3
            got = [p.position.market for p in page.positions]
            assert got == want[offset : offset + limit], (descending, offset, limit)
        for sort in Q.SORTS:  # every sort: its order of the account's books
            page = Q.positions_page(
                store, Q.PositionFilter(account=account(7)), sort=sort, descending=descending
            )
            rank = {  # equal collateral, no probability, one address: the book decides
                "risk": {k: (Q.TIERS.index(tiers[k]), hfs[k]) for k in hfs},
                "health_factor": hfs,
                "debt": debts,
            }.get(sort, {k: 0 for k in hfs})
            # the ties (account, book) ascending either way, as `_whole_order` has them
            want = sorted(sorted(hfs), key=rank.__getitem__, reverse=descending)
            assert [p.position.market for p in page.positions] == want, (sort, descending)
        floor = Q.PositionFilter(account=account(7), min_debt_base=2 * 10**13)  # in base units
        page = Q.positions_page(store, floor, sort="debt", descending=descending)
        want = sorted((k for k in hfs if debts[k] >= 2 * 10**23), key=debts.__getitem__)
        assert [p.position.market for p in page.positions] == (want[::-1] if descending else want)
        for tier in set(tiers.values()):
            page = Q.positions_page(store, Q.PositionFilter(account=account(7), tier=tier))
            assert {p.position.market for p in page.positions} == {
                k for k, t in tiers.items() if t == tier
            }
            assert {p.risk_tier for p in page.positions} == {tier}
