"""Databases for the store tests, on SQLite files and on a real PostgreSQL server.

PostgreSQL must answer on 127.0.0.1:5432 (`.ci/run` starts it); a missing server FAILS the run,
it is never skipped. One database named onchain_t_<random> is created per test session (from
the `postgres` database, autocommit) and dropped at the end; each test gets a clean schema in it.
The `db_url` and `store` fixtures (tests/conftest.py) are built on these."""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import psycopg
import pytest
from sqlalchemy import text

from onchain.store.db import make_engine, parse_db_url

PG_SERVER = os.environ.get("ONCHAIN_TEST_PG", "postgresql://postgres@127.0.0.1:5432")
_PG_DB = pytest.StashKey[str]()
BACKENDS = ["sqlite", "postgresql"]


def admin() -> psycopg.Connection:
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
        with admin() as conn:
            conn.execute(f'CREATE DATABASE "{name}"')

        def drop() -> None:
            with admin() as conn:
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
