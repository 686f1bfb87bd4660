"""`[api]` settings read from a config file: the pages' read-ahead period (`read_ahead_s`, 0
turns it off) and its wrong values, each one clear error."""

from __future__ import annotations

from pathlib import Path

import pytest

from onchain.api.settings import DEFAULT_READ_AHEAD_S, api_settings
from onchain.errors import ConfigError


def _with(tmp_path: Path, lines: str) -> Path:
    path = tmp_path / "config.toml"
    path.write_text("[api]\n" + lines)
    return path


@pytest.mark.parametrize(
    ("lines", "want"),
    [("", DEFAULT_READ_AHEAD_S), ("read_ahead_s = 0\n", 0.0), ("read_ahead_s = 2.5\n", 2.5)],
)
def test_the_read_ahead_period(tmp_path: Path, lines: str, want: float) -> None:
    assert api_settings(_with(tmp_path, lines), "127.0.0.1", 8000).read_ahead_s == want


@pytest.mark.parametrize("value", ["-1", "false", "true", "'1'", "inf"])
def test_a_wrong_read_ahead_period_is_one_clear_error(tmp_path: Path, value: str) -> None:
    with pytest.raises(
        ConfigError, match="'read_ahead_s' must be a positive number of seconds or 0"
    ):
        api_settings(_with(tmp_path, f"read_ahead_s = {value}\n"), "127.0.0.1", 8000)
