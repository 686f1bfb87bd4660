"""Risk assessment of 1,000,000 synthetic positions, ours vs a naive per-position loop.

Ours: ``onchain.risk.assess`` (health, liquidation prices per asset, uniform drop, pending health
at the next oracle prices, closed-form probability with fat tails, tiers and reasons, liquidation
plans with DEX slippage and gas, margin advice with its exact top-up/repay solve, a 17-point
liquidation curve) and a WETH cascade (fixed point over 11 initial drops), vectorised over the
whole book. Naive: position by position in plain Python (what a first version would do), a
SUBSET of those measures (health, liquidation prices, uniform drop, pending health, a Gaussian
probability and safe HF, the curve; no liquidator, no advice solve, no cascade), timed on a
sample in the same run and extrapolated: the printed ratio understates the gap. Monte Carlo (the closed form's checker) is reported separately as paths per second.
The goal: the full book in under one second on a 2-core machine.
"""

from __future__ import annotations

import argparse
import ctypes
import math
import time

import numpy as np

from onchain.risk import assess, make_book
from onchain.risk.book import Book
from onchain.risk.liquidity import DexDepth, cascade, constant_product_spot_impact
from onchain.risk.oracle_lag import next_oracle_prices
from onchain.risk.probability import monte_carlo_probability
from onchain.risk.reactive import reactive_volatility, stepped_probability
from onchain.risk.stress import shock_grid

SYMBOLS = ("WETH", "WBTC", "wstETH", "LINK", "USDC", "DAI")
PRICES = np.array([3000.0, 60000.0, 3500.0, 15.0, 1.0, 1.0])
STABLE = np.array([False, False, False, False, True, True])
LT = np.array([0.83, 0.78, 0.81, 0.68, 0.80, 0.80])
BONUS = np.array([0.05, 0.05, 0.06, 0.07, 0.045, 0.05])
ANNUAL_VOL = np.array([0.70, 0.55, 0.72, 0.95, 0.01, 0.01])


def synthetic_book(n: int, seed: int = 1) -> Book:
    """Realistic-looking positions: 1-2 volatile collaterals, stable (85%) or volatile debt,
    health factors spread from below 1 to very safe."""
    rng = np.random.default_rng(seed)
    m = len(SYMBOLS)
    coll_value = np.exp(rng.normal(np.log(20_000.0), 1.5, n))
    c = np.zeros((n, m))
    first = rng.choice([0, 1, 2, 3, 4], size=n, p=[0.45, 0.2, 0.2, 0.05, 0.1])
    second = rng.choice([0, 1, 2, 3, 4], size=n)
    split = np.where(rng.random(n) < 0.3, rng.uniform(0.2, 0.8, n), 1.0)
    rows = np.arange(n)
    c[rows, first] += coll_value * split / PRICES[first]
    c[rows, second] += coll_value * (1.0 - split) / PRICES[second]
    hf = np.exp(rng.normal(np.log(1.7), 0.3, n))
    weighted = (c * PRICES * LT).sum(axis=1)
    debt_asset = np.where(
        rng.random(n) < 0.85, rng.choice([4, 5], size=n), rng.choice([0, 1], size=n)
    )
    debt_asset = np.where(debt_asset == first, 5, debt_asset)
    debt_asset = np.where((debt_asset == second) & (split < 1.0), 5, debt_asset)
    d = np.zeros((n, m))
    d[rows, debt_asset] = weighted / hf / PRICES[debt_asset]
    d[rng.random(n) < 0.05] = 0.0  # suppliers only
    return make_book(c, d, LT, PRICES, is_stable=STABLE, liquidation_bonus=BONUS, symbols=SYMBOLS)


def covariance(horizon_s: float) -> np.ndarray:
    sd = ANNUAL_VOL * math.sqrt(horizon_s / (365 * 86400))
    corr = np.full((6, 6), 0.8)
    corr[4:, :] = corr[:, 4:] = 0.0
    corr[2, 0] = corr[0, 2] = 0.99
    np.fill_diagonal(corr, 1.0)
    return corr * np.outer(sd, sd)


