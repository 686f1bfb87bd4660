"""Risk tiers for now: from the exact health factor, with thresholds from config, and a reason
for every verdict. Small on purpose (positions in, tiers and reasons out): the risk module
(onchain/risk) will replace the rule without touching the jobs or the store."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Protocol

from onchain.config import TierThresholds
from onchain.store.crud import Assessed

WAD = 10**18


class HasHealth(Protocol):
    """A position as `assess` needs it: a Position, or a stored snapshot row."""

    @property
    def health_factor(self) -> int | None: ...

    @property
    def liquidatable(self) -> bool: ...


def format_wad(value: int, places: int = 4, *, trim: bool = True) -> str:
    """A wad as a decimal, truncated (never rounded up across a threshold), in integer math:
    uint256 values have more digits than a default Decimal context keeps."""
    whole, rest = divmod(value, WAD)
    text = f"{whole}.{rest // 10 ** (18 - places):0{places}d}"
    return text.rstrip("0").rstrip(".") if trim else text


def tier_of(health_factor: int | None, liquidatable: bool, tiers: TierThresholds) -> Assessed:
    """LIQUIDATABLE is the protocol's own verdict; the other tiers compare the exact wad."""
    if liquidatable:
        shown = "unknown" if health_factor is None else format_wad(health_factor)
        return Assessed("LIQUIDATABLE", f"liquidatable now: health factor {shown} < 1")
    if health_factor is None:
        return Assessed("SAFE", "no debt")
    shown = format_wad(health_factor)
    for name, bound in (
        ("CRITICAL", tiers.critical_wad),
        ("HIGH", tiers.high_wad),
        ("WATCH", tiers.watch_wad),
    ):
        if health_factor < bound:
            return Assessed(name, f"health factor {shown} < {format_wad(bound)}")
    return Assessed("SAFE", f"health factor {shown} >= {format_wad(tiers.watch_wad)}")


def assess(positions: Iterable[HasHealth], tiers: TierThresholds) -> list[Assessed]:
    """One (tier, reason) per position, in order."""
    return [tier_of(p.health_factor, p.liquidatable, tiers) for p in positions]
