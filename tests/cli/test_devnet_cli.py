"""`onchain devnet --keep-running` as other programs use it: it prints the RPC URL and every
address as JSON, serves until interrupted, and the chain behind the URL is the real market."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

from eth_abi import decode

from onchain.devnet.chain import DevChain, calldata

ONCHAIN = str(Path(sys.executable).with_name("onchain"))


def test_keep_running_prints_url_and_addresses_and_serves_until_interrupted(tmp_path: Path) -> None:
    config = tmp_path / "devnet.toml"
    proc = subprocess.Popen(
        [ONCHAIN, "devnet", "--keep-running", "--write-config", str(config)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        text, info = "", None
        deadline = time.monotonic() + 120
        while info is None and time.monotonic() < deadline:
            line = proc.stdout.readline()
            assert line, proc.stderr.read() if proc.stderr else "devnet exited"
            text += line
            if line.startswith("}"):
                info = json.loads(text)
        assert info is not None
        assert info["rpc_url"].startswith("http://127.0.0.1:")
        chain = DevChain(info["rpc_url"])
        assert int(chain.rpc("eth_chainId"), 16) == info["chain_id"]
        pool = info["aave_v3"]["pool"]
        borrower = info["borrowers"][0]
        data = decode(
            ["uint256"] * 6, chain.call(pool, calldata("getUserAccountData(address)", borrower))
        )
        assert data[1] > 0  # the seeded borrower really has debt on the deployed Pool
        assert info["aave_v3"]["addresses_provider"] in config.read_text()
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=30)
    assert proc.returncode == 0
