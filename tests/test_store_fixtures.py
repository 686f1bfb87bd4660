"""Database fixtures for the store tests, on SQLite files and on a real PostgreSQL server.

PostgreSQL must answer on 127.0.0.1:5432 (`.ci/run` starts it); a missing server FAILS the run,
it is never skipped. One database named onchain_t_<random> is created per test session (from
the `postgres` database, autocommit) and dropped at the end; each test gets a clean schema in it.
Test modules import the fixtures they use from here (`db_url_fixture`, `store_fixture`)."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from sqlalchemy import text

from onchain.store.db import Store, make_engine, open_store, parse_db_url, upgrade

PG_SERVER = os.environ.get("ONCHAIN_TEST_PG", "postgresql://postgres@127.0.0.1:5432")
_PG_DB = pytest.StashKey[str]()
BACKENDS = ["sqlite", "postgresql"]


def _admin() -> psycopg.Connection:
    try:
        return psycopg.connect(f"{PG_SERVER}/postgres", autocommit=True, connect_timeout=5)
    except psycopg.OperationalError as exc:
        pytest.fail(
            f"PostgreSQL is required for the store tests and did not answer at {PG_SERVER}: "
            f"{exc} (start it, e.g. with .ci/run)",
            pytrace=False,
        )


def session_pg_database(config: pytest.Config) -> str:
    """The URL of this session's PostgreSQL database, created on first use."""
    if _PG_DB not in config.stash:
        name = f"onchain_t_{uuid.uuid4().hex[:12]}"
        with _admin() as conn:
            conn.execute(f'CREATE DATABASE "{name}"')

        def drop() -> None:
            with _admin() as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

        config.add_cleanup(drop)
        config.stash[_PG_DB] = f"postgresql+psycopg://{PG_SERVER.split('://', 1)[1]}/{name}"
    return config.stash[_PG_DB]


def empty_database(backend: str, config: pytest.Config, tmp_path: Path) -> str:
    """A URL of an empty database: a new SQLite file, or the session database emptied."""
    if backend == "sqlite":
        return f"sqlite:///{tmp_path / 'store.sqlite'}"
    url = session_pg_database(config)
    engine = make_engine(parse_db_url(url))
    with engine.begin() as conn:
        conn.execute(text("DROP SCHEMA public CASCADE"))
        conn.execute(text("CREATE SCHEMA public"))
    engine.dispose()
    return url


@pytest.fixture(name="db_url", params=BACKENDS)
def db_url_fixture(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """An empty database, once on SQLite and once on PostgreSQL."""
    return empty_database(request.param, request.config, tmp_path)


@pytest.fixture(name="store")
def store_fixture(db_url: str) -> Iterator[Store]:
    """The database migrated to head (the only way the schema is made), opened."""
    engine = make_engine(parse_db_url(db_url), create_sqlite_dir=True)
    upgrade(engine)
    engine.dispose()
    opened = open_store(db_url)
    yield opened
    opened.close()


def test_each_session_gets_its_own_postgresql_database(request: pytest.FixtureRequest) -> None:
    url = session_pg_database(request.config)
    assert url == session_pg_database(request.config)  # one per session
    name = url.rsplit("/", 1)[1]
    assert name.startswith("onchain_t_")
    with _admin() as conn:
        assert conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone()
