"""The CLI starts light: importing it (what `onchain --help` does) loads none of the heavy
libraries; each command imports what it needs inside its function."""

from __future__ import annotations

import json
import subprocess
import sys

from tests.helpers.cli_support import run

HEAVY = (
    "numpy",
    "scipy",
    "sqlalchemy",
    "web3",
    "fastapi",
    "eth_abi",
    "onchain.app",
    "onchain.risk",
)


def test_importing_the_cli_loads_no_heavy_library() -> None:
    probe = (
        "import onchain.cli, sys, json; "
        "print(json.dumps(sorted({m.split('.')[0] if not m.startswith('onchain.') "
        "else '.'.join(m.split('.')[:2]) for m in sys.modules})))"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, check=True
    )
    loaded = set(json.loads(done.stdout))
    assert "typer" in loaded and "onchain.cli" in loaded  # the probe saw the CLI load
    assert not loaded & set(HEAVY), sorted(loaded & set(HEAVY))


def test_help_lists_every_command_and_runs_without_them() -> None:
    done = run("--help")
    assert done.returncode == 0, done.stderr
    for command in ("scan", "watch", "targets", "stress", "init", "db", "run", "report"):
        assert f"  {command} " in done.stdout
