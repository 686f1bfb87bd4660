"""Stored backtests over HTTP, on SQLite and on PostgreSQL: runs written by `onchain backtest
--store`'s own function (reports built from synthetic forecasts by the backtest's own scoring)
are listed newest first with their headline figures, one run's report reads back field for field,
and the dashboard's pages draw the reliability diagram (error bars, diagonal) and the ROC curve
(AUC in the title) in headless Chromium, from the JSON API, with Plotly served locally."""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import requests

from onchain.api.app import create_app
from onchain.api.server import open_read_only, serving_in_thread
from onchain.api.settings import ApiSettings
from onchain.output import strict_json
from onchain.store.backtests import SUMMARY_FIGURES, record_backtest
from onchain.store.db import make_engine, open_store, parse_db_url, upgrade
from tests.api.test_api import chart_points, chromium, wait_for_chart
from tests.helpers.backtest_reports import MODELS, synthetic_report
from tests.helpers.net import free_port
from tests.helpers.store_db import empty_database

START, END = 1_654_992_000, 1_655_856_000  # 2022-06-12, 2022-06-22
RAN_AT = datetime(2026, 12, 1, 12, tzinfo=UTC)


@dataclass
class Served:
    base: str
    db_url: str
    ids: list[int]  # in the order stored (oldest first)
    reports: dict[int, dict[str, Any]]  # id -> the report as run_backtest returned it

    def get(self, path: str, **kwargs: Any) -> requests.Response:
        return requests.get(self.base + path, timeout=60, **kwargs)

    def json(self, path: str) -> Any:
        reply = self.get(path)
        assert reply.status_code == 200, (path, reply.status_code, reply.text[:500])
        return reply.json()


@pytest.fixture(
    scope="module",
    params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)],
)
def served(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Served]:
    """Two runs stored (seeds 3 and 4, an hour apart), served read-only on 127.0.0.1."""
    folder = tmp_path_factory.mktemp(f"backtests-{request.param}")
    db_url = empty_database(request.param, request.config, folder)
    engine = make_engine(parse_db_url(db_url), create_sqlite_dir=True)
    upgrade(engine)
    engine.dispose()
    writer = open_store(db_url)
    reports: dict[int, dict[str, Any]] = {}
    try:
        for i, seed in enumerate((3, 4)):
            report = synthetic_report(seed, horizon_h=6 + 6 * i)
            run_id = record_backtest(
                writer,
                report,
                prices="../shared/data/prices",
                start_ts=START,
                end_ts=END,
                markets=["lending"],
                ran_at=RAN_AT + timedelta(hours=i),
            )
            reports[run_id] = report
    finally:
        writer.close()
    store = open_read_only(parse_db_url(db_url))
    settings = ApiSettings(port=free_port(), refresh_s=2)
    try:
        with serving_in_thread(create_app(store, settings), settings) as base:
            yield Served(base, db_url, list(reports), reports)
    finally:
        store.close()


def same_figures(ours: Any, truth: Any, where: str = "report") -> None:
    """Field for field: the same keys in the same order, floats equal, NaN as null."""
    if isinstance(truth, dict):
        assert isinstance(ours, dict) and list(ours) == list(truth), where
        for key, value in truth.items():
            same_figures(ours[key], value, f"{where}.{key}")
    elif isinstance(truth, list | tuple):
        assert isinstance(ours, list) and len(ours) == len(truth), where
        for i, (a, b) in enumerate(zip(ours, truth, strict=True)):
            same_figures(a, b, f"{where}[{i}]")
    elif isinstance(truth, float) and not math.isfinite(truth):
        assert ours is None, where
    else:
        assert ours == truth and type(ours) is type(truth), (where, ours, truth)


