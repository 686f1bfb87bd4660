"""`onchain backtest`: replay a window of real hourly prices on the devnet, score every position at
a cadence with each model using only the 30 days of closes before that hour, take the outcome
from the contracts, and score the forecasts (``onchain.risk.scoring``)."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from onchain.errors import InputError
from onchain.risk import scoring
from onchain.risk.book import Book, book_from_positions
from onchain.risk.probability import liquidation_probability
from onchain.risk.reactive import reactive_volatility, stepped_probability
from onchain.risk.tiers import DEFAULT_THRESHOLDS, TierThresholds
from onchain.risk.volatility import VolatilityModel, fit_volatility_model

HOUR_S = 3600
LOOKBACK_H = 720  # the model sees the last 30 days of hourly closes
ASSETS = ("BTC", "ETH")
GARCH_TAIL_SCALE = 1.2  # the GARCH model's closes-only defaults
GARCH_TAIL_DOF = 3.0
MODELS = ("garch", "reference", "previous", "onchain")
# the `onchain` model as it was before interest and this calibration, every parameter pinned
PREVIOUS_PARAMS: dict[str, float] = {
    "fast_lambda": 0.9,
    "slow_lambda": 0.99,
    "slow_weight": 0.5,
    "trend_steps": 12,
    "trend_lambda": 0.9,
    "trend_weight": 1.0,
    "dof": 4.0,
    "tail_scale": 1.05,
    "month_weight": 0.0,
    "interest": 0.0,
}
# knobs of the scoring, not of the volatility fit: "interest" scales the rates of the interest
# drift (1: as read from the chain, the default; 0: no drift)
SCORING_PARAMS = ("interest",)
MODEL_TITLES = {
    "garch": "before (GARCH(1,1)-t on closes, default t tails, continuous first passage)",
    "reference": "simple reference (EWMA lambda 0.98 + Gaussian first passage)",
    "previous": "onchain before interest drift (max of fast, half the slow and trend EWMA "
    "variances, t4 tails x 1.05, hourly oracle steps)",
    "onchain": "onchain: what scan/watch/run use (fast/slow/trend EWMA, t tails, crash "
    "correlation, hourly oracle steps) with the interest drift",
}
RECALL_TARGET = 0.95
ROC_STEP = 1 / 200  # the reported ROC keeps one vertex per cell of this side (roc_points)


@dataclass(frozen=True)
class History:
    """Hourly closes on a gap-free grid (gaps forward-filled): ``times_s`` = candle close time."""

    times_s: npt.NDArray[np.int64]
    close: npt.NDArray[np.float64]  # (k, 2) in ASSETS order


def load_history(path: Path) -> History:
    """A folder of ``<asset>_*1h.csv`` OHLC files (the shared/data/prices layout) or a long CSV
    ``timestamp,asset,price`` holding ETH and BTC (WETH/WBTC accepted)."""
    from onchain.app.risk_context import underlying
    from onchain.app.risk_io import load_long_price_csv, load_ohlc_csv

    series: dict[str, tuple[Any, Any]] = {}
    try:
        if path.is_dir():
            for name in ASSETS:
                files = sorted(path.glob(f"{name.lower()}_*1h.csv"))
                if files:
                    h = load_ohlc_csv(files[0])
                    series[name] = (h.timestamp_s + HOUR_S, h.close)
        elif path.is_file():
            for asset, (ts, px) in load_long_price_csv(path).items():
                series[underlying(asset)] = (ts, px)
        else:
            raise InputError(f"--prices: not found: {path}")
    except (ValueError, KeyError, TypeError, IndexError, OSError) as exc:
        raise InputError(f"--prices {path}: unreadable ({exc})") from None
    missing = [a for a in ASSETS if a not in series]
    if missing:
        raise InputError(f"--prices {path}: no hourly prices for {', '.join(missing)}")
    lo = max(int(series[a][0][0]) for a in ASSETS)
    hi = min(int(series[a][0][-1]) for a in ASSETS)
    lo = lo + (-lo) % HOUR_S
    grid = np.arange(lo, hi + 1, HOUR_S, dtype=np.int64)
    cols = []
    for a in ASSETS:
        ts, px = (
            np.asarray(series[a][0], dtype=np.int64),
            np.asarray(series[a][1], dtype=np.float64),
        )
        if not np.all(np.isfinite(px) & (px > 0)):
            raise InputError(f"--prices {path}: {a} has a price that is not positive")
        idx = np.searchsorted(ts, grid, side="right") - 1  # last observation at or before
        cols.append(px[np.clip(idx, 0, None)])
    return History(grid, np.column_stack(cols))


@dataclass
class Samples:
    """One row per (scoring time, live position)."""

    row: list[npt.NDArray[np.int64]]
    health: list[npt.NDArray[np.float64]]
    outcome: list[npt.NDArray[np.bool_]]
    protocol: list[npt.NDArray[np.str_]]
    prob: dict[str, list[npt.NDArray[np.float64]]]

    def flat(self) -> dict[str, Any]:
        cat = np.concatenate
        return {
            "row": cat(self.row) if self.row else np.zeros(0, np.int64),
            "health": cat(self.health) if self.health else np.zeros(0),
            "outcome": cat(self.outcome) if self.outcome else np.zeros(0, bool),
            "protocol": cat(self.protocol) if self.protocol else np.zeros(0, str),
            "prob": {k: cat(v) if v else np.zeros(0) for k, v in self.prob.items()},
        }


def _garch_model(ts: npt.NDArray[np.int64], close: npt.NDArray[np.float64]) -> VolatilityModel:
    model = fit_volatility_model(close, ts, ASSETS, fit_tails=False)
    m = len(ASSETS)
    return replace(
        model,
        tail_steps=(1.0,),
        tail_scale=np.full((1, m), GARCH_TAIL_SCALE),
        tail_dof=np.full((1, m), GARCH_TAIL_DOF),
    )


def _reference_model(ts: npt.NDArray[np.int64], close: npt.NDArray[np.float64]) -> VolatilityModel:
    return fit_volatility_model(close, ts, ASSETS, method="ewma", fit_tails=False)


def live_book(positions: Sequence[Any]) -> Book:
    """The book the models score: positions' amounts and prices, one column per market and
    asset (Morpho's oracles price one token differently per market)."""
    from onchain.app.risk_context import STABLE_SYMBOLS

    return book_from_positions(
        positions, per_market_columns=True, stable_assets=sorted(STABLE_SYMBOLS)
    )


def score_models(
    book: Book,
    history: History,
    end_index: int,
    horizon_s: float,
    models: Sequence[str] = MODELS,
    reactive_params: dict[str, float] | None = None,
    rates: tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]] | None = None,
) -> dict[str, npt.NDArray[np.float64]]:
    """Each model's probability for each position of ``book``, from the closes up to
    ``end_index``; ``rates``: the book columns' (supply, borrow) interest rates per second."""
    from onchain.app.risk_context import underlying

    lo = max(0, end_index - LOOKBACK_H + 1)
    ts = history.times_s[lo : end_index + 1]
    close = history.close[lo : end_index + 1]
    keys = [underlying(s) for s in book.symbols]
    out: dict[str, npt.NDArray[np.float64]] = {}
    for name in models:
        if name in ("onchain", "previous"):
            params: dict[str, Any] = dict(
                (reactive_params or {}) if name == "onchain" else PREVIOUS_PARAMS
            )
            scale = float(params.get("interest", 1.0))
            scaled = None if rates is None or not scale else (rates[0] * scale, rates[1] * scale)
            for knob in SCORING_PARAMS:
                params.pop(knob, None)
            model = reactive_volatility(close, ts, ASSETS, **params)
            out[name] = stepped_probability(
                book, model, horizon_s, HOUR_S, keys, rates=scaled
            ).probability
            continue
        model = _garch_model(ts, close) if name == "garch" else _reference_model(ts, close)
        aligned = model.with_assets(keys)
        out[name] = liquidation_probability(
            book,
            aligned.effective_covariance(horizon_s),
            tail_dof=aligned.horizon_tail_dof(horizon_s),
        ).probability
    return out


