"""Probability that a position becomes liquidatable within a horizon, for every position at once.

The model
---------
A position is liquidated when its log health ln HF first reaches 0. For small moves
d ln HF = sum_i w_i · d ln p_i with the weights (:func:`log_health_weights`)

    w_i = c_i·p_i·LT_i / W  -  d_i·p_i / D        (share of the HF numerator minus debt share)

so over a horizon T, ln HF moves like a diffusion with variance sigma^2 = w' Sigma_T w, where
Sigma_T is the assets' log-price covariance over T (``VolatilityModel.effective_covariance``).
A stable-debt, ETH-collateral position has w = (1, 0): its HF is the ETH price up to a constant.

First passage (:func:`first_passage_probability`), closed form by the reflection principle: with
b = ln HF > 0, total drift mu and total sd sigma over the horizon,

    P = Phi((-b - mu)/sigma) + exp(-2·mu·b/sigma^2) · Phi((-b + mu)/sigma),

which is 2·Phi(-b/sigma) for mu = 0. ``drift="zero"`` (default) takes mu = 0: prices as
driftless log processes; ``"ito"`` takes mu = -sigma^2/2 (prices as martingales, the Itô
correction of the log); a float is a fixed drift of ln HF over the horizon. Over horizons of
minutes to a day the two differ by far less than the uncertainty in sigma.

Fat tails (the documented adjustment). Real paths are not Gaussian: the volatility model gives,
per asset, a drawdown law fitted on past data (a scale, folded into the effective covariance, and
Student-t degrees of freedom ``tail_dof``). A Student-t is a normal variance mixture, and for a
Brownian motion run at an independent random clock the reflection principle holds conditionally
on the clock, so P = 2·F_t(-b/sigma) EXACTLY for that model with mu = 0 (F_t: unit-variance
Student-t CDF). With a drift we integrate the Gaussian formula over the mixing law
(trapezoid quadrature in ln V, dense where deep tails come from). A position exposed to several assets takes the fattest
tails among the assets that carry its variance (:func:`position_tail_dof`).

Monte Carlo check (:func:`monte_carlo_probability`): correlated GBM paths of all asset prices
(each path with one variance-mixing draw when tails are fat), HF recomputed exactly from the
book at every step, and a Brownian-bridge correction for crossings between steps
(P(cross | x0, x1) = exp(-2·x0·x1 / s^2), s^2 the step variance of ln HF). It checks the
closed form including what the closed form approximates (weights that drift as prices move).

Oracle steps. The protocol sees prices only when the oracle publishes one (deviation
threshold or heartbeat), so a position is liquidated when a *published* price crosses its
liquidation price. With ``oracle_steps`` = n publications within the horizon, the first passage
of a discretely monitored Brownian motion equals the continuous one with the barrier moved away
by 0.5826·sigma/sqrt(n) (Broadie, Glasserman and Kou 1997): ln HF is shifted up by that much
(``LiquidationProbability.barrier_shift`` keeps the multiple of sigma so advice inverts the same
law). Without it positions just above HF 1 get probabilities near 1 that the next published
price often does not bear out (``onchain backtest``).

Interest. Debt grows at its borrow rate and collateral at its supply rate, so with prices still
ln HF drifts by (:func:`interest_drift`) sum_i c_i·s_i - sum_j d_j·r_j per second (value shares
as in the weights above; s, r the assets' ln growth rates). Over a horizon of hours that is tiny
against price moves, except where prices cannot move the position (a collateral and a debt the
oracle prices together, e.g. wstETH against WETH: sigma = 0) and it sits basis points above 1 at a
borrow rate of 80%/yr: interest alone liquidates it. ``log_drift`` (per position, over the
horizon) counts only a fall, taken whole at the start (the barrier moved by it): exact when prices
are still, an upper bound otherwise; interest never lowers a probability.

Conventions: no debt -> probability 0; liquidatable now -> 1; zero variance -> 0 when healthy
(unless interest alone takes HF below 1 within the horizon).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import numpy.typing as npt
from scipy import special

from onchain.risk.book import Book, FloatArray
from onchain.risk.volatility import VolatilityModel, student_t_unit_cdf

Drift = Literal["zero", "ito"] | float

BGK_BETA = 0.5826  # -zeta(1/2)/sqrt(2 pi): the discrete-monitoring barrier shift


def oracle_barrier_shift(oracle_steps: float) -> float:
    """The barrier shift in units of the horizon sd for ``oracle_steps`` published prices within
    the horizon (at least one); 0 for continuous monitoring (``inf``)."""
    steps = float(oracle_steps)
    if not steps == steps:
        raise ValueError("oracle_steps must be a number")
    return 0.0 if np.isinf(steps) else BGK_BETA / float(np.sqrt(max(steps, 1.0)))


@dataclass(frozen=True)
class LiquidationProbability:
    """Per position: the probability and what it was computed from (for advice and reasons)."""

    probability: FloatArray  # (n,)
    log_health: FloatArray  # (n,) ln HF now (+inf without debt, -inf with no collateral)
    sigma: FloatArray  # (n,) sd of ln HF over the horizon (effective, tail scale included)
    tail_dof: FloatArray  # (n,) Student-t dof used (inf = Gaussian)
    barrier_shift: float = 0.0  # discrete oracle steps: ln HF is shifted up by this times sigma
    # (n,) the fall of ln HF from interest over the horizon that was counted (<= 0; the barrier
    # moved by it, see module doc); None: no interest given
    log_drift: FloatArray | None = None


def log_health_weights(book: Book, price_base: npt.ArrayLike | None = None) -> FloatArray:
    """(n, m) sensitivities of ln HF to each ln price: collateral share minus debt share."""
    p = book.price_base if price_base is None else np.asarray(price_base, dtype=np.float64)
    wc = book.collateral_lt * p
    wd = book.debt * p
    ones = np.ones(book.n_assets)
    w_sum = wc @ ones  # row sums through BLAS: much faster than sum(axis=1) on narrow rows
    d_sum = wd @ ones
    with np.errstate(divide="ignore", invalid="ignore"):
        inv_w = np.where(w_sum > 0.0, 1.0 / w_sum, 0.0)
        inv_d = np.where(d_sum > 0.0, 1.0 / d_sum, 0.0)
    wc *= inv_w[:, None]
    wd *= inv_d[:, None]
    wc -= wd
    return wc


def interest_drift(
    book: Book,
    supply_rate: npt.ArrayLike,
    borrow_rate: npt.ArrayLike,
    price_base: npt.ArrayLike | None = None,
) -> FloatArray:
    """(n,) drift of ln HF per unit time from interest with prices still: the HF numerator's
    shares times the supply rates minus the debt shares times the borrow rates (``supply_rate``,
    ``borrow_rate``: (m,) ln growth per unit time of a unit supplied / borrowed in each column).
    0 without debt."""
    p = book.price_base if price_base is None else np.asarray(price_base, dtype=np.float64)
    # (c * p) @ s = c @ (p * s): one (n, m) @ (m, 2) product per side, no (n, m) temporaries
    c = book.collateral_lt @ np.column_stack([p, p * np.asarray(supply_rate, dtype=np.float64)])
    d = book.debt @ np.column_stack([p, p * np.asarray(borrow_rate, dtype=np.float64)])
    w_sum, grow_c, d_sum, grow_d = c[:, 0], c[:, 1], d[:, 0], d[:, 1]
    with np.errstate(divide="ignore", invalid="ignore"):
        up = np.where(w_sum > 0.0, grow_c / w_sum, 0.0)
        down = np.where(d_sum > 0.0, grow_d / d_sum, 0.0)
    return up - down


def log_health_sigma(weights: FloatArray, covariance: npt.ArrayLike) -> FloatArray:
    """(n,) sqrt(w' Sigma w) for every row of ``weights``."""
    cov = np.asarray(covariance, dtype=np.float64)
    var = ((weights @ cov) * weights) @ np.ones(cov.shape[0])
    return np.sqrt(np.maximum(var, 0.0))


def position_tail_dof(
    weights: FloatArray, asset_sigma: npt.ArrayLike, asset_dof: npt.ArrayLike, share: float = 0.05
) -> FloatArray:
    """(n,) the fattest (smallest) dof among assets carrying >= ``share`` of the position's
    exposure |w_i|·sigma_i (so a small stable leg does not decide the tails)."""
    dof = np.asarray(asset_dof, dtype=np.float64)
    if dof.ndim == 0 or np.all(dof == dof.flat[0]):
        return np.full(weights.shape[0], float(dof.flat[0]) if dof.size else np.inf)
    sd = np.asarray(asset_sigma, dtype=np.float64)
    expo = np.abs(weights) * sd
    total = expo @ np.ones(expo.shape[1])
    finite = np.isfinite(dof)
    values = np.unique(dof[finite])
    if values.size == 1 and np.all(sd[~finite] == 0.0) and share * finite.sum() <= 1.0:
        # one finite dof and only zero-variance assets without: the largest exposure always
        # carries >= 1/m_finite >= share of the total, so any exposure means that dof
        return np.where(total > 0.0, values[0], np.inf)
    floor = share * np.where(total > 0.0, total, np.inf)
    out = np.full(weights.shape[0], np.inf)
    for j in np.flatnonzero(np.isfinite(dof)):  # one pass per asset with finite dof
        carries = (expo[:, j] >= floor) & (expo[:, j] > 0.0)
        np.minimum(out, np.where(carries, dof[j], np.inf), out=out)
    return out


def _bm_first_passage(b: FloatArray, mu: FloatArray, sigma: FloatArray) -> FloatArray:
    """Gaussian reflection formula with drift, in log space for the exponential term."""
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        t1 = special.ndtr((-b - mu) / sigma)
        log_t2 = -2.0 * mu * b / (sigma * sigma) + special.log_ndtr((-b + mu) / sigma)
        p = t1 + np.exp(log_t2)
    return np.clip(np.nan_to_num(p, nan=0.0), 0.0, 1.0)


def _mixture_nodes(dof: float, n_nodes: int) -> tuple[FloatArray, FloatArray]:
    """Nodes/weights of E[g(V)] for V ~ chi2(dof): trapezoid rule in ln V over the central
    1 - 2e-14 of the law. Dense in ln V because deep tail probabilities come from small V."""
    lo = special.chdtri(dof, 1.0 - 1e-14)  # quantile 1e-14
    hi = special.chdtri(dof, 1e-14)  # quantile 1 - 1e-14
    z = np.linspace(np.log(lo), np.log(hi), n_nodes)
    v = np.exp(z)
    log_pdf = (
        (dof / 2.0 - 1.0) * z - v / 2.0 - (dof / 2.0) * np.log(2.0) - special.gammaln(dof / 2.0)
    )
    w = np.exp(log_pdf + z)  # dV = V dz
    w[[0, -1]] *= 0.5
    return v, w / w.sum()


def first_passage_probability(
    log_health: npt.ArrayLike,
    sigma: npt.ArrayLike,
    *,
    drift: Drift = "zero",
    tail_dof: npt.ArrayLike = np.inf,
    quadrature_nodes: int = 256,
) -> FloatArray:
    """P(ln HF hits 0 within the horizon) from ln HF now and its horizon sd; see module doc.

    ``sigma`` is the total sd over the horizon, ``drift`` the total drift (or "zero"/"ito"),
    ``tail_dof`` Student-t degrees of freedom of the variance mixture (scalar or (n,)).
    """
    b = np.asarray(log_health, dtype=np.float64)
    s = np.asarray(sigma, dtype=np.float64)
    b, s = np.broadcast_arrays(b, s)
    nu = np.broadcast_to(np.asarray(tail_dof, dtype=np.float64), b.shape)
    out = np.zeros(b.shape)
    live = (b > 0.0) & np.isfinite(b) & (s > 0.0)
    out[b <= 0.0] = 1.0  # HF <= 1; HF == 1 exactly is on the barrier
    if not np.any(live):
        return out
    bl, sl, nul = b[live], s[live], nu[live]
    if drift == "zero":
        p = 2.0 * student_t_unit_cdf(-bl / sl, nul)
        out[live] = np.minimum(p, 1.0)
        return out
    res = np.empty(bl.shape)
    gauss = ~np.isfinite(nul)
    if np.any(gauss):
        sg = sl[gauss]
        mu = -0.5 * sg * sg if drift == "ito" else np.full(sg.shape, float(drift))
        res[gauss] = _bm_first_passage(bl[gauss], mu, sg)
    for v in np.unique(nul[~gauss]):
        sel = nul == v
        chi2, wts = _mixture_nodes(float(v), quadrature_nodes)
        # conditional sd given the mixing draw: s * sqrt((nu - 2) / V)
        sk = sl[sel][:, None] * np.sqrt((v - 2.0) / chi2)[None, :]
        mu = -0.5 * sk * sk if drift == "ito" else np.full(sk.shape, float(drift))
        res[sel] = _bm_first_passage(bl[sel][:, None], mu, sk) @ wts
    out[live] = res
    return out


def liquidation_probability(
    book: Book,
    covariance: npt.ArrayLike,
    *,
    tail_dof: npt.ArrayLike = np.inf,
    drift: Drift = "zero",
    price_base: npt.ArrayLike | None = None,
    oracle_steps: float = np.inf,
    log_drift: npt.ArrayLike | None = None,
) -> LiquidationProbability:
    """Closed-form probability for every position of ``book``.

    ``covariance``: (m, m) effective covariance of log prices over the horizon, in the book's
    asset order (``VolatilityModel.with_assets(...).effective_covariance(horizon_s)``);
    ``tail_dof``: scalar or (m,) per asset (combined per position by :func:`position_tail_dof`);
    ``oracle_steps``: prices the oracle publishes within the horizon (``inf``: continuous);
    ``log_drift``: scalar or (n,) known move of ln HF over the horizon (interest: see module
    doc); only a fall counts.
    """
    shift = oracle_barrier_shift(oracle_steps)
    p = book.price_base if price_base is None else np.asarray(price_base, dtype=np.float64)
    cov = np.asarray(covariance, dtype=np.float64)
    w_num = book.collateral_lt @ p
    d_num = book.debt @ p
    with np.errstate(divide="ignore", invalid="ignore"):
        log_hf = np.where(d_num > 0.0, np.log(w_num / d_num), np.inf)
    weights = log_health_weights(book, p)
    sigma = log_health_sigma(weights, cov)
    dof_assets = np.asarray(tail_dof, dtype=np.float64)
    dof = (
        np.full(book.n_positions, float(dof_assets))
        if dof_assets.ndim == 0
        else position_tail_dof(weights, np.sqrt(np.clip(np.diag(cov), 0.0, None)), dof_assets)
    )
    barrier = log_hf + shift * sigma
    fall = None
    if log_drift is not None:
        fall = np.minimum(np.asarray(log_drift, dtype=np.float64), 0.0)
        fall = np.broadcast_to(fall, log_hf.shape).copy()
        barrier = barrier + fall
    prob = first_passage_probability(barrier, sigma, drift=drift, tail_dof=dof)
    if shift or log_drift is not None:
        prob = np.where(log_hf <= 0.0, 1.0, prob)
    return LiquidationProbability(prob, log_hf, sigma, dof, shift, fall)


def liquidation_probability_from_model(
    book: Book,
    model: VolatilityModel,
    horizon_s: float,
    *,
    asset_keys: tuple[str, ...] | None = None,
    drift: Drift = "zero",
    price_base: npt.ArrayLike | None = None,
) -> LiquidationProbability:
    """Convenience: align ``model`` to the book (by ``asset_keys``, default the book's symbols,
    else its addresses; assets the model lacks are held fixed) and call the closed form."""
    keys = asset_keys or (book.symbols if book.symbols else book.assets)
    aligned = model.with_assets(keys)
    return liquidation_probability(
        book,
        aligned.effective_covariance(horizon_s),
        tail_dof=aligned.horizon_tail_dof(horizon_s),
        drift=drift,
        price_base=price_base,
    )


# ---------------------------------------------------------------------------------------------
# Monte Carlo
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class MonteCarloResult:
    probability: FloatArray  # (n,)
    standard_error: FloatArray  # (n,)
    n_paths: int
    n_steps: int


def _psd_sqrt(cov: FloatArray) -> FloatArray:
    """A matrix L with L·L' = cov, also for singular covariances (stables have zero variance)."""
    vals, vecs = np.linalg.eigh(cov)
    return vecs * np.sqrt(np.clip(vals, 0.0, None))


def monte_carlo_probability(
    book: Book,
    covariance: npt.ArrayLike,
    *,
    n_paths: int = 20_000,
    n_steps: int = 32,
    tail_dof: float = np.inf,
    log_drift: npt.ArrayLike | None = None,
    bridge: bool = True,
    seed: int | np.random.Generator | None = 0,
    price_base: npt.ArrayLike | None = None,
    batch_paths: int = 8192,
) -> MonteCarloResult:
    """Simulate the full multi-asset positions; for checking the closed form (small books).

    ``covariance``: (m, m) over the whole horizon (same as the closed form); ``log_drift``: (m,)
    total drift of each ln p over the horizon (default 0, i.e. the closed form's "zero"; use
    -diag(cov)/2 for martingale prices). ``tail_dof``: each path draws V ~ chi2(dof) once and
    scales all its increments by sqrt((dof - 2)/V), the variance mixture behind the t law.
    """
    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
    p0 = book.price_base if price_base is None else np.asarray(price_base, dtype=np.float64)
    cov = np.asarray(covariance, dtype=np.float64)
    m = book.n_assets
    n = book.n_positions
    root = _psd_sqrt(cov / n_steps)
    step_cov = cov / n_steps
    mu = np.zeros(m) if log_drift is None else np.asarray(log_drift, dtype=np.float64) / n_steps
    clt = book.collateral_lt.T  # (m, n)
    dbt = book.debt.T
    w0 = p0 @ clt
    d0 = p0 @ dbt
    liq0 = (d0 > 0.0) & (w0 < d0)
    has_debt = d0 > 0.0
    hits = np.zeros(n)
    hits_sq = np.zeros(n)
    done = 0
    while done < n_paths:
        k = min(batch_paths, n_paths - done)
        scale = np.ones(k)
        if np.isfinite(tail_dof):
            scale = np.sqrt((tail_dof - 2.0) / rng.chisquare(tail_dof, size=k))
        logp = np.zeros((k, m))
        survive = np.ones((k, n))
        x0 = np.broadcast_to(
            np.log(np.where(has_debt, w0 / np.where(has_debt, d0, 1.0), 1.0)), (k, n)
        )
        for _ in range(n_steps):
            z = rng.standard_normal((k, m)) @ root.T
            prices_start = p0 * np.exp(logp)
            logp = logp + z * scale[:, None] + mu
            prices = p0 * np.exp(logp)
            w = prices @ clt
            d = prices @ dbt
            with np.errstate(divide="ignore", invalid="ignore"):
                x1 = np.log(w / d)
            x1 = np.where(has_debt, x1, np.inf)
            alive_end = x1 > 0.0
            if bridge:
                # step variance of ln HF with the weights at the start of the step, per path
                wc = prices_start[:, None, :] * book.collateral_lt[None, :, :]
                wd = prices_start[:, None, :] * book.debt[None, :, :]
                ws = wc / np.maximum(wc.sum(axis=2, keepdims=True), 1e-300) - wd / np.maximum(
                    wd.sum(axis=2, keepdims=True), 1e-300
                )
                s2 = np.einsum("knj,ij,kni->kn", ws, step_cov, ws) * (scale * scale)[:, None]
                with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
                    cross = np.exp(-2.0 * x0 * x1 / s2)
                cross = np.where((x0 > 0.0) & alive_end & (s2 > 0.0), cross, 0.0)
                survive *= 1.0 - np.nan_to_num(cross, nan=0.0)
            survive *= alive_end
            x0 = x1
        ph = 1.0 - survive
        hits += ph.sum(axis=0)
        hits_sq += (ph * ph).sum(axis=0)
        done += k
    prob = hits / n_paths
    var = np.maximum(hits_sq / n_paths - prob * prob, 0.0)
    prob = np.where(liq0, 1.0, np.where(has_debt, prob, 0.0))
    se = np.where(liq0 | ~has_debt, 0.0, np.sqrt(var / n_paths))
    return MonteCarloResult(prob, se, n_paths, n_steps)
