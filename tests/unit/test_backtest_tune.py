"""`python -m onchain.backtest.tune`: the grid is every combination, windows parse as UTC days,
and the summary's observed/forecast folds the 1-40% reliability bins by their counts."""

from __future__ import annotations

import calendar

import numpy as np
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
        "auc": 0.99,
        "tiers": {
            "not SAFE": {"recall": 0.95, "precision": 0.25},
            "HIGH+": {"recall": 0.85, "precision": 0.35},
            "CRITICAL": {"recall": 0.6, "precision": 0.5},
        },
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
    assert s["high_plus_precision"] == 0.35 and s["critical_recall"] == 0.6


def test_replay_rates_are_ln_growth_per_second_per_book_column() -> None:
    """Aave: the reserve indexes' growth between two reads; Morpho: the IRM's rate on the loan
    token's column, nothing on the collateral's. Keys are the book's per-market columns."""
    from types import SimpleNamespace

    from onchain.backtest.replay import WAD, column_rates

    ray = 10**27

    def aave(ts: int, income: float, debt: float) -> SimpleNamespace:
        reserve = SimpleNamespace(
            asset="0xAA",
            normalized_income_ray=int(income * ray),
            normalized_debt_ray=int(debt * ray),
        )
        return SimpleNamespace(
            block=SimpleNamespace(timestamp=ts),
            addresses_provider="0xPP",
            reserves=(reserve,),
            by_asset={"0xAA": reserve},
        )

    before, after = aave(0, 1.0, 1.0), aave(3600, 1.0001, 1.0004)
    supply, borrow = column_rates("aave-v3", after, before)["0xpp:0xaa"]
    assert supply == pytest.approx(np.log(1.0001) / 3600)
    assert borrow == pytest.approx(np.log(1.0004) / 3600)
    assert column_rates("aave-v3", after, None) == {}
    market = SimpleNamespace(
        id="0xM", loan_token="0xL", collateral_token="0xC", borrow_rate=WAD // 10**8
    )
    rates = column_rates("morpho-blue", SimpleNamespace(markets=(market,)), None)
    assert rates == {"0xm:0xl": (0.0, 1e-8), "0xm:0xc": (0.0, 0.0)}


def test_watch_threshold_comes_from_the_tuning_windows_pooled() -> None:
    """The threshold catches the recall asked of the tuning windows together (the highest that
    does), whatever a held-out window would have preferred; each window is read at it."""

    def flat(prob: list[float], outcome: list[bool]) -> dict[str, object]:
        return {"prob": {"onchain": np.array(prob)}, "outcome": np.array(outcome)}

    a = flat([0.9, 0.5, 0.2, 0.1, 0.05], [True, True, False, True, False])
    b = flat([0.6, 0.3, 0.04, 0.01], [True, False, True, False])
    held = flat([0.001, 0.5], [True, False])
    # tuning liquidations at 0.9, 0.6, 0.5, 0.1, 0.04: 80% of five needs the fourth, 0.1
    assert tune.watch_threshold([a, b], 0.8) == pytest.approx(0.1)
    assert tune.watch_threshold([a, b], 1.0) == pytest.approx(0.04)
    at = tune.at_threshold(a, 0.1)
    assert at == {"recall": 1.0, "precision": 0.75, "flagged": 4}
    assert tune.at_threshold(held, 0.1) == {"recall": 0.0, "precision": 0.0, "flagged": 1}