def test_the_runs_are_listed_newest_first_with_their_figures(served: Served) -> None:
    runs = served.json("/api/backtests")["runs"]
    assert [r["id"] for r in runs] == served.ids[::-1]
    assert [r["id"] for r in served.json("/api/backtests?limit=1")["runs"]] == served.ids[-1:]
    for run in runs:
        report = served.reports[run["id"]]
        assert run["models"] == list(MODELS) and list(run["summary"]) == list(MODELS)
        for name in MODELS:
            same_figures(
                run["summary"][name],
                {k: report["models"][name][k] for k in SUMMARY_FIGURES},
                f"summary.{name}",
            )
        assert (run["samples"], run["liquidations"]) == (
            report["samples"],
            report["liquidations"],
        )
        assert (run["horizon_h"], run["cadence_h"], run["seed"], run["borrowers"]) == (
            report["horizon_h"],
            report["cadence_h"],
            report["seed"],
            report["borrowers"],
        )
        assert run["window_start"] == "2022-06-12T00:00:00+00:00"
        assert run["window_end"] == "2022-06-22T00:00:00+00:00"
        assert run["prices"] == "../shared/data/prices" and run["markets"] == ["lending"]
        assert "report" not in run
    assert runs[0]["ran_at"] == (RAN_AT + timedelta(hours=1)).isoformat()


def test_one_run_reads_back_field_for_field(served: Served) -> None:
    for run_id, report in served.reports.items():
        body = served.json(f"/api/backtests/{run_id}")
        printed = {k: v for k, v in report.items() if not k.startswith("_")}
        same_figures(body["report"], printed)
        assert json.dumps(body["report"]) == json.dumps(json.loads(strict_json(printed)))
        for name, scores in body["report"]["models"].items():
            roc = scores["roc"]
            assert roc["fpr"][0] == roc["tpr"][0] == 0.0 and roc["fpr"][-1] == 1.0
            assert 10 < len(roc["fpr"]) <= 402
            area = float(np.trapezoid(roc["tpr"], roc["fpr"]))
            assert abs(area - scores["auc"]) < 0.005, (name, area, scores["auc"])
            rows = scores["reliability"]
            assert sum(r["n"] for r in rows) == report["samples"]
            assert all(r["observed_lo"] <= r["observed"] <= r["observed_hi"] for r in rows)


def test_unknown_and_malformed_ids(served: Served) -> None:
    missing = served.get(f"/api/backtests/{max(served.ids) + 1}")
    assert missing.status_code == 404
    assert missing.json() == {"error": f"no stored backtest with id {max(served.ids) + 1}"}
    for bad in ("abc", "0", str(2**63)):
        reply = served.get(f"/api/backtests/{bad}")
        assert reply.status_code == 422 and "run_id" in reply.json()["error"], bad
    for bad in ("abc", "0", "²", str(2**63), str(max(served.ids) + 1)):
        page = served.get(f"/backtests/{bad}")
        assert page.status_code == 404 and "no stored backtest" in page.text, bad
    paths = served.json("/openapi.json")["paths"]
    assert {"/api/backtests", "/api/backtests/{run_id}"} <= set(paths)


def test_with_a_token_the_backtests_need_it(served: Served) -> None:
    store = open_read_only(parse_db_url(served.db_url))
    try:
        settings = ApiSettings(port=free_port(), token="s3cret-token")
        with serving_in_thread(create_app(store, settings), settings) as base:
            for path in ("/api/backtests", f"/api/backtests/{served.ids[0]}", "/backtests"):
                assert requests.get(base + path, timeout=30).status_code == 401
                ok = requests.get(
                    base + path, headers={"Authorization": "Bearer s3cret-token"}, timeout=30
                )
                assert ok.status_code == 200, path
    finally:
        store.close()


def chart_title(browser: Any, element_id: str) -> str:
    """The title Plotly drew into the chart's SVG (not the layout we asked for)."""
    return str(
        browser.execute_script(
            "const t = document.querySelector(`#${arguments[0]} .gtitle`);"
            "return t ? t.textContent : '';",
            element_id,
        )
    )