def market_context(m: int) -> dict:
    pending = next_oracle_prices(
        PRICES * np.array([0.994, 1.0, 0.992, 1.0, 1.0, 1.0]),
        PRICES,
        deviation_threshold=np.array([0.005, 0.005, 0.005, 0.01, 0.0025, 0.0025]),
        heartbeat_s=3600.0,
        since_update_s=1200.0,
    )
    dex = DexDepth(
        reserve_asset=np.array([40_000.0, 1_500.0, 20_000.0, 2e6, np.inf, np.inf]),
        reserve_quote_base=np.array([1.2e8, 9e7, 7e7, 3e7, np.inf, np.inf]),
        fee=np.array([0.0005, 0.0005, 0.0001, 0.003, 0.0, 0.0]),
    )
    return {"pending": pending, "dex": dex, "gas_base": 350_000 * 20e9 * 1e-18 * 3000.0}


def interest_rates(m: int) -> tuple[np.ndarray, np.ndarray]:
    """Each column's supply and borrow rate (ln growth per second): the interest drift."""
    year = 365 * 86_400.0
    return np.full(m, 0.02 / year), np.linspace(0.01, 0.9, m) / year


def ours(
    book: Book, horizon_s: float, workers: int | None = None, chunk_rows: int = 32_768
) -> tuple[float, object]:
    ctx = market_context(book.n_assets)
    cov = covariance(horizon_s)
    dof = np.array([3.0, 3.0, 3.0, 3.0, np.inf, np.inf])
    supply, borrow = interest_rates(book.n_assets)
    started = time.perf_counter()
    result = assess(
        book,
        cov,
        tail_dof=dof,
        interest=(supply * horizon_s, borrow * horizon_s),
        curve_drops=shock_grid(0.8, 0.05),
        workers=workers,
        chunk_rows=chunk_rows,
        **ctx,
    )
    weth_pool = 20_000_000.0  # depth that must absorb this (large) synthetic book
    spiral = cascade(
        book,
        0,
        shock_grid(0.5, 0.05),
        lambda units: constant_product_spot_impact(units, weth_pool, 0.0005),
    )
    elapsed = time.perf_counter() - started
    return elapsed, (result, spiral)


def naive(book: Book, horizon_s: float, rows: np.ndarray) -> float:
    """Per position: the same formulas in plain Python loops (no numpy inside)."""
    from math import erfc, exp, log, sqrt

    ctx = market_context(book.n_assets)
    pend_price = [float(x) for x in ctx["pending"].price_base]
    cov = covariance(horizon_s).tolist()
    price = [float(x) for x in PRICES]
    lt = book.liquidation_threshold
    drops = [float(x) for x in shock_grid(0.8, 0.05)]
    m = book.n_assets
    started = time.perf_counter()
    for r in rows:
        c = book.collateral[r].tolist()
        d = book.debt[r].tolist()
        lts = lt[r].tolist()
        w = sum(c[i] * price[i] * lts[i] for i in range(m))
        dv = sum(d[i] * price[i] for i in range(m))
        hf = w / dv if dv > 0 else math.inf
        # liquidation price per asset
        for i in range(m):
            a = c[i] * lts[i] - d[i]
            if a != 0 and dv > 0:
                _ = price[i] - (w - dv) / a
        # uniform volatile drop
        nv = sum((c[i] * lts[i] - d[i]) * price[i] for i in range(m) if not STABLE[i])
        gs = sum((c[i] * lts[i] - d[i]) * price[i] for i in range(m) if STABLE[i])
        _ = 1 + gs / nv if nv > 0 else math.inf
        # pending health
        wp = sum(c[i] * pend_price[i] * lts[i] for i in range(m))
        dp = sum(d[i] * pend_price[i] for i in range(m))
        _ = wp / dp if dp > 0 else math.inf
        # probability (Gaussian shortcut: the naive way would not even have the t CDF)
        if dv > 0 and w > 0:
            wts = [c[i] * price[i] * lts[i] / w - d[i] * price[i] / dv for i in range(m)]
            var = sum(wts[i] * cov[i][j] * wts[j] for i in range(m) for j in range(m))
            s = sqrt(var)
            b = log(hf)
            p = 1.0 if b <= 0 else (erfc(b / s / sqrt(2.0)) if s > 0 else 0.0)
            _ = exp(3.0 * s) * p  # safe HF
        # liquidation curve
        for dr in drops:
            f = [1.0 - dr if not STABLE[i] else 1.0 for i in range(m)]
            ws = sum(c[i] * price[i] * f[i] * lts[i] for i in range(m))
            ds = sum(d[i] * price[i] * f[i] for i in range(m))
            _ = ds > 0 and ws < ds
    return time.perf_counter() - started


