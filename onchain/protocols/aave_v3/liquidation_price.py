"""Exact liquidation prices: the oracle price of one asset (others held) at which the Pool's own
integer math flips the position to liquidatable. Setting the oracle one unit past it liquidates;
one unit short of it does not.

Moving one price only changes that asset's base values, so the health factor at a trial price
is recomputed from the breakdown in a few integer operations (same roundings as the release's
GenericLogic: 3.0.2's truncated average LT, or 3.5's Σ collateral·LT with debt rounded up)
instead of re-running the whole account computation.

The verdict need not flip only once as one price moves: 3.0.2's average LT is truncated to a
whole bps and steps as the asset's share changes (falling, for collateral whose LT is below the
others'), and an asset held both as collateral and as debt has its two amounts floored apart.
The search's flip is then carried to the farthest one (`_farthest_flip`)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from onchain.protocols.aave_v3.math import (
    HALF_PERCENTAGE_FACTOR,
    HEALTH_FACTOR_LIQUIDATION_THRESHOLD,
    PERCENTAGE_FACTOR,
    WAD,
    AssetBreakdown,
    calculate_health_factor_3_5,
    percent_mul,
    wad_div,
)
from onchain.protocols.aave_v3.rules import V3_0_2, AaveRules

MAX_PRICE = 2**128  # far beyond any oracle answer; bounds the search
WALK_BUDGET = 4_096  # steps and halves past the first flip; usual positions take a few
ONE = HEALTH_FACTOR_LIQUIDATION_THRESHOLD


@dataclass(frozen=True)
class PricedAsset:
    """What one asset contributes as a function of its price."""

    collateral_amount_raw: int  # counts only if the asset counts as collateral
    debt_amount_raw: int
    liquidation_threshold: int
    unit: int
    price_base: int


def _liquidatable(
    parts: Sequence[PricedAsset], index: int, price: int, rules: AaveRules = V3_0_2
) -> bool:
    """The verdict with asset `index` at `price`, every sum computed whole (the reference the
    per-asset `_verdict_at` must equal)."""
    total_collateral = total_debt = weighted_lt = 0
    for i, part in enumerate(parts):
        p = price if i == index else part.price_base
        collateral = part.collateral_amount_raw * p // part.unit
        total_collateral += collateral
        weighted_lt += collateral * part.liquidation_threshold
        if rules.directional_rounding:  # MathUtils.mulDivCeil
            total_debt += -(-(p * part.debt_amount_raw) // part.unit)
        else:
            total_debt += p * part.debt_amount_raw // part.unit
    if total_debt == 0:
        return False
    if rules.directional_rounding:
        return calculate_health_factor_3_5(weighted_lt, total_debt) < (
            HEALTH_FACTOR_LIQUIDATION_THRESHOLD
        )
    avg_lt = weighted_lt // total_collateral if total_collateral else 0
    return (
        wad_div(percent_mul(total_collateral, avg_lt), total_debt)
        < HEALTH_FACTOR_LIQUIDATION_THRESHOLD
    )


def _amounts(part: PricedAsset) -> tuple[int, int, int, int]:
    """What a trial price multiplies: (collateral amount, debt amount, LT, unit)."""
    return (
        part.collateral_amount_raw,
        part.debt_amount_raw,
        part.liquidation_threshold,
        part.unit,
    )


def _rest(parts: Sequence[PricedAsset], index: int, ceil: bool) -> tuple[int, int, int]:
    """The other assets' (collateral, Σ collateral·LT, debt) in base units at their prices,
    with the release's roundings: what a trial price of asset `index` adds to."""
    rest_collateral = rest_weighted = rest_debt = 0
    for i, part in enumerate(parts):
        if i == index:
            continue
        p = part.price_base
        collateral = part.collateral_amount_raw * p // part.unit
        rest_collateral += collateral
        rest_weighted += collateral * part.liquidation_threshold
        if ceil:
            rest_debt += -(-(p * part.debt_amount_raw) // part.unit)
        else:
            rest_debt += p * part.debt_amount_raw // part.unit
    return rest_collateral, rest_weighted, rest_debt


def _verdict_at(
    parts: Sequence[PricedAsset],
    index: int,
    rules: AaveRules,
    rest: tuple[int, int, int] | None = None,
) -> Callable[[int], bool]:
    """`_liquidatable(parts, index, price, rules)` as a function of the price alone: the other
    assets' sums (`rest`, `_rest`'s) are taken once, so the search's trials each cost a few
    integer operations (the same roundings; `percent_mul` / `wad_div` inlined)."""
    ceil = rules.directional_rounding
    rest_collateral, rest_weighted, rest_debt = rest or _rest(parts, index, ceil)
    amount, owed, threshold, unit = _amounts(parts[index])

    # Below these bounds percentMul and wadDiv cannot overflow (nor leave uint256); past them,
    # the whole reference computation runs, with its own checks and errors.
    def reference(price: int) -> bool:
        return _liquidatable(parts, index, price, rules)

    if ceil:  # 3.5+: Σ collateral·LT wad-divided by the debt rounded up, then / 1e4

        def bad_3_5(price: int) -> bool:
            debt = rest_debt - (-(price * owed) // unit)
            if not debt:
                return False
            weighted = rest_weighted + amount * price // unit * threshold
            if weighted >> 190 or debt >> 250:
                return reference(price)
            return (weighted * WAD + debt // 2) // debt // PERCENTAGE_FACTOR < ONE

        return bad_3_5

    def bad(price: int) -> bool:  # 3.0.2: the average LT truncated to a whole bps
        debt = rest_debt + price * owed // unit
        if not debt:
            return False
        collateral = amount * price // unit
        total = rest_collateral + collateral
        average = (rest_weighted + collateral * threshold) // total if total else 0
        if total >> 200 or average >> 40:
            return reference(price)
        value = (total * average + HALF_PERCENTAGE_FACTOR) // PERCENTAGE_FACTOR
        if value >> 190 or debt >> 250:
            return reference(price)
        return (value * WAD + debt // 2) // debt < ONE

    return bad


def _estimate(parts: Sequence[PricedAsset], index: int) -> int | None:
    """Where HF = 1 in real numbers; the exact search starts from here."""
    rest_weighted = sum(
        p.collateral_amount_raw * p.price_base / p.unit * p.liquidation_threshold / 10_000
        for i, p in enumerate(parts)
        if i != index
    )
    rest_debt = sum(
        p.debt_amount_raw * p.price_base / p.unit for i, p in enumerate(parts) if i != index
    )
    part = parts[index]
    slope = (
        part.collateral_amount_raw * part.liquidation_threshold / 10_000 - part.debt_amount_raw
    ) / part.unit
    if slope == 0:
        return None
    estimate = (rest_debt - rest_weighted) / slope
    return int(estimate) if 0 < estimate < MAX_PRICE else None


def _closer_start(part: PricedAsset, rest: tuple[int, int, int], ceil: bool) -> int | None:
    """Where HF = 1 with the asset's price alone moving, in integers, from the other assets'
    sums as the release rounds them (`_rest`'s): within a few units of the flip. 3.5+: Σ
    collateral·LT / 1e4 = debt, linear in the price; 3.0.2: then again with the average LT
    as the Pool truncates it at that price (it steps only where the asset's share crosses a
    whole bps). None: no such price."""
    rest_collateral, rest_weighted, rest_debt = rest
    amount, owed, threshold, unit = _amounts(part)
    price = _linear_root(
        unit, PERCENTAGE_FACTOR * rest_debt - rest_weighted, amount * threshold, owed
    )
    if price is None or ceil:
        return price
    collateral = amount * price // unit
    total = rest_collateral + collateral
    if not total:
        return None
    average = (rest_weighted + collateral * threshold) // total
    return _linear_root(
        unit, PERCENTAGE_FACTOR * rest_debt - rest_collateral * average, amount * average, owed
    )


def _linear_root(unit: int, lack: int, weight: int, owed: int) -> int | None:
    """The price p where weight·p / unit covers 1e4·owed·p / unit plus `lack` (the other
    assets' shortfall, in base units times 1e4), if within (0, MAX_PRICE)."""
    slope = weight - PERCENTAGE_FACTOR * owed
    if not slope:
        return None
    price = unit * lack // slope
    return price if 0 < price < MAX_PRICE else None


def liquidation_price(
    parts: Sequence[PricedAsset], index: int, rules: AaveRules = V3_0_2
) -> int | None:
    """The flip price of asset `index`, in oracle units, or None if its price alone cannot flip
    the verdict. For an asset whose fall liquidates (net collateral) it is the HIGHEST price at
    which the position is liquidatable; for one whose rise liquidates (net debt) it is the
    LOWEST such price."""
    rest = _rest(parts, index, rules.directional_rounding)
    bad = _verdict_at(parts, index, rules, rest)
    low_bad, high_bad = bad(0), bad(MAX_PRICE)
    if low_bad == high_bad:
        return None  # this price alone never changes the verdict

    once = _flips_once(parts[index], rest, rules.directional_rounding)
    # the closer start: a few trials, not a gallop and bisection over the float estimate's
    # error. Where the verdict flips once, every start finds that one flip; elsewhere
    # `_farthest_flip` carries any flip found on to the farthest one (past its walk's budget,
    # which only collateral and debt of one asset that nearly cancel reach, the flip found
    # stands: a true flip, which one depending on the start)
    closer = _closer_start(parts[index], rest, rules.directional_rounding)
    start = closer or _estimate(parts, index) or parts[index].price_base
    # Gallop from the estimate to a bracket (a, b) with bad(a) != bad(b), then bisect.
    a, step = start, 1
    a_bad = bad(a)
    direction = 1 if a_bad == low_bad else -1  # walk towards the flip
    while True:
        b = min(max(a + direction * step, 0), MAX_PRICE)
        if bad(b) != a_bad:
            break
        a, step = b, step * 2
    lo, hi = min(a, b), max(a, b)  # bad(lo) == low_bad, bad(hi) == high_bad
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if bad(mid) == low_bad:
            lo = mid
        else:
            hi = mid
    flip = lo if low_bad else hi
    if once:
        return flip
    return _farthest_flip(parts[index], rest, rules.directional_rounding, flip, rises=not low_bad)


class _OverBudget(Exception):
    """The walk past the first flip ran out of its budget."""


def _flips_once(part: PricedAsset, rest: tuple[int, int, int], ceil: bool) -> bool:
    """Whether the verdict is monotone in this asset's price, so the search's flip is the only
    one: the asset adds only debt, or only collateral that cannot lower the average LT (3.0.2:
    its LT at least the others' average), or (3.5+) only one side that counts."""
    if not part.collateral_amount_raw:
        return True
    if ceil:
        return not part.debt_amount_raw or not part.liquidation_threshold
    rest_collateral, rest_weighted, _ = rest
    return not part.debt_amount_raw and (
        part.liquidation_threshold * rest_collateral >= rest_weighted
    )


def _farthest_flip(
    part: PricedAsset, rest: tuple[int, int, int], ceil: bool, flip: int, rises: bool
) -> int:
    """The flip farthest out, given a flip `flip`: the lowest liquidatable price if a rise
    liquidates (`rises`), else the highest. Past a bound (`_envelopes`) no price liquidates; up
    to it the prices are walked step by step of the average LT (`_average_lt_steps`), within
    which both sides of the verdict (`_sides`) never fall as the price rises and X is exactly
    linear in the collateral, which bounds the step's liquidatable prices closely; what is
    left is searched from its far end. The walk is bounded (WALK_BUDGET steps and halves): past
    it, which only an asset whose collateral and debt nearly cancel reaches (its price then
    moves the verdict by rounding alone, over ranges no halving resolves), `flip` stands."""
    term, limit = _sides(part, rest, ceil)
    budget = WALK_BUDGET

    def spend() -> None:
        nonlocal budget
        budget -= 1
        if budget < 0:
            raise _OverBudget

    step = _average_lt_steps(part, rest, ceil)
    rest_debt = rest[2]
    safe = (max if rises else min)(
        _safe_price(part, rest_debt, ceil, rises, line) for line in _envelopes(part, rest, ceil)
    )

    def farthest_in(a: int, b: int) -> int | None:
        """The farthest liquidatable price in [a, b], within one step: a liquidatable price
        galloped to from the far end, then halves of the range up to it dropped when wholly
        safe (X at the low end >= M at the high end), kept when wholly liquidatable."""
        gap = 1
        while True:
            q = min(a + gap - 1, b) if rises else max(b - gap + 1, a)
            if term(q) < limit(q):
                a, b = (a, q) if rises else (q, b)
                break
            if q == (b if rises else a):
                break
            gap *= 2
        pending = [(a, b)]
        while pending:
            spend()
            a, b = pending.pop()
            if term(a) >= limit(b):
                continue  # none in [a, b]
            if term(b) < limit(a):
                return a if rises else b  # all of [a, b]
            mid = (a + b) // 2
            if rises:  # the lower half is searched first
                pending += [(mid + 1, b), (a, mid)]
            else:
                pending += [(a, mid), (mid + 1, b)]
        return None

    try:
        if rises:
            price, end = max(safe + 1, 0), flip - 2
            while price <= end:
                spend()
                _, last, line = step(price)
                b = min(max(last, price), end)  # (the step holds `price`: progress)
                a = max(price, _safe_price(part, rest_debt, ceil, rises, line) + 1)
                found = farthest_in(a, b) if a <= b else None
                if found is not None:
                    return found
                price = b + 1
        else:
            price, end = min(safe - 1, MAX_PRICE), flip + 2
            while price >= end:
                spend()
                first, _, line = step(price)
                a = max(min(first, price), end)
                b = min(price, _safe_price(part, rest_debt, ceil, rises, line) - 1)
                found = farthest_in(a, b) if a <= b else None
                if found is not None:
                    return found
                price = a - 1
    except _OverBudget:
        pass
    return flip


def _sides(
    part: PricedAsset, rest: tuple[int, int, int], ceil: bool
) -> tuple[Callable[[int], int], Callable[[int], int]]:
    """The verdict at a price split in two sides, liquidatable exactly when term < limit: the
    term X of the collateral (3.0.2: total·avgLT, 3.5+: Σ collateral·LT) and a threshold M of
    the total debt (none reached when it is 0). M never falls as the price rises; X never does
    within one average LT (3.5+: anywhere)."""
    rest_collateral, rest_weighted, rest_debt = rest
    amount, owed, threshold, unit = _amounts(part)

    def term(price: int) -> int:
        collateral = amount * price // unit
        weighted = rest_weighted + collateral * threshold
        if ceil:
            return weighted
        total = rest_collateral + collateral
        return total * (weighted // total) if total else 0

    def limit(price: int) -> int:
        if ceil:  # Σ·LT wad-divided by the debt (half up), then / 1e4, below 1e18
            debt = rest_debt - (-(owed * price) // unit)
            return (PERCENTAGE_FACTOR * WAD * debt - debt // 2 - 1) // WAD + 1
        debt = rest_debt + owed * price // unit
        # percentMul of X (half up) wad-divided by the debt (half up) below 1e18: the highest
        # such value, then the least X whose percentMul passes it
        value = (WAD * debt - debt // 2 - 1) // WAD
        return PERCENTAGE_FACTOR * (value + 1) - HALF_PERCENTAGE_FACTOR

    return term, limit


Line = tuple[int, int, int]  # X >= x0 + xs·c, from the price given on


def _envelopes(part: PricedAsset, rest: tuple[int, int, int], ceil: bool) -> list[Line]:
    """Lines under X at every price: 3.5+'s X itself; 3.0.2's total·avgLT >= Σ·LT - total + 1
    while the total is positive, and >= total·(the least average LT)."""
    rest_collateral, rest_weighted, _ = rest
    amount, _, threshold, unit = _amounts(part)
    if ceil:
        return [(rest_weighted, threshold, 0)]
    least = (
        threshold
        if rest_weighted >= threshold * rest_collateral
        else rest_weighted // rest_collateral
    )
    positive_from = 0 if rest_collateral else -(-unit // amount)  # c >= 1
    return [
        (rest_collateral * least, least, 0),
        (rest_weighted - rest_collateral + 1, threshold - 1, positive_from),
    ]


def _safe_price(part: PricedAsset, rest_debt: int, ceil: bool, rises: bool, line: Line) -> int:
    """Where a line under X shows no price can liquidate: if a rise liquidates, every price at
    or below the one returned (-1: none); else every price at or above it (MAX_PRICE + 1: none).
    The line's value against M(d) <= 1e4·d - m0, with c and d within a unit of their real
    values."""
    amount, owed, _, unit = _amounts(part)
    x0, xs, holds_from = line
    m0 = 0 if ceil else HALF_PERCENTAGE_FACTOR
    # Safe where x0 + xs·c >= 1e4·d - m0; with unit·c in (A·p - unit, A·p] and unit·d at most
    # unit·Dr + O·p (+ unit - 1 rounded up): safe where slope·p + offset >= 0.
    slope = xs * amount - PERCENTAGE_FACTOR * owed
    offset = (
        unit * (x0 - PERCENTAGE_FACTOR * rest_debt + m0)
        - (xs * (unit - 1) if xs >= 0 else 0)
        - (PERCENTAGE_FACTOR * (unit - 1) if ceil else 0)
    )
    if rises:  # safe at every price up to the one returned
        if holds_from:
            return -1
        if slope < 0:
            return offset // -slope if offset >= 0 else -1
        return MAX_PRICE if offset >= 0 else -1
    if slope > 0:  # safe at every price from the one returned
        return max(0, -(offset // slope), holds_from)
    return max(0, holds_from) if slope == 0 and offset >= 0 else MAX_PRICE + 1


def _average_lt_steps(
    part: PricedAsset, rest: tuple[int, int, int], ceil: bool
) -> Callable[[int], tuple[int, int, Line]]:
    """The prices around a price at which 3.0.2's average LT k stays what it is there (its
    truncation changes only at these bounds: Σ·LT / total is monotone in the asset's collateral
    c), and X there, total·k, as a line; 3.5+ has no average, one step."""
    rest_collateral, rest_weighted, _ = rest
    amount, _, threshold, unit = _amounts(part)
    if ceil:
        whole = (0, MAX_PRICE, (rest_weighted, threshold, 0))
        return lambda price: whole
    steady = threshold * rest_collateral == rest_weighted and (rest_collateral or not threshold)
    if not amount or steady:  # one average at every price
        k = rest_weighted // rest_collateral if rest_collateral else threshold
        whole = (0, MAX_PRICE, (rest_collateral * k, k, 0))
        return lambda price: whole

    def step(price: int) -> tuple[int, int, Line]:
        c = amount * price // unit
        high: int | None
        if not rest_collateral:  # no total at c = 0; the asset's own LT above it
            k = 0 if c == 0 else threshold
            low, high = (0, 0) if c == 0 else (1, None)
        else:
            k = (rest_weighted + c * threshold) // (rest_collateral + c)
            if rest_weighted > threshold * rest_collateral:  # falls towards the LT as c grows
                # average >= k  <=>  c·(k - LT) <= Σr·LT - k·Cr
                low = max(0, (rest_weighted - (k + 1) * rest_collateral) // (k + 1 - threshold) + 1)
                high = (
                    (rest_weighted - k * rest_collateral) // (k - threshold)
                    if k > threshold
                    else None
                )
            else:  # rises towards the LT: average >= k  <=>  c·(LT - k) >= k·Cr - Σr·LT
                low = max(0, -((rest_weighted - k * rest_collateral) // (threshold - k)))
                high = (
                    -((rest_weighted - (k + 1) * rest_collateral) // (threshold - k - 1)) - 1
                    if k + 1 < threshold
                    else None
                )
        first = -(-(low * unit) // amount)  # the least price with A·p // unit >= low
        last = MAX_PRICE if high is None else min(((high + 1) * unit - 1) // amount, MAX_PRICE)
        return first, last, (rest_collateral * k, k, 0)

    return step


def priced_assets(
    breakdown: Sequence[AssetBreakdown], decimals: Sequence[int]
) -> list[PricedAsset]:
    return [
        PricedAsset(
            collateral_amount_raw=part.collateral_amount_raw if part.counts_as_collateral else 0,
            debt_amount_raw=part.debt_amount_raw,
            liquidation_threshold=part.liquidation_threshold_used,
            unit=10**dec,
            price_base=part.price_base,
        )
        for part, dec in zip(breakdown, decimals, strict=True)
    ]
