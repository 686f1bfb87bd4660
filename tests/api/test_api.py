"""`onchain serve` over a store the daemon's own jobs filled on the devnet (Aave V3 and Morpho
Blue, prices sliding and recovering), on SQLite and on PostgreSQL, served by uvicorn on
127.0.0.1: the positions endpoint equals `scan --json` at the same block field for field; the
OpenAPI document holds under schemathesis (no 5xx, every response matches its schema); /metrics
parses with the Prometheus client's own parser and agrees with the API; the dashboard renders
its charts in headless Chromium (Debian's, driven by Selenium) and its links lead where they
say; a non-local address without a token refuses to start."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from onchain.api.app import create_app
from onchain.api.history import devnet_config, record_history
from onchain.api.server import open_read_only, serving_in_thread
from onchain.api.settings import ApiSettings
from onchain.devnet.build import DevnetInfo
from onchain.devnet.chain import DevChain
from onchain.rpc.endpoints import redact_url
from onchain.store.db import make_engine, open_store, parse_db_url, upgrade
from onchain.store.models import TIERS
from tests.helpers.cli_support import assert_one_clear_error, run
from tests.helpers.net import free_port
from tests.helpers.store_db import BACKENDS, empty_database

ONCHAIN = [str(Path(sys.executable).with_name("onchain"))]
POSITION_FIELDS = (
    "account",
    "protocol",
    "market",
    "block_number",
    "block_hash",
    "block_timestamp",
    "health_factor",
    "liquidatable",
    "total_collateral_base",
    "total_debt_base",
    "available_borrows_base",
    "liquidation_threshold_bps",
    "ltv_bps",
    "base_currency_decimals",
    "emode_category",
    "protocol_version",
    "assets",
    "details",
)
# docs/dashboard.png (the README's) is refreshed with ONCHAIN_SCREENSHOT=docs/dashboard.png
SCREENSHOT_ENV = "ONCHAIN_SCREENSHOT"


@dataclass
class Served:
    base: str
    config: Path
    db_url: str
    head: int
    backend: str
    rpc_url: str

    def get(self, path: str, **kwargs: Any) -> requests.Response:
        return requests.get(self.base + path, timeout=60, **kwargs)

    def json(self, path: str) -> Any:
        reply = self.get(path)
        assert reply.status_code == 200, (path, reply.status_code, reply.text[:500])
        return reply.json()


@pytest.fixture(scope="module", params=BACKENDS)
def served(
    request: pytest.FixtureRequest, devnet: DevnetInfo, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Served]:
    """A store filled by the daemon's jobs over eight moving blocks, served on 127.0.0.1."""
    folder = tmp_path_factory.mktemp(f"api-{request.param}")
    db_url = empty_database(request.param, request.config, folder)
    engine = make_engine(parse_db_url(db_url), create_sqlite_dir=True)
    upgrade(engine)
    engine.dispose()
    config = devnet_config(devnet, folder, db_url)
    writer = open_store(db_url)
    try:
        outcomes = record_history(devnet, writer, config)
    finally:
        writer.close()
    assert outcomes == {"ok": 17}, outcomes
    head = DevChain(devnet.rpc_url).block_number()
    store = open_read_only(parse_db_url(db_url))
    settings = ApiSettings(port=free_port(), ready_max_age_s=600, refresh_s=2)
    try:
        with serving_in_thread(create_app(store, settings), settings) as base:
            yield Served(base, config, db_url, head, request.param, devnet.rpc_url)
    finally:
        store.close()


def all_positions(served: Served, market: str) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    while True:
        page = served.json(
            f"/api/positions?market={market}&sort=account&limit=1000&offset={len(rows)}"
        )
        rows += page["positions"]
        if len(rows) >= page["total"]:
            return rows


def by_asset(row: dict[str, Any]) -> dict[str, Any]:
    """The row with its assets in address order (the store keeps no adapter order)."""
    return {**row, "assets": sorted(row["assets"], key=lambda a: a["asset"].lower())}


