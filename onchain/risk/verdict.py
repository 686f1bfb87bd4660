"""One position's risk verdict as a typed value: what the assessment says about it, handed to the
daemon, the store and the alerts as it is (never turned into a dict and parsed back). The JSON
row a command prints is `RiskVerdict.to_json`."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Advice:
    """Repay (per debt asset) or top up (per collateral asset), raw token units by symbol: each
    alone brings P(liquidation) under ``target_probability``."""

    target_probability: float
    repay_raw: Mapping[str, int] = field(default_factory=dict)
    top_up_raw: Mapping[str, int] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "target_probability": self.target_probability,
            "repay_raw": {s: str(v) for s, v in self.repay_raw.items()},
            "top_up_raw": {s: str(v) for s, v in self.top_up_raw.items()},
        }


@dataclass(frozen=True)
class RiskVerdict:
    """The risk module's view of one position within a horizon (the exact liquidatable verdict
    stays the adapter's: callers put it above ``tier``)."""

    tier: str  # LIQUIDATABLE / PENDING / CRITICAL / HIGH / WATCH / SAFE, from the float screen
    reasons: tuple[str, ...]
    liquidation_probability: float
    horizon_s: float
    pending_health_factor: float | None = None  # at the next oracle price, when one is due
    safe_health_factor: float | None = None  # the health factor the target probability needs
    advice: Advice | None = None
    # the uniform fall of every volatile collateral price (stables held) that liquidates
    volatile_drop_to_liquidation: float | None = None
    # per volatile asset held: where its volatility estimate came from and how old it is
    volatility: dict[str, dict[str, Any]] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        """The risk part of a position's JSON row (names and shapes of the JSON contract)."""
        return {
            "tier": self.tier,
            "reasons": list(self.reasons),
            "liquidation_probability": self.liquidation_probability,
            "horizon_s": self.horizon_s,
            "pending_health_factor": self.pending_health_factor,
            "safe_health_factor": self.safe_health_factor,
            "advice": None if self.advice is None else self.advice.to_json(),
            "volatile_drop_to_liquidation": self.volatile_drop_to_liquidation,
            "volatility": self.volatility,
        }
