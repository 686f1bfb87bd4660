"""Scores for probability forecasts of a binary event (liquidation within the horizon). Pure numpy.

What a risk analyst defends a probability with:

* Brier score, and its skill ``1 - B / B_ref`` against two references: climatology (the base rate
  of the sample, known only in hindsight) and the best health-factor rule chosen in hindsight
  (a binary "liquidated if HF < h" with h picked on the outcomes: generous to the rule);
* log loss (probabilities clipped to [1e-6, 1 - 1e-6]);
* AUC (the chance a liquidated position was ranked above a surviving one; ties count half);
* the reliability table (mean forecast against observed frequency per bin) with bootstrap
  intervals resampling whole scoring times, because one crash liquidates many positions at once;
* recall and precision of "probability >= threshold" and the largest threshold reaching a recall.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]

RELIABILITY_BINS: tuple[float, ...] = (0.0, 0.01, 0.05, 0.1, 0.2, 0.4, 0.7, 1.0)


def brier(prob: npt.ArrayLike, outcome: npt.ArrayLike) -> float:
    p = np.asarray(prob, dtype=np.float64)
    y = np.asarray(outcome, dtype=np.float64)
    return float(np.mean((p - y) ** 2)) if p.size else float("nan")


def log_loss(prob: npt.ArrayLike, outcome: npt.ArrayLike, eps: float = 1e-6) -> float:
    p = np.clip(np.asarray(prob, dtype=np.float64), eps, 1.0 - eps)
    y = np.asarray(outcome, dtype=bool)
    if not p.size:
        return float("nan")
    return float(-np.mean(np.where(y, np.log(p), np.log1p(-p))))


def climatology_brier(outcome: npt.ArrayLike) -> float:
    """Brier of forecasting the sample's own base rate for everyone."""
    y = np.asarray(outcome, dtype=np.float64)
    rate = y.mean() if y.size else 0.0
    return float(rate * (1.0 - rate))


def best_threshold_rule(health: npt.ArrayLike, outcome: npt.ArrayLike) -> tuple[float, float]:
    """(h, Brier) of the best rule "1 if HF < h else 0" with h chosen on the outcomes.

    A binary forecast's Brier score is its error rate, so this scans every cut of the HF order
    once: errors(h) = liquidated with HF >= h + survivors with HF < h."""
    hf = np.asarray(health, dtype=np.float64)
    y = np.asarray(outcome, dtype=bool)
    n = hf.size
    if n == 0:
        return float("nan"), float("nan")
    order = np.argsort(hf, kind="stable")
    hs, ys = hf[order], y[order]
    # cut j flags the j lowest HFs (j = 0..n); only cuts between distinct values are rules
    pos_below = np.concatenate([[0], np.cumsum(ys)])
    neg_below = np.arange(n + 1) - pos_below
    errors = (ys.sum() - pos_below) + neg_below
    valid = np.ones(n + 1, dtype=bool)
    valid[1:n] = hs[1:] != hs[:-1]
    j = int(np.flatnonzero(valid)[np.argmin(errors[valid])])
    cut = float(hs[j]) if j < n else float(np.inf)
    return cut, float(errors[j] / n)


