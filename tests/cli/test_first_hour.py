"""What a new user meets in the first hour, through the real console script: Ctrl-C is exit 130
and one line, debug logs never carry the endpoint's key, wrong names list the right ones, bad
input is one line and exit 2 (never a traceback)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import threading
import time
from datetime import datetime
from pathlib import Path

import pytest
from alembic.script import ScriptDirectory

from onchain.devnet.build import DevnetInfo
from onchain.devnet.config_file import write_devnet_config
from onchain.store.db import alembic_config, head_revision
from tests.helpers.cli_support import ONCHAIN, assert_one_clear_error, run
from tests.helpers.rpc_proxy import rpc_proxy
from tests.helpers.store_db import admin, empty_database


def _interrupt_when_held(args: list[str], held: threading.Event) -> subprocess.CompletedProcess:
    proc = subprocess.Popen(
        ONCHAIN + args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        assert held.wait(60), "the command never sent the request the proxy holds"
        time.sleep(0.2)
        proc.send_signal(signal.SIGINT)
        stdout, stderr = proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
    return subprocess.CompletedProcess(args, proc.returncode, stdout, stderr)


def _is_call(body: bytes) -> bool:
    return b'"eth_call"' in body


@pytest.mark.parametrize("command", ["scan", "watch", "targets", "stress"])
def test_ctrl_c_with_a_request_in_flight_is_exit_130_and_one_line(
    devnet: DevnetInfo, tmp_path: Path, command: str
) -> None:
    config = tmp_path / "devnet.toml"
    write_devnet_config(config, devnet)
    with rpc_proxy(devnet.rpc_url, _is_call) as (url, held):
        args = {
            "scan": ["scan", "--market", "aave-v3-devnet", "--json"],
            "watch": ["watch", devnet.borrowers[0]],
            "targets": ["targets", "--json"],
            "stress": ["stress", "--drop", "ETH=-30%", "--json"],
        }[command]
        result = _interrupt_when_held([*args, "--config", str(config), "--rpc", url], held)
    assert result.returncode == 130, (result.returncode, result.stdout, result.stderr)
    assert result.stdout == ""
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert lines == ["interrupted"], result.stderr


SLOW_START = """
import sys, time
class SlowCli:
    def find_spec(self, name, path=None, target=None):
        if name == "onchain.cli.common":
            print("importing", file=sys.stderr, flush=True)
            time.sleep(5)
        return None
sys.meta_path.insert(0, SlowCli())
"""


def test_ctrl_c_during_start_up_is_exit_130_and_one_line(tmp_path: Path) -> None:
    """The CLI starts in a fraction of a second, too fast to hit by chance: a sitecustomize
    holds its import for 5 s (the state of a slow machine), and Ctrl-C lands inside it."""
    (tmp_path / "sitecustomize.py").write_text(SLOW_START)
    env = {**os.environ, "PYTHONPATH": str(tmp_path)}
    proc = subprocess.Popen(
        [*ONCHAIN, "scan", "--help"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    assert proc.stderr is not None
    assert proc.stderr.readline().strip() == "importing"  # inside the CLI's imports now
    proc.send_signal(signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=20)
    assert proc.returncode == 130, (proc.returncode, stdout, stderr)
    assert stderr.strip() == "interrupted", stderr
    assert "Traceback" not in stdout + stderr


def _config_via(devnet: DevnetInfo, tmp_path: Path, url: str) -> Path:
    """The devnet's config with its RPC URL replaced (e.g. by a keyed URL through the proxy)."""
    config = tmp_path / "devnet.toml"
    write_devnet_config(config, devnet)
    config.write_text(config.read_text().replace(f'"{devnet.rpc_url}"', f'"{url}"'))
    return config


