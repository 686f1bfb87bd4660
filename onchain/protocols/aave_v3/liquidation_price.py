"""Exact liquidation prices: the oracle price of one asset (others held) at which the Pool's own
integer math flips the position to liquidatable. Setting the oracle one unit past it liquidates;
one unit short of it does not.

Moving one price only changes that asset's base values, so the health factor at a trial price
is recomputed from the breakdown in a few integer operations (same roundings as the release's
GenericLogic: 3.0.2's truncated average LT, or 3.5's Σ collateral·LT with debt rounded up)
instead of re-running the whole account computation."""

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
    me = parts[index]
    amount, owed, threshold, unit = (
        me.collateral_amount_raw,
        me.debt_amount_raw,
        me.liquidation_threshold,
        me.unit,
    )

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

    start = _estimate(parts, index) or parts[index].price_base
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
    return lo if low_bad else hi


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
