"""Running the real `onchain` console script, and the one-clear-error contract every command keeps."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ONCHAIN = [str(Path(sys.executable).with_name("onchain"))]


def run(
    *args: str, env: dict[str, str] | None = None, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ONCHAIN + list(args), capture_output=True, text=True, timeout=timeout, env=env
    )


def assert_one_clear_error(result: subprocess.CompletedProcess[str], *words: str) -> None:
    """Exit code 2, nothing on stdout, exactly one line on stderr naming the problem."""
    assert result.returncode == 2, (result.returncode, result.stdout, result.stderr)
    assert result.stdout == ""
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    for word in words:
        assert word.lower() in lines[0].lower(), lines[0]
