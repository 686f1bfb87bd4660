"""A liquidation-probability model for hourly closes that reacts within hours of a crash starting
and prices what the protocol actually sees: oracle prices in steps.

Volatility. Three EWMA variances per asset: hourly log returns with a fast lambda (0.9,
half-life ~6.6 h) and a slow one (0.99, ~3 days), and overlapping ``trend_steps``-hour returns
(12 h, per hour, lambda 0.9), which see moves that persist hour after hour (a crash is a trend:
six hourly -2% moves are a -12% move, not the -4.9% that sqrt(6) hourly sds suggest). The
forecast variance is the largest of the fast one, ``trend_weight`` (0.8) times the trend one and
``slow_weight`` (0.35) times the slow one: when a crash starts the fast and trend ones jump within
a few hours, where a GARCH fitted on 30 days, or a long EWMA, needs a day or more. Then
``month_weight`` (5%) of it is replaced by the lookback's mean squared hourly return: after a calm
week the fast estimates sit far below what the month has shown a day can bring (4-5 Aug 2024:
-14% in two hours after a week whose 6-hour sd was 1.1%), and this keeps part of it. The largest of
noisy estimates sits above each of them, so the trend and slow ones count at less than full
weight: at full weight calm weeks were forecast about twice too high (the slow one lagged above a
falling volatility, the trend one added its noise); less trend weight than 0.8 lowers calm
forecasts further but misses crash onsets. Correlation: the larger of a fast and a slow EWMA
correlation of standardized returns, since assets move together when markets fall.

Tails. The horizon move is a unit-variance Student-t (a normal variance mixture: jumps and
volatility surprises), with ``dof`` (4) and a ``tail_scale`` on the sd (1.05); the reflection
principle holds for it exactly (see ``probability``).

Monitoring in steps. A position is liquidated only when the oracle publishes a price below its
liquidation price; prices arrive in steps (here every ``monitor_s``: an hourly heartbeat or the
deviation threshold). For a discretely monitored Brownian motion the first-passage probability
equals the continuous one with the barrier moved away by 0.5826·sigma_step (Broadie, Glasserman
and Kou 1997), so ln HF is shifted up by 0.5826 times the sd of ln HF over one oracle step.
Without it, positions just above HF 1 get probabilities near 1 although the next published price
may well be above their liquidation price.

Interest. With the columns' supply and borrow rates (``stepped_probability(..., rates=)``) the
interest that accrues within the horizon moves the barrier (``probability.interest_drift``): a
position that prices cannot move (collateral and debt the oracle prices together) a few basis
points above HF 1 at a high borrow rate is liquidated by interest alone.

The defaults were chosen with ``python -m onchain.backtest.tune`` (``onchain backtest``'s replays)
on the tuning windows (May 2021 crash, Dec 2020-Jan 2021 rally, July 2023 calm) and judged on
others kept out of the choice (README, "How good is the probability").
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

from onchain.risk.book import Book
from onchain.risk.probability import (
    LiquidationProbability,
    interest_drift,
    liquidation_probability,
)
from onchain.risk.volatility import VolatilityModel, ewma_correlation, ewma_variance, log_returns

DEFAULT_DOF = 4.0
# chosen with `python -m onchain.backtest.tune` with the interest drift on the May 2021 crash, the
# Dec 2020-Jan 2021 rally and July 2023 (README, model note): the highest smallest skill of the
# three among settings that keep crash onsets (May 18-20 2021, June 12-14 2022) above the simple
# reference; a 6-hour trend at weight 0.6 did best on the three alone (0.311) but fell below it
# at the June 2022 onset. Tails scaled by 1.05 so the crashes stay close to their forecasts.
DEFAULT_TAIL_SCALE = 1.05
DEFAULT_SLOW_WEIGHT = 0.35
DEFAULT_TREND_STEPS = 12
DEFAULT_TREND_WEIGHT = 0.8
# share of the forecast variance taken from the whole lookback's mean squared return: a crash can
# start from a calm week (Aug 2024); chosen on the tuning windows (README, "Tiers")
DEFAULT_MONTH_WEIGHT = 0.05
LOOKBACK_STEPS = 720  # the model is fitted and validated on the last 30 days of hourly closes


def reactive_volatility(
    close: npt.ArrayLike,
    timestamps_s: npt.ArrayLike,
    assets: Sequence[str],
    *,
    step_s: float = 3600.0,
    fast_lambda: float = 0.9,
    slow_lambda: float = 0.99,
    fast_correlation_lambda: float = 0.97,
    slow_correlation_lambda: float = 0.995,
    dof: float = DEFAULT_DOF,
    tail_scale: float = DEFAULT_TAIL_SCALE,
    trend_steps: int = DEFAULT_TREND_STEPS,
    trend_lambda: float = 0.9,
    trend_weight: float = DEFAULT_TREND_WEIGHT,
    slow_weight: float = DEFAULT_SLOW_WEIGHT,
    month_weight: float = DEFAULT_MONTH_WEIGHT,
) -> VolatilityModel:
    """The model from ``close`` (k, m), oldest first, past data only (see module doc)."""
    px = np.asarray(close, dtype=np.float64)
    if px.ndim == 1:
        px = px[:, None]
    ts = np.asarray(timestamps_s, dtype=np.int64)
    m = px.shape[1]
    r = log_returns(px, ts, step_s)
    fast = np.column_stack([ewma_variance(r[:, j], fast_lambda) for j in range(m)])
    slow = np.column_stack([ewma_variance(r[:, j], slow_lambda) for j in range(m)])
    sigma2 = np.maximum(fast[-1], slow_weight * slow[-1])
    trend_steps = int(trend_steps)
    if trend_steps > 1 and px.shape[0] > 2 * trend_steps:
        # moves that persist: the per-step variance of overlapping trend_steps-step returns
        lp = np.log(px)
        rk = (lp[trend_steps:] - lp[:-trend_steps]) / np.sqrt(trend_steps)
        trend = np.array([ewma_variance(rk[:, j], trend_lambda)[-1] for j in range(m)])
        sigma2 = np.maximum(sigma2, trend_weight * trend)
    if month_weight and r.shape[0]:
        sigma2 = (1.0 - month_weight) * sigma2 + month_weight * np.mean(r * r, axis=0)
    if m > 1:
        z = r / np.sqrt(np.maximum(slow[:-1], 1e-300))
        corr = np.maximum(
            ewma_correlation(z, fast_correlation_lambda),
            ewma_correlation(z, slow_correlation_lambda),
        )
        np.fill_diagonal(corr, 1.0)
    else:
        corr = np.ones((1, 1))
    return VolatilityModel(
        assets=tuple(assets),
        step_s=step_s,
        sigma2_next=sigma2,
        correlation=corr,
        tail_steps=(1.0,),
        tail_scale=np.full((1, m), tail_scale),
        tail_dof=np.full((1, m), dof),
    )


def stepped_probability(
    book: Book,
    model: VolatilityModel,
    horizon_s: float,
    monitor_s: float,
    asset_keys: Sequence[str],
    *,
    rates: tuple[npt.ArrayLike, npt.ArrayLike] | None = None,
) -> LiquidationProbability:
    """Probability of an oracle-published HF < 1 within the horizon, prices seen every
    ``monitor_s`` seconds (``asset_keys``: the model's key of each book column; ``rates``:
    (supply, borrow) ln growth per second of each column, for the interest drift)."""
    aligned = model.with_assets(asset_keys)
    drift = None if rates is None else interest_drift(book, *rates) * horizon_s
    return liquidation_probability(
        book,
        aligned.effective_covariance(horizon_s),
        tail_dof=aligned.horizon_tail_dof(horizon_s),
        oracle_steps=horizon_s / monitor_s,
        log_drift=drift,
    )


def hourly_closes(
    times_s: npt.ArrayLike,
    values: npt.ArrayLike,
    end_s: int,
    *,
    step_s: int = 3600,
    max_steps: int = LOOKBACK_STEPS,
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float64]]:
    """Closes on a regular grid ending at ``end_s`` from prices published at irregular times
    (an oracle's rounds, per-block snapshots): the last value at or before each grid time, from
    the first grid time after the first observation, at most ``max_steps`` + 1 of them. This is
    what the model is validated on: the protocol's view of the price, one value per step."""
    t = np.asarray(times_s, dtype=np.int64)
    v = np.asarray(values, dtype=np.float64)
    order = np.argsort(t, kind="stable")
    t, v = t[order], v[order]
    if t.size == 0 or t[0] > end_s:
        return np.zeros(0, np.int64), np.zeros(0)
    n = min(max_steps + 1, int((end_s - t[0]) // step_s) + 1)
    grid = end_s - step_s * np.arange(n - 1, -1, -1, dtype=np.int64)
    idx = np.searchsorted(t, grid, side="right") - 1
    return grid, v[idx]
