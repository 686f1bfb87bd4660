"""A backtest report from a tiny synthetic set of forecasts and outcomes, built by the backtest's
own scoring (`onchain.backtest.run.report`): what `onchain backtest` would hand to the store,
without the minutes of a replay on the devnet."""

from __future__ import annotations

from typing import Any

import numpy as np

from onchain.backtest.run import LOOKBACK_H, report
from onchain.risk.tiers import DEFAULT_THRESHOLDS

MODELS = ("reference", "onchain")
ROWS, PER_ROW = 40, 50  # scoring times x positions: 2,000 samples


def synthetic_report(seed: int = 3, *, horizon_h: int = 6) -> dict[str, Any]:
    """Forecasts where `onchain` knows the true probability and `reference` sees it blurred,
    outcomes drawn from the truth (with crash rows where many positions fail together)."""
    rng = np.random.default_rng(seed)
    n = ROWS * PER_ROW
    row = np.repeat(np.arange(ROWS) * 6, PER_ROW)
    health = 1.0 + rng.gamma(1.5, 0.08, n)
    truth = np.clip(np.exp(-(health - 1.0) * 25.0), 0.0, 1.0)
    crash = np.isin(row, [60, 126])
    truth = np.where(crash, np.minimum(1.0, truth * 3.0), truth)
    outcome = rng.random(n) < truth
    blurred = np.clip(truth * np.exp(rng.normal(0.0, 1.0, n)), 0.0, 1.0)
    flat = {
        "row": row,
        "health": health,
        "outcome": outcome,
        "protocol": np.array(["lending"] * n),
        "prob": {"reference": blurred, "onchain": truth},
    }
    meta = {
        "window": {"start": "2022-06-12 00:00", "end": "2022-06-21 18:00"},
        "horizon_h": horizon_h,
        "cadence_h": 6,
        "lookback_h": LOOKBACK_H,
        "borrowers": 300,
        "seed": seed,
        "positions": PER_ROW,
        "protocols": ["lending"],
        "hours_replayed": ROWS * 6 + horizon_h,
        "blocks": [100, 100 + ROWS * 6 + horizon_h - 1],
        "verified_against_getUserAccountData": 2,
        "price_moves": {"BTC": -0.18, "ETH": -0.25},
        "replay_seconds": 1.0,
        "replay_reused": False,
        "scoring_seconds": 0.1,
    }
    return report(flat, meta, MODELS, DEFAULT_THRESHOLDS, seed)