def test_positions_equal_scan_json_at_the_same_block_field_for_field(served: Served) -> None:
    markets = served.json("/api/markets")["markets"]
    assert {m["name"] for m in markets} == {"aave-v3-devnet", "morpho-blue-devnet"}
    for market in markets:
        assert market["latest"]["block_number"] == served.head == market["refresh_cursor"]
        assert market["snapshots"] == 8
        scan = subprocess.run(
            [
                *ONCHAIN,
                "scan",
                "--config",
                str(served.config),
                "--market",
                market["name"],
                "--block",
                str(served.head),
                "--json",
                "--all",
            ],
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert scan.returncode == 0, scan.stderr
        truth = {(r["account"], r["market"]): r for r in json.loads(scan.stdout)}
        ours = {(r["account"], r["market"]): r for r in all_positions(served, market["name"])}
        assert len(ours) == len(truth) == market["latest"]["positions"] > 200
        assert set(ours) == set(truth)
        for key, row in ours.items():
            expected = by_asset({f: truth[key][f] for f in POSITION_FIELDS})
            assert by_asset({f: row[f] for f in POSITION_FIELDS}) == expected, key
            assert row["tier"] == truth[key]["tier"], key
        liquidatable = sum(1 for r in ours.values() if r["liquidatable"])
        assert liquidatable == market["latest"]["liquidatable"] > 0


def test_filters_sorting_and_paging_follow_the_stored_rows(served: Served) -> None:
    everything = all_positions(served, "aave-v3-devnet") + all_positions(
        served, "morpho-blue-devnet"
    )
    page = served.json("/api/positions?limit=1000&tier=LIQUIDATABLE")
    assert page["total"] == sum(1 for r in everything if r["tier"] == "LIQUIDATABLE") > 0
    assert all(r["liquidatable"] for r in page["positions"])

    floor = sorted(int(r["total_debt_base"]) for r in everything)[len(everything) // 2]
    page = served.json(f"/api/positions?min_debt_base={floor}&sort=debt&order=desc&limit=1000")
    debts = [int(r["total_debt_base"]) for r in page["positions"]]
    assert page["total"] == sum(1 for r in everything if int(r["total_debt_base"]) >= floor)
    assert debts == sorted(debts, reverse=True) and min(debts) >= floor  # exact, numeric order

    ranked = served.json("/api/positions?limit=20")["positions"]  # risk: worst tier first
    assert [TIERS.index(r["tier"]) for r in ranked] == sorted(
        TIERS.index(r["tier"]) for r in ranked
    )
    first = served.json("/api/positions?sort=health_factor&limit=10")["positions"]
    second = served.json("/api/positions?sort=health_factor&limit=10&offset=10")["positions"]
    hfs = [int(r["health_factor"]) for r in first + second]
    assert hfs == sorted(hfs) and hfs[0] == min(
        int(r["health_factor"]) for r in everything if r["health_factor"]
    )

    account = ranked[0]["account"]
    mine = served.json(f"/api/positions?account={account.lower()}")
    assert mine["total"] >= 1 and {r["account"] for r in mine["positions"]} == {account}


def test_an_account_across_markets_with_its_health_history(served: Served) -> None:
    both = [
        r
        for r in served.json("/api/positions?sort=account&limit=1000")["positions"]
        if r["protocol"] == "aave-v3"
    ]
    morpho = {r["account"] for r in all_positions(served, "morpho-blue-devnet")}
    account = next(r["account"] for r in both if r["account"] in morpho)
    reply = served.json(f"/api/accounts/{account}")
    assert {p["protocol"] for p in reply["positions"]} == {"aave-v3", "morpho-blue"}
    for book in reply["history"]:
        assert len(book["points"]) == 8 and book["liquidation_threshold"] == 1.0
        assert book["points"][-1]["block_number"] == served.head
        now = next(p for p in reply["positions"] if p["market"] == book["market_key"])
        assert book["points"][-1]["health_factor"] == now["health_factor"]

    unknown = served.get("/api/accounts/0x" + "00" * 19 + "01")
    assert unknown.status_code == 404 and "unknown account" in unknown.json()["error"]
    assert served.get("/api/accounts/0xnothex").status_code == 422
    assert served.get("/api/markets/nope").status_code == 404
    assert served.get("/api/markets/nope/history").status_code == 404
    bad = served.get("/api/positions?tier=BOGUS")
    assert bad.status_code == 422 and "tier" in bad.json()["error"]
    assert served.get("/api/positions?min_debt_base=-1").status_code == 422
    assert served.get("/api/positions?limit=0").status_code == 422


def test_tiers_over_time_stress_and_targets_come_from_the_stored_history(served: Served) -> None:
    history = served.json("/api/markets/aave-v3-devnet/history")
    (book,) = history["books"]
    assert [p["block_number"] for p in book["points"]] == list(
        range(served.head - 7, served.head + 1)
    )
    now = served.json("/api/positions?market=aave-v3-devnet&limit=1000")["positions"]
    last = book["points"][-1]
    for tier in TIERS:
        assert last["tiers"][tier] == sum(
            1 for r in now if r["tier"] == tier and r["health_factor"]
        )
    at_risk = [r for r in now if r["tier"] != "SAFE"]
    assert last["debt_at_risk_base"] == str(sum(int(r["total_debt_base"]) for r in at_risk))
    assert last["collateral_at_risk_usd"] == pytest.approx(
        sum(int(r["total_collateral_base"]) for r in at_risk) / 1e8
    )
    assert book["points"][0]["tiers"]["LIQUIDATABLE"] < last["tiers"]["LIQUIDATABLE"]

    morpho = served.json("/api/markets/morpho-blue-devnet/history")["books"]
    assert len(morpho) == 4 and all(b["base_currency"] in ("USDC", "WETH") for b in morpho)
    assert all(b["points"][-1]["debt_at_risk_usd"] is not None for b in morpho)

    stress = served.json("/api/markets/aave-v3-devnet/stress?scenario=2022-11-08/24h")
    cli = subprocess.run(
        [
            *ONCHAIN,
            "stress",
            "--config",
            str(served.config),
            "--market",
            "aave-v3-devnet",
            "--block",
            str(served.head),
            "--scenario",
            "2022-11-08/24h",
            "--json",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert cli.returncode == 0, cli.stderr
    truth = json.loads(cli.stdout)
    assert stress["block"] == truth["block"] and stress["positions"] == truth["positions"]
    for key in ("scenarios", "curve"):  # the same figures, up to float summation order
        assert_same_figures(stress[key], truth[key], key)
    bad = served.get("/api/markets/aave-v3-devnet/stress?drop=NOPE=-10%25")
    assert bad.status_code == 400 and "no such asset" in bad.json()["error"]

    targets = served.json("/api/targets?limit=1000")["targets"]
    liquidatable = served.json("/api/positions?tier=LIQUIDATABLE&limit=1000")["total"]
    pending = served.json("/api/positions?tier=PENDING&limit=1000")["total"]
    assert len(targets) == liquidatable + pending > 0
    bonuses = [t["bonus_usd"] or 0.0 for t in targets]
    assert bonuses == sorted(bonuses, reverse=True) and bonuses[0] > 0

    runs = served.json("/api/runs?limit=100")
    assert {(r["job"], r["outcome"]) for r in runs["runs"]} == {
        ("discover", "ok"),
        ("refresh", "ok"),
        ("assess", "ok"),
    }
    endpoints = [  # per-endpoint health, per chain, names an endpoint by scheme://host:port only
        e
        for r in runs["runs"]
        for chain in ((r.get("counts") or {}).pop("rpc_endpoints", None) or {}).values()
        for e in chain
    ]
    assert endpoints and all(e["endpoint"] == redact_url(served.rpc_url) for e in endpoints)
    text = json.dumps(runs) + json.dumps(served.json("/api/markets"))
    text = text.replace(f'"endpoint": "{redact_url(served.rpc_url)}"', "")  # health, as above
    assert served.rpc_url not in text and "rpc_url" not in text


def assert_same_figures(ours: Any, truth: Any, where: str) -> None:
    """Equal JSON, floats to 1e-9 relative; lists of rows compared in a canonical order (the
    book's columns follow the order assets are read in, which the store does not keep)."""
    if isinstance(truth, dict):
        assert isinstance(ours, dict) and set(ours) == set(truth), where
        for k in truth:
            assert_same_figures(ours[k], truth[k], f"{where}.{k}")
    elif isinstance(truth, list):
        assert isinstance(ours, list) and len(ours) == len(truth), where
        if truth and isinstance(truth[0], dict):
            key = next(k for k in ("name", "market", "symbol") if k in truth[0])
            ours, truth = sorted(ours, key=lambda r: r[key]), sorted(truth, key=lambda r: r[key])
        elif truth and isinstance(truth[0], str):
            ours, truth = sorted(ours), sorted(truth)
        for i, (a, b) in enumerate(zip(ours, truth, strict=True)):
            assert_same_figures(a, b, f"{where}[{i}]")
    elif isinstance(truth, float):
        assert ours == pytest.approx(truth, rel=1e-9, abs=1e-6), where
    else:
        assert ours == truth, where


def test_metrics_parse_and_agree_with_the_api(served: Served) -> None:
    reply = served.get("/metrics")
    assert reply.status_code == 200
    families = {f.name: f for f in text_string_to_metric_families(reply.text)}
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for f in families.values()
        for s in f.samples
    }
    for market in served.json("/api/markets")["markets"]:
        assert samples[("onchain_latest_block", (("market", market["name"]),))] == served.head
        for book in served.json(f"/api/markets/{market['name']}/history?limit=1")["books"]:
            point = book["points"][-1]
            for tier in TIERS:
                key = (("book", book["label"]), ("market", market["name"]), ("tier", tier))
                assert samples[("onchain_positions", key)] == point["tiers"][tier]
            total = sum(
                samples.get(
                    (
                        "onchain_collateral_at_risk_usd",
                        (("book", book["label"]), ("market", market["name"]), ("tier", t)),
                    ),
                    0.0,
                )
                for t in TIERS[:-1]
            )
            assert total == pytest.approx(point["collateral_at_risk_usd"] or 0.0)
    runs = served.json("/api/runs?limit=1000")["runs"]
    assert samples[("onchain_job_runs_total", (("job", "refresh"), ("outcome", "ok")))] == sum(
        1 for r in runs if r["job"] == "refresh"
    )
    assert samples[("onchain_job_duration_seconds_count", (("job", "refresh"),))] == 8
    assert samples[("onchain_store_up", ())] == 1
    # each RPC endpoint the runs used, by its redacted URL only (this one has no key to hide)
    endpoints = {
        dict(labels)["endpoint"]
        for name, labels in samples
        if name == "onchain_rpc_requests_total" and samples[(name, labels)] > 0
    }
    assert endpoints == {redact_url(served.rpc_url)}


def test_health_and_readiness(served: Served) -> None:
    assert served.json("/healthz") == {"status": "ok"}
    ready = served.json("/readyz")
    assert ready["ready"] is True and ready["newest_snapshot_age_s"] < 600
    store = open_read_only(parse_db_url(served.db_url))
    try:
        stale = ApiSettings(port=free_port(), ready_max_age_s=1e-6)
        with serving_in_thread(create_app(store, stale), stale) as base:
            reply = requests.get(base + "/readyz", timeout=30)
    finally:
        store.close()
    assert reply.status_code == 503 and "old" in reply.json()["reason"]


def test_the_openapi_document_holds_under_schemathesis(served: Served, tmp_path: Path) -> None:
    """Generated requests against every operation: no 5xx, every response matches its schema
    and status code. Bounded: a few examples per operation."""
    schema = served.json("/openapi.json")
    assert "/api/positions" in schema["paths"] and served.get("/docs").status_code == 200
    done = subprocess.run(
        [
            str(Path(sys.executable).with_name("schemathesis")),
            "run",
            served.base + "/openapi.json",
            "--checks",
            "not_a_server_error,response_schema_conformance,status_code_conformance,"
            "content_type_conformance",
            "--max-examples",
            "15",
            "--phases",
            "examples,coverage,fuzzing",
            "--generation-deterministic",
            "--request-timeout",
            "60",
        ],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=tmp_path,
        env={**os.environ, "NO_COLOR": "1"},
    )
    assert done.returncode == 0, done.stdout[-6000:] + done.stderr[-2000:]


def chromium() -> Any:
    """Debian's headless Chromium through its chromedriver; missing ones FAIL the test."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    binary, driver = shutil.which("chromium"), shutil.which("chromedriver")
    if not binary or not driver:
        pytest.fail(
            "the dashboard test needs Debian's chromium and chromium-driver "
            "(apt-get install -y chromium chromium-driver; .ci/run installs them)",
            pytrace=False,
        )
    options = webdriver.ChromeOptions()
    options.binary_location = binary
    for flag in (
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--window-size=1280,1900",
    ):
        options.add_argument(flag)
    return webdriver.Chrome(service=Service(driver), options=options)


def chart_points(browser: Any, element_id: str) -> int:
    """How many data points Plotly drew in a chart (0 until it has drawn)."""
    return int(
        browser.execute_script(
            "const el = document.getElementById(arguments[0]);"
            "if (!el || !el.data) return 0;"
            "return el.data.reduce((n, t) => n + (t.y || []).filter((v) => v !== null).length, 0);",
            element_id,
        )
    )


def wait_for_chart(browser: Any, element_id: str) -> int:
    from selenium.webdriver.support.ui import WebDriverWait

    WebDriverWait(browser, 60).until(lambda b: chart_points(b, element_id) > 0)
    assert browser.find_elements("css selector", f"#{element_id} svg.main-svg")
    return chart_points(browser, element_id)


def click(browser: Any, css: str) -> str:
    """Click the first element matching `css` and return its text; the page's live refresh may
    replace the element between finding and clicking it, so a stale one is found again."""
    from selenium.common.exceptions import StaleElementReferenceException
    from selenium.webdriver.support.ui import WebDriverWait

    clicked: list[str] = []

    def attempt(b: Any) -> bool:
        element = b.find_element("css selector", css)
        text = element.text
        element.click()
        clicked.append(text)
        return True

    WebDriverWait(browser, 30, ignored_exceptions=(StaleElementReferenceException,)).until(attempt)
    return clicked[-1]


def save_small_screenshot(browser: Any, path: Path) -> None:
    """The page as a PNG small enough to commit: half size, 64-colour palette."""
    from PIL import Image

    path.parent.mkdir(exist_ok=True)
    raw = path.with_suffix(".full.png")
    browser.save_screenshot(str(raw))
    with Image.open(raw) as image:
        small = image.convert("RGB").resize((image.width // 2, image.height // 2))
        small.quantize(colors=64).save(path, optimize=True)
    raw.unlink()


def test_the_dashboard_renders_its_charts_and_links_in_chromium(
    served: Served, tmp_path: Path
) -> None:
    from selenium.webdriver.support.ui import WebDriverWait

    browser = chromium()
    try:
        browser.get(served.base + "/")
        assert "onchain" in browser.title
        for i in range(2):
            assert wait_for_chart(browser, f"chart-tiers-{i}") >= 8
            assert wait_for_chart(browser, f"chart-at-risk-{i}") >= 8
        assert wait_for_chart(browser, "chart-targets") > 0
        scripts = [s.get_attribute("src") for s in browser.find_elements("tag name", "script")]
        assert all(s.startswith(served.base) for s in scripts if s)  # nothing from another host
        stamp = browser.find_element("id", "updated")
        WebDriverWait(browser, 30).until(
            lambda _b: int(stamp.get_attribute("data-refreshes") or 0) >= 2
        )
        shot = Path(os.environ.get(SCREENSHOT_ENV) or tmp_path / "dashboard.png")
        if served.backend == "sqlite" or not os.environ.get(SCREENSHOT_ENV):
            save_small_screenshot(browser, shot)
            assert shot.stat().st_size > 10_000

        name = click(browser, "#markets-table a.market")
        WebDriverWait(browser, 30).until(lambda b: b.current_url.endswith(f"/markets/{name}"))
        assert wait_for_chart(browser, "chart-curve") >= 13  # 0..60% every 5%
        assert wait_for_chart(browser, "chart-tiers") >= 8
        rows = browser.find_elements("css selector", "#positions-table tbody tr")
        assert len(rows) == 50
        click(browser, "#all-positions")
        WebDriverWait(browser, 30).until(lambda b: "/positions?market=" in b.current_url)
        info = browser.find_element("id", "page-info").text
        total = served.json(f"/api/positions?market={name}&limit=1")["total"]
        assert info.endswith(f"of {total}")
        click(browser, "#next-page")
        WebDriverWait(browser, 30).until(lambda b: "offset=50" in b.current_url)

        account = click(browser, "#positions-table a.account")
        WebDriverWait(browser, 30).until(lambda b: b.current_url.endswith(f"/accounts/{account}"))
        points = wait_for_chart(browser, "chart-hf-0")
        assert points == 8 + 8  # the health factor and its threshold line at each block
        threshold = browser.execute_script(
            "return document.getElementById('chart-hf-0').data[1].y;"
        )
        assert set(threshold) == {1.0}
        page_text = browser.page_source
        assert served.rpc_url not in page_text
        browser.get(served.base + "/markets/nope")
        assert "unknown market" in browser.find_element("id", "error").text
    finally:
        browser.quit()


def test_a_non_local_address_without_a_token_refuses_to_start(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "ONCHAIN_API_TOKEN"}
    config = tmp_path / "c.toml"
    config.write_text('[store]\npath = "none.sqlite"\n')
    for host in ("0.0.0.0", "192.0.2.1", "::"):
        result = run("serve", "--config", str(config), "--host", host, env=env)
        assert_one_clear_error(result, "ONCHAIN_API_TOKEN", host)


def test_serve_help_says_api_clients_send_the_bearer_and_browsers_sign_in() -> None:
    done = run("serve", "--help", env={**os.environ, "COLUMNS": "200", "NO_COLOR": "1"})
    assert done.returncode == 0, done.stderr
    text = " ".join(done.stdout.split())
    assert "ONCHAIN_API_TOKEN is set: then API clients and /metrics scrapers send" in text
    assert "'Authorization: Bearer <token>', and browsers sign in with the token at /login" in text
    assert "--host <str> address to listen on; a non-loopback one needs ONCHAIN_API_TOKEN" in text


def test_with_a_token_every_request_needs_it(served: Served) -> None:
    store = open_read_only(parse_db_url(served.db_url))
    try:
        settings = ApiSettings(port=free_port(), token="s3cret-token")
        with serving_in_thread(create_app(store, settings), settings) as base:
            for path in ("/", "/api/markets", "/metrics", "/healthz", "/openapi.json"):
                denied = requests.get(base + path, timeout=30)
                assert denied.status_code == 401 and denied.json() == {
                    "error": "missing or wrong bearer token"
                }
                wrong = requests.get(base + path, headers={"Authorization": "Bearer x"}, timeout=30)
                assert wrong.status_code == 401
                ok = requests.get(
                    base + path, headers={"Authorization": "Bearer s3cret-token"}, timeout=30
                )
                assert ok.status_code == 200, path
    finally:
        store.close()


def test_the_store_is_read_only_for_the_server(served: Served) -> None:
    from sqlalchemy import text
    from sqlalchemy.exc import DBAPIError

    store = open_read_only(parse_db_url(served.db_url))
    try:
        with pytest.raises(DBAPIError), store.read() as conn:
            conn.execute(text("DELETE FROM job_runs"))
    finally:
        store.close()
    assert served.json("/api/runs")["runs"]


def test_the_daemon_exposes_its_own_counters_on_its_metrics_port(served: Served) -> None:
    """`onchain run --metrics-port` over the same store (it writes only job runs here: every
    block is stored already). Last in this module: it adds runs to the store."""
    import signal
    import time

    port = free_port()
    daemon = subprocess.Popen(
        [*ONCHAIN, "run", "--config", str(served.config), "--metrics-port", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        samples: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                text = requests.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
            except requests.ConnectionError:
                time.sleep(0.5)
                continue
            samples = {
                (s.name, tuple(sorted(s.labels.items()))): s.value
                for f in text_string_to_metric_families(text)
                for s in f.samples
            }
            lag = ("onchain_daemon_lag_blocks", (("market", "morpho-blue-devnet"),))
            runs = ("onchain_daemon_job_runs_total", (("job", "refresh"), ("outcome", "ok")))
            if lag in samples and runs in samples:  # the run is counted once it is recorded
                break
            time.sleep(0.5)
        for market in ("aave-v3-devnet", "morpho-blue-devnet"):
            assert samples[("onchain_daemon_head_block", (("market", market),))] == served.head
            assert samples[("onchain_daemon_refreshed_block", (("market", market),))] == served.head
            assert samples[("onchain_daemon_lag_blocks", (("market", market),))] == 0
        key = ("onchain_daemon_job_runs_total", (("job", "refresh"), ("outcome", "ok")))
        assert samples[key] >= 1
        assert samples[("onchain_daemon_job_duration_seconds_count", (("job", "refresh"),))] >= 1
        assert served.rpc_url not in text
    finally:
        daemon.send_signal(signal.SIGTERM)
        _out, err = daemon.communicate(timeout=60)
    assert daemon.returncode == 0, err[-2000:]


TOKEN = "dash-s3cret-Tok3n"


@dataclass
class TokenServer:
    """`onchain serve` as a process, with ONCHAIN_API_TOKEN set."""

    config: Path
    port: int
    process: subprocess.Popen[str] | None = None

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        """Start it and wait until it answers."""
        import time

        self.process = subprocess.Popen(
            [*ONCHAIN, "serve", "--config", str(self.config), "--port", str(self.port)],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env={**os.environ, "ONCHAIN_API_TOKEN": TOKEN, "NO_COLOR": "1", "COLUMNS": "200"},
        )
        deadline = time.monotonic() + 60
        while True:
            assert self.process.poll() is None, self.stop()[-3000:]
            assert time.monotonic() < deadline, "onchain serve did not start"
            try:
                bearer = {"Authorization": f"Bearer {TOKEN}"}
                if requests.get(self.base + "/healthz", headers=bearer, timeout=5).ok:
                    return
            except requests.ConnectionError:
                time.sleep(0.3)

    def stop(self) -> str:
        """Stop it (Ctrl-C) and return everything it wrote: its log."""
        import signal

        if self.process is None:
            return ""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
        return self.process.communicate(timeout=60)[0]


@pytest.fixture
def token_server(served: Served, tmp_path: Path) -> Iterator[TokenServer]:
    """The real `onchain serve` on 127.0.0.1 over the same store, with a token."""
    config = tmp_path / "served.toml"
    config.write_text(served.config.read_text() + "\n[api]\nrefresh_s = 2\nready_max_age_s = 600\n")
    server = TokenServer(config, free_port())
    try:
        server.start()
        yield server
    finally:
        server.stop()


def sign_in(browser: Any, token: str) -> None:
    """Type `token` into the sign-in page and send it."""
    field = browser.find_element("id", "token")
    field.clear()
    field.send_keys(token)
    browser.find_element("id", "sign-in").click()


def test_behind_a_token_a_browser_signs_in_and_sees_the_dashboard(
    token_server: TokenServer,
) -> None:
    """The real `onchain serve` with a token and headless Chromium: a page opened without
    signing in leads to /login, a wrong token is refused, the right one leads back to the page
    asked for with its charts fetched (the fetches carry the session cookie); the cookie is
    HttpOnly, SameSite=Strict and not the token; signing out ends the session."""
    from selenium.webdriver.support.ui import WebDriverWait

    base = token_server.base
    market = "aave-v3-devnet"
    browser = chromium()
    try:
        browser.get(base + f"/markets/{market}?x=1")
        WebDriverWait(browser, 30).until(lambda b: "/login?next=" in b.current_url)
        assert browser.current_url == base + f"/login?next=%2Fmarkets%2F{market}%3Fx%3D1"
        assert browser.get_cookie("onchain_session") is None
        sign_in(browser, "not-the-token")
        WebDriverWait(browser, 30).until(lambda b: b.find_elements("id", "login-error"))
        assert browser.find_element("id", "login-error").text == "wrong token"
        assert browser.get_cookie("onchain_session") is None
        sign_in(browser, TOKEN)
        WebDriverWait(browser, 30).until(lambda b: b.current_url.endswith(f"/markets/{market}?x=1"))
        assert wait_for_chart(browser, "chart-curve") >= 13
        assert wait_for_chart(browser, "chart-tiers") >= 8

        browser.get(base + "/")
        assert "onchain" in browser.title
        for i in range(2):
            assert wait_for_chart(browser, f"chart-tiers-{i}") >= 8
            assert wait_for_chart(browser, f"chart-at-risk-{i}") >= 8
        assert wait_for_chart(browser, "chart-targets") > 0
        stamp = browser.find_element("id", "updated")
        WebDriverWait(browser, 30).until(
            lambda _b: int(stamp.get_attribute("data-refreshes") or 0) >= 2
        )
        assert TOKEN not in browser.page_source

        cookie = browser.get_cookie("onchain_session")
        assert cookie is not None and TOKEN not in cookie["value"] and len(cookie["value"]) >= 32
        assert cookie["httpOnly"] and cookie["sameSite"] == "Strict" and cookie["path"] == "/"
        assert not cookie["secure"]  # plain http here
        assert "onchain_session" not in browser.execute_script("return document.cookie;")
        session = {"onchain_session": cookie["value"]}
        assert requests.get(base + "/api/markets", cookies=session, timeout=30).status_code == 200

        browser.find_element("id", "sign-out").click()
        WebDriverWait(browser, 30).until(lambda b: b.current_url == base + "/login")
        assert browser.get_cookie("onchain_session") is None
        browser.get(base + "/")
        WebDriverWait(browser, 30).until(lambda b: "/login?next=%2F" in b.current_url)
        # signing out ended the session on the server: the old cookie no longer works
        assert requests.get(base + "/api/markets", cookies=session, timeout=30).status_code == 401
    finally:
        browser.quit()
    log = token_server.stop()
    assert "POST /login" in log and "sign-in refused" in log  # the log was captured
    assert TOKEN not in log


def test_behind_a_token_the_api_keeps_the_bearer_and_no_secret_leaks(
    token_server: TokenServer,
) -> None:
    """API clients: 401 with WWW-Authenticate without the header (a script's fetch too), 200
    with it; a page opened by a browser goes to /login; the sign-in page redirects only to a
    local path; the token appears in no response and not in the server's log."""
    base = token_server.base
    bearer = {"Authorization": f"Bearer {TOKEN}"}
    page = {"Accept": "text/html,application/xhtml+xml,*/*;q=0.8"}
    for path in ("/api/markets", "/metrics", "/healthz", "/readyz", "/openapi.json", "/"):
        denied = requests.get(base + path, timeout=30)
        assert denied.status_code == 401, path
        assert denied.headers["WWW-Authenticate"] == "Bearer"
        wrong = requests.get(base + path, headers={"Authorization": "Bearer x"}, timeout=30)
        assert wrong.status_code == 401
        assert requests.get(base + path, headers=bearer, timeout=30).status_code == 200, path
    fetch = requests.get(base + "/api/markets", headers={"Accept": "application/json"}, timeout=30)
    assert fetch.status_code == 401
    opened = requests.get(
        base + "/positions?tier=SAFE", headers=page, allow_redirects=False, timeout=30
    )
    assert opened.status_code == 303
    assert opened.headers["Location"] == "/login?next=%2Fpositions%3Ftier%3DSAFE"
    assert requests.get(base + "/", headers={**page, **bearer}, timeout=30).status_code == 200

    for asked, lands in (
        ("/accounts/0x00?a=b", "/accounts/0x00?a=b"),
        ("//evil.example/x", "/"),
        ("/\\evil.example", "/"),
        ("https://evil.example/", "/"),
        ("javascript:alert(1)", "/"),
        ("/login", "/"),
    ):
        reply = requests.post(
            base + "/login",
            data={"token": TOKEN, "next": asked},
            allow_redirects=False,
            timeout=30,
        )
        assert reply.status_code == 303 and reply.headers["Location"] == lands, asked
        set_cookie = reply.headers["Set-Cookie"]
        assert TOKEN not in set_cookie
        assert "HttpOnly" in set_cookie and "SameSite=strict" in set_cookie, set_cookie
    refused = requests.post(
        base + "/login", data={"token": TOKEN + "x"}, allow_redirects=False, timeout=30
    )
    assert refused.status_code == 401 and "Set-Cookie" not in refused.headers
    assert TOKEN not in refused.text
    empty = requests.post(base + "/login", data={}, allow_redirects=False, timeout=30)
    assert empty.status_code == 401
    log = token_server.stop()
    assert "POST /login" in log and "sign-in refused" in log
    assert TOKEN not in log


def test_behind_a_token_an_open_page_whose_session_ended_signs_in_again_and_returns(
    token_server: TokenServer,
) -> None:
    """A page left open whose session is gone on the server (signed out from another client,
    then the server restarted, which drops every session) goes to /login by itself at its next
    refresh, asking to come back; signing in again brings it back with its charts."""
    from selenium.webdriver.support.ui import WebDriverWait

    base = token_server.base
    asked = "/markets/aave-v3-devnet?x=1"
    to_login = base + "/login?next=%2Fmarkets%2Faave-v3-devnet%3Fx%3D1"
    browser = chromium()
    try:
        browser.get(base + asked)
        WebDriverWait(browser, 30).until(lambda b: b.current_url == to_login)
        sign_in(browser, TOKEN)
        WebDriverWait(browser, 30).until(lambda b: b.current_url == base + asked)
        assert wait_for_chart(browser, "chart-curve") >= 13

        cookie = browser.get_cookie("onchain_session")
        assert cookie is not None
        ended = requests.post(
            base + "/logout",
            cookies={"onchain_session": cookie["value"]},
            allow_redirects=False,
            timeout=30,
        )
        assert ended.status_code == 303
        WebDriverWait(browser, 30).until(lambda b: b.current_url == to_login)
        sign_in(browser, TOKEN)
        WebDriverWait(browser, 30).until(lambda b: b.current_url == base + asked)
        assert wait_for_chart(browser, "chart-curve") >= 13

        token_server.stop()
        token_server.start()
        WebDriverWait(browser, 60).until(lambda b: b.current_url == to_login)
        sign_in(browser, TOKEN)
        WebDriverWait(browser, 30).until(lambda b: b.current_url == base + asked)
        assert wait_for_chart(browser, "chart-curve") >= 13
    finally:
        browser.quit()


def get_from(source: str, base: str, path: str, headers: dict[str, str]) -> int:
    """The status of a GET sent from another loopback address (127.0.0.2...): another client."""
    import http.client
    from urllib.parse import urlsplit

    where = urlsplit(base)
    connection = http.client.HTTPConnection(
        where.hostname or "", where.port, timeout=30, source_address=(source, 0)
    )
    try:
        connection.request("GET", path, headers=headers)
        return connection.getresponse().status
    finally:
        connection.close()


def test_behind_a_token_ten_wrong_tokens_hold_one_address_back_with_429(
    token_server: TokenServer,
) -> None:
    """Wrong tokens at /login and as a bearer count together per address; after ten, even the
    right token is not checked from there (429, Retry-After up to 15 min, no cookie), while a
    session signed in before and other addresses go on; the log says it once."""
    from onchain.api.signin import MAX_WRONG, WRONG_WINDOW_S

    base = token_server.base
    signed_in = requests.post(
        base + "/login", data={"token": TOKEN}, allow_redirects=False, timeout=30
    )
    value = signed_in.cookies.get("onchain_session")
    assert value
    session = {"onchain_session": value}
    for i in range(MAX_WRONG):
        if i % 2:
            guess = requests.post(
                base + "/login", data={"token": f"guess-{i}"}, allow_redirects=False, timeout=30
            )
        else:
            bearer = {"Authorization": f"Bearer guess-{i}"}
            guess = requests.get(base + "/api/markets", headers=bearer, timeout=30)
        assert guess.status_code == 401, i

    held = requests.post(
        base + "/login",
        data={"token": TOKEN, "next": "/positions"},
        allow_redirects=False,
        timeout=30,
    )
    assert held.status_code == 429 and "Set-Cookie" not in held.headers
    wait_s = int(held.headers["Retry-After"])
    assert WRONG_WINDOW_S - 60 < wait_s <= WRONG_WINDOW_S
    assert "too many wrong tokens from this address: try again in 15 min" in held.text
    assert 'name="next" value="/positions"' in held.text and TOKEN not in held.text
    right = {"Authorization": f"Bearer {TOKEN}"}
    api = requests.get(base + "/metrics", headers=right, timeout=30)
    assert api.status_code == 429 and 0 < int(api.headers["Retry-After"]) <= wait_s
    assert api.json()["error"].startswith("too many wrong tokens from this address")

    assert requests.get(base + "/api/markets", cookies=session, timeout=30).status_code == 200
    assert get_from("127.0.0.2", base, "/api/markets", right) == 200
    assert get_from("127.0.0.2", base, "/api/markets", {"Authorization": "Bearer x"}) == 401
    log = token_server.stop()
    assert log.count(f"{MAX_WRONG} wrong tokens from 127.0.0.1 within {WRONG_WINDOW_S} s") == 1
    assert "127.0.0.2 within" not in log and TOKEN not in log


def test_without_a_token_there_is_no_sign_in(served: Served) -> None:
    """On 127.0.0.1 without a token nothing changed: pages open directly, no /login."""
    page = {"Accept": "text/html"}
    assert served.get("/", headers=page, allow_redirects=False).status_code == 200
    assert served.get("/login", headers=page).status_code == 404
    assert served.get("/api/markets").status_code == 200