def auc(prob: npt.ArrayLike, outcome: npt.ArrayLike) -> float:
    """Area under the ROC curve by ranks (Mann-Whitney), ties counted half."""
    p = np.asarray(prob, dtype=np.float64)
    y = np.asarray(outcome, dtype=bool)
    n_pos, n_neg = int(y.sum()), int((~y).sum())
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    order = np.argsort(p, kind="stable")
    ranks = np.empty(p.size)
    sorted_p = p[order]
    # average ranks of tied groups
    edges = np.flatnonzero(np.diff(sorted_p)) + 1
    starts = np.concatenate([[0], edges])
    ends = np.concatenate([edges, [p.size]])
    avg = (starts + ends + 1) / 2.0
    ranks[order] = np.repeat(avg, ends - starts)
    return float((ranks[y].sum() - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


def roc_curve(prob: npt.ArrayLike, outcome: npt.ArrayLike) -> tuple[FloatArray, FloatArray]:
    """(false positive rate, true positive rate) at every distinct threshold, from (0, 0)."""
    p = np.asarray(prob, dtype=np.float64)
    y = np.asarray(outcome, dtype=bool)
    order = np.argsort(-p, kind="stable")
    ps, ys = p[order], y[order]
    last = np.concatenate([np.flatnonzero(np.diff(ps)), [p.size - 1]]) if p.size else np.zeros(0)
    tp = np.cumsum(ys)[last.astype(np.int64)] if p.size else np.zeros(0)
    fp = (last + 1) - tp
    n_pos, n_neg = max(int(y.sum()), 1), max(int((~y).sum()), 1)
    return (
        np.concatenate([[0.0], fp / n_neg]),
        np.concatenate([[0.0], tp / n_pos]),
    )


def recall_precision(flag: npt.ArrayLike, outcome: npt.ArrayLike) -> tuple[float, float, int]:
    """(recall, precision, flagged count) of a boolean alarm."""
    f = np.asarray(flag, dtype=bool)
    y = np.asarray(outcome, dtype=bool)
    hits = int((f & y).sum())
    recall = hits / int(y.sum()) if y.any() else float("nan")
    precision = hits / int(f.sum()) if f.any() else float("nan")
    return recall, precision, int(f.sum())


def threshold_for_recall(prob: npt.ArrayLike, outcome: npt.ArrayLike, recall: float) -> float:
    """The largest t such that "prob >= t" catches at least ``recall`` of the events."""
    p = np.asarray(prob, dtype=np.float64)
    y = np.asarray(outcome, dtype=bool)
    if not y.any():
        return float("nan")
    pos = np.sort(p[y])[::-1]
    k = int(np.ceil(recall * pos.size)) - 1
    return float(pos[min(max(k, 0), pos.size - 1)])


@dataclass(frozen=True)
class ReliabilityRow:
    lo: float
    hi: float
    n: int
    mean_forecast: float
    observed: float
    observed_lo: float  # bootstrap 5% of the observed frequency
    observed_hi: float  # bootstrap 95%


def reliability_table(
    prob: npt.ArrayLike,
    outcome: npt.ArrayLike,
    groups: npt.ArrayLike,
    *,
    bins: tuple[float, ...] = RELIABILITY_BINS,
    n_boot: int = 500,
    seed: int = 0,
) -> list[ReliabilityRow]:
    """Per forecast bin: mean forecast, observed frequency and its 90% bootstrap interval.

    ``groups`` (e.g. the scoring time) are resampled whole: positions scored at the same moment
    share one price path, so they are not independent draws."""
    p = np.asarray(prob, dtype=np.float64)
    y = np.asarray(outcome, dtype=np.float64)
    _, g = np.unique(np.asarray(groups), return_inverse=True)
    n_groups = int(g.max()) + 1 if g.size else 0
    rng = np.random.default_rng(seed)
    weights = (
        np.stack(
            [
                np.bincount(d, minlength=n_groups)
                for d in rng.integers(0, n_groups, size=(n_boot, n_groups))
            ]
        )
        if n_groups
        else np.zeros((n_boot, 0))
    ).astype(np.float64)
    edges = np.asarray(bins, dtype=np.float64)
    which = np.clip(np.searchsorted(edges, p, side="right") - 1, 0, len(edges) - 2)
    rows = []
    for b in range(len(edges) - 1):
        sel = which == b
        n = int(sel.sum())
        if n == 0:
            continue
        cnt = np.bincount(g[sel], minlength=n_groups).astype(np.float64)
        hits = np.bincount(g[sel], y[sel], minlength=n_groups)
        boot = (weights @ hits) / np.maximum(weights @ cnt, 1.0)
        lo, hi = np.quantile(boot, [0.05, 0.95])
        rows.append(
            ReliabilityRow(
                float(edges[b]),
                float(edges[b + 1]),
                n,
                float(p[sel].mean()),
                float(y[sel].mean()),
                float(lo),
                float(hi),
            )
        )
    return rows
