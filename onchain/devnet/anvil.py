"""Start and stop a local anvil node from the npm-installed binary, on 127.0.0.1 and a free port."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import requests

from onchain.errors import DevnetError

PROJECT_ROOT = Path(__file__).resolve().parents[2]
NODE_MODULES = Path(os.environ.get("ONCHAIN_NODE_MODULES", PROJECT_ROOT / "node_modules"))
GENESIS_TIMESTAMP = 1_735_689_600  # 2025-01-01T00:00:00Z: fixed so devnet builds are deterministic
DEVNET_CHAIN_ID = 31337


def anvil_binary() -> Path:
    """The anvil shipped in the npm package; the PATH is only a fallback for developers."""
    candidates = [
        NODE_MODULES / "@foundry-rs" / "anvil-linux-amd64" / "bin" / "anvil",
        NODE_MODULES / ".bin" / "anvil",
    ]
    for path in candidates:
        if path.exists():
            return path
    found = shutil.which("anvil")
    if found:
        return Path(found)
    raise DevnetError("anvil not found: run `make setup` (npm ci installs it into node_modules/)")


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Anvil:
    """A running anvil process; use as a context manager so it always stops."""

    port: int = field(default_factory=free_port)
    load_state: Path | None = None
    no_mining: bool = False
    extra_args: list[str] = field(default_factory=list)
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout_s: float = 30.0) -> Anvil:
        args = [
            str(anvil_binary()),
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--chain-id",
            str(DEVNET_CHAIN_ID),
            "--timestamp",
            str(GENESIS_TIMESTAMP),
            "--auto-impersonate",
            "--disable-code-size-limit",
            "--gas-limit",
            "1000000000",
            "--silent",
        ]
        if self.load_state is not None:
            args += ["--load-state", str(self.load_state)]
        if self.no_mining:
            args.append("--no-mining")
        args += self.extra_args
        self.process = subprocess.Popen(
            args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True
        )
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                err = (
                    self.process.stderr.read().decode(errors="replace")
                    if self.process.stderr
                    else ""
                )
                raise DevnetError(f"anvil exited at start: {err.strip()[:300]}")
            try:
                resp = requests.post(
                    self.url,
                    json={"jsonrpc": "2.0", "id": 1, "method": "eth_chainId", "params": []},
                    timeout=1,
                )
                if resp.ok:
                    return self
            except requests.RequestException:
                pass
            time.sleep(0.05)
        self.stop()
        raise DevnetError(f"anvil did not answer on 127.0.0.1:{self.port} within {timeout_s:.0f}s")

    def stop(self) -> None:
        if self.process is None:
            return
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
        if self.process.stderr:
            self.process.stderr.close()
        self.process = None

    def __enter__(self) -> Anvil:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
