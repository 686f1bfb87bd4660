"""Choose the `onchain` model's parameters on replayed windows: every combination of a grid is
scored on every window (replays taken from the cache, ``--reuse-replay``'s, or made and kept), one
line per combination and window, then the tuning windows pooled. How the defaults of
``onchain.risk.reactive`` were chosen (README, model note)::

    python -m onchain.backtest.tune --prices ../shared/data/prices \\
        --window may2021=2021-05-05:2021-06-04 --window jul2023=2023-07-01:2023-07-31 \\
        --grid slow_weight=0.5,1 --grid tail_scale=1,1.1 [--json]

Grid keys are ``reactive_volatility``'s parameters, plus ``interest`` (1: the interest drift from
the replay's rates, the default; 0: without).
"""

from __future__ import annotations

import argparse
import calendar
import itertools
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from onchain.backtest.run import (
    History,
    WindowReplay,
    load_history,
    model_scores,
    replay_window,
    score_window,
)
from onchain.risk.tiers import DEFAULT_THRESHOLDS

# the reliability bins the summary folds into one ratio: where calm weeks were too high
MID_BINS = (0.01, 0.4)


def _parse_window(text: str) -> tuple[str, int, int]:
    """NAME=YYYY-MM-DD:YYYY-MM-DD (UTC) -> (name, start, end) in unix seconds."""
    name, _, span = text.partition("=")
    start, _, end = span.partition(":")
    day = "%Y-%m-%d"
    return (
        name,
        calendar.timegm(time.strptime(start, day)),
        calendar.timegm(time.strptime(end, day)),
    )


def _parse_grid(items: Sequence[str]) -> list[dict[str, float]]:
    axes = []
    for item in items:
        key, _, values = item.partition("=")
        axes.append([(key, float(v)) for v in values.split(",")])
    return [dict(combo) for combo in itertools.product(*axes)] or [{}]


def summary(scores: dict[str, Any]) -> dict[str, float]:
    """The figures a choice is made on: skills, log loss, observed/forecast in the middle bins,
    not-SAFE recall/precision and the threshold for 95% recall."""
    mid = [r for r in scores["reliability"] if r["lo"] >= MID_BINS[0] and r["hi"] <= MID_BINS[1]]
    forecast = sum(r["mean_forecast"] * r["n"] for r in mid)
    observed = sum(r["observed"] * r["n"] for r in mid)
    t95 = scores["threshold_for_95pct_recall"]
    return {
        "skill_vs_best_hf_rule": scores["skill_vs_best_hf_rule"],
        "skill_vs_climatology": scores["skill_vs_climatology"],
        "log_loss": scores["log_loss"],
        "observed_over_forecast_1_40pct": observed / forecast if forecast else float("nan"),
        "not_safe_recall": scores["tiers"]["not SAFE"]["recall"],
        "not_safe_precision": scores["tiers"]["not SAFE"]["precision"],
        "threshold_95pct_recall": t95["threshold"],
        "precision_at_95pct_recall": t95["precision"],
    }


def tune(
    history: History, windows: dict[str, WindowReplay], grid: list[dict[str, float]]
) -> list[dict[str, Any]]:
    """Each combination scored per window and pooled over all windows given."""
    rows = []
    for params in grid:
        flats = []
        per_window = {}
        for name, window in windows.items():
            report = score_window(window, history, models=("onchain",), reactive_params=params)
            per_window[name] = summary(report["models"]["onchain"])
            flats.append(report["_flat"])
        groups = np.concatenate([f["row"] + 100_000 * i for i, f in enumerate(flats)])
        pooled = model_scores(
            np.concatenate([f["prob"]["onchain"] for f in flats]),
            np.concatenate([f["outcome"] for f in flats]),
            np.concatenate([f["health"] for f in flats]),
            groups,
            DEFAULT_THRESHOLDS,
            seed=7,
        )
        rows.append({"params": params, "windows": per_window, "pooled": summary(pooled)})
    return rows


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--prices", type=Path, required=True)
    parser.add_argument("--window", action="append", required=True, help="NAME=START:END")
    parser.add_argument("--grid", action="append", default=[], help="PARAM=V1,V2,...")
    parser.add_argument("--horizon-h", type=int, default=6)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    history = load_history(args.prices)
    windows = {}
    for text in args.window:
        name, start, end = _parse_window(text)
        windows[name] = replay_window(
            history, start, end, horizon_h=args.horizon_h, cadence_h=6, reuse=True
        )
    rows = tune(history, windows, _parse_grid(args.grid))
    if args.json:
        print(json.dumps(rows, indent=1))
        return 0
    cols = (
        "skill_vs_best_hf_rule",
        "log_loss",
        "observed_over_forecast_1_40pct",
        "not_safe_recall",
        "not_safe_precision",
        "threshold_95pct_recall",
        "precision_at_95pct_recall",
    )
    print("params | window | skill vs HF rule, log loss, observed/forecast 1-40%, not-SAFE recall,")
    print("  precision (p >= WATCH), threshold for 95% recall, precision there")
    for row in rows:
        for name, s in [*row["windows"].items(), ("pooled", row["pooled"])]:
            figures = " ".join(f"{s[c]:.4f}" for c in cols)
            print(f"{row['params']} | {name} | {figures}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
