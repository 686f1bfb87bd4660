"""What an alert says. The webhook body is complete (every field a machine may act on); `text`
is what a person reads on a phone: what happened, the health factor, how far prices may move,
the probability within the horizon, what to repay or add, the block, and where to see more."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from onchain.model import Position
from onchain.numbers import health_text

if TYPE_CHECKING:
    from onchain.risk.verdict import RiskVerdict

WAD = 10**18
SAFE_TARGET_WAD = 125 * 10**16  # the fallback advice aims here when the risk module gives none

HEADLINES = {
    "enter": "at risk",
    "escalate": "risk rising",
    "recover": "recovered",
    "liquidated": "liquidated",
    "repaid": "debt repaid",
    "digest": "digest",
    "test": "test message",
}


def alert_uid(*parts: object) -> str:
    """A stable id: the same inputs (rule, position, block, kind) always give the same id."""
    return hashlib.sha256("|".join(str(p) for p in parts).encode()).hexdigest()[:32]


def hf_text(wad: int | None) -> str:
    return health_text(wad, none="none (no debt)")


def _decimal(value: int, decimals: int) -> str:
    return str(Decimal(value).scaleb(-decimals).normalize())


def liquidation_prices(position: Position) -> list[dict[str, Any]]:
    """Per collateral asset: the oracle price now, the price that liquidates (this asset alone
    moving), and the move that takes, in percent."""
    out = []
    d = position.base_currency_decimals
    for a in position.assets:
        if not (a.collateral_raw and a.collateral_enabled):
            continue
        move = None
        if a.liquidation_price_base is not None and a.price_base > 0:
            move = round((a.liquidation_price_base / a.price_base - 1) * 100, 2)
        out.append(
            {
                "asset": a.asset,
                "symbol": a.symbol,
                "price": _decimal(a.price_base, d),
                "liquidation_price": None
                if a.liquidation_price_base is None
                else _decimal(a.liquidation_price_base, d),
                "move_pct": move,
            }
        )
    return out


def advice(position: Position, verdict: RiskVerdict | None) -> dict[str, Any] | None:
    """The risk module's advice (amounts per asset that bring P(liquidation) under its target)
    where it gave one; else the exact amounts, in the market's base currency, that bring the
    health factor to 1.25: repay debt, or add collateral counted at the position's average
    liquidation threshold."""
    hf = position.health_factor
    given = None if verdict is None else verdict.advice
    if given is not None:
        decimals = {a.symbol: a.decimals for a in position.assets}
        return {
            "source": "risk",
            "target_probability": given.target_probability,
            "repay": {s: _decimal(v, decimals.get(s, 0)) for s, v in given.repay_raw.items()},
            "top_up": {s: _decimal(v, decimals.get(s, 0)) for s, v in given.top_up_raw.items()},
        }
    if hf is None or hf >= SAFE_TARGET_WAD or not position.total_debt_base:
        return None
    debt = position.total_debt_base
    weighted = hf * debt // WAD  # sum of collateral x liquidation threshold, base units
    repay = max(0, debt - weighted * WAD // SAFE_TARGET_WAD)
    lt = position.liquidation_threshold_bps
    top_up = None if not lt else max(0, (SAFE_TARGET_WAD * debt // WAD - weighted) * 10_000 // lt)
    d = position.base_currency_decimals
    return {
        "source": "health_factor",
        "target_health_factor": "1.25",
        "repay_base": _decimal(repay, d),
        "top_up_base": None if top_up is None else _decimal(top_up, d),
    }


def _advice_text(a: dict[str, Any] | None) -> str:
    if not a:
        return ""
    if a["source"] == "risk":
        options = [f"repay {float(v):,.6g} {s}" for s, v in a["repay"].items()]
        options += [f"add {float(v):,.6g} {s}" for s, v in a["top_up"].items()]
        return ("Do: " + " or ".join(options[:3]) + ".") if options else ""
    text = f"Do: repay {float(a['repay_base']):,.2f}"
    if a["top_up_base"] is not None:
        text += f" or add {float(a['top_up_base']):,.2f} of collateral"
    return text + " (base currency) for HF 1.25."


def position_message(
    *,
    uid: str,
    kind: str,
    rule: str,
    market_name: str,
    chain_id: int,
    position: Position,
    tier: str,
    previous_tier: str | None,
    reason: str,
    reasons: Sequence[str] | None,
    probability: float | None,
    horizon_s: float | None,
    verdict: RiskVerdict | None,
    see_more: str,
    below_hf_wad: int | None = None,
) -> tuple[dict[str, Any], str]:
    """(the webhook body, the short text) for one position's alert."""
    block = position.block
    prices = liquidation_prices(position)
    drop = None if verdict is None else verdict.volatile_drop_to_liquidation
    todo = advice(position, verdict)
    head = HEADLINES.get(kind, kind).upper() + ("" if tier == "SAFE" else f" {tier}")
    short = f"{position.account[:6]}…{position.account[-4:]}"
    lines = [f"{head}: {short} on {market_name}, HF {hf_text(position.health_factor)}"]
    hf = position.health_factor
    if kind in ("enter", "escalate") and below_hf_wad and hf is not None and hf < below_hf_wad:
        lines[0] += f" < {hf_text(below_hf_wad)}"
    if previous_tier and kind in ("escalate", "recover"):
        lines[0] += f" (was {previous_tier})"
    if kind not in ("repaid",) and position.health_factor is not None:
        moves = [
            f"{p['symbol']} {p['move_pct']:+.1f}% to {float(p['liquidation_price']):,.2f}"
            for p in prices
            if p["move_pct"] is not None and p["liquidation_price"] is not None
        ]
        if position.liquidatable:
            lines.append("Liquidatable now" + (f"; safe again at {moves[0]}." if moves else "."))
        elif drop is not None:
            lines.append(f"Liquidated if volatile collateral falls {drop:.1%}.")
        elif moves:
            lines.append("Liquidation at " + ", ".join(moves[:2]) + ".")
        if probability is not None and horizon_s:
            lines.append(f"P(liquidation within {_horizon(horizon_s)}): {probability:.1%}.")
        if kind in ("enter", "escalate"):
            hint = _advice_text(todo)
            if hint:
                lines.append(hint)
    lines.append(f"Block {block.number}. See: {see_more}")
    text = "\n".join(lines)
    body = {
        "id": uid,
        "kind": kind,
        "rule": rule,
        "account": position.account,
        "protocol": position.protocol,
        "market": market_name,
        "market_key": position.market,
        "chain_id": chain_id,
        "block_number": block.number,
        "block_hash": block.hash,
        "block_timestamp": block.timestamp,
        "tier": tier,
        "previous_tier": previous_tier,
        "health_factor": None if position.health_factor is None else str(position.health_factor),
        "liquidatable": position.liquidatable,
        "reason": reason,
        "reasons": list(reasons or []),
        "liquidation_probability": probability,
        "horizon_s": horizon_s,
        "pending_health_factor": None if verdict is None else verdict.pending_health_factor,
        "volatile_drop_to_liquidation": drop,
        "total_collateral_base": str(position.total_collateral_base),
        "total_debt_base": str(position.total_debt_base),
        "base_currency_decimals": position.base_currency_decimals,
        "liquidation_price": prices,
        "advice": todo,
        "see_more": see_more,
        "text": text,
    }
    return body, text


def _horizon(seconds: float) -> str:
    return f"{seconds / 3600:g} h" if seconds >= 3600 else f"{seconds:.0f} s"
