"""The JSON interface is strict JSON: no NaN or Infinity tokens, integers as decimal strings."""

from __future__ import annotations

import json
import math

from onchain.output import positions_json
from onchain.protocols.base import AssetPosition, Position
from onchain.rpc.client import BlockRef


def _position() -> Position:
    asset = AssetPosition(
        asset="0x" + "11" * 20,
        symbol="WETH",
        decimals=18,
        price_base=300_000_000_000,
        collateral_raw=10**18,
        debt_raw=0,
        collateral_base=300_000_000_000,
        debt_base=0,
        collateral_enabled=True,
        liquidation_threshold_bps=8300,
        liquidation_price_base=None,
    )
    return Position(
        protocol="aave-v3",
        market="0x" + "22" * 20,
        account="0x" + "33" * 20,
        block=BlockRef(1, "0x" + "44" * 32, 0),
        health_factor=None,
        liquidatable=False,
        total_collateral_base=300_000_000_000,
        total_debt_base=0,
        available_borrows_base=2**255,
        liquidation_threshold_bps=8300,
        ltv_bps=8050,
        base_currency_decimals=8,
        assets=(asset,),
    )


def test_non_finite_risk_figures_become_null_and_the_output_parses_strictly() -> None:
    risk = [
        {"liquidation_probability": float("nan"), "safe_health_factor": math.inf, "reasons": []}
    ]
    text = positions_json([_position()], risk)
    assert "NaN" not in text and "Infinity" not in text
    row = json.loads(text, parse_constant=lambda c: (_ for _ in ()).throw(ValueError(c)))[0]
    assert row["liquidation_probability"] is None
    assert row["safe_health_factor"] is None
    assert row["available_borrows_base"] == str(2**255)  # integers stay exact, as strings
    assert row["health_factor"] is None  # no debt
