"""`onchain backtest`: how good are the liquidation probabilities on real price history? Replays
a window of hourly ETH/BTC prices on the devnet's real Aave V3 (3.0.2 and 3.6) and Morpho
Blue contracts, scores
every position at a cadence with the models (using only the 30 days of closes before each hour),
takes the outcome from the contracts, and reports Brier score and skills, log loss, AUC, tier
recall/precision and the reliability table. --json for machines, --chart DIR for the PNGs,
--store to keep the report in the store (the database of --db/--config, as `report` opens it),
where the API (/api/backtests) and the dashboard (/backtests) read it.
Bad input (a missing or stale store too) is one line on stderr and exit 2, before the devnet
starts."""

from __future__ import annotations

import calendar
import time
from contextlib import nullcontext
from pathlib import Path
from typing import Annotated, Any

import typer

from onchain.cli.common import DbOpt, LazyConsole, StoreConfigOpt, err
from onchain.errors import InputError

out = LazyConsole(pipe_width=160)
MARKETS = {
    "aave-v3": "aave-v3",
    "aave": "aave-v3",
    "aave-v3.0.2": "aave-v3",
    "aave-v3.6": "aave-v3.6",
    "morpho-blue": "morpho-blue",
    "morpho": "morpho-blue",
}


def parse_date(text: str, flag: str) -> int:
    """YYYY-MM-DD or YYYY-MM-DDTHH[:MM] (UTC) -> unix seconds."""
    for fmt in ("%Y-%m-%d", "%Y-%m-%dT%H:%M", "%Y-%m-%dT%H", "%Y-%m-%d %H:%M"):
        try:
            return calendar.timegm(time.strptime(text, fmt))
        except ValueError:
            continue
    raise InputError(
        f"{flag}: expected a UTC date like 2022-06-10 or 2022-06-10T12:00, got {text!r}"
    )


def parse_hours(text: str, flag: str) -> int:
    """'6h', '6', '1d' -> whole hours >= 1."""
    raw = text.strip().lower()
    factor = 24 if raw.endswith("d") else 1
    raw = raw.rstrip("dh")
    try:
        value = float(raw) * factor
    except ValueError:
        raise InputError(f"{flag}: expected whole hours like 6h or 1d, got {text!r}") from None
    if not (value >= 1 and value == int(value) and value <= 24 * 30):
        raise InputError(f"{flag}: expected whole hours between 1h and 30d, got {text!r}")
    return int(value)


def _f(value: Any, digits: int = 3) -> str:
    if value is None or (isinstance(value, float) and value != value):
        return "n/a"
    return f"{value:.{digits}f}"


def print_report(report: dict[str, Any]) -> None:
    from rich.table import Table

    out.print(
        f"window {report['window']['start']} to {report['window']['end']} UTC, "
        f"horizon {report['horizon_h']} h, scored every {report['cadence_h']} h on the last "
        f"{report['lookback_h'] // 24} days of closes; {report['positions']} positions "
        f"({', '.join(report['protocols'])}), {report['samples']} samples, "
        f"{report['liquidations']} liquidated within the horizon"
    )
    moves = ", ".join(f"{a} {v:+.1%}" for a, v in report["price_moves"].items())
    out.print(
        f"prices over the window: {moves}; blocks {report['blocks'][0]}-{report['blocks'][-1]}; "
        f"health factors equal getUserAccountData on {report['verified_against_getUserAccountData']} "
        "sampled accounts"
    )
    table = Table(title="Scores (skill = 1 - Brier / Brier of the reference)")
    for col in (
        "model",
        "Brier",
        "skill vs clim.",
        "skill vs HF rule",
        "log loss",
        "AUC",
        "expected/observed",
    ):
        table.add_column(col, justify="left" if col == "model" else "right")
    for name, s in report["models"].items():
        table.add_row(
            name,
            _f(s["brier"], 5),
            _f(s["skill_vs_climatology"]),
            _f(s["skill_vs_best_hf_rule"]),
            _f(s["log_loss"], 4),
            _f(s["auc"]),
            f"{s['expected_liquidations']:.0f}/{report['liquidations']}",
        )
    out.print(table)
    first = next(iter(report["models"].values()))
    out.print(
        f"best HF rule in hindsight: liquidated if HF < {_f(first['best_hf_rule_threshold'], 4)} "
        f"(Brier {_f(first['brier_best_hf_rule'], 5)}); climatology Brier "
        f"{_f(first['brier_climatology'], 5)}"
    )
    t = report["thresholds"]
    tiers = Table(
        title=f"Tiers (WATCH >= {t['watch']:g}, HIGH >= {t['high']:g}, CRITICAL >= {t['critical']:g})"
    )
    for col in ("model", "tier", "flagged", "recall", "precision"):
        tiers.add_column(col, justify="left" if col in ("model", "tier") else "right")
    for name, s in report["models"].items():
        for tier, v in s["tiers"].items():
            tiers.add_row(name, tier, str(v["flagged"]), _f(v["recall"]), _f(v["precision"]))
        r95 = s["threshold_for_95pct_recall"]
        tiers.add_row(
            name,
            f"p >= {_f(r95['threshold'], 4)} (95% recall)",
            str(r95["flagged"]),
            _f(r95["recall"]),
            _f(r95["precision"]),
        )
    out.print(tiers)
    rel = Table(
        title="Reliability: mean forecast / observed [90% bootstrap over scoring times] (n)"
    )
    rel.add_column("bin")
    for name in report["models"]:
        rel.add_column(name, justify="right")
    bins: dict[tuple[float, float], dict[str, str]] = {}
    for name, s in report["models"].items():
        for r in s["reliability"]:
            bins.setdefault((r["lo"], r["hi"]), {})[name] = (
                f"{r['mean_forecast']:.3f} / {r['observed']:.3f} "
                f"[{r['observed_lo']:.3f}, {r['observed_hi']:.3f}] ({r['n']})"
            )
    for (lo, hi), cells in sorted(bins.items()):
        rel.add_row(f"{lo:g}-{hi:g}", *(cells.get(n, "") for n in report["models"]))
    out.print(rel)
    for name, s in report["models"].items():
        out.print(f"{name}: {s['description']}")


