"""The replay cache of `onchain backtest --reuse-replay`: a replay is read back only under the key
of the same window, horizon, cadence, book and markets, and a file is never half written."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from onchain.backtest import cache

BASE = {
    "horizon_h": 6,
    "cadence_h": 6,
    "borrowers": 300,
    "seed": 7,
    "protocols": ("aave-v3", "morpho-blue"),
}


def _key(times: np.ndarray, closes: np.ndarray, **change: object) -> str:
    args = {**BASE, **change}
    return cache.replay_key(times.tobytes(), closes.tobytes(), **args)  # type: ignore[arg-type]


def test_every_input_of_a_replay_changes_its_key() -> None:
    times = np.arange(10, dtype=np.int64) * 3600
    closes = np.linspace(1.0, 2.0, 20).reshape(10, 2)
    base = _key(times, closes)
    assert base == _key(times, closes.copy())
    bumped = closes.copy()
    bumped[3, 1] *= 1.0001
    others = [
        _key(times + 3600, closes),
        _key(times, bumped),
        _key(times, closes, horizon_h=12),
        _key(times, closes, cadence_h=3),
        _key(times, closes, borrowers=301),
        _key(times, closes, seed=8),
        _key(times, closes, protocols=("aave-v3",)),
    ]
    assert base not in others and len(set(others)) == len(others)


def test_saved_replay_reads_back_under_its_key_only(tmp_path: Path) -> None:
    health = np.array([[1.5, np.inf]])
    window = {"health": health, "rows": [0, 6]}
    path = cache.save("k1", window, tmp_path)
    assert path.exists() and not list(tmp_path.glob("*.tmp"))
    back = cache.load("k1", tmp_path)
    assert back is not None and back["rows"] == [0, 6]
    assert np.array_equal(back["health"], health)
    assert cache.load("k2", tmp_path) is None