def test_debug_logs_of_a_run_never_carry_the_endpoint_key(
    devnet: DevnetInfo, tmp_path: Path
) -> None:
    with rpc_proxy(devnet.rpc_url, lambda _body: False) as (url, _held):
        assert "SECRETKEY123" in url
        config = _config_via(devnet, tmp_path, url)
        upgraded = run("db", "upgrade", "--config", str(config))
        assert upgraded.returncode == 0, upgraded.stderr
        result = run("run", "--config", str(config), "--once", "--log-level", "debug")
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-3000:]
    # debug logging was on: urllib3's request lines are there, without their path
    requests_logged = [line for line in output.splitlines() if '"POST ' in line]
    assert len(requests_logged) > 10, output[-3000:]
    assert "SECRETKEY123" not in output
    assert "SECRETKEY" not in output


@pytest.fixture(scope="module")
def stored(devnet: DevnetInfo, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The devnet's config with a store filled by one `onchain run --once`."""
    config = tmp_path_factory.mktemp("stored") / "devnet.toml"
    write_devnet_config(config, devnet)
    assert run("db", "upgrade", "--config", str(config)).returncode == 0
    once = run("run", "--config", str(config), "--once")
    assert once.returncode == 0, once.stderr[-2000:]
    return config


def test_wrong_market_names_list_the_known_ones(stored: Path, devnet: DevnetInfo) -> None:
    for command in (["scan"], ["watch", devnet.borrowers[0]], ["targets"], ["stress"]):
        result = run(*command, "--config", str(stored), "--market", "nosuch")
        assert_one_clear_error(result, "nosuch", "aave-v3-devnet", "morpho-blue-devnet")
    for command in (["report"], ["history", devnet.borrowers[0]]):
        result = run(*command, "--config", str(stored), "--market", "nosuch")
        assert_one_clear_error(result, "nosuch", "aave-v3-devnet", "morpho-blue-devnet")


def test_report_and_history_select_a_morpho_book_by_its_market_id(
    stored: Path, devnet: DevnetInfo
) -> None:
    books = json.loads(run("report", "--config", str(stored), "--json").stdout)
    morpho = [b for b in books if b["protocol"] == "morpho-blue"]
    assert len(morpho) >= 2
    key = morpho[0]["market_key"]
    result = run(
        "report", "--config", str(stored), "--market", key.upper().replace("0X", "0x"), "--json"
    )
    assert result.returncode == 0, result.stderr
    assert [b["market_key"] for b in json.loads(result.stdout)] == [key]
    assert morpho[0]["positions"] > 0
    table = run("report", "--config", str(stored), "--market", key)
    assert table.returncode == 0 and "no snapshots" not in table.stderr
    unknown = "0x" + "ab" * 32
    assert_one_clear_error(
        run("report", "--config", str(stored), "--market", unknown), unknown, "morpho-blue-devnet"
    )
    # an account at risk in one Morpho market, selected by that market's id
    book = next(b for b in morpho if b["at_risk"])
    holder, book_key = book["at_risk"][0]["account"], book["market_key"]
    history = run("history", holder, "--config", str(stored), "--market", book_key, "--json")
    assert history.returncode == 0, history.stderr
    assert {h["market_key"] for h in json.loads(history.stdout)} == {book_key}


def test_history_of_an_account_never_stored_is_exit_2(stored: Path) -> None:
    stranger = "0x000000000000000000000000000000000000dEaD"
    for extra in ([], ["--json"]):
        result = run("history", stranger, "--config", str(stored), *extra)
        assert_one_clear_error(result, stranger, "no snapshots")


def test_db_downgrade_asks_first_and_takes_minus_one(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'store.sqlite'}"
    assert run("db", "upgrade", "--db", db).returncode == 0
    refused = subprocess.run(
        [*ONCHAIN, "db", "downgrade", "base", "--db", db],
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
        timeout=60,
    )
    assert_one_clear_error(refused, "--yes")
    head = head_revision()
    assert run("db", "current", "--db", db).stdout.split()[0] == head  # nothing changed
    stepped = run("db", "downgrade", "-1", "--db", db, "--yes")
    assert stepped.returncode == 0, stepped.stderr
    below = ScriptDirectory.from_config(alembic_config()).get_revision(head).down_revision
    assert f"{head} -> {below}" in stepped.stderr
    assert_one_clear_error(run("db", "downgrade", "nosuch", "--db", db, "--yes"), "nosuch")
    assert_one_clear_error(run("db", "downgrade", "--yess", "--db", db), "--yess")


def test_db_downgrade_of_a_read_only_database_is_one_line(
    request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    """A database that refuses writes (PostgreSQL's read-only default, as a replica would)."""
    url = empty_database("postgresql", request.config, tmp_path)
    assert run("db", "upgrade", "--db", url).returncode == 0
    name = url.rsplit("/", 1)[1]
    with admin() as conn:
        conn.execute(f'ALTER DATABASE "{name}" SET default_transaction_read_only = on')
    try:
        result = run("db", "downgrade", "base", "--db", url, "--yes")
    finally:
        with admin() as conn:
            conn.execute(f'ALTER DATABASE "{name}" RESET default_transaction_read_only')
    assert_one_clear_error(result, "read-only")
    assert "Traceback" not in result.stderr


def test_devnet_commands_refuse_bad_input_in_one_line(devnet: DevnetInfo, tmp_path: Path) -> None:
    for price in ("WETH=-5", "WETH=0", "WETH=nan", "WETH=abc"):
        assert_one_clear_error(run("devnet", "set-price", "--rpc", devnet.rpc_url, price), "WETH")
    nobody = "http://127.0.0.1:1/v3/SECRETKEY123"
    for args in (["set-price", "WETH=2500"], ["mine", "2"]):
        result = run("devnet", *args, "--rpc", nobody)
        assert_one_clear_error(result, "127.0.0.1:1")
        assert "SECRETKEY123" not in result.stderr
    assert_one_clear_error(run("devnet", "mine", "--rpc", devnet.rpc_url, "--", "-3"), "-3")
    for target in (tmp_path / "missing" / "x.toml", tmp_path):
        assert_one_clear_error(run("devnet", "--write-config", str(target)), str(target))


def test_run_once_with_the_rpc_down_is_exit_2_without_the_key(
    devnet: DevnetInfo, tmp_path: Path
) -> None:
    config = _config_via(devnet, tmp_path, "http://127.0.0.1:1/v3/SECRETKEY123")
    assert run("db", "upgrade", "--config", str(config)).returncode == 0
    result = run("run", "--config", str(config), "--once")
    assert_one_clear_error(result, "127.0.0.1:1")
    assert "SECRETKEY123" not in result.stderr


def test_one_daemon_per_database_and_a_killed_one_shows_as_crashed(
    devnet: DevnetInfo, tmp_path: Path
) -> None:
    with rpc_proxy(devnet.rpc_url, _is_call) as (url, held):
        config = _config_via(devnet, tmp_path, url)
        assert run("db", "upgrade", "--config", str(config)).returncode == 0
        daemon = subprocess.Popen(
            [*ONCHAIN, "run", "--config", str(config)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            assert held.wait(60), "the daemon never read the chain"
            second = run("run", "--config", str(config), "--once")
            assert_one_clear_error(second, "another `onchain run`")
            during = json.loads(run("status", "--config", str(config), "--json").stdout)
            assert "running" in {j["last"]["outcome"] for j in during["jobs"]}
        finally:
            daemon.kill()
            daemon.communicate(timeout=20)
        after = json.loads(run("status", "--config", str(config), "--json").stdout)
        outcomes = {r["outcome"] for r in after["recent_runs"]}
        assert "running" not in outcomes and "crashed" in outcomes, after["recent_runs"]
        table = run("status", "--config", str(config))
        assert "crashed" in table.stdout


def test_the_daemon_backs_off_while_the_rpc_is_down(devnet: DevnetInfo, tmp_path: Path) -> None:
    config = _config_via(devnet, tmp_path, "http://127.0.0.1:1/v3/SECRETKEY123")
    assert run("db", "upgrade", "--config", str(config)).returncode == 0
    daemon = subprocess.Popen(
        [*ONCHAIN, "run", "--config", str(config), "--job", "refresh"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(daemon.stderr or ()), daemon=True)
    reader.start()
    try:  # until the second failure, however late the daemon starts on a busy machine
        deadline = time.monotonic() + 60
        while not any("next try in 8s" in line for line in lines):
            assert time.monotonic() < deadline and daemon.poll() is None, "".join(lines)
            time.sleep(0.1)
    finally:
        daemon.send_signal(signal.SIGINT)
        daemon.wait(timeout=30)
        reader.join(timeout=30)
    stderr = "".join(lines)
    assert daemon.returncode == 0, stderr
    failed_runs = [line for line in lines if "failed run(s) in a row" in line]
    assert len(failed_runs) == 2, stderr  # refresh runs every 2 s: the backoff made it wait
    assert "next try in 4s" in failed_runs[0] and "next try in 8s" in failed_runs[1], stderr
    at = [datetime.strptime(line[:23], "%Y-%m-%d %H:%M:%S,%f") for line in failed_runs]
    assert (at[1] - at[0]).total_seconds() >= 3, stderr  # not the 2 s interval
    assert "SECRETKEY123" not in stderr
    status = run("status", "--config", str(config), "--json")
    assert status.returncode == 0 and "SECRETKEY123" not in status.stdout
    recorded = json.loads(status.stdout)["recent_runs"]
    assert [r["outcome"] for r in recorded] == ["error"] * len(failed_runs)
    assert all("http://127.0.0.1:1 did not" in r["error"] for r in recorded)


def test_risk_tiers_of_the_config_are_a_health_factor_floor_in_scan_and_watch(
    devnet: DevnetInfo, tmp_path: Path
) -> None:
    config = tmp_path / "devnet.toml"
    write_devnet_config(config, devnet)
    plain = json.loads(
        run("scan", "--config", str(config), "--market", "aave-v3-devnet", "--json").stdout
    )
    config.write_text(
        config.read_text() + "\n[risk.tiers]\ncritical = 1.05\nhigh = 1.10\nwatch = 5.0\n"
    )
    result = run("scan", "--config", str(config), "--market", "aave-v3-devnet", "--json")
    assert result.returncode == 0, result.stderr
    rows = json.loads(result.stdout)
    wad = 10**18
    with_debt = [r for r in rows if r["health_factor"] is not None and not r["liquidatable"]]
    assert len(with_debt) > 100
    for row in with_debt:
        hf = int(row["health_factor"])
        if hf < 5 * wad:
            assert row["tier"] != "SAFE", row
        if hf < 105 * wad // 100:
            assert row["tier"] in ("PENDING", "CRITICAL"), row
    before = {r["account"]: r["tier"] for r in plain}
    raised = [r for r in with_debt if before[r["account"]] == "SAFE" and r["tier"] != "SAFE"]
    assert raised and all(r["reasons"][0].startswith("HF_BELOW_") for r in raised)
    near = min(with_debt, key=lambda r: int(r["health_factor"]))
    watched = run("watch", near["account"], "--config", str(config))
    assert watched.returncode == 0, watched.stderr
    assert "SAFE" not in watched.stdout
    assert "P(liq.) in " in watched.stdout and "move to liq." in watched.stdout
    assert near["account"] in watched.stdout  # the whole address, never cut


def test_health_factors_are_truncated_never_rounded_up_across_1() -> None:
    from onchain.output import health_text

    assert health_text(999_995 * 10**12) == "0.9999"
    assert health_text(10**18) == "1.0000"
    assert health_text(1_234_567_890_123_456_789) == "1.2345"


def test_targets_warn_when_the_dex_oracle_gap_makes_the_profit(
    devnet: DevnetInfo, tmp_path: Path
) -> None:
    """The oracle moves, the DEX pools do not: the seized WETH sells above its oracle value."""
    config = tmp_path / "devnet.toml"
    write_devnet_config(config, devnet)
    moved = run("devnet", "set-price", "--rpc", devnet.rpc_url, "WETH=2700")
    assert moved.returncode == 0, moved.stderr
    try:
        result = run("targets", "--config", str(config), "--json")
    finally:
        run("devnet", "set-price", "--rpc", devnet.rpc_url, "WETH=3000")
    assert result.returncode == 0, result.stderr
    rows = json.loads(result.stdout)
    gapped = [r for r in rows if r["profit_from_oracle_gap"]]
    assert gapped, [(r["dex_oracle_gap_base"], r["bonus"]) for r in rows[:5]]
    assert f"warning: {len(gapped)} target(s) earn more from the DEX" in result.stderr
    for row in gapped:
        assert row["profitable"] and row["dex_oracle_gap_base"] > 0


def test_scan_csv_carries_the_risk_columns_and_true_false(devnet: DevnetInfo) -> None:
    args = ["scan", "--rpc", devnet.rpc_url, "--market", devnet.aave.addresses_provider]
    result = run(*args, "--csv", "--horizon", "1d")
    assert result.returncode == 0, result.stderr
    import csv

    rows = list(csv.DictReader(result.stdout.splitlines()))
    assert len(rows) == 300
    assert {r["liquidatable"] for r in rows} <= {"true", "false"}
    assert {r["tier"] for r in rows} <= {
        "LIQUIDATABLE",
        "PENDING",
        "CRITICAL",
        "HIGH",
        "WATCH",
        "SAFE",
    }
    assert all(0 <= float(r["liquidation_probability"]) <= 1 for r in rows)
    assert {r["horizon_s"] for r in rows} == {"86400.0"}
    assert {r["base_currency_decimals"] for r in rows} == {"8"}
    assert_one_clear_error(run(*args, "--json", "--csv"), "--json", "--csv")
    assert_one_clear_error(run(*args, "--limit", "-3"), "--limit")


def test_small_surprises_are_gone(devnet: DevnetInfo, tmp_path: Path) -> None:
    config = tmp_path / "devnet.toml"
    write_devnet_config(config, devnet)
    text = config.read_text()
    typo = tmp_path / "typo.toml"
    typo.write_text(text.replace("block_time_s = 12", "block_time = 12"))
    assert_one_clear_error(run("scan", "--config", str(typo)), "block_time", "did you mean")
    typo.write_text(text.replace("address = ", "adress = ", 1))
    assert_one_clear_error(run("scan", "--config", str(typo)), "missing 'address'", "adress")
    # a mixed-case address is a checksum: a wrong one is a mistyped address
    wallet = devnet.borrowers[0]
    letter = next(i for i, c in enumerate(wallet) if i > 1 and c.isalpha())
    wrong = wallet[:letter] + wallet[letter].swapcase() + wallet[letter + 1 :]
    assert_one_clear_error(run("watch", wrong, "--config", str(config)), "checksum")
    # the same wallet twice (any case) is one wallet
    twice = run("watch", wallet, wallet.lower(), "--config", str(config), "--json", "--no-risk")
    assert twice.returncode == 0, twice.stderr
    rows = json.loads(twice.stdout)
    assert len(rows) == len({(r["market"], r["account"]) for r in rows}) >= 1
    # a market is shown by its config name, not only its address
    table = run("scan", "--config", str(config), "--market", "aave-v3-devnet", "--no-risk")
    assert table.returncode == 0 and "aave-v3-devnet (market 0x" in table.stdout, table.stderr
    # `onchain` alone: the help, and no empty error line
    alone = run()
    assert "Usage" in alone.stdout and "error" not in alone.stderr.lower()
    # NO_COLOR drops every style (bold too), even where colour is forced
    env = {**os.environ, "FORCE_COLOR": "1", "COLUMNS": "200"}
    styled = run("watch", wallet, "--config", str(config), "--no-risk", env=env)
    plain = run("watch", wallet, "--config", str(config), "--no-risk", env={**env, "NO_COLOR": "1"})
    assert "\x1b[" in styled.stdout and "\x1b[" not in plain.stdout + plain.stderr


def test_a_bad_price_history_row_is_named_by_its_line(devnet: DevnetInfo, tmp_path: Path) -> None:
    history = tmp_path / "prices.csv"
    history.write_text("timestamp,asset,price\n1,ETH,3000\n2,ETH,abc\n")
    args = ["scan", "--rpc", devnet.rpc_url, "--market", devnet.aave.addresses_provider]
    result = run(*args, "--price-history", str(history))
    assert_one_clear_error(result, "line 3", "abc")
    history.write_text("timestamp,asset,price\n1,ETH,3000\n2,ETH,-4\n")
    assert_one_clear_error(run(*args, "--price-history", str(history)), "line 3", "not positive")


def _read_line(proc: subprocess.Popen, timeout: float) -> str:
    """The next stdout line of a running command, or a failure after `timeout` seconds."""
    box: list[str] = []
    reader = threading.Thread(target=lambda: box.append(proc.stdout.readline()), daemon=True)
    reader.start()
    reader.join(timeout)
    assert box and box[0], f"no output within {timeout}s"
    return box[0]


def test_watch_follow_fail_on_exits_4_when_the_price_moves(
    devnet: DevnetInfo, tmp_path: Path
) -> None:
    config = tmp_path / "devnet.toml"
    write_devnet_config(config, devnet)
    rows = json.loads(
        run(
            "scan", "--config", str(config), "--market", "aave-v3-devnet", "--json", "--no-risk"
        ).stdout
    )

    def weth_liquidation_price(row: dict) -> int | None:
        weth = [a for a in row["assets"] if a["symbol"] == "WETH" and int(a["collateral_raw"])]
        debt_in_weth = any(a["symbol"] == "WETH" and int(a["debt_raw"]) for a in row["assets"])
        if len(weth) != 1 or debt_in_weth or weth[0]["liquidation_price_base"] is None:
            return None
        return int(weth[0]["liquidation_price_base"])

    near = [r for r in rows if not r["liquidatable"] and weth_liquidation_price(r)]
    target = max(near, key=lambda r: weth_liquidation_price(r))  # the first to go as ETH falls
    wallet, flip = target["account"], weth_liquidation_price(target)
    safe = run("watch", wallet, "--config", str(config), "--no-risk", "--fail-on", "LIQUIDATABLE")
    assert safe.returncode == 0, safe.stderr
    flagged = run("watch", wallet, "--config", str(config), "--no-risk", "--fail-on", "SAFE")
    assert flagged.returncode == 2 and "--fail-on" in flagged.stderr

    lines_file = tmp_path / "wallets.txt"
    lines_file.write_text(f"# the wallet to follow\n{wallet.lower()}\n\n")
    proc = subprocess.Popen(
        [
            *ONCHAIN,
            "watch",
            "--wallets-from",
            str(lines_file),
            "--config",
            str(config),
            "--no-risk",
            "--json",
            "--follow",
            "--interval",
            "1",
            "--fail-on",
            "LIQUIDATABLE",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        first = json.loads(_read_line(proc, 60))
        assert [r["liquidatable"] for r in first] == [False] * len(first) and first
        second = json.loads(_read_line(proc, 30))  # it keeps watching
        assert second[0]["account"] == wallet
        below = (flip - 10**8) / 10**8  # one dollar under the flip price: liquidatable
        moved = run("devnet", "set-price", "--rpc", devnet.rpc_url, f"WETH={below}")
        assert moved.returncode == 0, moved.stderr
        _, stderr = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
        run("devnet", "set-price", "--rpc", devnet.rpc_url, "WETH=3000")
    assert proc.returncode == 4, stderr
    assert "at or worse than LIQUIDATABLE" in stderr