def backtest_cmd(
    prices: Annotated[
        Path,
        typer.Option(
            "--prices",
            help="hourly history: a folder of eth_*1h.csv/btc_*1h.csv OHLC files "
            "(the shared/data/prices layout) or a CSV timestamp,asset,price",
        ),
    ],
    start: Annotated[str, typer.Option("--start", help="window start, UTC (2022-06-01)")],
    end: Annotated[str, typer.Option("--end", help="window end, UTC (exclusive)")],
    horizon: Annotated[str, typer.Option("--horizon", help="liquidation horizon")] = "6h",
    cadence: Annotated[str, typer.Option("--cadence", help="score every ...")] = "6h",
    borrowers: Annotated[
        int, typer.Option("--borrowers", help="devnet borrowers (Aave; Morpho gets 2/3)")
    ] = 300,
    seed: Annotated[int, typer.Option("--seed", help="devnet book and bootstrap seed")] = 7,
    markets: Annotated[
        list[str] | None,
        typer.Option(
            "--markets",
            help="aave-v3 (3.0.2), aave-v3.6, morpho-blue (repeatable; default all)",
        ),
    ] = None,
    reuse_replay: Annotated[
        bool,
        typer.Option(
            "--reuse-replay",
            help="keep the replay in .cache/backtest and score from it when the window, book, "
            "markets and code are the same (no devnet)",
        ),
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="machine-readable JSON")] = False,
    chart: Annotated[
        Path | None,
        typer.Option("--chart", help="folder for reliability.png and roc.png"),
    ] = None,
    store: Annotated[
        bool,
        typer.Option(
            "--store",
            help="keep the report in the store (--db, else ONCHAIN_DB_URL, else the config's "
            "[store]): the API and the dashboard show it",
        ),
    ] = False,
    config: StoreConfigOpt = None,
    db: DbOpt = None,
) -> None:
    """Score the liquidation probabilities on a replayed price history (see module doc)."""
    from onchain.backtest.run import load_history
    from onchain.output import strict_json

    start_ts, end_ts = parse_date(start, "--start"), parse_date(end, "--end")
    horizon_h, cadence_h = parse_hours(horizon, "--horizon"), parse_hours(cadence, "--cadence")
    if not 1 <= borrowers <= 5000:
        raise InputError(f"--borrowers: expected 1 to 5000, got {borrowers}")
    chosen = []
    for m in markets or ["aave-v3", "aave-v3.6", "morpho-blue"]:
        if m.lower() not in MARKETS:
            raise InputError(f"--markets: unknown market {m!r} (aave-v3, aave-v3.6, morpho-blue)")
        chosen.append(MARKETS[m.lower()])
    if chart is not None and chart.exists() and not chart.is_dir():
        raise InputError(f"--chart {chart}: not a folder")
    if not store and (db is not None or config is not None):
        raise InputError("--db and --config name the store of --store: add --store")
    history = load_history(prices)
    from onchain.backtest.run import window_rows

    window_rows(history, start_ts, end_ts, horizon_h)  # bad windows fail before the devnet
    protocols = tuple(dict.fromkeys(chosen))
    from onchain.cli.stored import opened_store

    # opened (and its schema checked) before the devnet starts: a wrong store fails in a second
    with opened_store(db, config) if store else nullcontext() as opened:
        report = _run(
            history,
            start_ts,
            end_ts,
            horizon_h,
            cadence_h,
            borrowers,
            seed,
            protocols,
            reuse_replay,
        )
        if chart is not None:
            from onchain.backtest.charts import write_charts

            for path in write_charts(report, chart):
                err.print(f"chart written: {path}")
        report.pop("_flat")
        if as_json:  # printed before it is stored: a store that fails then loses no report
            print(strict_json(report))
        else:
            print_report(report)
        if opened is not None:
            from onchain.store.backtests import record_backtest

            run_id = record_backtest(
                opened,
                report,
                prices=str(prices),
                start_ts=start_ts,
                end_ts=end_ts,
                markets=protocols,
            )
            err.print(
                f"stored as backtest run {run_id} in {opened.url} "
                f"(onchain serve: /backtests/{run_id})"
            )


def _run(
    history: Any,
    start_ts: int,
    end_ts: int,
    horizon_h: int,
    cadence_h: int,
    borrowers: int,
    seed: int,
    protocols: tuple[str, ...],
    reuse: bool,
) -> dict[str, Any]:
    """The backtest with its progress on stderr."""
    from onchain.backtest.run import run_backtest

    def progress(done: int, total: int) -> None:
        if done == 1 or done % 100 == 0 or done == total:
            err.print(f"replayed {done}/{total} hours")

    return run_backtest(
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
