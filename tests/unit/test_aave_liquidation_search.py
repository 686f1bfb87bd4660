"""The liquidation-price search's per-asset verdict (`_verdict_at`: the other assets' sums taken
once, percentMul / wadDiv inlined) against the whole reference computation (`_liquidatable`),
on random positions and prices for both HF formulas, including amounts so large that the
inlined path hands over to the reference and its uint256 errors."""

from __future__ import annotations

import random
import time
from dataclasses import replace

import pytest

from onchain.protocols.aave_v3.liquidation_price import (
    MAX_PRICE,
    PricedAsset,
    _average_lt_steps,
    _liquidatable,
    _rest,
    _sides,
    _verdict_at,
    liquidation_price,
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


@pytest.mark.parametrize("rules", [V3_0_2, V3_6], ids=["3.0.2", "3.6"])
def test_the_verdicts_two_sides_are_the_reference_verdict(rules: AaveRules) -> None:
    """`_sides` (the verdict as term < limit, which the walk past the first flip bounds over
    whole ranges) against the reference at every price 0..300 of small positions, where the
    two sides are often equal, and at random prices of usual and huge ones."""
    rng = random.Random(rules.revision + 3)
    ceil = rules.directional_rounding
    equal = 0
    for _ in range(300):
        if rng.random() < 0.5:  # lent 2k, borrowed k at LT 50%, beside about one unit of each
            k = rng.randint(1, 50)
            parts = [
                PricedAsset(2 * k, k, 5_000, 1, 1),
                PricedAsset(rng.randint(0, 2), 0, 5_000, 1, 1),
                PricedAsset(0, rng.randint(0, 2), 0, 1, 1),
            ]
        else:
            parts = [
                PricedAsset(
                    rng.randint(0, 1_000),
                    rng.choice([0, rng.randint(0, 1_000)]),
                    rng.choice([0, 2_500, 5_000, 7_500, rng.randint(1, 9_700)]),
                    rng.choice([1, 10, 100]),
                    rng.randint(0, 300),
                )
                for _ in range(rng.randint(1, 3))
            ]
        term, limit = _sides(parts[0], _rest(parts, 0, ceil), ceil)
        for price in range(301):
            assert (term(price) < limit(price)) == _liquidatable(parts, 0, price, rules)
            equal += term(price) == limit(price)
    assert equal > 1_000
    for huge in (False, True):
        for _ in range(300):
            parts = _position(rng, huge)
            index = rng.randrange(len(parts))
            term, limit = _sides(parts[index], _rest(parts, index, ceil), ceil)
            for price in (0, 1, MAX_PRICE, parts[index].price_base, rng.randint(0, 10**14)):
                want = _outcome(_liquidatable, parts, index, price, rules)
                if not isinstance(want, type):  # past uint256 the Pool reverts; no verdict
                    assert (term(price) < limit(price)) == want


def _average_lt(parts: list[PricedAsset], index: int, price: int) -> int:
    """3.0.2's truncated average LT with asset `index` at `price`, summed whole."""
    total = weighted = 0
    for i, part in enumerate(parts):
        collateral = part.collateral_amount_raw * (price if i == index else part.price_base)
        collateral //= part.unit
        total += collateral
        weighted += collateral * part.liquidation_threshold
    return weighted // total if total else 0


def _average_lt_changes(parts: list[PricedAsset], index: int, lo: int, hi: int) -> list[int]:
    """Every price p in [lo, hi] at which the average LT differs from the one at p - 1: for each
    average k between the range's two ends, the first collateral c of the moved asset on the
    other side of k (Σ·LT / total is monotone in c), each one checked by the sums themselves."""
    me = parts[index]
    rest = [p for i, p in enumerate(parts) if i != index]
    cr = sum(p.collateral_amount_raw * p.price_base // p.unit for p in rest)
    wr = sum(
        p.collateral_amount_raw * p.price_base // p.unit * p.liquidation_threshold for p in rest
    )
    amount, lt = me.collateral_amount_raw, me.liquidation_threshold
    if not amount:
        return []
    if not cr:  # no total at c = 0, the asset's own LT from c = 1 on
        price = -(-me.unit // amount)
        return [price] if lo < price <= hi else []
    first, last = _average_lt(parts, index, lo), _average_lt(parts, index, hi)
    out = []
    for k in range(min(first, last) + 1, max(first, last) + 1):
        # falling average: the first c with (wr + c·lt) < k·(cr + c); rising: >=
        c = (wr - k * cr) // (k - lt) + 1 if wr > lt * cr else -((wr - k * cr) // (lt - k))
        price = -(-(c * me.unit) // amount)  # the first price whose collateral reaches c
        if lo < price <= hi:
            assert _average_lt(parts, index, price - 1) != _average_lt(parts, index, price)
            out.append(price)
    return out


def _sampled(
    parts: list[PricedAsset], index: int, flip: int, rules: AaveRules, outward: bool
) -> list[int]:
    """Prices on one side of `flip` (outward: past it, above where a fall liquidates, below
    where a rise does; else the other side), nearest first: every price within 100 units,
    2,000 more within 1% of the flip, 1,000 spread to the range's end, and each price where
    the average LT changes, with its neighbours (within one average the verdict of collateral
    alone is monotone, so these are where a further flip would show)."""
    up = _liquidatable(parts, index, 0, rules) == outward  # the side lies above the flip
    lo, hi = (flip + 2, MAX_PRICE) if up else (0, flip - 2)
    if lo > hi:
        return []
    sign = 1 if up else -1
    prices = [flip + sign * k for k in range(2, 102)]
    prices += [flip + sign * (flip * j // 200_000) for j in range(2_000)]
    prices += [lo + (hi - lo) * j // 1_000 for j in range(1_001)]
    prices += [p + d for p in _average_lt_changes(parts, index, lo, hi) for d in (-1, 0, 1)]
    return sorted({p for p in prices if lo <= p <= hi}, reverse=not up)


def _low_lt_collateral_position(rng: random.Random) -> list[PricedAsset]:
    """3.0.2 position whose first asset is collateral with LT 0 or an LT below the others' (so
    its rise lowers the truncated average LT), beside LT 75-93% collateral and a debt near what
    they allow; values in base units, amounts derived at random prices and decimals."""

    def asset(value: float, owed: float, lt: int) -> PricedAsset:
        unit, price = 10 ** rng.choice([6, 8, 18]), rng.randint(10**6, 10**12)
        return PricedAsset(int(value * unit / price), int(owed * unit / price), lt, unit, price)

    high_value = 10 ** rng.uniform(6, 14)
    moved_value = high_value * 10 ** rng.uniform(-1.5, 1.5)
    moved_lt = rng.choice([0, rng.randint(1, 3_000), rng.randint(5_000, 7_400)])
    high_lt = rng.choice([7_500, 8_250, rng.randint(7_500, 9_300)])
    allowed = (high_value * high_lt + moved_value * moved_lt) / 10_000
    parts = [
        asset(moved_value, 0, moved_lt),
        asset(high_value, 0, high_lt),
        asset(0, allowed * rng.uniform(0.5, 1.2), rng.choice([0, 8_000])),
    ]
    if rng.random() < 0.2:  # a third collateral, lent and borrowed
        parts.append(
            asset(high_value * rng.uniform(0, 0.5), high_value * rng.uniform(0, 0.2), 8_000)
        )
    return parts


def test_a_low_lt_collaterals_price_is_the_farthest_flip() -> None:
    """3.0.2's truncated average LT steps as a low-LT (or LT-0) collateral's price moves, so the
    verdict can flip more than once; the reported price is the farthest flip: no price above it
    liquidates (below it, where a rise liquidates), by brute force over the whole range."""
    rng = random.Random(302)
    checked = several = 0
    for _ in range(200):
        parts = _low_lt_collateral_position(rng)
        flip = liquidation_price(parts, 0, V3_0_2)
        if flip is None:
            continue
        assert _liquidatable(parts, 0, flip, V3_0_2)
        beyond = [
            p for p in _sampled(parts, 0, flip, V3_0_2, True) if _liquidatable(parts, 0, p, V3_0_2)
        ]
        assert not beyond, (parts, flip, beyond[:1])
        checked += 1
        inside = _sampled(parts, 0, flip, V3_0_2, False)
        several += any(
            not _liquidatable(parts, 0, p, V3_0_2) for p in inside if abs(p - flip) <= flip // 50
        )
    assert checked > 100 and several > 30


@pytest.mark.parametrize("rules", [V3_0_2, V3_6], ids=["3.0.2", "3.6"])
def test_an_asset_lent_and_borrowed_gets_the_farthest_flip(rules: AaveRules) -> None:
    """An asset both lent and borrowed has its collateral and its debt floored apart, so near
    the flip the verdict can flip back and forth (in 3.5+'s formula too). Small amounts at
    small prices, every price of a window around the flip checked: the reported price is the
    window's farthest liquidatable one, and no sampled price past the window liquidates."""
    rng = random.Random(rules.revision + 7)
    checked = several = 0
    while checked < 60:
        price = rng.randint(50, 2_000)
        unit = 10**6
        lt, rest_lt = rng.randint(0, 9_500), rng.randint(5_000, 9_500)
        if rng.random() < 0.5:  # round LTs: the two sides of the verdict often meet exactly
            lt, rest_lt = rng.choice([2_500, 5_000, 7_500]), rng.choice([5_000, 7_500])
        amount = rng.randint(10**4, 10**7)
        owed = int(amount * rng.uniform(0.2, 1.5) * max(lt, 1_000) / 10_000)
        rest_debt = rng.randint(0, 10**5)
        # the others' collateral that puts HF near 1 at `price`
        rest_collateral = (
            10_000 * (rest_debt + owed * price // unit) - amount * price // unit * lt
        ) // rest_lt
        if rest_collateral < 0:
            continue
        parts = [
            PricedAsset(amount, owed, lt, unit, price),
            PricedAsset(rest_collateral, 0, rest_lt, 1, 1),
            PricedAsset(0, rest_debt, 0, 1, 1),
        ]
        flip = liquidation_price(parts, 0, rules)
        if flip is None or flip > 4_000:
            continue
        window = range(0, 3 * flip + 1_000)
        bad = [p for p in window if _liquidatable(parts, 0, p, rules)]
        rises = not _liquidatable(parts, 0, 0, rules)
        assert flip == (bad[0] if rises else bad[-1]), (parts, flip)
        past = [p for p in _sampled(parts, 0, flip, rules, True) if p not in window]
        assert not any(_liquidatable(parts, 0, p, rules) for p in past), parts
        checked += 1
        several += len(bad) != (len(window) - flip if rises else flip + 1)
    assert several > 10


def test_average_lt_steps_hold_one_average_each() -> None:
    """The search's step bounds (`_average_lt_steps`, 3.0.2) around random prices: the price is
    inside, the average LT is the same at both bounds and differs one unit past each, and the
    step's line is X there."""
    rng = random.Random(17)
    checked = 0
    for _ in range(3_000):
        parts = _low_lt_collateral_position(rng)
        if rng.random() < 0.3:
            parts[0] = replace(parts[0], liquidation_threshold=rng.randint(7_000, 9_700))
        if rng.random() < 0.1:  # no other collateral
            parts = [parts[0], parts[2]]
        rest = _rest(parts, 0, False)
        price = rng.choice([0, 1, rng.randint(0, 10**13), parts[0].price_base])
        first, last, (x0, xs, _) = _average_lt_steps(parts[0], rest, False)(price)
        assert first <= price <= last
        average = _average_lt(parts, 0, price)
        assert _average_lt(parts, 0, first) == average == _average_lt(parts, 0, last)
        term, _ = _sides(parts[0], rest, False)
        for p in (first, price, last):  # total·average: the step's line, exactly
            assert term(p) == x0 + xs * (parts[0].collateral_amount_raw * p // parts[0].unit)
        if first > 0:
            assert _average_lt(parts, 0, first - 1) != average
        if last < MAX_PRICE:
            assert _average_lt(parts, 0, last + 1) != average
        checked += first < last < MAX_PRICE
    assert checked > 1_000


def test_a_lent_and_borrowed_asset_that_cancels_out_ends_in_bounded_time() -> None:
    """Lent 4n+1, borrowed n at LT 25%: its price moves the verdict by rounding alone, over a
    range no halving resolves. The walk stops at its budget (WALK_BUDGET) with a true flip
    rather than running for hours."""
    parts = [
        PricedAsset(
            4 * 7_907_930_417_516_660_236_738 + 1,
            7_907_930_417_516_660_236_738,
            2_500,
            10**18,
            239_845_055_260,
        ),
        PricedAsset(69_961_736_966_228_565_731, 0, 8_308, 10**18, 566_777_692_857),
        PricedAsset(0, 83_104_134_372_228_280_082, 0, 10**18, 864_302_280_855),
    ]
    started = time.process_time()
    flip = liquidation_price(parts, 0, V3_0_2)
    assert time.process_time() - started < 2
    assert flip is not None
    assert _liquidatable(parts, 0, flip, V3_0_2) and not _liquidatable(parts, 0, flip + 1, V3_0_2)


def _near_flip_position(rng: random.Random) -> list[PricedAsset]:
    """Collateral at usual LTs and a debt near what they allow, amounts derived from values in
    base units at random prices and decimals (most assets flip once)."""

    def asset(value: float, owed: float, lt: int) -> PricedAsset:
        unit, price = 10 ** rng.choice([6, 8, 18]), rng.randint(10**6, 10**12)
        return PricedAsset(int(value * unit / price), int(owed * unit / price), lt, unit, price)

    value = 10 ** rng.uniform(4, 14)
    lt = rng.choice([7_500, 8_250, 8_600])
    parts = [asset(value, 0, lt), asset(0, value * lt / 10_000 * rng.uniform(0.5, 0.99), 0)]
    if rng.random() < 0.5:
        parts.append(asset(value * rng.uniform(0, 2), 0, rng.choice([7_000, 8_000, 9_300])))
    return parts


@pytest.mark.parametrize("rules", [V3_0_2, V3_6], ids=["3.0.2", "3.6"])
def test_where_the_verdict_flips_once_the_closer_start_finds_that_flip_in_fewer_trials(
    rules: AaveRules, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An asset whose verdict flips once (`_flips_once`) has one flip price, whatever the
    search starts from: the one found from the closer start (`_closer_start`) is it (the
    verdict differs on its two sides) and the one found from `_estimate`; and it takes fewer
    trials of the verdict. One that flips more than once gets the same farthest flip from
    either start where the walk stays within its budget (every one of this sample), also in
    fewer trials; past it the flip found stands (`test_a_lent_and_borrowed_asset_that_cancels_
    out_ends_in_bounded_time`)."""
    import onchain.protocols.aave_v3.liquidation_price as lp

    rng = random.Random(17)
    every = []
    for i in range(600):
        parts = _near_flip_position(rng) if i % 2 else _position(rng, False)
        every.append((parts, rng.randrange(len(parts))))
    once = [
        lp._flips_once(
            parts[i], _rest(parts, i, rules.directional_rounding), rules.directional_rounding
        )
        for parts, i in every
    ]
    trials = [0, 0]  # where it flips once, where more than once
    real_verdict_at = lp._verdict_at

    def counted(*args: object) -> object:
        bad = real_verdict_at(*args)  # type: ignore[arg-type]

        def trial(price: int) -> bool:
            trials[0 if once[case[0]] else 1] += 1
            return bad(price)

        return trial

    case = [0]
    monkeypatch.setattr(lp, "_verdict_at", counted)
    runs = []
    for start in (lp._closer_start, lambda *_args: None):  # the closer start, then none
        monkeypatch.setattr(lp, "_closer_start", start)
        got = []
        for case[0], (parts, index) in enumerate(every):
            got.append(liquidation_price(parts, index, rules))
        runs.append((got, list(trials)))
        trials[:] = [0, 0]
    (closer, (closer_trials, closer_multi)), (estimated, (estimated_trials, estimated_multi)) = runs
    assert closer == estimated  # every asset's of this sample, those that flip more than once too
    flips = 0
    for (parts, index), flip, one in zip(every, closer, once, strict=True):
        if flip is None or not one:
            continue
        flips += 1
        falls = _liquidatable(parts, index, 0, rules)  # liquidatable at the low end
        assert _liquidatable(parts, index, flip, rules)
        assert not _liquidatable(parts, index, flip + 1 if falls else flip - 1, rules)
    assert flips > 200
    # 3.0.2: the truncated average LT moves the flip off `_estimate`'s real-number root
    fewer = 0.8 if not rules.directional_rounding else 1.0
    assert closer_trials <= fewer * estimated_trials, (closer_trials, estimated_trials)
    assert sum(not one for one in once) > 30
    assert closer_multi < estimated_multi, (closer_multi, estimated_multi)
