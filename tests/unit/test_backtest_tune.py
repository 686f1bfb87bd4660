"""`python -m onchain.backtest.tune`: the grid is every combination, windows parse as UTC days,
and the summary's observed/forecast folds the 1-40% reliability bins by their counts."""

from __future__ import annotations

import calendar

import pytest

from onchain.backtest import tune


def test_grid_is_every_combination_and_no_grid_is_the_defaults() -> None:
    grid = tune._parse_grid(["slow_weight=0.5,1", "tail_scale=1,1.05,1.1"])
    assert len(grid) == 6
    assert {"slow_weight": 0.5, "tail_scale": 1.05} in grid
    assert tune._parse_grid([]) == [{}]


def test_window_is_utc_days() -> None:
    name, start, end = tune._parse_window("jul2023=2023-07-01:2023-07-31")
    assert name == "jul2023"
    assert start == calendar.timegm((2023, 7, 1, 0, 0, 0))
    assert end - start == 30 * 86_400


def test_summary_folds_the_middle_bins_by_count() -> None:
    def row(lo: float, hi: float, n: int, forecast: float, observed: float) -> dict[str, float]:
        return {"lo": lo, "hi": hi, "n": n, "mean_forecast": forecast, "observed": observed}

    scores = {
        "skill_vs_best_hf_rule": 0.3,
        "skill_vs_climatology": 0.35,
        "log_loss": 0.02,
        "tiers": {"not SAFE": {"recall": 0.95, "precision": 0.25}},
        "threshold_for_95pct_recall": {"threshold": 0.03, "precision": 0.25},
        "reliability": [
            row(0.0, 0.01, 1000, 0.001, 0.5),  # outside 1-40%: not counted
            row(0.01, 0.05, 100, 0.02, 0.01),
            row(0.2, 0.4, 10, 0.3, 0.6),
            row(0.4, 0.7, 10, 0.5, 0.0),  # outside
        ],
    }
    s = tune.summary(scores)
    assert s["observed_over_forecast_1_40pct"] == pytest.approx((1.0 + 6.0) / (2.0 + 3.0))
    assert s["not_safe_recall"] == 0.95 and s["threshold_95pct_recall"] == 0.03
