"""Base-1e9 limb arithmetic (`aave_v3.limbs`) against Python ints: random numbers of every
width up to the book's, zeros, and the edges of a limb (B - 1, B, B**k - 1)."""

from __future__ import annotations

import random

import numpy as np

from onchain.protocols.aave_v3 import limbs

B = limbs.B


def _numbers(rng: random.Random, n: int, below: int) -> list[int]:
    edges = [0, 1, B - 1, B, B + 1, B**2 - 1, B**3, below - 1]
    picks = [rng.randrange(below) for _ in range(n)]
    picks += [rng.randrange(10 ** rng.randrange(1, len(str(below)))) for _ in range(n)]
    return [e for e in edges if e < below] + picks


def test_round_trip_products_and_powers_of_ten() -> None:
    rng = random.Random(1)
    xs = _numbers(rng, 400, B**4)
    a, fits = limbs.from_ints(xs, 4)
    assert fits.all() and limbs.to_ints(a).tolist() == xs
    assert not limbs.from_ints([B**4, -1], 4)[1].any()
    for c in [0, 1, 7, B - 1, B, 10**27 + 12345, 3 * 10**35 + 1]:
        assert limbs.to_ints(limbs.mul_const(a, c)).tolist() == [x * c for x in xs]
    ys = _numbers(rng, 400, B**3)[: len(xs)]
    ys += [rng.randrange(B**3) for _ in range(len(xs) - len(ys))]
    b = limbs.from_ints(ys, 3)[0]
    assert limbs.to_ints(limbs.add(a, b)).tolist() == [x + y for x, y in zip(xs, ys, strict=True)]
    for d in [0, 1, 6, 8, 9, 18, 27, 30, 36, 40, 45]:
        q, cut = limbs.div_pow10(a, d)
        assert limbs.to_ints(q).tolist() == [x // 10**d for x in xs]
        assert cut.tolist() == [x % 10**d != 0 for x in xs]


def test_comparisons_and_small_divisors() -> None:
    rng = random.Random(2)
    for width_a, width_b in [(2, 1), (5, 1), (5, 2), (9, 2), (9, 4), (4, 4)]:
        xs = _numbers(rng, 3000, B**width_a)
        ys = [max(1, y) for y in _numbers(rng, 3000, B**width_b)][: len(xs)]
        ys += [rng.randrange(1, B**width_b) for _ in range(len(xs) - len(ys))]
        # quotients near a limb edge: x = q * y + y - 1 and q * y exactly
        for i in range(0, len(xs), 7):
            q = xs[i] // max(ys[i], 1)
            xs[i] = min(q * ys[i] + (ys[i] - 1 if i % 2 else 0), B**width_a - 1)
        a, b = limbs.from_ints(xs, width_a)[0], limbs.from_ints(ys, width_b)[0]
        sign = [(x > y) - (x < y) for x, y in zip(xs, ys, strict=True)]
        assert limbs.compare(a, limbs.widen(b, width_a)).tolist() == sign
        small = np.array([rng.randrange(1, B) for _ in xs], np.int64)
        assert limbs.to_ints(limbs.div_small(a, 7)[0]).tolist() == [x // 7 for x in xs]
        prod = limbs.mul_small(a, small)
        assert limbs.to_ints(prod).tolist() == [x * int(s) for x, s in zip(xs, small, strict=True)]
