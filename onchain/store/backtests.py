"""Backtest runs in the store: `onchain backtest --store` writes one row per run (its parameters,
counts, per-model headline figures and the whole report), the API and the dashboard read them.
The report is kept as `--json` prints it (strict JSON: a figure that is not finite is null), so
what the API returns is what the command printed."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, cast

from sqlalchemy import Table, select

from onchain.store import models as m
from onchain.store.db import Store

T_BACKTEST_RUNS = cast(Table, m.BacktestRun.__table__)
# per model, what the list of runs shows; the rest is in the report
SUMMARY_FIGURES = ("brier", "skill_vs_climatology", "skill_vs_best_hf_rule", "log_loss", "auc")


@dataclass(frozen=True)
class BacktestRunRow:
    """A stored run; `report` is None in the list (read only for one run)."""

    id: int
    ran_at: datetime
    prices: str
    window_start: datetime
    window_end: datetime
    horizon_h: int
    cadence_h: int
    seed: int
    borrowers: int
    markets: list[str]
    models: list[str]
    samples: int
    liquidations: int
    summary: dict[str, dict[str, float | None]]
    report: dict[str, Any] | None = None


def stored_report(report: Mapping[str, Any]) -> dict[str, Any]:
    """The report as `--json` prints it: its private keys (``_flat``, the arrays the PNG charts
    draw from) left out, through the same strict-JSON writer."""
    from onchain.output import strict_json

    return cast(
        dict[str, Any],
        json.loads(strict_json({k: v for k, v in report.items() if not k.startswith("_")})),
    )


def record_backtest(
    store: Store,
    report: Mapping[str, Any],
    *,
    prices: str,
    start_ts: int,
    end_ts: int,
    markets: Sequence[str],
    ran_at: datetime | None = None,
) -> int:
    """Write one run in one transaction; returns its id. ``start_ts``/``end_ts``: the window as
    asked (--start, --end, unix seconds); horizon, cadence, seed, book size and models are the
    report's own."""
    doc = stored_report(report)
    models = list(doc["models"])
    values = {
        "ran_at": ran_at or datetime.now(UTC),
        "prices": prices,
        "window_start": datetime.fromtimestamp(start_ts, UTC),
        "window_end": datetime.fromtimestamp(end_ts, UTC),
        "horizon_h": int(doc["horizon_h"]),
        "cadence_h": int(doc["cadence_h"]),
        "seed": int(doc["seed"]),
        "borrowers": int(doc["borrowers"]),
        "markets": list(markets),
        "models": models,
        "samples": int(doc["samples"]),
        "liquidations": int(doc["liquidations"]),
        "summary": {
            name: {k: doc["models"][name].get(k) for k in SUMMARY_FIGURES} for name in models
        },
        "report": doc,
    }
    with store.write() as conn:
        return int(
            conn.execute(
                T_BACKTEST_RUNS.insert().values(**values).returning(T_BACKTEST_RUNS.c.id)
            ).scalar_one()
        )


def backtest_runs(store: Store, limit: int = 100) -> list[BacktestRunRow]:
    """The newest runs first, without their reports."""
    t = T_BACKTEST_RUNS
    columns = [c for c in t.c if c.name != "report"]
    query = select(*columns).order_by(t.c.ran_at.desc(), t.c.id.desc()).limit(limit)
    with store.read() as conn:
        return [BacktestRunRow(**row._asdict()) for row in conn.execute(query)]


def backtest_run(store: Store, run_id: int) -> BacktestRunRow | None:
    """One run with its whole report, or None."""
    t = T_BACKTEST_RUNS
    with store.read() as conn:
        row = conn.execute(select(t).where(t.c.id == run_id)).first()
    return None if row is None else BacktestRunRow(**row._asdict())
