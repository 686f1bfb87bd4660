"""Replayed windows kept on disk, so a window is replayed on the devnet once and scored as often as
needed (models compared, parameters chosen): the replay is most of a backtest's time, and what it
yields (the contracts' health per hour, the books scored) does not depend on the models.

The key covers everything that changes a replay: the window's hours and closes, horizon,
cadence, markets, the devnet's own key (borrowers, seed, its sources and the npm lockfile) and
the code that reads and evaluates the positions and builds the kept books (the adapters, the
reader, the replay, the book, and what the caller passes as ``builder``). A file whose key differs
is never read."""

from __future__ import annotations

import gzip
import hashlib
import pickle
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from onchain.devnet.anvil import PROJECT_ROOT

CACHE_DIR = PROJECT_ROOT / ".cache" / "backtest"
_CODE = (
    PROJECT_ROOT / "onchain" / "protocols",
    PROJECT_ROOT / "onchain" / "backtest" / "replay.py",
    PROJECT_ROOT / "onchain" / "app" / "pipeline.py",
    PROJECT_ROOT / "onchain" / "risk" / "book.py",
)


def replay_key(
    times_s: bytes,
    closes: bytes,
    *,
    horizon_h: int,
    cadence_h: int,
    borrowers: int,
    seed: int,
    protocols: Sequence[str],
    builder: str = "",
) -> str:
    """The key of one replay (see module doc); ``builder``: the caller's own code and data that
    shape what is kept (its source, the stable symbols), hashed with the rest."""
    from onchain.devnet.cache import cache_key

    digest = hashlib.sha256(
        f"{horizon_h}/{cadence_h}/{','.join(protocols)}/{cache_key(borrowers, seed)}".encode()
    )
    digest.update(builder.encode())
    digest.update(times_s)
    digest.update(closes)
    for root in _CODE:
        paths = sorted(root.rglob("*.py")) if root.is_dir() else [root]
        for path in paths:
            digest.update(path.read_bytes())
    return digest.hexdigest()[:20]


def load(key: str, folder: Path = CACHE_DIR) -> Any | None:
    """The replay kept under ``key``, or None."""
    path = folder / f"{key}.pkl.gz"
    if not path.exists():
        return None
    with gzip.open(path, "rb") as fh:
        return pickle.load(fh)  # our own file, written by save() below


def save(key: str, window: Any, folder: Path = CACHE_DIR) -> Path:
    """Keep ``window`` under ``key`` (written aside, then renamed: never half a file)."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{key}.pkl.gz"
    tmp = path.with_suffix(".tmp")
    with gzip.open(tmp, "wb", compresslevel=3) as fh:
        pickle.dump(window, fh, protocol=pickle.HIGHEST_PROTOCOL)
    tmp.replace(path)
    return path
