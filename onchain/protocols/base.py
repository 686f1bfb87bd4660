"""What flows out of every protocol adapter: protocol-neutral positions at one pinned block, and
the read plans adapters hand to the pipeline (adapters never touch the network)."""

from __future__ import annotations

from collections.abc import Generator
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from onchain.rpc.calls import Call
from onchain.rpc.client import BlockRef

# A read plan is a generator: it yields a batch of calls, receives their decoded results, and
# finally returns its value. The pipeline executes each batch through Multicall3 at one block.
# A plan may also yield a LogQuery (below) and receive the matching logs up to that block.
ReadPlan = Generator["list[Call] | LogQuery", Any, Any]


@dataclass(frozen=True)
class LogQuery:
    """A plan step asking for event logs from `from_block` up to the pinned block (the pipeline
    pages eth_getLogs), e.g. to discover a protocol's markets; adapters still never do I/O."""

    address: tuple[str, ...]
    topics: tuple[Any, ...]
    from_block: int = 0


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
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def has_debt(self) -> bool:
        return self.total_debt_base > 0


@dataclass(frozen=True)
class MarketRef:
    """A market as the user names it: protocol, the address config/CLI gives, discovery start."""

    protocol: str
    address: str
    start_block: int = 0
    version: str | None = None
    # a market inside the deployment at `address`, for protocols that name markets by id
    # (Morpho Blue); None: every market of the deployment
    market_id: str | None = None


@dataclass(frozen=True)
class ReserveSnapshot:
    """One lendable asset of a market at one block, for market history and liquidity risk.

    Indexes are the protocol's own cumulative integers (Aave: ray liquidity/borrow indexes);
    amounts are raw token units; `utilization` = debt / (debt + available liquidity)."""

    asset: str
    symbol: str
    decimals: int
    price_base: int
    supply_index: int | None
    borrow_index: int | None
    available_liquidity_raw: int | None
    total_debt_raw: int | None
    utilization: float | None
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class MarketSnapshot:
    """Market-level state at one block, protocol-neutral: what the store keeps per market."""

    version: str | None
    base_currency_decimals: int
    addresses: dict[str, str]
    reserves: tuple[ReserveSnapshot, ...]


class ProtocolAdapter(Protocol):
    """One protocol family; found through the registry by name."""

    name: str

    def plan_market(self, market: MarketRef, block: BlockRef) -> ReadPlan: ...

    def discovery_filter(self, market_state: Any) -> tuple[list[str], list[Any]]: ...

    def accounts_from_logs(self, logs: list[Any]) -> set[str]: ...

    def plan_positions(
        self, market_state: Any, accounts: list[str], block: BlockRef
    ) -> ReadPlan: ...


@runtime_checkable
class MarketSnapshotPlanner(Protocol):
    """Optional for adapters: plan the reads that describe a market's reserves at a block
    (the plan returns a MarketSnapshot); the store keeps it as market history."""

    def plan_market_snapshot(self, market_state: Any, block: BlockRef) -> ReadPlan: ...


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
