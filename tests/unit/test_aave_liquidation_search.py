"""The liquidation-price search's per-asset verdict (`_verdict_at`: the other assets' sums taken
once, percentMul / wadDiv inlined) against the whole reference computation (`_liquidatable`),
on random positions and prices for both HF formulas, including amounts so large that the
inlined path hands over to the reference and its uint256 errors."""

from __future__ import annotations

import random

import pytest

from onchain.protocols.aave_v3.liquidation_price import (
    MAX_PRICE,
    PricedAsset,
    _liquidatable,
    _verdict_at,
)
from onchain.protocols.aave_v3.rules import V3_0_2, V3_6, AaveRules


def _position(rng: random.Random, huge: bool) -> list[PricedAsset]:
    out = []
    for _ in range(rng.randint(1, 4)):
        decimals = rng.choice([6, 8, 18])
        scale = 10 ** rng.randint(0, 60 if huge else 8)
        out.append(
            PricedAsset(
                collateral_amount_raw=rng.choice([0, rng.randint(1, 10**decimals * scale)]),
                debt_amount_raw=rng.choice([0, rng.randint(1, 10**decimals * scale)]),
                liquidation_threshold=rng.choice([0, rng.randint(5_000, 9_700)]),
                unit=10**decimals,
                price_base=rng.randint(1, 10**12),
            )
        )
    return out


def _outcome(fn: object, *args: object) -> object:
    try:
        return fn(*args)  # type: ignore[operator]
    except (OverflowError, ValueError) as exc:
        return type(exc)


@pytest.mark.parametrize("rules", [V3_0_2, V3_6], ids=["3.0.2", "3.6"])
@pytest.mark.parametrize("huge", [False, True], ids=["usual", "huge"])
def test_the_per_asset_verdict_is_the_reference_verdict(rules: AaveRules, huge: bool) -> None:
    rng = random.Random(15)
    checked = errors = 0
    for _ in range(400):
        parts = _position(rng, huge)
        index = rng.randrange(len(parts))
        bad = _verdict_at(parts, index, rules)
        for price in (0, 1, MAX_PRICE, parts[index].price_base, rng.randint(0, 10**14)):
            want = _outcome(_liquidatable, parts, index, price, rules)
            assert _outcome(bad, price) == want, (parts, index, price)
            checked += 1
            errors += isinstance(want, type)
    assert checked == 2_000
    if huge:  # the hand-over to the reference (and its errors) was exercised
        assert errors > 0
