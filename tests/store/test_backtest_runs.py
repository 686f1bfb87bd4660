"""`backtest_runs` (0010): a run written by `onchain backtest --store`'s own function reads back
equal to what `--json` prints, key order and all, newest first; the migration goes up over a
store that holds rows, down (the runs' table alone goes, the other rows stay) and up again, on
SQLite and on PostgreSQL."""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime, timedelta

from sqlalchemy import inspect, text

from onchain.output import strict_json
from onchain.store.backtests import backtest_run, backtest_runs, record_backtest
from onchain.store.db import (
    Store,
    current_revision,
    downgrade,
    make_engine,
    open_store,
    parse_db_url,
    upgrade,
)
from tests.helpers.backtest_reports import synthetic_report

BEFORE = "0009_latest_buckets"
START, END = 1_654_992_000, 1_655_856_000  # 2022-06-12, 2022-06-22


def record(store: Store, seed: int = 3, at: datetime | None = None) -> int:
    return record_backtest(
        store,
        synthetic_report(seed),
        prices="../shared/data/prices",
        start_ts=START,
        end_ts=END,
        markets=["lending"],
        ran_at=at,
    )


def test_a_stored_run_reads_back_as_json_printed_it(store: Store) -> None:
    report = synthetic_report(3)
    printed = strict_json({k: v for k, v in report.items() if k != "_flat"})
    first = datetime(2026, 12, 1, 12, tzinfo=UTC)
    ids = [record(store, 3, first), record(store, 4, first + timedelta(hours=1))]
    run = backtest_run(store, ids[0])
    assert run is not None and run.report is not None
    assert strict_json(run.report) == printed  # every figure, in the same order
    assert run.report["models"]["onchain"]["roc"]["fpr"][0] == 0.0
    assert (run.window_start, run.window_end) == (
        datetime(2022, 6, 12, tzinfo=UTC),
        datetime(2022, 6, 22, tzinfo=UTC),
    )
    assert (run.horizon_h, run.cadence_h, run.seed, run.borrowers) == (6, 6, 3, 300)
    assert (run.samples, run.liquidations) == (report["samples"], report["liquidations"])
    assert run.models == ["reference", "onchain"] and run.markets == ["lending"]
    assert run.ran_at == first and run.prices == "../shared/data/prices"
    for name in run.models:
        for key, value in run.summary[name].items():
            assert value == report["models"][name][key] or (
                value is None and not math.isfinite(report["models"][name][key])
            ), (name, key)
    listed = backtest_runs(store)
    assert [r.id for r in listed] == ids[::-1]  # newest first
    assert all(r.report is None for r in listed)
    assert backtest_run(store, max(ids) + 1) is None


def test_a_figure_that_is_not_finite_is_stored_as_null(store: Store) -> None:
    report = synthetic_report(3)
    report["models"]["onchain"]["tiers"]["CRITICAL"]["precision"] = float("nan")
    run_id = record_backtest(
        store, report, prices="p", start_ts=START, end_ts=END, markets=["lending"]
    )
    run = backtest_run(store, run_id)
    assert run is not None and run.report is not None
    assert run.report["models"]["onchain"]["tiers"]["CRITICAL"]["precision"] is None
    assert "_flat" not in run.report


def test_the_migration_up_and_down_over_a_store_with_rows(db_url: str) -> None:
    engine = make_engine(parse_db_url(db_url), create_sqlite_dir=True)
    try:
        assert upgrade(engine, BEFORE) == BEFORE
        job_run = (
            "INSERT INTO job_runs (job, started_at, outcome, counts, host, pid) "
            "VALUES ('refresh', :at, 'ok', '{}', 'h', 1)"
        )
        with engine.begin() as conn:
            conn.execute(text(job_run), {"at": datetime(2026, 12, 1, tzinfo=UTC)})
        assert "backtest_runs" not in inspect(engine).get_table_names()
        upgrade(engine)
        assert current_revision(engine) == "0010_backtest_runs"
        indexes = {i["name"] for i in inspect(engine).get_indexes("backtest_runs")}
        assert indexes == {"ix_backtest_runs_ran_at"}
        store = open_store(db_url)
        try:
            ids = [record(store, 3), record(store, 4)]
            assert len(backtest_runs(store)) == 2
        finally:
            store.close()
        assert downgrade(engine, BEFORE) == BEFORE
        assert "backtest_runs" not in inspect(engine).get_table_names()
        with engine.connect() as conn:
            assert conn.execute(text("SELECT job FROM job_runs")).scalars().all() == ["refresh"]
        upgrade(engine)
        store = open_store(db_url)
        try:
            assert backtest_runs(store) == []
            again = record(store, 5)
            run = backtest_run(store, again)
            assert run is not None and run.report is not None
            assert json.loads(strict_json(run.report))["seed"] == 5
        finally:
            store.close()
        assert ids and again >= 1
    finally:
        engine.dispose()
