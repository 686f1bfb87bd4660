"""`onchain init` writes a config for a real chain from the deployments we know, asking only for
the RPC variable's name; the file loads with the config loader every command uses."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from onchain.config import load_config
from onchain.deployments import KNOWN
from tests.helpers.cli_support import ONCHAIN, assert_one_clear_error, run


def test_init_writes_the_known_markets_of_the_chain_and_the_rpc_variable(tmp_path: Path) -> None:
    out = tmp_path / "base.toml"
    done = run("init", "--chain", "base", "--rpc-env", "MY_BASE_RPC", "--out", str(out))
    assert done.returncode == 0, done.stderr
    cfg, known = load_config(out), load_config(KNOWN)
    assert list(cfg.chains) == ["base"]
    assert cfg.chains["base"].rpc_url_env == "MY_BASE_RPC"
    assert cfg.chains["base"].chain_id == known.chains["base"].chain_id == 8453
    expected = {n: m for n, m in known.markets.items() if m.chain == "base"}
    assert set(cfg.markets) == set(expected) and len(expected) >= 2
    for name, market in expected.items():
        assert cfg.markets[name].address == market.address
        assert cfg.markets[name].start_block == market.start_block
        assert cfg.markets[name].protocol == market.protocol
    assert "MY_BASE_RPC" in done.stderr and "http" not in out.read_text()


def test_init_refuses_to_overwrite_without_force_and_names_unknown_chains(tmp_path: Path) -> None:
    out = tmp_path / "c.toml"
    out.write_text("# mine\n")
    assert_one_clear_error(run("init", "--rpc-env", "X_RPC", "--out", str(out)), "--force")
    assert out.read_text() == "# mine\n"
    assert run("init", "--rpc-env", "X_RPC", "--out", str(out), "--force").returncode == 0
    assert load_config(out).chains["ethereum"].rpc_url_env == "X_RPC"
    assert_one_clear_error(run("init", "--chain", "nosuch", "--out", str(out)), "arbitrum", "base")
    assert_one_clear_error(run("init", "--rpc-env", "not a name", "--out", str(tmp_path / "d")))
    assert not (tmp_path / "d").exists()


def test_init_at_a_terminal_asks_for_the_variable_name(tmp_path: Path) -> None:
    out = tmp_path / "asked.toml"
    primary, secondary = os.openpty()
    process = subprocess.Popen(
        [*ONCHAIN, "init", "--chain", "arbitrum", "--out", str(out)],
        stdin=secondary,
        stdout=secondary,
        stderr=subprocess.PIPE,
    )
    os.close(secondary)
    prompt = b""
    while b"RPC URL" not in prompt:
        prompt += os.read(primary, 1024)
    os.write(primary, b"ARB_URL_VAR\n")
    assert process.wait(timeout=60) == 0
    os.close(primary)
    assert b"ONCHAIN_RPC_ARBITRUM" in prompt  # the known name is offered as the default
    assert load_config(out).chains["arbitrum"].rpc_url_env == "ARB_URL_VAR"
