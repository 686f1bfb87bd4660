"""Where built devnets are cached and under which key; a room of its own so the builder and the
protocol deployers that read the cache (Morpho's addresses) import it without importing each
other."""

from __future__ import annotations

import hashlib
from pathlib import Path

from onchain.devnet.anvil import PROJECT_ROOT

CACHE_DIR = PROJECT_ROOT / ".cache" / "devnet"


def cache_key(n_borrowers: int, seed: int, kind: str = "") -> str:
    """Everything that changes the chain: borrowers, seed, the npm lockfile, the devnet sources;
    `kind` names a different build of the same size ("aave-only": the bench's large devnet)."""
    digest = hashlib.sha256(f"{n_borrowers}/{seed}{'/' + kind if kind else ''}".encode())
    lock = PROJECT_ROOT / "package-lock.json"
    if lock.exists():
        digest.update(lock.read_bytes())
    for path in sorted((Path(__file__).resolve().parent).rglob("*")):
        if path.suffix in {".py", ".sol", ".js"}:
            digest.update(path.read_bytes())
    return digest.hexdigest()[:16]