def tune_malloc() -> bool:
    """Keep freed memory in the process (glibc): large numpy temporaries then reuse warm pages
    instead of a fresh mmap + page faults each time, which on this VM costs more than the
    arithmetic. A long-running daemon wants the same (or MALLOC_MMAP_THRESHOLD_ /
    MALLOC_TRIM_THRESHOLD_ in its environment). Returns False where glibc is not there."""
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return False
    m_trim_threshold, m_top_pad, m_mmap_threshold = -1, -2, -3
    ok = libc.mallopt(m_mmap_threshold, 1 << 30) == 1
    ok &= libc.mallopt(m_trim_threshold, 1 << 62) == 1
    ok &= libc.mallopt(m_top_pad, 64 << 20) == 1
    return bool(ok)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--positions", type=int, default=1_000_000)
    ap.add_argument("--naive-subset", type=int, default=20_000)
    ap.add_argument("--horizon-s", type=float, default=120.0)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--workers", type=int, default=None)
    ap.add_argument("--chunk-rows", type=int, default=32_768)
    ap.add_argument("--no-malloc-tuning", action="store_true")
    args = ap.parse_args()
    tuned = False if args.no_malloc_tuning else tune_malloc()
    print(f"glibc malloc tuning: {'on' if tuned else 'off'}")
    book = synthetic_book(args.positions)
    print(f"{args.positions:,} positions x {book.n_assets} assets, horizon {args.horizon_s:.0f}s")
    ours(book.subset(np.arange(1000)), args.horizon_s)  # warm-up
    times = []
    result = None
    for _ in range(args.repeats):
        result = None  # drop the previous result first: its memory is reused, as in a daemon
        t, (result, spiral) = ours(book, args.horizon_s, args.workers, args.chunk_rows)
        times.append(t)
    best = min(times)
    tiers = np.bincount(result.tier, minlength=6)  # type: ignore[attr-defined]
    print(
        f"ours: {best:.3f}s for the full book (best of {args.repeats}; all: "
        + ", ".join(f"{t:.3f}" for t in times)
        + ")"
    )
    print(f"  tiers SAFE/WATCH/HIGH/CRITICAL/PENDING/LIQUIDATABLE = {tiers.tolist()}")
    print(
        "  WETH cascade, initial -> final drop: "
        + ", ".join(
            f"{a:.0%}->{b:.1%}"
            for a, b in zip(spiral.initial_drop[::2], spiral.final_drop[::2], strict=True)  # type: ignore[attr-defined]
        )
    )
    rows = np.random.default_rng(2).choice(
        args.positions, size=min(args.naive_subset, args.positions), replace=False
    )
    t_naive = naive(book, args.horizon_s, rows)
    per_pos = t_naive / len(rows)
    extrapolated = per_pos * args.positions
    print(
        f"naive loop: {t_naive:.3f}s for {len(rows):,} positions -> {extrapolated:.1f}s "
        f"extrapolated for {args.positions:,}"
    )
    print(f"ratio naive/ours: {extrapolated / best:.0f}x")
    # the backtest's reactive model (fast/slow EWMA, t tails, oracle steps) on the whole book
    model = reactive_volatility(
        3000.0 * np.exp(np.cumsum(np.random.default_rng(3).normal(0, 0.01, (721, 4)), axis=0)),
        np.arange(721) * 3600,
        SYMBOLS[:4],
    )
    rates = interest_rates(book.n_assets)
    started = time.perf_counter()
    stepped_probability(book, model, 6 * 3600.0, 3600.0, SYMBOLS, rates=rates)
    print(
        "reactive model probability (6 h, hourly oracle, interest drift): "
        f"{time.perf_counter() - started:.3f}s"
    )
    # Monte Carlo throughput
    small = book.subset(np.arange(50))
    cov = covariance(args.horizon_s)
    started = time.perf_counter()
    n_paths, n_steps = 10_000, 16
    monte_carlo_probability(small, cov, n_paths=n_paths, n_steps=n_steps, tail_dof=3.0, seed=1)
    t_mc = time.perf_counter() - started
    print(
        f"Monte Carlo: {n_paths:,} paths x {n_steps} steps x {small.n_assets} assets for "
        f"{small.n_positions} positions in {t_mc:.2f}s = {n_paths / t_mc:,.0f} paths/s "
        f"({n_paths * n_steps * small.n_positions / t_mc / 1e6:.1f}M position-steps/s)"
    )


if __name__ == "__main__":
    main()