@pytest.mark.slow
def test_the_dashboard_draws_the_reliability_diagram_and_the_roc_in_chromium(
    served: Served, tmp_path: Path
) -> None:
    from selenium.webdriver.support.ui import WebDriverWait

    browser = chromium()
    try:
        browser.get(served.base + "/")
        link = browser.find_element("css selector", "nav a[href='/backtests']")
        link.click()
        WebDriverWait(browser, 30).until(lambda b: b.current_url.endswith("/backtests"))
        rows = browser.find_elements("css selector", "#backtests-table tbody tr")
        assert len(rows) == 2 * len(MODELS)  # a row per model of each run
        first = browser.find_element("css selector", "#backtests-table a.backtest")
        newest = served.ids[-1]
        assert first.text == f"#{newest}"
        first.click()
        WebDriverWait(browser, 30).until(lambda b: b.current_url.endswith(f"/backtests/{newest}"))
        report = served.reports[newest]
        models = report["models"]

        bins = sum(len(models[m]["reliability"]) for m in MODELS)
        assert wait_for_chart(browser, "chart-reliability") == 2 + bins  # diagonal + bins
        data = browser.execute_script(
            "return document.getElementById('chart-reliability').data.map("
            "(t) => [t.name, t.x, t.y, t.error_y ? t.error_y.array : null,"
            " t.error_y ? t.error_y.arrayminus : null]);"
        )
        assert len(data) == 1 + len(MODELS)
        assert data[0][1:3] == [[0.0001, 1], [0.0001, 1]]  # the diagonal
        for (name, x, y, up, down), model in zip(data[1:], MODELS, strict=True):
            rel = models[model]["reliability"]
            assert name.startswith(model)
            assert x == [r["mean_forecast"] for r in rel]
            assert y == [r["observed"] for r in rel]
            assert up == pytest.approx([r["observed_hi"] - r["observed"] for r in rel])
            assert down == pytest.approx([r["observed"] - r["observed_lo"] for r in rel])
        drawn_bars = browser.execute_script(
            "return document.querySelectorAll('#chart-reliability g.errorbar').length;"
        )
        assert drawn_bars == bins

        assert wait_for_chart(browser, "chart-roc") == 2 + sum(
            len(models[m]["roc"]["tpr"]) for m in MODELS
        )
        title = chart_title(browser, "chart-roc")
        aucs = ", ".join(f"{m} {models[m]['auc']:.3f}" for m in MODELS)
        assert title == f"ROC: AUC {aucs}"
        assert browser.find_elements("css selector", "#chart-roc svg.main-svg")
        assert chart_points(browser, "chart-roc") > 0

        scores = browser.find_elements("css selector", "#scores-table tbody tr")
        assert [r.find_elements("tag name", "td")[0].text for r in scores] == list(MODELS)
        auc_cells = [r.find_elements("tag name", "td")[5].text for r in scores]
        assert auc_cells == [f"{models[m]['auc']:.3f}" for m in MODELS]
        cells = [
            [td.text for td in r.find_elements("tag name", "td")]
            for r in browser.find_elements("css selector", "#reliability-table tbody tr")
        ]
        first_bin = models[MODELS[-1]]["reliability"][0]
        assert cells[0][0] == f"{first_bin['lo']:g}–{first_bin['hi']:g}"
        assert cells[0][-1] == (
            f"{first_bin['mean_forecast']:.3f} / {first_bin['observed']:.3f} "
            f"[{first_bin['observed_lo']:.3f}, {first_bin['observed_hi']:.3f}] ({first_bin['n']})"
        )
        tiers = browser.find_elements("css selector", "#tiers-table tbody tr")
        assert len(tiers) == sum(len(models[m]["tiers"]) + 1 for m in MODELS)
        scripts = [s.get_attribute("src") for s in browser.find_elements("tag name", "script")]
        assert all(s.startswith(served.base) for s in scripts if s)  # nothing from another host
        browser.save_screenshot(str(tmp_path / "backtest.png"))

        browser.get(served.base + f"/backtests/{newest + 1}")
        assert "no stored backtest" in browser.find_element("id", "error").text
    finally:
        browser.quit()
