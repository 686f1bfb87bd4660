"""Price-history loaders for the risk module (file I/O lives here, never in ``onchain.risk``).

Two layouts:

* long CSV ``timestamp,asset,price`` (one row per observation, any assets, unix seconds): what the
  store exports and what users bring: :func:`load_long_price_csv`;
* the OHLC candle files of ``shared/data/prices`` (``timestamp,open,high,low,close,volume[,source]``,
  unix seconds = candle open time, oldest first): :func:`load_ohlc_csv`. Rows before
  ``2018-01-01`` are dropped by default: the shared data README says the first weeks after listing
  are not representative, and the BTC file's first row (2017-08-17 04:00, open/high 16199.91) is a
  bad tick.

:func:`align_closes` joins several series on common timestamps into the (k, m) matrix that
``onchain.risk.volatility`` takes.
"""

from __future__ import annotations

import csv
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

# 2018-01-01 00:00 UTC: the shared data README says "don't use anything before 2018".
DEFAULT_START_TS = 1_514_764_800


@dataclass(frozen=True)
class OhlcHistory:
    """Hourly (or any fixed-step) candles, oldest first; ``timestamp_s`` is the candle open time."""

    timestamp_s: npt.NDArray[np.int64]
    open: npt.NDArray[np.float64]
    high: npt.NDArray[np.float64]
    low: npt.NDArray[np.float64]
    close: npt.NDArray[np.float64]

    def __len__(self) -> int:
        return int(self.timestamp_s.shape[0])

    def between(self, start_ts: int | None = None, end_ts: int | None = None) -> OhlcHistory:
        keep = np.ones(len(self), dtype=bool)
        if start_ts is not None:
            keep &= self.timestamp_s >= start_ts
        if end_ts is not None:
            keep &= self.timestamp_s < end_ts
        return OhlcHistory(
            self.timestamp_s[keep],
            self.open[keep],
            self.high[keep],
            self.low[keep],
            self.close[keep],
        )


def shared_data_dir() -> Path:
    """``$ONCHAIN_SHARED_DATA``, else the nearest ``shared/data`` above the checkout.

    CI lays ``shared/`` beside the repository; a git worktree sits a level or two deeper, so the
    folders above are searched outward rather than one fixed parent (no env var needed).
    """
    env = os.environ.get("ONCHAIN_SHARED_DATA")
    if env:
        return Path(env)
    here = Path(__file__).resolve()
    for parent in here.parents[1:]:
        candidate = parent / "shared" / "data"
        if candidate.is_dir():
            return candidate
    return here.parents[2] / "shared" / "data"


def load_ohlc_csv(
    path: str | os.PathLike[str], start_ts: int | None = DEFAULT_START_TS
) -> OhlcHistory:
    """Read a ``shared/data/prices/*_1h.csv`` file; drop rows before ``start_ts``; sort; dedupe."""
    raw = np.loadtxt(path, delimiter=",", skiprows=1, usecols=(0, 1, 2, 3, 4), dtype=np.float64)
    raw = raw.reshape(-1, 5)
    ts = raw[:, 0].astype(np.int64)
    order = np.argsort(ts, kind="stable")
    raw, ts = raw[order], ts[order]
    keep = np.ones(ts.shape[0], dtype=bool)
    keep[1:] = ts[1:] != ts[:-1]  # duplicates: keep the first
    if start_ts is not None:
        keep &= ts >= start_ts
    bad = ~np.all(np.isfinite(raw[:, 1:5]) & (raw[:, 1:5] > 0.0), axis=1)
    keep &= ~bad
    raw, ts = raw[keep], ts[keep]
    return OhlcHistory(ts, raw[:, 1].copy(), raw[:, 2].copy(), raw[:, 3].copy(), raw[:, 4].copy())


def load_long_price_csv(
    path: str | os.PathLike[str],
) -> dict[str, tuple[npt.NDArray[np.int64], npt.NDArray[np.float64]]]:
    """Read ``timestamp,asset,price`` rows: {asset: (timestamps_s, prices)} sorted by time."""
    by_asset: dict[str, list[tuple[int, float]]] = {}
    with open(path, newline="") as fh:
        reader = csv.DictReader(fh)
        missing = {"timestamp", "asset", "price"} - set(reader.fieldnames or ())
        if missing:
            raise ValueError(f"{path}: missing columns {sorted(missing)}")
        for row in reader:
            try:
                stamp, price = int(float(row["timestamp"])), float(row["price"])
            except (TypeError, ValueError):
                raise ValueError(
                    f"line {reader.line_num}: expected timestamp,asset,price numbers, got "
                    f"{row['timestamp']!r},{row['asset']!r},{row['price']!r}"
                ) from None
            if not (math.isfinite(price) and price > 0):
                raise ValueError(f"line {reader.line_num}: price {price!r} is not positive")
            by_asset.setdefault(row["asset"], []).append((stamp, price))
    out: dict[str, tuple[npt.NDArray[np.int64], npt.NDArray[np.float64]]] = {}
    for asset, rows in by_asset.items():
        rows.sort()
        ts = np.array([r[0] for r in rows], dtype=np.int64)
        px = np.array([r[1] for r in rows], dtype=np.float64)
        out[asset] = (ts, px)
    return out


def align_closes(
    series: Sequence[tuple[npt.NDArray[np.int64], npt.NDArray[np.float64]]],
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float64]]:
    """Inner-join several (timestamps, prices) series: (common timestamps (k,), prices (k, m))."""
    common = series[0][0]
    for ts, _ in series[1:]:
        common = np.intersect1d(common, ts, assume_unique=True)
    cols = []
    for ts, px in series:
        idx = np.searchsorted(ts, common)
        cols.append(px[idx])
    return common, np.column_stack(cols) if cols else np.zeros((common.shape[0], 0))
