"""The HTTP API over the change layout: the same devnet blocks (both protocols, prices sliding
and recovering, refreshed and assessed by the daemon's jobs) go into three stores: snapshot rows
only, the change layout only, and one that switched from snapshots to changes mid-way (at the
end one market's newest block is in the latest view and the other's in snapshot rows, so a page
of positions reads both tables). Every endpoint that serves positions or history answers the
same JSON, field for field, from all three."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests
from sqlalchemy import func, select

from onchain.api.app import create_app
from onchain.api.history import DEFAULT_PATH, devnet_config, move_prices
from onchain.api.server import open_read_only, serving_in_thread
from onchain.api.settings import ApiSettings
from onchain.config import load_config
from onchain.devnet.build import DevnetInfo
from onchain.jobs.context import JobContext
from onchain.jobs.daemon import run_recorded
from onchain.store import changes, crud
from onchain.store.db import Store, make_engine, open_store, parse_db_url, upgrade
from onchain.store.models import TIERS
from tests.helpers.net import free_port
from tests.helpers.store_db import BACKENDS, empty_database

pytestmark = pytest.mark.devnet

LAYOUTS = ("snapshots", "changes", "switched")
SORTS = ("risk", "health_factor", "debt", "collateral", "account", "probability")
AAVE, MORPHO = "aave-v3-devnet", "morpho-blue-devnet"
ADDRESS = re.compile(r"0x[0-9a-fA-F]{40}")


@dataclass
class Writer:
    store: Store
    url: str
    # per step: the contexts that refresh and assess it (the switched store changes layout)
    steps: list[list[JobContext]]


def _writer(devnet: DevnetInfo, folder: Path, url: str, layout: str) -> Writer:
    engine = make_engine(parse_db_url(url), create_sqlite_dir=True)
    upgrade(engine)
    engine.dispose()
    store = open_store(url)

    def context(kind: str, only: str | None = None) -> JobContext:
        where = folder / kind
        where.mkdir(exist_ok=True)
        cfg = load_config(devnet_config(devnet, where, url, layout=kind))
        markets = crud.sync_markets(store, cfg)
        return JobContext(cfg, store, [m for m in markets if only in (None, m.name)])

    n = len(DEFAULT_PATH)
    if layout != "switched":
        ctx = context(layout)
        return Writer(store, url, [[ctx]] * n)
    old, new = context("snapshots"), context("changes")
    # the last block: Aave in the change layout, Morpho in snapshot rows
    last = [context("changes", AAVE), context("snapshots", MORPHO)]
    return Writer(store, url, [[old]] * (n - 2) + [[new], last])


@pytest.fixture(scope="module", params=BACKENDS)
def served(
    request: pytest.FixtureRequest, devnet: DevnetInfo, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, str]]:
    """layout -> the base URL of an API over that store (the change layout's store on the
    parametrized backend, the other two on SQLite files)."""
    folder = tmp_path_factory.mktemp(f"api-layouts-{request.param}")
    writers = {}
    for layout in LAYOUTS:
        (folder / layout).mkdir()
        if layout == "changes":
            url = empty_database(request.param, request.config, folder / layout)
        else:
            url = f"sqlite:///{folder / layout / 'store.sqlite'}"
        writers[layout] = _writer(devnet, folder / layout, url, layout)
    for w in writers.values():
        assert run_recorded(w.steps[0][0], "discover") == "ok"
    for i, (weth, wbtc) in enumerate(DEFAULT_PATH):
        move_prices(devnet, weth, wbtc)
        for w in writers.values():
            for ctx in w.steps[i]:
                assert run_recorded(ctx, "refresh") == "ok"
                assert run_recorded(ctx, "assess") == "ok"
    _check_layouts({k: w.store for k, w in writers.items()})
    for w in writers.values():
        w.store.close()

    stores = {k: open_read_only(parse_db_url(w.url)) for k, w in writers.items()}
    bases: dict[str, str] = {}
    try:
        with (
            _serving(stores["snapshots"]) as a,
            _serving(stores["changes"]) as b,
            _serving(stores["switched"]) as c,
        ):
            bases.update(snapshots=a, changes=b, switched=c)
            yield bases
    finally:
        for s in stores.values():
            s.close()


def _serving(store: Store) -> Any:
    settings = ApiSettings(port=free_port(), ready_max_age_s=600, refresh_s=2)
    return serving_in_thread(create_app(store, settings), settings)


def _check_layouts(stores: dict[str, Store]) -> None:
    """The stores hold what their layouts say: no position rows in the change layout's, the
    switched one's newest blocks split between the two tables."""
    for layout, store in stores.items():
        with store.read() as conn:
            rows = conn.execute(select(func.count()).select_from(crud.T_POSITIONS)).scalar_one()
            latest = conn.execute(select(func.count()).select_from(changes.T_LATEST)).scalar_one()
            newest = {
                name: details.get("layout", "snapshots")
                for name, details in conn.execute(
                    select(crud.T_MARKETS.c.name, crud.T_SNAPSHOTS.c.details)
                    .join(crud.T_MARKETS, crud.T_MARKETS.c.id == crud.T_SNAPSHOTS.c.market_id)
                    .order_by(crud.T_SNAPSHOTS.c.block_number)
                )
            }
        if layout == "snapshots":
            assert latest == 0 and rows > 0
        elif layout == "changes":
            assert rows == 0 and latest > 300
            assert newest == {AAVE: "changes", MORPHO: "changes"}
        else:
            assert rows > 0 and latest > 0
            assert newest == {AAVE: "changes", MORPHO: "snapshots"}


