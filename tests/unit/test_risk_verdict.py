"""Typed risk results: a position's verdict travels from the assessment to the daemon's stored tier
and the alert's advice as a `RiskVerdict` (never a dict parsed back); `[risk]` is validated once,
when the config is loaded; the JSON a command prints is the verdict's `to_json`, the contract's
names and shapes."""

from __future__ import annotations

from pathlib import Path

import pytest

from onchain.alerts.messages import advice
from onchain.config import load_config
from onchain.errors import ConfigError
from onchain.jobs.assess import risk_assessed
from onchain.model import Position
from onchain.risk.settings import RiskSettings
from onchain.risk.verdict import Advice, RiskVerdict
from tests.helpers.model_positions import weth_usdc_position

# the risk fields of a `scan --json` / `watch --json` row, in order (README "Output")
JSON_RISK_KEYS = [
    "tier",
    "reasons",
    "liquidation_probability",
    "horizon_s",
    "pending_health_factor",
    "safe_health_factor",
    "advice",
    "volatile_drop_to_liquidation",
    "volatility",  # per asset: the estimate's source and age
]


def _position(health_factor: int = 105 * 10**16) -> Position:
    return weth_usdc_position(health_factor=health_factor, liquidatable=health_factor < 10**18)


VERDICT = RiskVerdict(
    tier="HIGH",
    reasons=("NEAR_LIQUIDATION",),
    liquidation_probability=0.12,
    horizon_s=3600.0,
    safe_health_factor=1.3,
    advice=Advice(0.01, repay_raw={"USDC": 400_500_000}, top_up_raw={"WETH": 2 * 10**17}),
    volatile_drop_to_liquidation=0.047,
)


def test_the_json_of_a_verdict_keeps_the_contract() -> None:
    row = VERDICT.to_json()
    assert list(row) == JSON_RISK_KEYS
    assert row["reasons"] == ["NEAR_LIQUIDATION"]
    # raw amounts are decimal strings in the JSON, integers in the verdict
    assert row["advice"] == {
        "target_probability": 0.01,
        "repay_raw": {"USDC": "400500000"},
        "top_up_raw": {"WETH": "200000000000000000"},
    }


def test_the_daemon_stores_the_verdict_it_was_given_and_alerts_read_its_advice() -> None:
    assessed = risk_assessed(_position(), VERDICT)
    assert assessed.verdict is VERDICT
    assert (assessed.tier, assessed.probability, assessed.horizon_s) == ("HIGH", 0.12, 3600.0)
    assert assessed.reasons == ["NEAR_LIQUIDATION"]
    todo = advice(_position(), assessed.verdict)
    assert todo is not None and todo["source"] == "risk"
    assert todo["repay"] == {"USDC": "400.5"} and todo["top_up"] == {"WETH": "0.2"}


def test_the_exact_verdict_wins_over_the_float_screen() -> None:
    assessed = risk_assessed(_position(99 * 10**16), VERDICT)
    assert assessed.tier == "LIQUIDATABLE" and assessed.reasons[0] == "HF_BELOW_1"
    screened = RiskVerdict("LIQUIDATABLE", ("HF_BELOW_1",), 0.9, 60.0)
    healthy = risk_assessed(_position(), screened)
    assert healthy.tier == "CRITICAL" and "HF_BELOW_1" not in (healthy.reasons or [])


def test_risk_settings_are_validated_once_when_the_config_loads(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text(
        "[risk]\nreaction_s = 12\ncorrelation = 0.5\n"
        '[risk.references.WETH]\npool = "0x0000000000000000000000000000000000000001"\n'
    )
    settings = load_config(path).risk_settings
    assert isinstance(settings, RiskSettings)
    assert (settings.reaction_s, settings.correlation) == (12.0, 0.5)
    assert [r.symbol for r in settings.references] == ["WETH"]
    assert load_config(tmp_path.joinpath("c.toml")).risk_settings == settings

    path.write_text("[risk]\ntarget_probability = 2\n")
    with pytest.raises(ConfigError, match=r"c\.toml: risk settings: target_probability"):
        load_config(path)
    path.write_text('[risk]\ncorrelation = "high"\n')
    with pytest.raises(ConfigError, match="risk settings"):
        load_config(path)