def window_rows(history: History, start_ts: int, end_ts: int, horizon_h: int) -> tuple[int, int]:
    """(first history index, number of replayed hours) for a window and its outcome tail."""
    i0 = int(np.searchsorted(history.times_s, start_ts))
    i1 = int(np.searchsorted(history.times_s, end_ts))
    if i0 < LOOKBACK_H:
        raise InputError(
            f"--start: the model needs {LOOKBACK_H // 24} days of prices before the window; "
            f"the history starts {_iso(int(history.times_s[0]))}"
        )
    if i1 + horizon_h >= history.times_s.size:
        raise InputError(
            f"--end: the history ends {_iso(int(history.times_s[-1]))}, before the window's "
            "last outcome"
        )
    if i1 <= i0:
        raise InputError("--end must be after --start")
    return i0, i1 - i0 + horizon_h + 1


def _iso(ts: int) -> str:
    return time.strftime("%Y-%m-%d %H:%M", time.gmtime(ts))


@dataclass
class WindowReplay:
    """A replayed window: the contracts' health per hour, where it sits in the history, and at
    each scoring row the book of the positions scored there (live: debt, not liquidatable)."""

    result: Any  # onchain.backtest.replay.ReplayResult (its positions dropped for the books)
    first_index: int
    score_rows: list[int]
    horizon_h: int
    cadence_h: int
    borrowers: int
    seed: int
    live: dict[int, npt.NDArray[np.int64]] = field(default_factory=dict)  # row -> columns
    books: dict[int, Book] = field(default_factory=dict)  # row -> book of those positions
    reused: bool = False  # taken from the replay cache
    # row -> (supply, borrow) interest rates per book column, ln growth per second
    rates: dict[int, tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]] = field(
        default_factory=dict
    )


