"""The protocol-neutral model: what adapters publish and every other room reads.

Positions at one pinned block, their assets, liquidation quotes and the risk terms a liquidation
of a position is priced with. Exact integers where the chain is exact. Nothing here knows a
protocol; ``Position.extra`` stays the adapter's own (shown as JSON ``details``), never an
interface between rooms.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import IntEnum
from typing import Any

from onchain.rpc.client import BlockRef


class CloseFactorRule(IntEnum):
    """How much of a debt one liquidation call may repay (per position, from its adapter).

    ``HALF_ABOVE_HF_0_95``: 50% of the debt asset's balance when HF > 0.95, else 100% (the rule of
    Aave 3.0.x ``LiquidationLogic``). ``FULL``: any amount up to the whole debt (Morpho-like
    markets, with the incentive factor as the bonus). ``HALF_OF_POSITION_ABOVE_HF_0_95``: up to
    the whole debt asset's balance, but at most 50% of the position's total debt when HF > 0.95
    and the collateral and the debt asset are each worth at least
    :data:`POSITION_RULE_MIN_BASE`; a call that clears neither must leave at least
    :data:`POSITION_RULE_MIN_LEFTOVER_BASE` of both (Aave 3.3+).
    """

    HALF_ABOVE_HF_0_95 = 0
    FULL = 1
    HALF_OF_POSITION_ABOVE_HF_0_95 = 2


@dataclass(frozen=True)
class RiskTerms:
    """What the protocol's rules say a liquidation of one position pays and costs.

    Keys are collateral asset addresses (lower-case); fractions (0.05 = 5%).
    ``protocol_fee`` is the share of the bonus the protocol keeps (Aave's liquidation protocol
    fee), 0 where the protocol keeps none. ``interest`` keys every asset of the market the
    adapter knows rates for.
    """

    liquidation_bonus: Mapping[str, float]
    close_factor_rule: CloseFactorRule
    protocol_fee: Mapping[str, float] = field(default_factory=dict)
    # asset (lower-case) -> (supply, borrow) interest: ln growth per second of a unit supplied /
    # borrowed at the block's rates (the probability's interest drift); empty: not known
    interest: Mapping[str, tuple[float, float]] = field(default_factory=dict)


@dataclass(frozen=True)
class DetailColumn:
    """A protocol-specific fact an adapter promises in every position's ``extra`` under ``key``,
    shown as a table column (``header``) and a JSON field of the same name (null where a
    position's adapter has no such fact). Adapters list theirs as ``detail_columns``."""

    key: str
    header: str


@dataclass(frozen=True)
class AssetPosition:
    """One asset of one account, in raw token units and in the market's base currency."""

    asset: str
    symbol: str
    decimals: int
    price_base: int
    collateral_raw: int
    debt_raw: int
    collateral_base: int
    debt_base: int
    collateral_enabled: bool
    liquidation_threshold_bps: int  # the threshold this account's collateral counts with
    # the oracle price (base units) at which this asset alone flips the verdict: the highest
    # liquidatable price for collateral, the lowest for debt; None if it cannot
    liquidation_price_base: int | None = None


@dataclass(frozen=True)
class LiquidationHold:
    """Why the protocol refuses every liquidation call a position below the threshold could take
    at its block (so it is not liquidatable now). ``reason``: ``"grace_period"`` (a reserve's
    liquidation grace period is running: Aave 3.1+), ``"paused"`` or ``"inactive"`` (a reserve).
    ``until``: for a grace period, the last unix second the protocol refuses (calls in a block
    with a later timestamp pass that check); None when no time ends the hold. ``assets``: the
    reserves that hold it."""

    reason: str
    until: int | None = None
    assets: tuple[str, ...] = ()

    def describe(self) -> str:
        """In words: "liquidation grace period until 2026-12-06 05:00:00 UTC", "reserve paused"."""
        if self.reason == "grace_period" and self.until is not None:
            ends = datetime.fromtimestamp(self.until, tz=UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
            return f"liquidation grace period until {ends}"
        return f"reserve {self.reason}"

    def as_json(self) -> dict[str, Any]:
        return {"reason": self.reason, "until": self.until, "assets": list(self.assets)}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> LiquidationHold:
        until = data.get("until")
        return cls(
            reason=str(data["reason"]),
            until=None if until is None else int(until),
            assets=tuple(str(a) for a in data.get("assets") or ()),
        )


@dataclass(frozen=True)
class Position:
    """An account's position in one market at one block; exact integers where the chain is exact."""

    protocol: str
    market: str
    account: str
    block: BlockRef
    health_factor: int | None  # wad; None when there is no debt
    liquidatable: bool
    total_collateral_base: int
    total_debt_base: int
    available_borrows_base: int
    liquidation_threshold_bps: int
    ltv_bps: int
    base_currency_decimals: int
    assets: tuple[AssetPosition, ...]
    # protocol-specific details for display and for the adapter's own later calls (JSON
    # "details"); not an interface: what others read is a typed field below
    extra: dict[str, Any] = field(default_factory=dict)
    # how a liquidation of this position is priced (None: the adapter did not say)
    terms: RiskTerms | None = None
    # the asset the base amounts are counted in (e.g. "USDC" for a Morpho market); None: USD
    base_currency: str | None = None
    # a human name for the market when its address is not one (Morpho "wstETH/USDC 86%")
    market_label: str | None = None
    version: str | None = None  # the protocol release whose rules were applied
    # below the threshold, but the protocol refuses every call now (liquidatable is then False)
    liquidation_hold: LiquidationHold | None = None

    @property
    def has_debt(self) -> bool:
        return self.total_debt_base > 0


@dataclass(frozen=True)
class LiquidationQuote:
    """One liquidation call priced with the protocol's exact integer math (adapters'
    ``liquidation_quote``): what the liquidator repays and receives, in raw token units.

    ``call_args`` are the amounts to pass to the protocol's liquidation function (names are the
    protocol's, e.g. ``debt_to_cover`` or ``repaid_shares``/``seized_assets``)."""

    collateral_asset: str
    debt_asset: str
    debt_to_cover_raw: int
    collateral_seized_raw: int  # to the liquidator, protocol fee excluded
    protocol_fee_raw: int  # collateral kept by the protocol
    bonus: float  # fraction on top of the repaid value (0.05 = 5%)
    close_factor: float  # fraction of the debt one call may repay
    bad_debt_raw: int = 0  # debt left unbacked (and socialized) by this call
    # every debt asset this call leaves unbacked -> raw amount (bad_debt_raw is the debt asset's)
    bad_debt_by_asset: dict[str, int] = field(default_factory=dict)
    # what bounded the amount: "debt" (all the debt of that asset), "close_factor", "collateral"
    # (all of it seized), "dust" (shrunk so the call leaves enough of both); "" if not said
    limited_by: str = ""
    call_args: dict[str, int] = field(default_factory=dict)
    gas_units: int = 0  # typical gas of the protocol's liquidation call
    # why the amounts may not be the protocol's to the unit ("" when they are)
    caveat: str = ""


def fields_from_details(details: Mapping[str, Any]) -> dict[str, Any]:
    """The typed fields of a Position rebuilt from its stored JSON ``details`` (what a reader of
    the store gets back): the same names adapters write there, protocol-neutral."""
    out: dict[str, Any] = {}
    bonus = details.get("liquidation_bonus")
    rule = details.get("close_factor_rule")
    if isinstance(bonus, Mapping) and isinstance(rule, str) and rule in CloseFactorRule.__members__:
        fee = details.get("liquidation_protocol_fee")
        out["terms"] = RiskTerms(
            liquidation_bonus={str(k): float(v) for k, v in bonus.items()},
            close_factor_rule=CloseFactorRule[rule],
            protocol_fee=(
                {str(k): float(v) for k, v in fee.items()} if isinstance(fee, Mapping) else {}
            ),
        )
    hold = details.get("liquidation_hold")
    if isinstance(hold, Mapping) and "reason" in hold:
        out["liquidation_hold"] = LiquidationHold.from_json(hold)
    for name in ("base_currency", "market_label", "version"):
        value = details.get(name)
        if isinstance(value, str) and value:
            out[name] = value
    return out
