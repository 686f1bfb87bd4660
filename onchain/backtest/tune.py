"""Choose the `onchain` model's parameters on replayed windows: every combination of a grid is
scored on every window (replays taken from the cache, ``--reuse-replay``'s, or made and kept), one
line per combination and window, then the tuning windows pooled. How the defaults of
``onchain.risk.reactive`` and the WATCH threshold were chosen (README, model note)::

    python -m onchain.backtest.tune --prices ../shared/data/prices \\
        --window may2021=2021-05-05:2021-06-04 --window jul2023=2023-07-01:2023-07-31 \\
        [--holdout sep2023=2023-09-01:2023-10-01] \\
        --grid slow_weight=0.5,1 --grid tail_scale=1,1.1 [--recall 0.95] [--json]

``--holdout`` windows are scored with the same settings but never enter a choice: the WATCH
threshold is the highest at which "not SAFE" catches ``--recall`` of the liquidations of the
tuning windows pooled, and every window (held-out ones too) is reported at that threshold.

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
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from onchain.backtest.run import (
    RECALL_TARGET,
    History,
    WindowReplay,
    load_history,
    model_scores,
    replay_window,
    score_window,
)
from onchain.risk.scoring import recall_precision, threshold_for_recall
from onchain.risk.tiers import DEFAULT_THRESHOLDS, TierThresholds

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
    """The figures a choice is made on: skills, log loss, AUC, observed/forecast in the middle
    bins, recall/precision per tier (not SAFE, HIGH or worse, CRITICAL) and the threshold for 95%
    recall."""
    mid = [r for r in scores["reliability"] if r["lo"] >= MID_BINS[0] and r["hi"] <= MID_BINS[1]]
    forecast = sum(r["mean_forecast"] * r["n"] for r in mid)
    observed = sum(r["observed"] * r["n"] for r in mid)
    t95 = scores["threshold_for_95pct_recall"]
    return {
        "skill_vs_best_hf_rule": scores["skill_vs_best_hf_rule"],
        "skill_vs_climatology": scores["skill_vs_climatology"],
        "log_loss": scores["log_loss"],
        "auc": scores["auc"],
        "observed_over_forecast_1_40pct": observed / forecast if forecast else float("nan"),
        "not_safe_recall": scores["tiers"]["not SAFE"]["recall"],
        "not_safe_precision": scores["tiers"]["not SAFE"]["precision"],
        "high_plus_recall": scores["tiers"]["HIGH+"]["recall"],
        "high_plus_precision": scores["tiers"]["HIGH+"]["precision"],
        "critical_recall": scores["tiers"]["CRITICAL"]["recall"],
        "critical_precision": scores["tiers"]["CRITICAL"]["precision"],
        "threshold_95pct_recall": t95["threshold"],
        "precision_at_95pct_recall": t95["precision"],
    }


def _pooled(flats: Sequence[dict[str, Any]], thresholds: TierThresholds) -> dict[str, Any]:
    """Every figure over several windows' samples at once (scoring times kept apart)."""
    groups = np.concatenate([f["row"] + 100_000 * i for i, f in enumerate(flats)])
    return model_scores(
        np.concatenate([f["prob"]["onchain"] for f in flats]),
        np.concatenate([f["outcome"] for f in flats]),
        np.concatenate([f["health"] for f in flats]),
        groups,
        thresholds,
        seed=7,
    )


def at_threshold(flat: dict[str, Any], threshold: float) -> dict[str, float]:
    """Recall and precision of "not SAFE" = probability >= ``threshold`` on one sample set."""
    r, p, n = recall_precision(flat["prob"]["onchain"] >= threshold, flat["outcome"])
    return {"recall": r, "precision": p, "flagged": n}


def watch_threshold(flats: Sequence[dict[str, Any]], recall: float) -> float:
    """The highest WATCH threshold at which "not SAFE" catches ``recall`` of the liquidations of
    ``flats`` pooled (the tuning windows)."""
    return threshold_for_recall(
        np.concatenate([f["prob"]["onchain"] for f in flats]),
        np.concatenate([f["outcome"] for f in flats]),
        recall,
    )


