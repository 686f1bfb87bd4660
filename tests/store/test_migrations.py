"""Alembic is the only way the schema is made or changed, and it agrees with the models: on
SQLite and on PostgreSQL, autogenerate finds nothing to do after `upgrade head`, and the
migrations go up, down to nothing and up again."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Column, Integer, MetaData, inspect, text

from onchain.store.db import (
    current_revision,
    downgrade,
    head_revision,
    make_engine,
    parse_db_url,
    upgrade,
)
from onchain.store.models import Base

ONCHAIN = [str(Path(sys.executable).with_name("onchain"))]
CHANGE_LAYOUT = {
    "market_states",
    "account_states",
    "position_verdicts",
    "positions_latest",
    "positions_latest_details",
}
TABLES = {
    "chains",
    "markets",
    "assets",
    "accounts",
    "market_accounts",
    "cursors",
    "market_snapshots",
    "reserve_snapshots",
    "position_snapshots",
    "asset_positions",
    "job_runs",
    "alert_outbox",
    "alert_deliveries",
    "alert_attempts",
    "alert_rule_state",
    "workers",
    "market_leases",
    "backtest_runs",
} | CHANGE_LAYOUT


def onchain(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(ONCHAIN + list(args), capture_output=True, text=True, timeout=60)


def tables(url: str) -> set[str]:
    engine = make_engine(parse_db_url(url))
    try:
        return set(inspect(engine).get_table_names()) - {"alembic_version"}
    finally:
        engine.dispose()


def diff(url: str, metadata: MetaData) -> list[object]:
    engine = make_engine(parse_db_url(url))
    try:
        with engine.connect() as conn:
            context = MigrationContext.configure(
                conn, opts={"compare_type": True, "compare_server_default": True}
            )
            return list(compare_metadata(context, metadata))
    finally:
        engine.dispose()


def test_upgrade_then_downgrade_base_then_upgrade_again(db_url: str) -> None:
    """Through the real `onchain db` commands, as an operator runs them."""
    up = onchain("db", "upgrade", "--db", db_url)
    assert up.returncode == 0, up.stderr
    assert f"empty -> {head_revision()} (head)" in up.stderr
    assert tables(db_url) == TABLES
    down = onchain("db", "downgrade", "base", "--db", db_url, "--yes")  # it drops every table
    assert down.returncode == 0, down.stderr
    assert tables(db_url) == set()
    again = onchain("db", "upgrade", "--db", db_url)
    assert again.returncode == 0, again.stderr
    assert tables(db_url) == TABLES
    engine = make_engine(parse_db_url(db_url))
    try:
        assert current_revision(engine) == head_revision()
        assert downgrade(engine, "base") is None  # and from code, as library users do
        assert tables(db_url) == set()
    finally:
        engine.dispose()


def test_the_first_alerts_table_is_retired_and_a_downgrade_restores_it(db_url: str) -> None:
    """0006 drops the table the old assess job wrote (never delivered); downgrading to 0005
    brings it back, empty, with its index, and upgrading drops it again."""
    assert onchain("db", "upgrade", "--db", db_url).returncode == 0
    assert "alerts" not in tables(db_url)
    down = onchain("db", "downgrade", "0005_worker_leases", "--db", db_url, "--yes")
    assert down.returncode == 0, down.stderr
    assert tables(db_url) == (TABLES - CHANGE_LAYOUT - {"backtest_runs"}) | {"alerts"}
    engine = make_engine(parse_db_url(db_url))
    try:
        indexes = {i["name"] for i in inspect(engine).get_indexes("alerts")}
        assert "ix_alerts_market_id_account_id_id" in indexes
        with engine.connect() as conn:
            assert conn.execute(text("SELECT count(*) FROM alerts")).scalar_one() == 0
    finally:
        engine.dispose()
    again = onchain("db", "upgrade", "--db", db_url)
    assert again.returncode == 0, again.stderr
    assert tables(db_url) == TABLES


def test_models_and_migrations_agree(db_url: str) -> None:
    """alembic autogenerate compares the migrated database with the models: no difference,
    while the same comparison does see a model that drifted (the check is not vacuous)."""
    engine = make_engine(parse_db_url(db_url), create_sqlite_dir=True)
    upgrade(engine)
    engine.dispose()
    assert diff(db_url, Base.metadata) == []
    drifted = MetaData(naming_convention=Base.metadata.naming_convention)
    for table in Base.metadata.tables.values():
        table.to_metadata(drifted)
    drifted.tables["job_runs"].append_column(Column("added_later", Integer(), nullable=True))
    changes = diff(db_url, drifted)
    assert [c[0] for c in changes if isinstance(c, tuple)] == ["add_column"]
