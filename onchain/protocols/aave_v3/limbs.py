"""Exact non-negative integers as numpy arrays of base-1e9 digits ("limbs", int64): shape
(limbs, n), limb k of every number contiguous, least significant first. The whole-book
recompute (`exact_book`) does its integer math here because numpy object arrays of Python
ints cost ~100 ns per operation and element, too slow for 100,000 accounts. Base 1e9 makes
every division by a power of ten (ray, wad, 10**decimals, percentage) a shift of whole limbs
plus a division by a small divisor, and a limb product (< 1e18) plus a few more fits in int64.
Inputs are normalized (every limb below B); results are normalized too."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

B = 10**9


def from_ints(values: Sequence[int], width: int) -> tuple[np.ndarray, np.ndarray]:
    """(limbs (width, n), fits): fits False where a value is not in [0, B**width) (its limbs
    are then 0)."""
    n = len(values)
    out = np.zeros((width, n), np.int64)
    if not n:
        return out, np.ones(0, bool)
    objects = np.empty(n, object)
    objects[:] = list(values)
    fits = np.asarray((objects >= 0) & (objects < B**width), bool)
    small = fits & np.asarray(objects < 2**62, bool)
    head = objects[small].astype(np.int64)
    for k in range(width):
        if not head.size:
            break
        out[k, small] = head % B
        head //= B
    big = np.flatnonzero(fits & ~small)
    rest = objects[big]
    for k in range(width if len(big) else 0):
        out[k, big] = (rest % B).astype(np.int64)
        rest = rest // B
    return out, fits


def normalize(a: np.ndarray) -> np.ndarray:
    """Carry every limb above B into the next one (in place; the top limb keeps the rest)."""
    for k in range(a.shape[0] - 1):
        carry = a[k] // B  # a divisor numpy divides by fast (np.divmod and % are not)
        a[k] -= carry * B
        a[k + 1] += carry
    return a


def mul_const(a: np.ndarray, c: int) -> np.ndarray:
    """Product by one integer below B**9 (its zero limbs cost nothing)."""
    digits = []
    while c:
        c, digit = divmod(c, B)
        digits.append(digit)
    assert len(digits) <= 9
    out = np.zeros((a.shape[0] + max(len(digits), 1), a.shape[1]), np.int64)
    for j, digit in enumerate(digits):
        if digit:
            out[j : j + a.shape[0]] += a * digit
    return normalize(out)


def trim(a: np.ndarray) -> np.ndarray:
    """`a` without the top limbs that are zero for every number (one limb at least)."""
    used = np.flatnonzero(a.any(axis=1))
    return a[: int(used[-1]) + 1 if len(used) else 1]


def mul_small(a: np.ndarray, s: np.ndarray | int) -> np.ndarray:
    """Product by factors below B (one for all or one per number), one limb wider."""
    out = np.zeros((a.shape[0] + 1, a.shape[1]), np.int64)
    out[:-1] = a * s
    return normalize(out)


def add(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Sum, one limb wider than the wider operand."""
    out = np.zeros((max(a.shape[0], b.shape[0]) + 1, a.shape[1]), np.int64)
    out[: a.shape[0]] += a
    out[: b.shape[0]] += b
    return normalize(out)


def add_at(a: np.ndarray, limb: int, value: int | np.ndarray) -> np.ndarray:
    """`a + value * B**limb` (value below B), in place."""
    a[limb] += value
    return normalize(a)


def widen(a: np.ndarray, width: int, shift: int = 0) -> np.ndarray:
    """`a * B**shift` in `width` limbs."""
    out = np.zeros((width, a.shape[1]), np.int64)
    out[shift : shift + a.shape[0]] = a
    return out


def nonzero(a: np.ndarray) -> np.ndarray:
    return np.asarray(a.any(axis=0), bool)


def below(a: np.ndarray, limbs: int) -> np.ndarray:
    """Whether each number is below B**limbs."""
    return np.asarray(~a[limbs:].any(axis=0), bool)


def div_small(a: np.ndarray, d: int) -> tuple[np.ndarray, np.ndarray]:
    """(a // d, a % d) for a divisor below B."""
    out = np.empty_like(a)
    rem = np.zeros(a.shape[1], np.int64)
    for k in range(a.shape[0] - 1, -1, -1):
        current = rem * B + a[k]
        out[k] = current // d
        rem = current - out[k] * d
    return out, rem


def div_pow10(a: np.ndarray, decimals: int) -> tuple[np.ndarray, np.ndarray]:
    """(a // 10**decimals, whether anything was cut)."""
    q, r = divmod(decimals, 9)
    out = np.zeros_like(a)
    if q < a.shape[0]:
        out[: a.shape[0] - q] = a[q:]
    cut = np.asarray(a[:q].any(axis=0), bool)
    if r:
        out, rem = div_small(out, 10**r)
        cut |= rem != 0
    return out, cut


def plus_one(a: np.ndarray, where: np.ndarray) -> np.ndarray:
    """`a + 1` for the numbers `where` (in place; a carry needs a free top limb)."""
    a[0] += where
    return normalize(a)


def compare(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """-1, 0 or 1 per number as a <, =, > b (same width)."""
    out = np.zeros(a.shape[1], np.int64)
    for k in range(a.shape[0] - 1, -1, -1):
        out = np.where(out != 0, out, np.sign(a[k] - b[k]))
    return out


def to_float(a: np.ndarray) -> np.ndarray:
    out = np.zeros(a.shape[1])
    for k in range(a.shape[0] - 1, -1, -1):
        out = out * B + a[k]
    return out


def to_ints(a: np.ndarray) -> np.ndarray:
    """Python ints (an object array): numbers below 1.8e19 through uint64 in one conversion,
    the others two limbs at a time (below 1e18 each, through int64) with big-integer steps."""
    width, n = a.shape
    pairs = [a[k] + (a[k + 1] * B if k + 1 < width else 0) for k in range(0, width, 2)]
    if len(pairs) == 1:
        return pairs[0].astype(object)
    high = np.zeros(n, bool)
    for pair in pairs[2:]:
        high |= pair != 0
    high |= pairs[1] >= 18  # 18e18 + 1e18 > 2**64
    low = pairs[0].astype(np.uint64) + pairs[1].astype(np.uint64) * np.uint64(10**18)
    out = low.astype(object)
    rows = np.flatnonzero(high)
    if len(rows):
        big = pairs[-1][rows].astype(object)
        for pair in pairs[-2::-1]:
            big = big * 10**18 + pair[rows].astype(object)
        out[rows] = big
    return out
