"""The latest view's reads kept as fast as the snapshot rows' (issue 17), on SQLite and
PostgreSQL: one account's positions are found through the accounts' unique index (chain,
address), not by a pass over every account, and find the account on every chain it is
registered on."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import insert, select

from onchain.store import api_queries as Q
from onchain.store import crud
from onchain.store.db import Store
from tests.helpers.store_rows import account
from tests.store.test_change_layout_store import _market
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
