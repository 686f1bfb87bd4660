"""The rule machine: what one block means for one position under one rule. Pure (no I/O), so
the hysteresis, cooldown and escalation can be read and tested in one place.

A position under a rule is either quiet or in an *episode*:
- quiet -> episode when it reaches the rule's tier (or worse) or drops below its HF: `enter`,
  unless the last message for it is younger than the cooldown (then it waits: the next block
  past the cooldown fires, if the danger is still there);
- in an episode, a tier worse than the worst already reported fires at once: `escalate`;
  better tiers within the episode are silent (no storm from a wobble);
- the episode ends when neither condition holds *and* the HF is at or above the re-arm level
  (rule's `rearm_hf`, else 0.05 above the HF it began at): `recover`;
- debt gone during an episode: `repaid`, or `liquidated` when collateral left with it; a
  partial liquidation (debt and collateral both fell while it was liquidatable) is reported
  once as `liquidated`. Each of these is one message, once."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from onchain.alerts.config import DEFAULT_REARM, SEVERITY, RuleConfig


@dataclass(frozen=True)
class Observation:
    """One position at one block, as the rules see it."""

    health_factor: int | None  # wad; None: no debt
    liquidatable: bool
    tier: str
    debt: Mapping[str, int]  # raw token amounts per asset: prices move base values, not these
    collateral: Mapping[str, int]

    @classmethod
    def of(cls, position: Any, tier: str) -> Observation:
        return cls(
            position.health_factor,
            position.liquidatable,
            tier,
            {a.asset: a.debt_raw for a in position.assets if a.debt_raw},
            {a.asset: a.collateral_raw for a in position.assets if a.collateral_raw},
        )


@dataclass(frozen=True)
class RuleState:
    active: bool = False
    reported_tier: str | None = None
    rearm_wad: int | None = None
    last_fired_at: datetime | None = None
    observed: dict[str, Any] = field(default_factory=dict)


def _fell(before: Any, now: Mapping[str, int]) -> bool:
    """Some asset's raw amount went down (interest only ever raises debt)."""
    if not isinstance(before, dict):
        return False
    return any(now.get(asset, 0) < int(raw) for asset, raw in before.items())


def worse(a: str, b: str | None) -> bool:
    """Tier a is more severe than b (None counts as SAFE)."""
    return SEVERITY.get(a, 99) < SEVERITY.get(b or "SAFE", 99)


def in_danger(rule: RuleConfig, o: Observation) -> bool:
    if o.health_factor is None and not o.liquidatable:
        return False
    if rule.from_tier is not None and SEVERITY.get(o.tier, 99) <= SEVERITY[rule.from_tier]:
        return True
    return (
        rule.below_hf_wad is not None
        and o.health_factor is not None
        and o.health_factor < rule.below_hf_wad
    )


def _observed(o: Observation) -> dict[str, Any]:
    return {
        "debt": {k: str(v) for k, v in o.debt.items()},
        "collateral": {k: str(v) for k, v in o.collateral.items()},
        "liquidatable": o.liquidatable,
    }


def step(
    rule: RuleConfig, state: RuleState, o: Observation, now: datetime
) -> tuple[str | None, RuleState]:
    """(the kind of message to send or None, the new state) for one block."""
    seen = _observed(o)
    if not state.active:
        if not in_danger(rule, o):
            return None, replace(state, observed=seen)
        age = None if state.last_fired_at is None else (now - state.last_fired_at).total_seconds()
        if age is not None and age < rule.cooldown_s:
            return None, replace(state, observed=seen)  # waits out the cooldown
        hf = o.health_factor or 0
        rearm = rule.rearm_hf_wad or hf + DEFAULT_REARM
        if rule.below_hf_wad is not None and rule.rearm_hf_wad is None:
            rearm = max(rearm, rule.below_hf_wad + DEFAULT_REARM)
        return "enter", RuleState(True, o.tier, rearm, now, seen)

    before = state.observed
    if o.health_factor is None and not o.liquidatable:  # no debt left
        kind = "liquidated" if _fell(before.get("collateral"), o.collateral) else "repaid"
        return kind, RuleState(False, None, None, now, seen)
    if (
        before.get("liquidatable")
        and _fell(before.get("debt"), o.debt)
        and _fell(before.get("collateral"), o.collateral)
    ):
        return "liquidated", replace(state, last_fired_at=now, observed=seen)
    if worse(o.tier, state.reported_tier):
        return "escalate", replace(state, reported_tier=o.tier, last_fired_at=now, observed=seen)
    if (
        not in_danger(rule, o)
        and o.health_factor is not None
        and o.health_factor >= (state.rearm_wad or 0)
    ):
        ended = RuleState(False, None, None, now if rule.recovery else state.last_fired_at, seen)
        return ("recover" if rule.recovery else None), ended
    return None, replace(state, observed=seen)
