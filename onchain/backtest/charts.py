"""Reliability diagram and ROC curve of a backtest, one line per model (PNG, matplotlib Agg)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from onchain.risk import scoring


def write_charts(report: dict[str, Any], folder: Path) -> list[Path]:
    """Write ``reliability.png`` and ``roc.png`` into ``folder``; return their paths."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    folder.mkdir(parents=True, exist_ok=True)
    flat = report["_flat"]
    outcome = flat["outcome"]
    title = (
        f"{report['window']['start']} to {report['window']['end']}, "
        f"{report['horizon_h']} h horizon, {report['samples']} samples, "
        f"{report['liquidations']} liquidated"
    )
    paths = [folder / "reliability.png", folder / "roc.png"]
    fig, ax = plt.subplots(figsize=(7, 6), dpi=100)
    try:
        ax.plot([0, 1], [0, 1], color="grey", lw=1, ls=":", label="perfect")
        for name, scores in report["models"].items():
            rows = scores["reliability"]
            x = np.array([r["mean_forecast"] for r in rows])
            y = np.array([r["observed"] for r in rows])
            lo = np.array([r["observed_lo"] for r in rows])
            hi = np.array([r["observed_hi"] for r in rows])
            ax.errorbar(
                x,
                y,
                yerr=[np.maximum(y - lo, 0), np.maximum(hi - y, 0)],
                marker="o",
                capsize=3,
                label=f"{name} (Brier {scores['brier']:.4f})",
            )
        ax.set_xscale("symlog", linthresh=0.01)
        ax.set_yscale("symlog", linthresh=0.01)
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1)
        ax.set_xlabel("forecast probability of liquidation (bin mean)")
        ax.set_ylabel("observed frequency (90% bootstrap interval)")
        ax.set_title(f"Reliability\n{title}", fontsize=9)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8, loc="upper left")
        fig.tight_layout()
        fig.savefig(paths[0], format="png")
    finally:
        plt.close(fig)
    fig, ax = plt.subplots(figsize=(6, 6), dpi=100)
    try:
        ax.plot([0, 1], [0, 1], color="grey", lw=1, ls=":")
        for name, scores in report["models"].items():
            fpr, tpr = scoring.roc_curve(flat["prob"][name], outcome)
            ax.plot(fpr, tpr, label=f"{name} (AUC {scores['auc']:.3f})")
        ax.set_xlabel("false positive rate")
        ax.set_ylabel("true positive rate (recall)")
        ax.set_title(f"ROC\n{title}", fontsize=9)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8, loc="lower right")
        fig.tight_layout()
        fig.savefig(paths[1], format="png")
    finally:
        plt.close(fig)
    return paths
