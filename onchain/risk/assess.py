"""One call that runs every measure over a book: what the scheduler's ``assess`` job and the CLI use.

:func:`assess` chains the pure pieces in the order of ``DESIGN.md`` ("Risk"): health now,
distance to liquidation (per asset and uniform), pending health at the next oracle prices,
probability within the horizon, the liquidator's best call for liquidatable and pending
positions, tiers with reasons, and margin advice. Market context (oracle state, pool liquidity,
DEX depth, gas) is optional: a measure whose input is missing is skipped, never guessed.

Typical wiring (the caller does the I/O)::

    book = book_from_positions(positions, bonus_by_asset=..., close_factor_rule_by_protocol=...)
    model = fit_volatility_model(closes, timestamps, symbols, low=lows).with_assets(book.symbols)
    horizon_s = estimate_chain_latency(...).horizon_s(reaction_s=60)
    result = assess(book, model.effective_covariance(horizon_s),
                    tail_dof=model.horizon_tail_dof(horizon_s), pending=next_oracle_prices(...))

Work that only concerns a few positions (liquidation plans, advice) runs on those rows only, so a
million healthy positions cost little more than their health factors. The book is processed in
row chunks (cache-sized, views, no copies) spread over a few threads: numpy releases the GIL in
its inner loops, so chunks run in parallel, and every measure is per position (book-level
inputs, the collateral totals for concentration, are computed once; the liquidation curve is a
sum over chunks).
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, fields, is_dataclass, replace
from typing import Any, cast

import numpy as np
import numpy.typing as npt

from onchain.risk.advice import MarginAdvice, margin_advice, safe_health_and_target
from onchain.risk.book import Book, BoolArray, FloatArray
from onchain.risk.distance import LiquidationPrices, UniformShock, liquidation_price, uniform_shock
from onchain.risk.health import health_factor_from_values
from onchain.risk.liquidator import LiquidationPlan, plan_liquidations
from onchain.risk.liquidity import DexDepth, low_liquidity_mask
from onchain.risk.oracle_lag import PendingHealth, PendingPrices, pending_health
from onchain.risk.probability import (
    Drift,
    LiquidationProbability,
    interest_drift,
    liquidation_probability,
)
from onchain.risk.stress import LiquidationCurve, liquidation_curve
from onchain.risk.tiers import (
    DEFAULT_THRESHOLDS,
    TierThresholds,
    classify,
    collateral_concentration,
)


@dataclass(frozen=True)
class Assessment:
    """Every measure for every position of the book (n rows).

    Plans and advice only concern few positions, so they are stored for those rows only:
    ``plan`` is aligned with ``plan_rows`` (positions liquidatable now, planned at the oracle
    prices, and positions one update away, planned at the pending prices; ascending), and
    ``advice`` with ``advice_rows`` (positions above the target probability).
    ``safe_health_factor`` is for every position. ``curve`` when drops were given.
    """

    health: FloatArray
    liquidatable: BoolArray
    liquidation_prices: LiquidationPrices
    uniform: UniformShock
    pending: PendingHealth | None
    probability: LiquidationProbability
    tier: npt.NDArray[np.int8]
    reasons: npt.NDArray[np.uint32]
    plan_rows: npt.NDArray[np.int64]
    plan: LiquidationPlan
    safe_health_factor: FloatArray | None
    advice_rows: npt.NDArray[np.int64]
    advice: MarginAdvice | None
    curve: LiquidationCurve | None = None

    def targets(self, profitable_only: bool = True) -> npt.NDArray[np.int64]:
        """Book rows of the liquidation targets, best net profit first."""
        return self.plan_rows[self.plan.ranking(profitable_only)]


def _take(obj: Any, rows: npt.NDArray[np.int64]) -> Any:
    """The same dataclass with every array field restricted to ``rows``."""
    return type(obj)(
        **{
            f.name: v[rows] if isinstance(v := getattr(obj, f.name), np.ndarray) else v
            for f in fields(obj)
        }
    )


def _assess_rows(
    book: Book,
    offset: int,
    covariance: npt.ArrayLike,
    tail_dof: npt.ArrayLike,
    drift: Drift,
    oracle_steps: float,
    pending: PendingPrices | None,
    low_liq_inputs: tuple[npt.ArrayLike, npt.ArrayLike] | None,
    dex: DexDepth | None,
    gas_base: float,
    thresholds: TierThresholds,
    target_probability: float,
    with_advice: bool,
    collateral_totals: FloatArray,
    curve_drops: FloatArray | None,
    interest: tuple[npt.ArrayLike, npt.ArrayLike] | None,
) -> Assessment:
    p = book.price_base
    n = book.n_positions
    w = book.collateral_lt @ p
    d = book.debt @ p
    hf = health_factor_from_values(w, d)
    liq = hf < 1.0
    lp = liquidation_price(book)
    us = uniform_shock(book)
    ph = pending_health(book, pending) if pending is not None else None
    prob = liquidation_probability(
        book,
        covariance,
        tail_dof=tail_dof,
        drift=drift,
        oracle_steps=oracle_steps,
        log_drift=None if interest is None else interest_drift(book, *interest),
    )
    # liquidation plans: liquidatable now at oracle prices, pending ones at pending prices
    rows_now = np.flatnonzero(liq)
    plan = plan_liquidations(book.subset(rows_now), health=hf[rows_now], dex=dex, gas_base=gas_base)
    plan_rows = rows_now
    pend = ph.one_update_away if ph is not None else np.zeros(n, dtype=bool)
    if ph is not None and pending is not None and pend.any():
        rows_p = np.flatnonzero(pend)
        sub = plan_liquidations(
            book.subset(rows_p),
            pending.price_base,
            health=ph.health_pending[rows_p],
            dex=dex,
            gas_base=gas_base,
        )
        plan_rows = np.concatenate([rows_now, rows_p])
        order = np.argsort(plan_rows, kind="stable")
        plan = _take(_merge([plan, sub]), order)
        plan_rows = plan_rows[order]
    profit = np.zeros(n)
    profit[plan_rows] = plan.net_profit_base
    low_liq = None
    if low_liq_inputs is not None:
        low_liq = low_liquidity_mask(book, *low_liq_inputs, thresholds.max_utilization)
    coll_value = book.collateral @ p
    tier, reasons = classify(
        hf,
        prob.probability,
        thresholds=thresholds,
        pending_liquidatable=pend,
        nearest_move=np.minimum(us.drop_fraction, us.rise_fraction),
        low_liquidity=low_liq,
        concentration=collateral_concentration(book, collateral_totals),
        bad_debt=np.maximum(d - coll_value, 0.0),
        unprofitable=liq & (profit <= 0.0),
    )
    safe_hf = None
    adv_rows = np.zeros(0, dtype=np.int64)
    if with_advice:
        safe_hf, already = safe_health_and_target(
            prob, target_probability, tail_dof, book.n_assets, drift
        )
        adv_rows = np.flatnonzero(~already)
    curve = liquidation_curve(book, curve_drops) if curve_drops is not None else None
    return Assessment(
        health=hf,
        liquidatable=liq,
        liquidation_prices=lp,
        uniform=us,
        pending=ph,
        probability=prob,
        tier=tier,
        reasons=reasons,
        plan_rows=plan_rows + offset,
        plan=plan,
        safe_health_factor=safe_hf,
        advice_rows=adv_rows + offset,
        advice=None,
        curve=curve,
    )


def _merge(parts: list[Any]) -> Any:
    """Concatenate per-chunk results field by field (curves are summed, drops kept)."""
    first = parts[0]
    if first is None:
        return None
    if isinstance(first, LiquidationCurve):
        return LiquidationCurve(
            drops=first.drops,
            **{
                f.name: sum(getattr(c, f.name) for c in parts)
                for f in fields(LiquidationCurve)
                if f.name != "drops"
            },
        )
    if is_dataclass(first):
        return cast(Any, type(first))(
            **{f.name: _merge([getattr(x, f.name) for x in parts]) for f in fields(first)}
        )
    if isinstance(first, np.ndarray):
        return np.concatenate(parts) if len(parts) > 1 else first
    return first


def assess(
    book: Book,
    covariance: npt.ArrayLike,
    *,
    tail_dof: npt.ArrayLike = np.inf,
    drift: Drift = "zero",
    oracle_steps: float = np.inf,
    pending: PendingPrices | None = None,
    pool_available: npt.ArrayLike | None = None,
    pool_utilization: npt.ArrayLike | None = None,
    dex: DexDepth | None = None,
    gas_base: float = 0.0,
    thresholds: TierThresholds = DEFAULT_THRESHOLDS,
    target_probability: float = 0.01,
    with_advice: bool = True,
    curve_drops: npt.ArrayLike | None = None,
    interest: tuple[npt.ArrayLike, npt.ArrayLike] | None = None,
    chunk_rows: int = 32_768,
    workers: int | None = None,
) -> Assessment:
    """Run every measure (see module doc). ``covariance``: effective horizon covariance (m, m)
    in book order; ``tail_dof`` scalar or (m,); prices are the book's (the oracle's).
    ``oracle_steps``: prices the oracle publishes within the horizon (``inf``: continuous;
    see ``probability``). ``curve_drops``: also the liquidation curve for these uniform volatile drops.
    ``interest``: (supply, borrow) (m,) ln growth of a unit within the horizon per column (rate
    per second times the horizon): the probability's interest drift (``probability`` module doc).
    ``workers``: threads (default: CPU count, at most 4); ``chunk_rows``: rows per chunk."""
    n = book.n_positions
    totals = book.collateral.sum(axis=0)
    low_liq_inputs = (
        (pool_available, pool_utilization)
        if pool_available is not None and pool_utilization is not None
        else None
    )
    drops = None if curve_drops is None else np.asarray(curve_drops, dtype=np.float64)
    args = (
        covariance,
        tail_dof,
        drift,
        oracle_steps,
        pending,
        low_liq_inputs,
        dex,
        gas_base,
        thresholds,
        target_probability,
        with_advice,
        totals,
        drops,
        interest,
    )
    bounds = [(a, min(a + chunk_rows, n)) for a in range(0, max(n, 1), chunk_rows)]
    n_workers = min(workers or min(os.cpu_count() or 1, 4), len(bounds))

    def run(bound: tuple[int, int]) -> Assessment:
        return _assess_rows(book.row_slice(*bound), bound[0], *args)

    if n_workers <= 1:
        parts = [run(b) for b in bounds]
    else:
        with ThreadPoolExecutor(max_workers=n_workers) as pool:
            parts = list(pool.map(run, bounds))
    merged: Assessment = _merge(parts)
    if not with_advice:
        return merged
    # advice: one vectorised solve over the few positions above the target, whole book at once
    rows = merged.advice_rows
    advice = margin_advice(
        book.subset(rows),
        covariance,
        target_probability=target_probability,
        tail_dof=tail_dof,
        drift=drift,
        probability=_take(merged.probability, rows),
    )
    return replace(merged, advice=advice)
