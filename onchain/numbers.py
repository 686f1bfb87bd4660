"""One way to write numbers a person reads: a health factor is truncated, never rounded up across
1 (a liquidatable 0.999995 reads 0.9999, not 1.0000). Exact integer math for wads: uint256
values have more digits than a default Decimal context keeps. Part of the model room: every
other room may use it."""

from __future__ import annotations

import math

WAD = 10**18


def format_wad(value: int, places: int = 4, *, trim: bool = True) -> str:
    """A wad as a decimal, truncated toward zero to ``places`` digits."""
    whole, rest = divmod(value, WAD)
    text = f"{whole}.{rest // 10 ** (18 - places):0{places}d}"
    return text.rstrip("0").rstrip(".") if trim else text


# the four-place fractions `format_wad` writes (trailing zeros trimmed, none for .0000)
_FRACTIONS = tuple("." + f"{r:04d}".rstrip("0") if r else "" for r in range(10_000))
_FOUR_PLACES = 10 ** (18 - 4)


def format_wads(values: list[int]) -> list[str]:
    """`format_wad` of each non-negative wad at four places, trimmed: a whole book's health
    factors in one pass (each block writes one text per position)."""
    fractions, unit = _FRACTIONS, _FOUR_PLACES
    return [f"{(t := v // unit) // 10_000}{fractions[t % 10_000]}" for v in values]


def format_base(value: int, decimals: int) -> str:
    """An amount in base-currency units with two decimals (truncated), exact at any size."""
    whole, rest = divmod(value, 10**decimals)
    return f"{whole:,}.{rest * 100 // 10**decimals:02d}"


def health_text(health_factor: int | None, places: int = 4, *, none: str = "no debt") -> str:
    """An exact health factor (wad) for tables and messages: fixed places, truncated."""
    if health_factor is None:
        return none
    return format_wad(health_factor, places, trim=False)


def truncated(value: float, places: int = 4) -> str:
    """A float (a modelled health factor) with fixed places, truncated toward zero like the
    exact ones, so a value below 1 never prints as 1.0000."""
    if not math.isfinite(value):
        return str(value)
    scale = 10**places
    cut = math.trunc(value * scale)
    # value * scale may land a hair under an integer it equals (0.29 * 100 = 28.999...)
    if math.isclose((cut + 1) / scale, value, rel_tol=0.0, abs_tol=1e-12):
        cut += 1
    return f"{cut / scale:.{places}f}"