def _get(base: str, path: str) -> Any:
    reply = requests.get(base + path, timeout=120)
    assert reply.status_code == 200, (path, reply.status_code, reply.text[:500])
    return reply.json()


def _same(served: dict[str, str], path: str, drop: tuple[str, ...] = ()) -> Any:
    """The answer to `path`, equal from every store (with `drop`'s keys removed anywhere)."""
    answers = [_without(_get(served[layout], path), drop) for layout in LAYOUTS]
    for layout, answer in zip(LAYOUTS[1:], answers[1:], strict=True):
        assert answer == answers[0], (layout, path)
    return answers[0]


def _without(value: Any, drop: tuple[str, ...]) -> Any:
    if isinstance(value, dict):
        return {k: _without(v, drop) for k, v in value.items() if k not in drop}
    if isinstance(value, list):
        return [_without(v, drop) for v in value]
    return value


def test_positions_pages_are_the_same_in_every_layout(served: dict[str, str]) -> None:
    markets = _same(served, "/api/markets", drop=("taken_at", "block_age_s"))
    assert {m["name"] for m in markets["markets"]} == {AAVE, MORPHO}
    total = 0
    for sort in SORTS:
        for order in ("asc", "desc"):
            page = _same(served, f"/api/positions?sort={sort}&order={order}&limit=1000")
            total = page["total"]
            assert len(page["positions"]) == min(total, 1000)
    assert total > 500  # 300 Aave borrowers and the Morpho books
    # pages across the two markets' tables, filters
    paged = []
    for offset in range(0, 280, 70):
        paged += _same(served, f"/api/positions?limit=70&offset={offset}")["positions"]
    assert paged == _same(served, "/api/positions?limit=280")["positions"]
    at_risk = 0
    for tier in TIERS:
        at_risk += len(_same(served, f"/api/positions?tier={tier}&limit=1000")["positions"])
    assert at_risk == total
    for market in (AAVE, MORPHO):
        rows = _same(served, f"/api/positions?market={market}&sort=debt&limit=1000")
        assert rows["positions"] and all(r["market_name"] == market for r in rows["positions"])
        assert any(r["assets"] for r in rows["positions"])
        debt = sorted(int(r["total_debt_base"]) for r in rows["positions"])[
            len(rows["positions"]) // 2
        ]
        _same(served, f"/api/positions?market={market}&min_debt_base={debt}&limit=1000")


def test_accounts_and_their_history_are_the_same_in_every_layout(
    served: dict[str, str],
) -> None:
    rows = _same(served, "/api/positions?sort=account&limit=1000")["positions"]
    by_market: dict[str, set[str]] = {}
    for r in rows:
        by_market.setdefault(r["market_name"], set()).add(r["account"])
    both = sorted(by_market[AAVE] & by_market[MORPHO])
    risky = [r["account"] for r in _same(served, "/api/positions?limit=3")["positions"]]
    for account in [*both[:2], *risky]:
        reply = _same(served, f"/api/accounts/{account}")
        assert reply["positions"]
        for book in reply["history"]:
            assert len(book["points"]) == len(DEFAULT_PATH), (account, book["market"])
    _same(served, f"/api/accounts/{both[0]}?history_limit=3")
    # the dashboard's pages over the same reads: each lists the same accounts in every layout
    for page in ("/", f"/markets/{AAVE}", f"/markets/{MORPHO}", f"/accounts/{both[0]}"):
        shown = []
        for layout in LAYOUTS:
            reply = requests.get(served[layout] + page, timeout=120)
            assert reply.status_code == 200, (layout, page, reply.text[:300])
            shown.append(sorted(set(ADDRESS.findall(reply.text))))
        assert shown[0] and shown[1] == shown[0] and shown[2] == shown[0], page


def test_market_history_targets_and_stress_are_the_same_in_every_layout(
    served: dict[str, str],
) -> None:
    for market in (AAVE, MORPHO):
        history = _same(served, f"/api/markets/{market}/history")
        for book in history["books"]:
            assert len(book["points"]) == len(DEFAULT_PATH)
        assert any(
            p["tiers"]["SAFE"] != sum(p["tiers"].values())
            for b in history["books"]
            for p in b["points"]
        ), market  # positions at risk at some block, not only safe ones
        _same(served, f"/api/markets/{market}/history?limit=2")
        _same(served, f"/api/markets/{market}/stress")
        _same(served, f"/api/markets/{market}/curve?curve_step=10")
    targets = _same(served, "/api/targets?limit=100")
    assert targets["targets"]
