"""`onchain backtest --store` end to end: the June 2022 crash window of the calibration test
(tests/unit/test_risk_calibration.py) run by the console script with `--reuse-replay` (the
replay is kept in .cache/backtest: the first run replays on the devnet, about a minute, later
ones score from the cache), stored in a SQLite store, and read back from `onchain serve`'s API
equal to what `--json` printed. A store that is missing or not asked for is one clear error
before the devnet starts."""

from __future__ import annotations

import json
from pathlib import Path

import requests

from onchain.api.app import create_app
from onchain.api.server import open_read_only, serving_in_thread
from onchain.api.settings import ApiSettings
from onchain.app.risk_io import shared_data_dir
from onchain.store.db import make_engine, parse_db_url, upgrade
from tests.helpers.cli_support import assert_one_clear_error, run
from tests.helpers.net import free_port

WINDOW = ["--start", "2022-06-12", "--end", "2022-06-14"]


def test_a_stored_run_reads_back_from_the_api_as_json_printed_it(tmp_path: Path) -> None:
    db_url = f"sqlite:///{tmp_path / 'store.sqlite'}"
    engine = make_engine(parse_db_url(db_url), create_sqlite_dir=True)
    upgrade(engine)
    engine.dispose()
    prices = str(shared_data_dir() / "prices")
    args = ["backtest", "--prices", prices, *WINDOW, "--reuse-replay", "--json", "--store"]
    result = run(*args, "--db", db_url, timeout=600)
    assert result.returncode == 0, result.stderr
    printed = json.loads(result.stdout)
    assert printed["samples"] > 1000 and printed["liquidations"] > 50
    assert "stored as backtest run 1 in" in result.stderr
    store = open_read_only(parse_db_url(db_url))
    settings = ApiSettings(port=free_port())
    try:
        with serving_in_thread(create_app(store, settings), settings) as base:
            listed = requests.get(base + "/api/backtests", timeout=30).json()["runs"]
            body = requests.get(base + "/api/backtests/1", timeout=30).json()
    finally:
        store.close()
    assert [r["id"] for r in listed] == [1]
    assert body["report"] == printed
    assert json.dumps(body["report"]) == json.dumps(printed)  # the same order, too
    assert body["prices"] == prices and body["markets"] == ["aave-v3", "aave-v3.6", "morpho-blue"]
    assert (body["window_start"], body["window_end"]) == (
        "2022-06-12T00:00:00+00:00",
        "2022-06-14T00:00:00+00:00",
    )
    assert (body["horizon_h"], body["cadence_h"], body["seed"], body["borrowers"]) == (6, 6, 7, 300)
    assert body["models"] == list(printed["models"])
    assert body["summary"]["onchain"]["auc"] == printed["models"]["onchain"]["auc"]


def test_a_missing_store_or_a_store_not_asked_for_is_one_clear_error(tmp_path: Path) -> None:
    prices = str(shared_data_dir() / "prices")
    missing = tmp_path / "none.sqlite"
    result = run("backtest", "--prices", prices, *WINDOW, "--store", "--db", f"sqlite:///{missing}")
    assert_one_clear_error(result, str(missing), "onchain db upgrade")
    assert not missing.exists()
    result = run("backtest", "--prices", prices, *WINDOW, "--db", f"sqlite:///{missing}")
    assert_one_clear_error(result, "--store")