def tune(
    history: History,
    windows: dict[str, WindowReplay],
    grid: list[dict[str, float]],
    *,
    holdout: dict[str, WindowReplay] | None = None,
    recall: float = RECALL_TARGET,
    thresholds: TierThresholds = DEFAULT_THRESHOLDS,
) -> list[dict[str, Any]]:
    """Each combination scored per window at ``thresholds``, pooled over the tuning ``windows``
    (and over the ``holdout`` ones apart), and every window at the WATCH threshold the tuning
    windows give."""
    holdout = holdout or {}
    rows = []
    for params in grid:
        flats: dict[str, dict[str, Any]] = {}
        per_window = {}
        for name, window in {**windows, **holdout}.items():
            report = score_window(
                window, history, models=("onchain",), reactive_params=params, thresholds=thresholds
            )
            per_window[name] = summary(report["models"]["onchain"])
            flats[name] = report["_flat"]
        tuning = [flats[n] for n in windows]
        watch = watch_threshold(tuning, recall)
        at_watch = {name: at_threshold(flat, watch) for name, flat in flats.items()}
        pooled = {"pooled": summary(_pooled(tuning, thresholds))}
        at_watch["pooled"] = at_threshold(_flat_concat(tuning), watch)
        if holdout:
            held = [flats[n] for n in holdout]
            pooled["pooled held out"] = summary(_pooled(held, thresholds))
            at_watch["pooled held out"] = at_threshold(_flat_concat(held), watch)
        rows.append(
            {
                "params": params,
                "windows": per_window,
                "holdout": sorted(holdout),
                **pooled,
                "watch_threshold": watch,
                "at_watch_threshold": at_watch,
            }
        )
    return rows


def _flat_concat(flats: Sequence[dict[str, Any]]) -> dict[str, Any]:
    return {
        "prob": {"onchain": np.concatenate([f["prob"]["onchain"] for f in flats])},
        "outcome": np.concatenate([f["outcome"] for f in flats]),
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--prices", type=Path, required=True)
    parser.add_argument("--window", action="append", required=True, help="NAME=START:END")
    parser.add_argument(
        "--holdout", action="append", default=[], help="NAME=START:END, scored, never chosen on"
    )
    parser.add_argument("--grid", action="append", default=[], help="PARAM=V1,V2,...")
    parser.add_argument("--horizon-h", type=int, default=6)
    parser.add_argument("--recall", type=float, default=RECALL_TARGET)
    parser.add_argument(
        "--watch", type=float, help="read the tiers at this WATCH threshold (default: the default)"
    )
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    history = load_history(args.prices)

    def replays(texts: Sequence[str]) -> dict[str, WindowReplay]:
        out = {}
        for text in texts:
            name, start, end = _parse_window(text)
            out[name] = replay_window(
                history, start, end, horizon_h=args.horizon_h, cadence_h=6, reuse=True
            )
        return out

    windows, holdout = replays(args.window), replays(args.holdout)
    thresholds = DEFAULT_THRESHOLDS
    if args.watch is not None:
        thresholds = replace(thresholds, watch_probability=args.watch)
    rows = tune(
        history,
        windows,
        _parse_grid(args.grid),
        holdout=holdout,
        recall=args.recall,
        thresholds=thresholds,
    )
    if args.json:
        print(json.dumps(rows, indent=1))
        return 0
    cols = (
        "skill_vs_best_hf_rule",
        "log_loss",
        "auc",
        "observed_over_forecast_1_40pct",
        "not_safe_recall",
        "not_safe_precision",
        "high_plus_recall",
        "high_plus_precision",
        "critical_recall",
        "critical_precision",
        "threshold_95pct_recall",
        "precision_at_95pct_recall",
    )
    print("params | window | skill vs HF rule, log loss, AUC, observed/forecast 1-40%, recall and")
    print("  precision of not SAFE (p >= WATCH), HIGH+, CRITICAL; threshold for 95% recall,")
    print("  precision there;")
    print(
        f"  recall, precision at the WATCH threshold for {args.recall:.0%} recall of the tuning windows"
    )
    for row in rows:
        pooled = [(k, row[k]) for k in ("pooled", "pooled held out") if k in row]
        for name, s in [*row["windows"].items(), *pooled]:
            figures = " ".join(f"{s[c]:.4f}" for c in cols)
            at = row["at_watch_threshold"][name]
            held = " (held out)" if name in row["holdout"] else ""
            print(
                f"{row['params']} | {name}{held} | {figures} | "
                f"{at['recall']:.4f} {at['precision']:.4f}"
            )
        print(f"{row['params']} | WATCH threshold {row['watch_threshold']:.4f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
