"""Pages read again when a block lands (`onchain.api.ahead.ReadAhead`), over a change-layout
store the daemon's jobs fill from the devnet: a page the API served is read again once the
market's newest block changes, so its next reader rebuilds no position; a page nobody read
lately, or a store whose newest block did not change, is not read again."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from onchain.api.ahead import ReadAhead
from onchain.api.app import create_app
from onchain.api.history import move_prices
from onchain.api.server import serving_in_thread
from onchain.api.settings import ApiSettings
from onchain.app.stored_book import BOOKS
from onchain.config import load_config
from onchain.devnet.build import DevnetInfo
from onchain.jobs.context import JobContext
from onchain.jobs.daemon import run_recorded
from onchain.protocols.registry import get_incremental
from onchain.store import crud
from onchain.store.db import Store, make_engine, open_store, parse_db_url, upgrade
from tests.helpers.incremental_daemon import _config
from tests.helpers.net import free_port
from tests.helpers.store_db import BACKENDS, empty_database

pytestmark = pytest.mark.devnet

# pages of rows SAFE at the newest block (the riskiest rows are written whole at every block)
PAGES = ("/api/positions?sort=account&limit=20", "/positions?sort=debt&limit=20&offset=40")
MARKETS = ("aave", "morpho")  # as `_config` names them


@pytest.fixture(params=BACKENDS)
def writer(
    request: pytest.FixtureRequest, devnet: DevnetInfo, tmp_path: Path
) -> Iterator[tuple[Store, JobContext]]:
    url = empty_database(request.param, request.config, tmp_path)
    engine = make_engine(parse_db_url(url), create_sqlite_dir=True)
    upgrade(engine)
    engine.dispose()
    store = open_store(url)
    # the daemon's incremental refresh: a block writes whole only the rows whose state changed
    cfg = load_config(_config(tmp_path, devnet, url, store='layout = "changes"\n', refresh=""))
    ctx = JobContext(cfg, store, crud.sync_markets(store, cfg))
    assert run_recorded(ctx, "discover") == "ok"
    for weth in (2000.0, 1980.0):  # the second block writes most rows' prices alone
        move_prices(devnet, weth, 60000.0)
        assert run_recorded(ctx, "refresh") == "ok"
    try:
        yield store, ctx
    finally:
        store.close()


@pytest.fixture
def built(monkeypatch: pytest.MonkeyPatch) -> Counter[str]:
    """How many positions the Aave adapter rebuilt from stored states (positions_from_states)."""
    counts: Counter[str] = Counter()
    kind = type(get_incremental("aave-v3"))  # (a new one at each call)
    real = kind.positions_from_states

    def counted(self: Any, *args: Any, **kwargs: Any) -> Any:
        got = real(self, *args, **kwargs)
        counts["positions"] += len(got)
        return got

    monkeypatch.setattr(kind, "positions_from_states", counted)
    return counts


def _next_block(devnet: DevnetInfo, ctx: JobContext, weth: float) -> None:
    move_prices(devnet, weth, 60000.0)
    assert run_recorded(ctx, "refresh") == "ok"


class _Client:
    """GETs on the served application (paths relative to its base URL)."""

    def __init__(self, base: str) -> None:
        self.base = base

    def get(self, path: str) -> requests.Response:
        return requests.get(self.base + path, timeout=60)


def test_a_served_page_is_read_again_when_a_block_lands(
    devnet: DevnetInfo,
    writer: tuple[Store, JobContext],
    built: Counter[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    store, ctx = writer
    BOOKS.clear()
    settings = ApiSettings(port=free_port(), read_ahead_s=0)  # no thread: ticks run here
    app = create_app(store, settings)
    ahead = ReadAhead(store)
    app.state.ahead = ahead
    with serving_in_thread(app, settings) as base:
        client = _Client(base)
        assert ahead.tick() == 0  # the first look: nothing served before it
        for page in PAGES:
            assert client.get(page).status_code == 200
        assert built["positions"] > 0  # the details older than the block: rebuilt
        assert ahead.tick() == 0  # the same newest block: nothing to read again

        _next_block(devnet, ctx, 1900.0)
        assert ahead.tick() == len(PAGES)
        before = built["positions"]
        served = client.get(PAGES[0]).json()
        for page in PAGES:
            assert client.get(page).status_code == 200
        assert built["positions"] == before  # nothing rebuilt at the reader's request
        # what was read ahead is what a reader reading it cold gets
        BOOKS.clear()
        assert client.get(PAGES[0]).json() == served
        assert built["positions"] > before

        # a page nobody read for `keep_s` is forgotten; then nothing is read again
        clock = [0.0]
        ahead = ReadAhead(store, keep_s=60.0, clock=lambda: clock[0])
        app.state.ahead = ahead
        ahead.tick()
        client.get(PAGES[0])
        clock[0] = 61.0
        _next_block(devnet, ctx, 1850.0)
        assert ahead.tick() == 0

        # a page that fails to read again is one warning line a block; the others are read
        ahead = ReadAhead(store)
        app.state.ahead = ahead
        ahead.tick()
        ahead.note("broken", None, lambda: 1 / 0)
        client.get(PAGES[0])
        _next_block(devnet, ctx, 1800.0)
        with caplog.at_level("WARNING", logger="onchain.api.ahead"):
            assert ahead.tick() == 1
        lines = [r.getMessage() for r in caplog.records if r.name == "onchain.api.ahead"]
        assert lines == ["reading 1 of 2 pages again failed: division by zero"]

        # a block of one market: its pages and those of every market are read again, not
        # another market's
        ahead = ReadAhead(store)
        app.state.ahead = ahead
        ahead.tick()
        for page in (PAGES[0], *(f"/api/positions?market={m}&sort=debt" for m in MARKETS)):
            assert client.get(page).status_code == 200
        only = JobContext(ctx.config, store, [m for m in ctx.markets if m.name == MARKETS[0]])
        move_prices(devnet, 1750.0, 60000.0)
        assert run_recorded(only, "refresh") == "ok"
        assert ahead.tick() == 2


def test_the_server_reads_pages_again_in_its_own_thread(
    devnet: DevnetInfo, writer: tuple[Store, JobContext], built: Counter[str]
) -> None:
    """The thread starts and stops with the application (its lifespan)."""
    store, ctx = writer
    BOOKS.clear()
    settings = ApiSettings(port=free_port(), read_ahead_s=0.05)
    app = create_app(store, settings)
    ahead = app.state.ahead
    assert ahead is not None
    with serving_in_thread(app, settings) as base:
        client = _Client(base)
        assert ahead._thread is not None
        for _ in range(200):  # its first look at the newest blocks
            if ahead._heads is not None:
                break
            time.sleep(0.05)
        assert ahead._heads is not None
        assert client.get(PAGES[0]).status_code == 200
        _next_block(devnet, ctx, 1950.0)
        for _ in range(200):  # read again within ~10 s
            if ahead.pages_read:
                break
            time.sleep(0.05)
        assert ahead.pages_read >= 1
        after = built["positions"]
        assert client.get(PAGES[0]).status_code == 200
        assert built["positions"] == after  # nothing rebuilt at the reader's request
    assert ahead._thread is None
