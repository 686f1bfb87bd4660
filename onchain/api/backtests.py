"""Stored backtests over HTTP: `GET /api/backtests` (the runs, newest first, with each model's
headline figures), `GET /api/backtests/{id}` (one run's whole report, as `onchain backtest
--json` printed it, with the ROC points), and the dashboard's pages /backtests and
/backtests/{id} (the reliability diagram and the ROC curve drawn in the browser by Plotly from
that JSON, the metrics tables rendered here). Everything is read from the store, which
`onchain backtest --store` wrote: the server never runs a backtest."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Annotated, Any

from fastapi import FastAPI, HTTPException, Path, Query, Request
from fastapi.responses import HTMLResponse, Response

from onchain.api import schemas as S
from onchain.store.backtests import BacktestRunRow, backtest_run, backtest_runs
from onchain.store.db import Store

RUN_ID_MAX = 2**63 - 1
RESPONSES: dict[int | str, dict[str, Any]] = {
    404: {"model": S.ErrorOut, "description": "no stored backtest with that id"},
    422: {"model": S.ErrorOut, "description": "malformed parameter"},
}
# the scores table's columns: (report key, heading, digits)
SCORE_COLUMNS = (
    ("brier", "Brier", 5),
    ("skill_vs_climatology", "skill vs climatology", 3),
    ("skill_vs_best_hf_rule", "skill vs best HF rule", 3),
    ("log_loss", "log loss", 4),
    ("auc", "AUC", 3),
)
LIST_COLUMNS = (SCORE_COLUMNS[0], SCORE_COLUMNS[2], SCORE_COLUMNS[4])  # the list of runs'


def run_out(r: BacktestRunRow) -> dict[str, Any]:
    out: dict[str, Any] = {
        "id": r.id,
        "ran_at": r.ran_at.isoformat(),
        "prices": r.prices,
        "window_start": r.window_start.isoformat(),
        "window_end": r.window_end.isoformat(),
        "horizon_h": r.horizon_h,
        "cadence_h": r.cadence_h,
        "seed": r.seed,
        "borrowers": r.borrowers,
        "markets": r.markets,
        "models": r.models,
        "samples": r.samples,
        "liquidations": r.liquidations,
        "summary": {name: r.summary[name] for name in r.models},  # the report's order
    }
    if r.report is not None:
        out["report"] = r.report
    return out


def mount_backtest_api(app: FastAPI, store: Store) -> None:
    @app.get(
        "/api/backtests", response_model=S.BacktestRunsOut, responses=RESPONSES, tags=["backtests"]
    )
    def list_backtests(limit: Annotated[int, Query(ge=1, le=1000)] = 100) -> dict[str, Any]:
        """The stored runs of `onchain backtest --store`, newest first: parameters, counts and
        each model's Brier, skills, log loss and AUC."""
        return {"runs": [run_out(r) for r in backtest_runs(store, limit)]}

    @app.get(
        "/api/backtests/{run_id}",
        response_model=S.BacktestOut,
        responses=RESPONSES,
        tags=["backtests"],
    )
    def one_backtest(run_id: Annotated[int, Path(ge=1, le=RUN_ID_MAX)]) -> dict[str, Any]:
        """One stored run with its whole report: every figure of `onchain backtest --json`
        (Brier and skills, log loss, AUC, recall and precision per tier, the reliability table
        with its bootstrap intervals) and each model's ROC points."""
        run = backtest_run(store, run_id)
        if run is None:
            raise HTTPException(404, f"no stored backtest with id {run_id}")
        return run_out(run)


def _when(value: datetime) -> str:
    """A window's edge: the day alone when it is midnight."""
    return f"{value:%Y-%m-%d}" if value.hour == value.minute == 0 else f"{value:%Y-%m-%d %H:%M}"


def _fig(value: float | None, digits: int) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def score_rows(report: dict[str, Any]) -> list[dict[str, Any]]:
    """The scores table of the run's page: one row per model, figures formatted."""
    return [
        {
            "model": name,
            "description": s.get("description", ""),
            "figures": [_fig(s.get(key), digits) for key, _, digits in SCORE_COLUMNS],
            "expected": _fig(s.get("expected_liquidations"), 0),
        }
        for name, s in report["models"].items()
    ]


def tier_rows(report: dict[str, Any]) -> list[dict[str, str]]:
    """Recall and precision per tier and at the 95%-recall threshold, per model."""
    rows = []
    for name, s in report["models"].items():
        for tier, v in s["tiers"].items():
            rows.append(
                {
                    "model": name,
                    "tier": tier,
                    "flagged": str(v["flagged"]),
                    "recall": _fig(v["recall"], 3),
                    "precision": _fig(v["precision"], 3),
                }
            )
        r95 = s["threshold_for_95pct_recall"]
        rows.append(
            {
                "model": name,
                "tier": f"p >= {_fig(r95['threshold'], 4)} (95% recall)",
                "flagged": str(r95["flagged"]),
                "recall": _fig(r95["recall"], 3),
                "precision": _fig(r95["precision"], 3),
            }
        )
    return rows


def reliability_rows(report: dict[str, Any]) -> list[list[str]]:
    """The reliability table, one row per forecast bin and a cell per model (as the command
    prints it): mean forecast / observed [90% bootstrap interval] (n)."""
    bins: dict[tuple[float, float], dict[str, str]] = {}
    for name, s in report["models"].items():
        for r in s["reliability"]:
            bins.setdefault((r["lo"], r["hi"]), {})[name] = (
                f"{_fig(r['mean_forecast'], 3)} / {_fig(r['observed'], 3)} "
                f"[{_fig(r['observed_lo'], 3)}, {_fig(r['observed_hi'], 3)}] ({r['n']})"
            )
    return [
        [f"{lo:g}–{hi:g}", *(cells.get(name, "") for name in report["models"])]
        for (lo, hi), cells in sorted(bins.items())
    ]


def mount_backtest_pages(
    app: FastAPI,
    store: Store,
    render: Callable[..., Response],
    not_found: Callable[[Request, str], Response],
) -> None:
    @app.get("/backtests", response_class=HTMLResponse, include_in_schema=False)
    def backtests_page(request: Request) -> Response:
        runs = []
        for r in backtest_runs(store, 200):
            run = run_out(r)
            run["window"] = f"{_when(r.window_start)} to {_when(r.window_end)}"
            run["stored"] = f"{r.ran_at:%Y-%m-%d %H:%M}"
            run["rows"] = [
                [name, *(_fig(figures.get(key), digits) for key, _, digits in LIST_COLUMNS)]
                for name, figures in run["summary"].items()
            ]
            runs.append(run)
        return render(
            request,
            "backtests.html",
            "backtests",
            runs=runs,
            columns=[heading for _, heading, _ in LIST_COLUMNS],
        )

    @app.get("/backtests/{run_id}", response_class=HTMLResponse, include_in_schema=False)
    def backtest_page(request: Request, run_id: str) -> Response:
        known = run_id.isascii() and run_id.isdigit() and len(run_id) < 19
        run = backtest_run(store, int(run_id)) if known else None
        if run is None or run.report is None:
            return not_found(request, f"no stored backtest with id {run_id}")
        return render(
            request,
            "backtest.html",
            "backtest",
            run=run_out(run),
            report=run.report,
            columns=[heading for _, heading, _ in SCORE_COLUMNS],
            scores=score_rows(run.report),
            tiers=tier_rows(run.report),
            reliability=reliability_rows(run.report),
        )
