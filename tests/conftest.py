"""Shared fixtures: a real anvil node on 127.0.0.1 (fresh per test unless a module asks for more),
the seeded devnet, and databases (SQLite and a real PostgreSQL). Tests that use the devnet or
anvil are marked `devnet`, those on PostgreSQL `postgres`, those in modules that start programs
(the console script) `slow`; `make test-fast` leaves them out."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from onchain.devnet.anvil import Anvil
from onchain.devnet.build import DevnetInfo, running_devnet
from onchain.store.db import Store, make_engine, open_store, parse_db_url, upgrade
from tests.helpers import cli_support
from tests.helpers.store_db import BACKENDS, empty_database


@pytest.fixture
def anvil() -> Iterator[Anvil]:
    """A fresh, empty anvil chain; fails loudly when the npm-installed anvil is missing."""
    with Anvil() as node:
        yield node


@pytest.fixture(scope="module")
def devnet() -> Iterator[DevnetInfo]:
    """The seeded Aave V3 devnet (300 borrowers), loaded fresh from the build cache per module."""
    with running_devnet(300, 7) as info:
        yield info


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


DEVNET_FIXTURES = {"anvil", "devnet"}


def _starts_processes(module: object) -> bool:
    """A module that runs the console script or other programs: each start costs seconds."""
    names = vars(module).values() if module is not None else ()
    return any(v is subprocess or v is cli_support.run or v is cli_support.ONCHAIN for v in names)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark by what a test needs, so the quick loop can leave the slow rooms out."""
    for item in items:
        used = set(getattr(item, "fixturenames", ()))
        if used & DEVNET_FIXTURES:
            item.add_marker(pytest.mark.devnet)
        if _starts_processes(getattr(item, "module", None)):
            item.add_marker(pytest.mark.slow)
        callspec = getattr(item, "callspec", None)
        if callspec is not None and callspec.params.get("db_url") == "postgresql":
            item.add_marker(pytest.mark.postgres)
