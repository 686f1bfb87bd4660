"""The risk module's settings as typed values: `[risk]` of the config is validated into a
`RiskSettings` once, when the config is loaded (no numpy here: loading a config stays light)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from onchain.errors import ConfigError
from onchain.symbols import underlying


@dataclass(frozen=True)
class TierThresholds:
    """Defaults for the tiers and context reasons (config wires the real values).

    The probability thresholds come from ``onchain backtest`` (6 h horizon, the `onchain`
    model) on the tuning windows (May 2021 crash, Dec 2020-Jan 2021 rally, July 2023 calm)
    pooled: WATCH is the highest threshold at which "not SAFE" still catches 95% of the
    positions liquidated within the horizon (0.0343 there, so 0.034: ``python -m
    onchain.backtest.tune ... --recall 0.95`` prints it). README "How good is the probability"
    has each tier's recall and precision per window, held-out ones apart."""

    critical_probability: float = 0.30
    high_probability: float = 0.10
    watch_probability: float = 0.034
    near_move: float = 0.05
    concentration_share: float = 0.05
    max_utilization: float = 0.95
    full_close_factor_hf: float = 0.95


@dataclass(frozen=True)
class Reference:
    """A market price the oracle lags behind (a DEX pool) and the feed whose update it predicts."""

    symbol: str
    pool: str | None = None
    quote: str = "USDC"
    feed: str | None = None
    deviation: float = 0.005
    heartbeat_s: float = 3600.0


# The oracle publishes a price at least this often (the usual ETH/USD heartbeat): the
# probability counts crossings the protocol sees, one published price per step.
DEFAULT_ORACLE_STEP_S = 3600.0


@dataclass(frozen=True)
class RiskSettings:
    reaction_s: float = 30.0
    target_probability: float = 0.01
    correlation: float = 0.8
    annual_volatility: dict[str, float] = field(default_factory=dict)  # symbol -> override
    references: tuple[Reference, ...] = ()
    thresholds: TierThresholds = field(default_factory=TierThresholds)
    oracle_step_s: float = DEFAULT_ORACLE_STEP_S

    @classmethod
    def from_config(cls, raw: Mapping[str, Any] | None) -> RiskSettings:
        """Validated once: every number converted and range-checked, one ConfigError otherwise."""
        raw = raw or {}
        try:
            refs = tuple(
                _reference(symbol, table)
                for symbol, table in dict(raw.get("references") or {}).items()
            )
            tiers = {k: float(v) for k, v in dict(raw.get("probability_tiers") or {}).items()}
            thresholds = TierThresholds(**tiers)
            settings = cls(
                reaction_s=float(raw.get("reaction_s", 30.0)),
                target_probability=float(raw.get("target_probability", 0.01)),
                correlation=float(raw.get("correlation", 0.8)),
                annual_volatility={
                    underlying(k): float(v) for k, v in dict(raw.get("volatility") or {}).items()
                },
                references=refs,
                thresholds=thresholds,
                oracle_step_s=float(raw.get("oracle_step_s", DEFAULT_ORACLE_STEP_S)),
            )
        except (TypeError, ValueError, AttributeError) as exc:
            raise ConfigError(f"risk settings: {exc}") from None
        if not 0 < settings.target_probability < 1:
            raise ConfigError("risk settings: target_probability must be between 0 and 1")
        if not -1 <= settings.correlation <= 1:
            raise ConfigError("risk settings: correlation must be between -1 and 1")
        if not settings.oracle_step_s > 0:
            raise ConfigError("risk settings: oracle_step_s must be positive")
        if settings.reaction_s < 0 or any(v < 0 for v in settings.annual_volatility.values()):
            raise ConfigError("risk settings: reaction_s and volatilities must not be negative")
        return settings


def _reference(symbol: str, table: Any) -> Reference:
    table = dict(table)
    for key in ("deviation", "heartbeat_s"):
        if key in table:
            table[key] = float(table[key])
    return Reference(symbol=symbol.upper(), **table)
