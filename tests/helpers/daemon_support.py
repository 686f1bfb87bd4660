"""Shared by several test modules (moved out of test_daemon.py)."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ONCHAIN = [str(Path(sys.executable).with_name("onchain"))]


class Daemon:
    """`onchain run` in its own process; its log goes to a file the test prints on failure."""

    def __init__(self, config: Path) -> None:
        self.log = config.with_suffix(".log")
        with self.log.open("a") as log:
            self.process = subprocess.Popen(
                [*ONCHAIN, "run", "--config", str(config)],
                stdout=log,
                stderr=log,
                start_new_session=True,
            )

    @property
    def pid(self) -> int:
        return self.process.pid

    def kill9(self) -> None:
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=10)

    def stop(self) -> int:
        """SIGTERM, then the exit code of a graceful stop."""
        self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout=30)

    def ensure_dead(self) -> None:
        if self.process.poll() is None:
            self.kill9()


def wait_for(
    condition: Callable[[], Any], timeout_s: float, what: str, poll_s: float = 0.02
) -> Any:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(poll_s)
    raise AssertionError(f"timed out after {timeout_s}s waiting for {what}")


def upgrade_db(config: Path) -> None:
    done = subprocess.run(
        [*ONCHAIN, "db", "upgrade", "--config", str(config)], capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
