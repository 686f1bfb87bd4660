"""The session's own PostgreSQL database (tests/helpers/store_db.py)."""

from __future__ import annotations

import pytest

from tests.helpers.store_db import admin, session_pg_database

pytestmark = pytest.mark.postgres


def test_each_session_gets_its_own_postgresql_database(request: pytest.FixtureRequest) -> None:
    url = session_pg_database(request.config)
    assert url == session_pg_database(request.config)  # one per session
    name = url.rsplit("/", 1)[1]
    assert name.startswith("onchain_t_")
    with admin() as conn:
        assert conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone()