def live_books(window: WindowReplay) -> WindowReplay:
    """Each scoring row's live positions and their book, built once; the positions are dropped
    (the books are what the models see, and what a replay cache keeps)."""
    result = window.result
    for k in window.score_rows:
        live = np.flatnonzero(~result.liquidatable[k] & np.isfinite(result.health[k]))
        if live.size:
            positions = result.positions[k]
            window.live[k] = live
            book = live_book([positions[i] for i in live])
            window.books[k] = book
            rates = result.rates.get(k, {})
            window.rates[k] = (
                np.array([rates.get(c, (0.0, 0.0))[0] for c in book.assets]),
                np.array([rates.get(c, (0.0, 0.0))[1] for c in book.assets]),
            )
    result.positions.clear()
    return window


def replay_window(
    history: History,
    start_ts: int,
    end_ts: int,
    *,
    horizon_h: int = 6,
    cadence_h: int = 6,
    borrowers: int = 300,
    seed: int = 7,
    protocols: Sequence[str] = ("aave-v3", "aave-v3.6", "morpho-blue"),
    progress: Callable[[int, int], None] | None = None,
    reuse: bool = False,
) -> WindowReplay:
    """Start the devnet, replay the window (and one horizon beyond it) hour by hour. ``reuse``:
    take the replay from the cache when one with the same key is there, else keep this one
    (``onchain.backtest.cache``)."""
    from onchain.backtest import cache

    if horizon_h < 1 or cadence_h < 1:
        raise InputError("--horizon and --cadence must be at least one hour")
    i0, n_rows = window_rows(history, start_ts, end_ts, horizon_h)
    key = cache.replay_key(
        history.times_s[i0 : i0 + n_rows].tobytes(),
        history.close[i0 : i0 + n_rows].tobytes(),
        horizon_h=horizon_h,
        cadence_h=cadence_h,
        borrowers=borrowers,
        seed=seed,
        protocols=protocols,
        builder=_replay_builder(),
    )
    kept = cache.load(key) if reuse else None
    if isinstance(kept, WindowReplay):
        return replace(kept, reused=True)
    window = _replay_on_devnet(
        history, i0, n_rows, horizon_h, cadence_h, borrowers, seed, protocols, progress
    )
    if reuse:
        cache.save(key, window)
    return window


def _replay_builder() -> str:
    """What in this module shapes a kept replay: its classes' and builders' source and the stable
    symbols the books are built with (part of the replay cache's key)."""
    import inspect

    from onchain.app.risk_context import STABLE_SYMBOLS

    parts = [inspect.getsource(f) for f in (WindowReplay, live_book, live_books, _replay_on_devnet)]
    return "\n".join([*parts, repr(sorted(STABLE_SYMBOLS))])


