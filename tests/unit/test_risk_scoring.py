"""The forecast scores of `onchain backtest` against brute-force definitions."""

from __future__ import annotations

import numpy as np

from onchain.risk import scoring


def _data(n: int = 400, seed: int = 3) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    hf = np.round(rng.uniform(1.0, 1.3, n), 2)  # ties on purpose
    prob = np.clip(np.round((1.3 - hf) * 3 + rng.normal(0, 0.1, n), 2), 0, 1)
    y = rng.random(n) < prob
    return prob, y, hf


def test_auc_counts_pairs_with_ties_as_half() -> None:
    prob, y, _ = _data()
    pos, neg = prob[y], prob[~y]
    pairs = (pos[:, None] > neg[None, :]).sum() + 0.5 * (pos[:, None] == neg[None, :]).sum()
    assert np.isclose(scoring.auc(prob, y), pairs / (pos.size * neg.size))
    fpr, tpr = scoring.roc_curve(prob, y)
    assert np.isclose(np.trapezoid(tpr, fpr), scoring.auc(prob, y))


def test_best_threshold_rule_is_the_best_cut_in_hindsight() -> None:
    _, y, hf = _data()
    cut, best = scoring.best_threshold_rule(hf, y)
    brute = min(scoring.brier((hf < h).astype(float), y) for h in [*np.unique(hf), np.inf])
    assert np.isclose(best, brute)
    assert np.isclose(scoring.brier((hf < cut).astype(float), y), best)


def test_brier_log_loss_and_climatology() -> None:
    prob, y, _ = _data()
    assert np.isclose(scoring.brier(prob, y), np.mean((prob - y) ** 2))
    rate = y.mean()
    assert np.isclose(scoring.climatology_brier(y), scoring.brier(np.full(y.size, rate), y))
    p = np.clip(prob, 1e-6, 1 - 1e-6)
    assert np.isclose(scoring.log_loss(prob, y), -np.mean(y * np.log(p) + (1 - y) * np.log(1 - p)))


def test_threshold_for_recall_is_the_largest_reaching_it() -> None:
    prob, y, _ = _data()
    t = scoring.threshold_for_recall(prob, y, 0.95)
    recall, precision, flagged = scoring.recall_precision(prob >= t, y)
    assert recall >= 0.95
    above = np.unique(prob[prob > t])
    if above.size:
        assert scoring.recall_precision(prob >= above[0], y)[0] < 0.95
    assert flagged == int((prob >= t).sum()) and 0 < precision <= 1


def test_reliability_table_bins_and_bootstrap_interval() -> None:
    prob, y, _ = _data(2000)
    groups = np.arange(prob.size) // 20
    rows = scoring.reliability_table(prob, y, groups, n_boot=300, seed=1)
    assert sum(r.n for r in rows) == prob.size
    for r in rows:
        sel = (prob >= r.lo) & (prob < r.hi) if r.hi < 1 else (prob >= r.lo)
        assert r.n == int(sel.sum())
        assert np.isclose(r.mean_forecast, prob[sel].mean())
        assert np.isclose(r.observed, y[sel].mean())
        assert r.observed_lo <= r.observed + 1e-12 and r.observed <= r.observed_hi + 1e-12
    # same seed, same intervals
    again = scoring.reliability_table(prob, y, groups, n_boot=300, seed=1)
    assert again == rows
