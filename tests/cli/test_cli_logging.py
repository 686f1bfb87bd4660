"""-v/-q, --log-format json and --log-file on the real console script: each does what it says on
every command, and the endpoint's key reaches no log line, in either format, on stderr or in
the file."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from onchain.devnet.build import DevnetInfo
from onchain.devnet.config_file import write_devnet_config
from tests.helpers.cli_support import assert_one_clear_error, run
from tests.helpers.rpc_proxy import rpc_proxy


def _json_lines(path: Path) -> list[dict[str, object]]:
    lines = path.read_text().splitlines()
    assert lines, "the log file is empty"
    return [json.loads(line) for line in lines]  # every line one JSON object


@pytest.mark.devnet
def test_scan_vv_logs_each_request_as_json_lines_in_the_file_without_the_key(
    devnet: DevnetInfo, tmp_path: Path
) -> None:
    log = tmp_path / "scan.log"
    with rpc_proxy(devnet.rpc_url, lambda _body: False) as (url, _held):
        result = run(
            "scan", "--rpc", url, "--market", devnet.aave.addresses_provider, "--json",
            "--no-risk", "-vv", "--log-format", "json", "--log-file", str(log),
        )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert len(json.loads(result.stdout)) == 300  # the data is untouched by the logging
    records = _json_lines(log)
    assert all({"time", "level", "logger", "message"} <= r.keys() for r in records)
    requests = [r for r in records if r["logger"] == "urllib3.connectionpool" and "POST" in str(r)]
    assert len(requests) >= 3, records[:5]
    assert any("serves chain id" in str(r["message"]) for r in records)  # -v's own lines
    assert "SECRETKEY" not in log.read_text() + result.stderr
    assert "urllib3" not in result.stderr  # the log went to the file, not to stderr


@pytest.mark.devnet
def test_run_debug_log_in_text_and_json_never_carries_the_key(
    devnet: DevnetInfo, tmp_path: Path
) -> None:
    config = tmp_path / "devnet.toml"
    write_devnet_config(config, devnet)
    with rpc_proxy(devnet.rpc_url, lambda _body: False) as (url, _held):
        config.write_text(config.read_text().replace(f'"{devnet.rpc_url}"', f'"{url}"'))
        assert run("db", "upgrade", "--config", str(config)).returncode == 0
        as_json = run(
            "run", "--config", str(config), "--once", "--job", "discover", "-v",
            "--log-format", "json", "--log-file", str(tmp_path / "run.jsonl"),
        )  # fmt: skip
        as_text = run("run", "--config", str(config), "--once", "--job", "discover", "-v")
    assert as_json.returncode == 0 and as_text.returncode == 0, as_json.stderr + as_text.stderr
    records = _json_lines(tmp_path / "run.jsonl")
    assert sum("POST" in str(r["message"]) for r in records) >= 3  # -v on run: debug
    assert any(r["logger"].startswith("onchain.jobs") for r in records)  # type: ignore[union-attr]
    assert sum('"POST ' in line for line in as_text.stderr.splitlines()) >= 3
    for text in ((tmp_path / "run.jsonl").read_text(), as_json.stderr, as_text.stderr):
        assert "SECRETKEY" not in text


def test_quiet_keeps_errors_and_verbose_with_quiet_is_refused(tmp_path: Path) -> None:
    config = tmp_path / "c.toml"
    # a bad input under -q is still one line and exit 2, whether -q comes before or after
    for args in (["-q", "scan"], ["scan", "-q"]):
        result = run(*args, "--config", str(config), "--market", "x")
        assert_one_clear_error(result, "config file not found")
    assert_one_clear_error(run("scan", "-v", "-q", "--market", "x"), "-v or -q")
    assert_one_clear_error(
        run("scan", "--log-file", str(tmp_path / "no" / "such" / "dir.log"), "--market", "x"),
        "--log-file",
    )


@pytest.mark.devnet
def test_quiet_drops_the_notes_a_scan_prints_on_stderr(devnet: DevnetInfo) -> None:
    args = ["scan", "--rpc", devnet.rpc_url, "--market", devnet.aave.addresses_provider]
    loud, quiet = run(*args), run(*args, "-q")
    assert loud.returncode == quiet.returncode == 0, loud.stderr + quiet.stderr
    assert loud.stderr.strip()  # the risk inputs it used are noted on stderr...
    assert quiet.stderr == ""  # ...and -q leaves only errors
    assert quiet.stdout.splitlines()[-1] == loud.stdout.splitlines()[-1]  # same table


def test_every_command_takes_the_logging_options_and_flags_show_no_type() -> None:
    from onchain.cli import command

    def walk(cmd: object, path: str) -> list[tuple[str, object]]:
        found = [(path, cmd)]
        for name, sub in getattr(cmd, "commands", {}).items():
            found += walk(sub, f"{path} {name}")
        return found

    commands = walk(command(), "onchain")
    assert len(commands) > 20
    for path, cmd in commands:
        names = {o for p in cmd.params for o in p.opts}  # type: ignore[attr-defined]
        assert {"-v", "-q", "--log-format", "--log-file"} <= names, path
    scan_help = run("scan", "--help").stdout
    assert "--json " in scan_help and "<bool>" not in scan_help and "-v, --verbose" in scan_help