def _replay_on_devnet(
    history: History,
    i0: int,
    n_rows: int,
    horizon_h: int,
    cadence_h: int,
    borrowers: int,
    seed: int,
    protocols: Sequence[str],
    progress: Callable[[int, int], None] | None,
) -> WindowReplay:
    from onchain.backtest.replay import SERIES_OF_SYMBOL, replay
    from onchain.devnet.build import running_devnet
    from onchain.rpc.client import RpcClient

    score_rows = list(range(0, n_rows - horizon_h, cadence_h))
    with running_devnet(borrowers, seed) as info:
        client = RpcClient(info.rpc_url, expected_chain_id=info.chain_id, timeout_s=60.0)
        view = DevnetChainView(info)
        base = {s: view.feed_answer(s) / 1e8 for s in SERIES_OF_SYMBOL}
        col = {a: j for j, a in enumerate(ASSETS)}
        prices = []
        for k in range(n_rows):
            rel = history.close[i0 + k] / history.close[i0]
            prices.append({s: round(base[s] * rel[col[a]], 8) for s, a in SERIES_OF_SYMBOL.items()})
        verify = {score_rows[len(score_rows) // 2], n_rows - 1}
        result = replay(
            info,
            client,
            list(range(i0, i0 + n_rows)),
            [int(t) for t in history.times_s[i0 : i0 + n_rows]],
            prices,
            set(score_rows),
            protocols=protocols,
            verify_rows=verify,
            progress=progress,
        )
    return live_books(WindowReplay(result, i0, score_rows, horizon_h, cadence_h, borrowers, seed))


def score_window(
    window: WindowReplay,
    history: History,
    *,
    models: Sequence[str] = MODELS,
    reactive_params: dict[str, float] | None = None,
    thresholds: TierThresholds = DEFAULT_THRESHOLDS,
) -> dict[str, Any]:
    """Score every live position at every scoring row with each model; the report."""
    started = time.monotonic()
    result, i0, horizon_h = window.result, window.first_index, window.horizon_h
    n_rows = result.health.shape[0]
    samples = Samples([], [], [], [], {m: [] for m in models})
    liq = result.liquidatable
    for k in window.score_rows:
        if k not in window.books:
            continue
        live = window.live[k]
        probs = score_models(
            window.books[k],
            history,
            i0 + k,
            horizon_h * HOUR_S,
            models,
            reactive_params,
            window.rates.get(k),
        )
        samples.row.append(np.full(live.size, k))
        samples.health.append(result.health[k, live])
        samples.outcome.append(liq[k + 1 : k + horizon_h + 1, live].any(axis=0))
        samples.protocol.append(np.array(result.protocols)[live])
        for m in models:
            samples.prob[m].append(probs[m])
    flat = samples.flat()
    meta = {
        "window": {
            "start": _iso(int(history.times_s[i0])),
            "end": _iso(int(history.times_s[i0 + n_rows - horizon_h - 1])),
        },
        "horizon_h": horizon_h,
        "cadence_h": window.cadence_h,
        "lookback_h": LOOKBACK_H,
        "borrowers": window.borrowers,
        "seed": window.seed,
        "positions": len(result.keys),
        "protocols": sorted(set(result.protocols)),
        "hours_replayed": n_rows,
        "blocks": [result.blocks[0], result.blocks[-1]] if result.blocks else [],
        "verified_against_getUserAccountData": result.verified,
        "price_moves": {
            a: float(history.close[i0 + n_rows - 1, j] / history.close[i0, j] - 1.0)
            for j, a in enumerate(ASSETS)
        },
        "replay_seconds": round(result.seconds, 1),
        "replay_reused": window.reused,
        "scoring_seconds": round(time.monotonic() - started, 1),
    }
    return report(flat, meta, models, thresholds, window.seed)


def run_backtest(
    history: History,
    start_ts: int,
    end_ts: int,
    *,
    horizon_h: int = 6,
    cadence_h: int = 6,
    borrowers: int = 300,
    seed: int = 7,
    protocols: Sequence[str] = ("aave-v3", "aave-v3.6", "morpho-blue"),
    models: Sequence[str] = MODELS,
    reactive_params: dict[str, float] | None = None,
    thresholds: TierThresholds = DEFAULT_THRESHOLDS,
    progress: Callable[[int, int], None] | None = None,
    reuse: bool = False,
) -> dict[str, Any]:
    """The whole backtest: replay (or take it from the cache with ``reuse``), then score;
    returns the report (see :func:`report`)."""
    window = replay_window(
        history,
        start_ts,
        end_ts,
        horizon_h=horizon_h,
        cadence_h=cadence_h,
        borrowers=borrowers,
        seed=seed,
        protocols=protocols,
        progress=progress,
        reuse=reuse,
    )
    return score_window(
        window, history, models=models, reactive_params=reactive_params, thresholds=thresholds
    )


class DevnetChainView:
    """Reads the devnet's Aave feeds (the build prices the replay rescales from)."""

    def __init__(self, info: Any) -> None:
        from onchain.devnet.chain import DevChain

        self.info = info
        self.chain = DevChain(info.rpc_url)

    def feed_answer(self, symbol: str) -> int:
        return int(
            self.chain.view(self.info.aave.price_feeds[symbol], "latestAnswer()", ["int256"])
        )


def roc_points(
    prob: npt.NDArray[np.float64], outcome: npt.NDArray[np.bool_], step: float = ROC_STEP
) -> dict[str, list[float]]:
    """The ROC curve for the report (``--json``, the store, the dashboard). ``scoring.roc_curve``
    has a vertex per distinct probability (tens of thousands); this keeps the first vertex in
    each ``step`` x ``step`` cell the curve enters, and the last (at most 2 / step + 2 points):
    a dropped vertex lies within ``step`` of the one kept before it."""
    fpr, tpr = scoring.roc_curve(prob, outcome)
    cell = np.floor(fpr / step) + np.floor(tpr / step)  # both rise along the curve
    keep = np.flatnonzero(np.diff(cell, prepend=-1.0) > 0)
    if keep[-1] != fpr.size - 1:
        keep = np.append(keep, fpr.size - 1)
    return {"fpr": fpr[keep].tolist(), "tpr": tpr[keep].tolist()}


def model_scores(
    prob: npt.NDArray[np.float64],
    outcome: npt.NDArray[np.bool_],
    health: npt.NDArray[np.float64],
    groups: npt.NDArray[np.int64],
    thresholds: TierThresholds,
    seed: int,
) -> dict[str, Any]:
    """Every figure for one model's forecasts."""
    b = scoring.brier(prob, outcome)
    b_clim = scoring.climatology_brier(outcome)
    cut, b_rule = scoring.best_threshold_rule(health, outcome)
    t = thresholds
    tiers = {}
    for name, lo, hi in (
        ("CRITICAL", t.critical_probability, np.inf),
        ("HIGH", t.high_probability, t.critical_probability),
        ("WATCH", t.watch_probability, t.high_probability),
    ):
        r, p, n = scoring.recall_precision((prob >= lo) & (prob < hi), outcome)
        tiers[name] = {"flagged": n, "recall": r, "precision": p}
    for name, lo in (("HIGH+", t.high_probability), ("not SAFE", t.watch_probability)):
        r, p, n = scoring.recall_precision(prob >= lo, outcome)
        tiers[name] = {"flagged": n, "recall": r, "precision": p}
    t95 = scoring.threshold_for_recall(prob, outcome, RECALL_TARGET)
    r95, p95, n95 = (
        scoring.recall_precision(prob >= t95, outcome) if np.isfinite(t95) else (np.nan, np.nan, 0)
    )
    return {
        "brier": b,
        "brier_climatology": b_clim,
        "skill_vs_climatology": 1.0 - b / b_clim if b_clim > 0 else float("nan"),
        "brier_best_hf_rule": b_rule,
        "best_hf_rule_threshold": cut,
        "skill_vs_best_hf_rule": 1.0 - b / b_rule if b_rule > 0 else float("nan"),
        "log_loss": scoring.log_loss(prob, outcome),
        "auc": scoring.auc(prob, outcome),
        "expected_liquidations": float(prob.sum()),
        "tiers": tiers,
        "threshold_for_95pct_recall": {
            "threshold": t95,
            "recall": r95,
            "precision": p95,
            "flagged": n95,
        },
        "reliability": [
            row.__dict__ for row in scoring.reliability_table(prob, outcome, groups, seed=seed)
        ],
        "roc": roc_points(prob, outcome),
    }


def report(
    flat: dict[str, Any],
    meta: dict[str, Any],
    models: Sequence[str],
    thresholds: TierThresholds,
    seed: int,
) -> dict[str, Any]:
    outcome = flat["outcome"]
    out = dict(meta)
    out["samples"] = int(outcome.size)
    out["liquidations"] = int(outcome.sum())
    out["thresholds"] = {
        "watch": thresholds.watch_probability,
        "high": thresholds.high_probability,
        "critical": thresholds.critical_probability,
    }
    out["models"] = {
        m: {"description": MODEL_TITLES[m]}
        | model_scores(flat["prob"][m], outcome, flat["health"], flat["row"], thresholds, seed)
        for m in models
    }
    out["_flat"] = flat  # for charts; dropped before JSON
    return out
