"""CSV for every tabular output, through the console script: the same items as the JSON, a
header row, booleans as true/false; --json with --csv is one clear error (exit 2)."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest

from onchain.devnet.build import DevnetInfo
from onchain.devnet.config_file import write_devnet_config
from tests.helpers.cli_support import assert_one_clear_error, run

pytestmark = pytest.mark.devnet


@pytest.fixture(scope="module")
def stored(devnet: DevnetInfo, tmp_path_factory: pytest.TempPathFactory) -> Path:
    config = tmp_path_factory.mktemp("csv") / "devnet.toml"
    write_devnet_config(config, devnet)
    assert run("db", "upgrade", "--config", str(config)).returncode == 0
    once = run("run", "--config", str(config), "--once")
    assert once.returncode == 0, once.stderr[-2000:]
    return config


def _both(*args: str) -> tuple[object, list[dict[str, str]], list[str]]:
    as_json, as_csv = run(*args, "--json"), run(*args, "--csv")
    assert as_json.returncode == 0 and as_csv.returncode == 0, as_json.stderr + as_csv.stderr
    reader = csv.DictReader(io.StringIO(as_csv.stdout))
    rows = list(reader)
    assert_one_clear_error(run(*args, "--json", "--csv"), "--json or --csv")
    return json.loads(as_json.stdout), rows, list(reader.fieldnames or [])


def test_store_commands_write_csv(stored: Path) -> None:
    from onchain.cli.history import CSV_FIELDS as HISTORY
    from onchain.cli.report import CSV_FIELDS as REPORT
    from onchain.cli.status import RUN_FIELDS

    books, rows, header = _both("report", "--config", str(stored), "--limit", "0")
    assert header == list(REPORT)
    at_risk = [(b["market"], a["account"]) for b in books for a in b["at_risk"]]  # type: ignore[union-attr,index]
    assert at_risk and [(r["market"], r["account"]) for r in rows] == at_risk
    assert {r["liquidatable"] for r in rows} <= {"true", "false"}
    account = rows[0]["account"]
    history, points, header = _both("history", account, "--config", str(stored))
    assert header == list(HISTORY)
    assert len(points) == sum(len(h["points"]) for h in history)  # type: ignore[union-attr,index]
    assert {p["account"] for p in points} == {account}
    status, runs, header = _both("status", "--config", str(stored))
    assert header == list(RUN_FIELDS)
    assert [int(r["id"]) for r in runs] == [r["id"] for r in status["recent_runs"]]  # type: ignore[index]
    alerts, alert_rows, _header = _both("alerts", "list", "--config", str(stored))
    assert len(alert_rows) == len(alerts)  # type: ignore[arg-type]


def test_chain_commands_write_csv(stored: Path, devnet: DevnetInfo) -> None:
    targets, rows, header = _both("targets", "--config", str(stored), "--no-pending")
    assert "net_profit_base" in header and "profitable" in header
    assert [r["account"] for r in rows] == [t["account"] for t in targets]  # type: ignore[union-attr,index]
    report, rows, header = _both("stress", "--config", str(stored), "--drop", "WETH=-30%")
    assert header[:3] == ["scenario", "event", "moves"]
    expected = [m["market"] for s in report["scenarios"] for m in s["by_market"]]  # type: ignore[index]
    assert rows and [r["market"] for r in rows] == expected
    wallets = devnet.borrowers[:3]
    watched, rows, header = _both("watch", *wallets, "--config", str(stored), "--no-risk")
    assert {"chain", "market_name", "health_factor", "tier"} <= set(header)
    assert [r["account"] for r in rows] == [w["account"] for w in watched]  # type: ignore[union-attr,index]
    assert {r["chain"] for r in rows} == {"devnet"}
