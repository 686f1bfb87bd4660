"""Margin advice: how much to repay or top up so liquidation within the horizon becomes unlikely.

For a target probability q (e.g. 1%) and a position whose ln HF has horizon sd sigma (from the
covariance, ``probability.py``), the first-passage formula gives the log health needed:
with no drift, 2·F(-b/sigma) = q, so b* = k·sigma with k = -F^-1(q/2) (F: unit-variance
Student-t of the position's tails, or the normal). The **safe HF now** is exp(b*): it rises with
volatility and with the horizon, which is the point — a fixed "keep HF above 1.5" rule is too
loose in a crash and too tight in calm.

Topping up or repaying changes not only HF but the weights, so sigma moves too (adding a stable
lowers it, adding more of the volatile collateral does not). So each amount is solved exactly
under the model: topping up asset i scales the HF numerator by y >= 1 and the weights become
e_i - w_debt + (w_coll - e_i)/y; repaying debt asset j scales the debt by 1/y, weights
w_coll - e_j - (w_debt - e_j)·y. sigma(y)^2 is a quadratic in 1/y (resp. y), and we solve (in
ln y) — safeguarded Newton for zero drift, bisection otherwise — for the smallest y with
b0 + ln y >= k·sigma(y) (or, with a drift, the full formula <= q). The returned amount is checked
feasible, so applying it gives a probability at or below the target under the same model.

Conventions: 0 where the position is already below the target; NaN where the asset cannot do it
(a top-up asset the position cannot use as collateral, LT = 0; a debt asset it does not owe; a
full repay of that debt asset alone that is not enough). Amounts in asset units.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from scipy import special

from onchain.risk.book import Book, FloatArray
from onchain.risk.probability import (
    Drift,
    LiquidationProbability,
    first_passage_probability,
    liquidation_probability,
)

BISECTION_STEPS = 48
MAX_SOLVER_STEPS = 80
# a strictly positive log-health margin: HF exactly 1 is on the barrier (probability 1)
MIN_LOG_HEALTH = 1e-9


def barrier_multiple(
    target_probability: float, tail_dof: npt.ArrayLike, candidates: npt.ArrayLike | None = None
) -> FloatArray:
    """k = -F^-1(q/2): the safe log health in units of sigma, for zero drift.

    ``candidates``: the distinct dof values ``tail_dof`` can take (e.g. the assets' dofs and
    inf), which saves sorting a large array to find them."""
    q = float(target_probability) / 2.0
    nu = np.asarray(tail_dof, dtype=np.float64)
    values = np.unique(nu) if candidates is None else np.unique(np.append(candidates, np.inf))
    out = np.full(nu.shape, np.nan)
    for v in values:
        k = -special.stdtrit(v, q) / np.sqrt(v / (v - 2.0)) if np.isfinite(v) else -special.ndtri(q)
        out[nu == v] = k
    return out


def safe_health_factor(
    sigma: npt.ArrayLike,
    target_probability: float,
    tail_dof: npt.ArrayLike = np.inf,
    drift: Drift = "zero",
) -> FloatArray:
    """exp(b*) with P(first passage within the horizon) = target at the current weights."""
    s = np.asarray(sigma, dtype=np.float64)
    nu = np.broadcast_to(np.asarray(tail_dof, dtype=np.float64), s.shape)
    if drift == "zero":
        return np.exp(barrier_multiple(target_probability, nu) * s)
    lo = np.zeros(s.shape)
    hi = np.maximum(barrier_multiple(target_probability, nu) * s * 2.0 + 1e-9, 1e-6)
    for _ in range(BISECTION_STEPS):
        mid = 0.5 * (lo + hi)
        ok = first_passage_probability(mid, s, drift=drift, tail_dof=nu) <= target_probability
        hi = np.where(ok, mid, hi)
        lo = np.where(ok, lo, mid)
    return np.exp(hi)


@dataclass(frozen=True)
class MarginAdvice:
    """Per position: the safe HF now, and per asset the amount that reaches the target alone."""

    safe_health_factor: FloatArray  # (n,)
    already_safe: npt.NDArray[np.bool_]  # (n,)
    repay_units: FloatArray  # (n, m)
    topup_units: FloatArray  # (n, m)


def _feasible(
    b: FloatArray,
    sigma: FloatArray,
    k: FloatArray,
    nu: FloatArray,
    q: float,
    drift: Drift,
    shift: float = 0.0,
) -> npt.NDArray[np.bool_]:
    """Is ln HF ``b`` at or below the target probability (``shift``: the oracle-step barrier
    shift in units of sigma, see ``probability``)?"""
    b = b + shift * sigma
    if drift == "zero":
        return b >= k * sigma + MIN_LOG_HEALTH
    return (b >= MIN_LOG_HEALTH) & (
        first_passage_probability(b, sigma, drift=drift, tail_dof=nu) <= q
    )


def _solve(
    b0: FloatArray,
    p_: FloatArray,
    q_: FloatArray,
    r_: FloatArray,
    inverse: bool,
    hi: FloatArray,
    k: FloatArray,
    nu: FloatArray,
    target: float,
    drift: Drift,
    shift: float = 0.0,
) -> FloatArray:
    """Smallest y in [1, hi] with b0 + ln y safe at sigma(y)^2 = p + 2 q z + r z^2, z = 1/y if
    ``inverse`` else y. NaN where even hi is not safe.

    Zero drift: safeguarded Newton on g(x) = b0 + x - k·sigma(x), x = ln y, from the root with
    sigma frozen, keeping a bracket and bisecting when a Newton step leaves it; entries leave the
    active set as they converge, so the few hard ones cost little. The answer is nudged past the
    root and checked feasible (else the bracket's safe end). Other drifts: bisection on the full
    formula.
    """
    if drift == "zero":  # b + shift·sigma >= k·sigma  <=>  b >= (k - shift)·sigma
        k, shift = np.asarray(k) - shift, 0.0
    b0, p_, q_, r_, hi, k, nu = np.broadcast_arrays(b0, p_, q_, r_, hi, k, nu)
    shape = b0.shape
    b0, p_, q_, r_, k, nu = (np.ravel(v) for v in (b0, p_, q_, r_, k, nu))
    ln_hi = np.log(np.ravel(hi))

    def sig(x: FloatArray, idx: npt.NDArray[np.int64] | slice) -> tuple[FloatArray, FloatArray]:
        z = np.exp(-x) if inverse else np.exp(x)
        qi, ri = q_[idx], r_[idx]
        s = np.sqrt(np.maximum(p_[idx] + 2.0 * qi * z + ri * z * z, 0.0))
        dz = -z if inverse else z
        with np.errstate(divide="ignore", invalid="ignore"):
            ds = np.where(s > 0, (qi + ri * z) * dz / s, 0.0)
        return s, ds

    every = slice(None)
    ok_hi = _feasible(b0 + ln_hi, sig(ln_hi, every)[0], k, nu, target, drift, shift)
    lo = np.zeros(b0.shape)
    up = ln_hi.copy()
    if drift == "zero":
        x = np.clip(k * sig(np.zeros(b0.shape), every)[0] + MIN_LOG_HEALTH - b0, 0.0, ln_hi)
        act = np.flatnonzero(ok_hi)
        for _ in range(MAX_SOLVER_STEPS):
            if act.size == 0:
                break
            xa, la, ua = x[act], lo[act], up[act]
            s, ds = sig(xa, act)
            g = b0[act] + xa - k[act] * s - MIN_LOG_HEALTH
            at_root = np.abs(g) <= 1e-13 * (1.0 + np.abs(xa))
            feasible = g >= 0.0
            ua = np.where(feasible, np.minimum(ua, xa), ua)
            la = np.where(feasible, la, np.maximum(la, xa))
            dg = 1.0 - k[act] * ds
            with np.errstate(divide="ignore", invalid="ignore"):
                step = xa - g / dg
            inside = (dg > 0.0) & (step > la) & (step < ua)
            nx = np.where(at_root, xa, np.where(inside, step, 0.5 * (la + ua)))
            x[act], lo[act], up[act] = nx, la, ua
            done = at_root | (np.abs(nx - xa) <= 1e-13 * (1.0 + np.abs(xa))) | (ua - la <= 1e-12)
            act = act[~done]
        x_try = x + 1e-12 + 1e-9 * np.abs(x)
        s_try = sig(x_try, every)[0]
        ok = (b0 + x_try - k * s_try >= MIN_LOG_HEALTH) & (x_try <= up)
        x_out = np.where(ok, x_try, up)
    else:
        for _ in range(BISECTION_STEPS):
            mid = 0.5 * (lo + up)
            ok = _feasible(b0 + mid, sig(mid, every)[0], k, nu, target, drift, shift)
            up = np.where(ok, mid, up)
            lo = np.where(ok, lo, mid)
        x_out = up
    return np.where(ok_hi, np.exp(x_out), np.nan).reshape(shape)


def _log_health(probability: LiquidationProbability) -> FloatArray:
    """ln HF less the interest fall the probability counted: a margin is solved for the HF the
    position will have after the interest (the fall held at its size now: a top-up or repay
    changes it by the rates times the horizon times the change in shares, negligible)."""
    if probability.log_drift is None:
        return probability.log_health
    return probability.log_health + probability.log_drift


def safe_health_and_target(
    probability: LiquidationProbability,
    target_probability: float,
    tail_dof: npt.ArrayLike,
    n_assets: int,
    drift: Drift = "zero",
) -> tuple[FloatArray, npt.NDArray[np.bool_]]:
    """(safe HF now, already below the target) for every position, from its probability inputs:
    the cheap part of :func:`margin_advice`, for the whole book."""
    dof_a = np.broadcast_to(np.asarray(tail_dof, dtype=np.float64), (n_assets,))
    sigma, nu_pos, b0 = probability.sigma, probability.tail_dof, _log_health(probability)
    has_debt = np.isfinite(b0) | (b0 < 0)
    k_pos = barrier_multiple(target_probability, nu_pos, dof_a)
    shift = probability.barrier_shift
    if drift == "zero":
        safe_hf = np.exp(k_pos * sigma)
    else:
        safe_hf = safe_health_factor(sigma, target_probability, nu_pos, drift)
    safe_hf = safe_hf * np.exp(-shift * sigma)  # oracle steps: the barrier sits shift·sigma lower
    if probability.log_drift is not None:  # interest: the HF must clear the fall it brings too
        safe_hf = safe_hf * np.exp(-probability.log_drift)
    already = ~has_debt | _feasible(b0, sigma, k_pos, nu_pos, target_probability, drift, shift)
    return safe_hf, already


def margin_advice(
    book: Book,
    covariance: npt.ArrayLike,
    *,
    target_probability: float = 0.01,
    tail_dof: npt.ArrayLike = np.inf,
    drift: Drift = "zero",
    price_base: npt.ArrayLike | None = None,
    probability: LiquidationProbability | None = None,
    oracle_steps: float = np.inf,
) -> MarginAdvice:
    """Repay (per debt asset) and top-up (per collateral asset) amounts reaching the target.

    ``covariance`` and ``tail_dof`` as for ``probability.liquidation_probability`` (effective
    horizon covariance in book order; dof scalar or (m,)). ``probability``: that function's
    result for the same book and inputs, to reuse its sigma, tails, log health and oracle-step
    shift (else ``oracle_steps`` as there). Work is done
    only for positions above the target, so a mostly healthy book is cheap.
    """
    p = book.price_base if price_base is None else np.asarray(price_base, dtype=np.float64)
    cov = np.asarray(covariance, dtype=np.float64)
    m = book.n_assets
    asset_sd = np.sqrt(np.clip(np.diag(cov), 0.0, None))
    dof_a = np.broadcast_to(np.asarray(tail_dof, dtype=np.float64), (m,))
    if probability is None:
        probability = liquidation_probability(
            book, cov, tail_dof=dof_a, drift=drift, price_base=p, oracle_steps=oracle_steps
        )
    sigma = probability.sigma
    nu_pos = probability.tail_dof
    b0 = _log_health(probability)
    safe_hf, already = safe_health_and_target(probability, target_probability, dof_a, m, drift)
    repay = np.where(book.debt > 0.0, 0.0, np.nan)
    topup = np.where(book.liquidation_threshold > 0.0, 0.0, np.nan)
    rows = np.flatnonzero(~already)
    if rows.size:
        w_val = book.collateral_lt[rows] @ p
        d_val = book.debt[rows] @ p
        wc_full = book.collateral_lt[rows] * p
        wd_full = book.debt[rows] * p
        wsum = w_val[:, None]
        dsum = d_val[:, None]
        wc = np.divide(wc_full, wsum, out=np.zeros_like(wc_full), where=wsum > 0)
        wd = wd_full / dsum
        wc_s, wd_s = wc @ cov, wd @ cov
        ones = np.ones(m)
        cc = ((wc_s * wc) @ ones)[:, None]
        dd = ((wd_s * wd) @ ones)[:, None]
        cd = ((wc_s * wd) @ ones)[:, None]
        diag = np.diag(cov)[None, :]
        b_r = np.broadcast_to(b0[rows][:, None], (rows.size, m))
        # variance tails after adding exposure to asset i: the fatter of the two
        nu_r = np.minimum(nu_pos[rows][:, None], np.where(asset_sd > 0, dof_a, np.inf)[None, :])
        k_r = barrier_multiple(target_probability, nu_r, dof_a)
        # top-up asset i: w(y) = g + a / y, g = e_i - wd, a = wc - e_i
        gg = diag - 2.0 * wd_s + dd
        ga = wc_s - cd - diag + wd_s
        aa = cc - 2.0 * wc_s + diag
        sig_inf = np.sqrt(np.maximum(gg, 0.0))
        bound = np.maximum(sigma[rows][:, None], sig_inf)
        hi = np.exp(np.maximum(k_r * bound * 1.5 - b_r, 0.0) + 1e-6)
        shift = probability.barrier_shift
        y = _solve(b_r, gg, ga, aa, True, hi, k_r, nu_r, target_probability, drift, shift)
        lt_p = book.liquidation_threshold[rows] * p
        with np.errstate(divide="ignore", invalid="ignore"):
            t_units = wsum * (y - 1.0) / lt_p
        topup[rows] = np.where(lt_p > 0, t_units, np.nan)
        # repay debt asset j: w(y) = g - h y, g = wc - e_j, h = wd - e_j
        share = wd
        s_max = np.where(share < 1.0 - 1e-12, 1.0 / np.maximum(1.0 - share, 1e-300), np.inf)
        gg2 = cc - 2.0 * wc_s + diag
        gh = cd - wc_s - wd_s + diag
        hh = dd - 2.0 * wd_s + diag
        finite_max = np.where(np.isfinite(s_max), s_max, 1.0)
        y2 = _solve(
            b_r,
            gg2,
            -gh,
            hh,
            False,
            np.maximum(finite_max, 1.0),
            k_r,
            nu_r,
            target_probability,
            drift,
            shift,
        )
        y2 = np.where(np.isfinite(s_max), y2, np.nan)
        # a full repay of the only debt always works: solve on [1, large] there
        only = ~np.isfinite(s_max)
        if np.any(only):
            big = (
                np.exp(np.maximum(k_r * np.sqrt(np.maximum(gg2, 0.0)) * 1.5 - b_r, 0.0) + 1e-6)
                + 1.0
            )
            y_only = _solve(
                b_r, gg2, -gh, hh, False, big, k_r, nu_r, target_probability, drift, shift
            )
            y2 = np.where(only, np.where(np.isfinite(y_only), y_only, 1e12), y2)
        r_units = dsum * (1.0 - 1.0 / y2) / p
        owed = book.debt[rows]
        repay[rows] = np.where(owed > 0.0, np.minimum(r_units, owed), np.nan)
    return MarginAdvice(
        safe_health_factor=safe_hf, already_safe=already, repay_units=repay, topup_units=topup
    )
