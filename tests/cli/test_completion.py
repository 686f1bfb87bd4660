"""Shell completion through the real console script: the script a shell installs, and the
answers it gets (commands, options, choices) from the same command tree users run."""

from __future__ import annotations

import os
import subprocess

from tests.helpers.cli_support import ONCHAIN


def _complete(words: str, index: int) -> list[str]:
    env = {**os.environ, "COMP_WORDS": words, "COMP_CWORD": str(index)}
    env["_ONCHAIN_COMPLETE"] = "complete_bash"
    done = subprocess.run(ONCHAIN, capture_output=True, text=True, env=env, timeout=60)
    assert done.returncode == 0, done.stderr
    return done.stdout.split()


def test_the_completion_script_and_its_answers() -> None:
    # the shell is detected from the parent process, as when a user types it in bash
    script = subprocess.run(
        ["bash", "-c", f"{ONCHAIN[0]} --show-completion"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert script.returncode == 0, script.stderr
    assert "_ONCHAIN_COMPLETE=complete_bash" in script.stdout and "complete " in script.stdout
    assert _complete("onchain sc", 1) == ["scan"]
    assert _complete("onchain d", 1) == ["demo", "devnet", "db"]
    assert _complete("onchain scan --js", 2) == ["--json"]
    assert _complete("onchain watch --log-format ", 3) == ["text", "json"]
    assert "downgrade" in _complete("onchain db ", 2)
