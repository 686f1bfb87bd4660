"""Float health-factor screening: HF = sum(c·p·LT) / sum(d·p), for every position at once.

This is the fast twin of the protocols' exact integer math: use it to screen, shock and rank;
re-check positions near HF = 1 with the adapter's exact math before calling a verdict.

Conventions: ``price_base`` may be omitted (the book's prices), a (m,) vector (one scenario) or an
(s, m) matrix (s scenarios at once, results shaped (s, n)). HF is +inf without debt (whatever the
collateral), 0 with debt and no collateral. Liquidatable means debt > 0 and HF < 1 (strict, as
Aave's ``validateLiquidationCall`` and Morpho's ``_isHealthy``).
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from onchain.risk.book import Book, BoolArray, FloatArray


def _prices(book: Book, price_base: npt.ArrayLike | None) -> FloatArray:
    return book.price_base if price_base is None else np.asarray(price_base, dtype=np.float64)


def _dot(matrix: FloatArray, price: FloatArray) -> FloatArray:
    """(n, m) · price: (n,) for a (m,) price, (s, n) for (s, m) scenario prices (BLAS gemv/gemm)."""
    if price.ndim == 1:
        return matrix @ price
    return (matrix @ price.T).T


def weighted_collateral_base(book: Book, price_base: npt.ArrayLike | None = None) -> FloatArray:
    """sum_i c_i·p_i·LT_i: collateral value at liquidation thresholds (the HF numerator)."""
    return _dot(book.collateral_lt, _prices(book, price_base))


def collateral_value_base(book: Book, price_base: npt.ArrayLike | None = None) -> FloatArray:
    """sum_i c_i·p_i: market value of the collateral that counts (for bad debt, seizures)."""
    return _dot(book.collateral, _prices(book, price_base))


def debt_value_base(book: Book, price_base: npt.ArrayLike | None = None) -> FloatArray:
    """sum_i d_i·p_i: debt value (the HF denominator)."""
    return _dot(book.debt, _prices(book, price_base))


def health_factor_from_values(
    weighted_collateral: npt.ArrayLike, debt_value: npt.ArrayLike
) -> FloatArray:
    """W / D with the package conventions (+inf without debt)."""
    w = np.asarray(weighted_collateral, dtype=np.float64)
    d = np.asarray(debt_value, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        hf = w / d
    return np.where(d > 0.0, hf, np.inf)


def health_factor(book: Book, price_base: npt.ArrayLike | None = None) -> FloatArray:
    """Float health factor of every position, at the book's prices or at scenario prices."""
    p = _prices(book, price_base)
    return health_factor_from_values(weighted_collateral_base(book, p), debt_value_base(book, p))


def is_liquidatable(health: npt.ArrayLike) -> BoolArray:
    """HF < 1 (an +inf HF, no debt, is never liquidatable)."""
    return np.asarray(health, dtype=np.float64) < 1.0


def liquidatable_mask(book: Book, price_base: npt.ArrayLike | None = None) -> BoolArray:
    """Which positions a liquidator could call at these prices (float screen)."""
    return is_liquidatable(health_factor(book, price_base))
