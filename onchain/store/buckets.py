"""Coarse, indexed twins of the latest view's indexed sort keys (health factor, debt): each
value's bucket, non-decreasing in the value, so ordering by (bucket, value) is ordering by the
value, and a page reads only the buckets it covers from an index. The values move every block,
their buckets seldom: the per-block update in place rewrites an index entry only where a
bucket changed (on PostgreSQL that update is then not HOT and the store grows by its index
entries). Health factors crowd just above 1 (the riskiest page reads there), so their buckets
are finer (1/16 of an octave, ~4.4%: a 0.2% price move re-buckets at most ~5% of the rows)
than the debts' (a quarter of an octave, ~19%). The other sorts (collateral, probability) read every
row of the narrow latest view, faster than the snapshot rows' sort, and keep no index.

Exact: a float's bucket comes from its exponent and mantissa (`math.frexp`, no rounding), an
integer's from its bit length and top bits, so equal values share a bucket and a larger value
never has a lower one."""

from __future__ import annotations

from math import frexp

import numpy as np

# buckets per doubling (powers of 2): fewer re-bucket on a price move, more sort less per page
PER_OCTAVE = 4
HF_PER_OCTAVE = 16
ZERO = -1_000_000  # below every positive float's bucket (exponents reach -1074)


def float_bucket(value: float | None, per_octave: int = PER_OCTAVE) -> int | None:
    """A float's bucket (None: no value, e.g. no debt; NaN, which SQLite stores as NULL)."""
    if value is None or value != value:
        return None
    if value > 0:
        mantissa, exponent = frexp(value)  # value = mantissa * 2**exponent, mantissa in [0.5, 1)
        return exponent * per_octave + int((2 * mantissa - 1) * per_octave)
    if value == 0:
        return ZERO
    below = float_bucket(-value, per_octave)  # negative: mirrored under ZERO, still ordered
    return 2 * ZERO - (below or 0)


def float_buckets(values: list[float | None], per_octave: int = PER_OCTAVE) -> list[int | None]:
    """`float_bucket` of each value, the positive finite ones at once (numpy's frexp is the
    same split; the rest of the arithmetic is the same IEEE operations; None is NaN there)."""
    x = np.array(values, dtype=float)
    with np.errstate(invalid="ignore"):
        positive = np.isfinite(x) & (x > 0)
    mantissa, exponent = np.frexp(np.where(positive, x, 1.0))
    at_once: list[int | None] = (
        exponent * per_octave + ((2 * mantissa - 1) * per_octave).astype(np.int64)
    ).tolist()
    for i in np.flatnonzero(~positive).tolist():
        at_once[i] = float_bucket(values[i], per_octave)
    return at_once


def int_bucket(value: int, per_octave: int = PER_OCTAVE) -> int:
    """A non-negative integer's bucket (an amount in a base currency's smallest units)."""
    if value < 2 * per_octave:
        return max(0, value)
    bits = value.bit_length()
    top = value >> (bits - per_octave.bit_length())  # the leading bit and log2(per_octave) more
    return bits * per_octave + top - per_octave


_EXACT_FLOAT_INT = 2**53  # below it an integer is a float exactly, its split too


def int_buckets(values: list[int], per_octave: int = PER_OCTAVE) -> list[int]:
    """`int_bucket` of each value, those a float holds exactly at once: the exponent is the
    bit length and the mantissa's top bits are the integer's."""
    small = 2 * per_octave
    # rounding to a float keeps order and both bounds are floats: the test holds on them
    x = np.array(values, dtype=float)
    exact = (x >= small) & (x < _EXACT_FLOAT_INT)
    mantissa, bits = np.frexp(np.where(exact, x, small))
    top = np.floor(mantissa * (1 << per_octave.bit_length())).astype(np.int64)
    at_once: list[int] = (bits * per_octave + top - per_octave).tolist()
    for i in np.flatnonzero(~exact).tolist():
        at_once[i] = int_bucket(values[i], per_octave)
    return at_once


def buckets(health_factor_float: float | None, debt: int) -> tuple[int | None, int]:
    """(health factor, debt) buckets of one latest-view row."""
    return float_bucket(health_factor_float, HF_PER_OCTAVE), int_bucket(debt)


BUCKET_COLUMNS = ("hf_bucket", "debt_bucket")
