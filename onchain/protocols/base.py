"""The adapter interface: the read plans adapters hand to the pipeline (adapters never touch the
network). What they publish — positions, quotes, risk terms — is :mod:`onchain.model`,
re-exported here for the adapters' convenience."""

from __future__ import annotations

from collections.abc import Generator, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any, Protocol, runtime_checkable

import numpy as np
from eth_utils import to_checksum_address

from onchain.model import AssetPosition as AssetPosition
from onchain.model import CloseFactorRule as CloseFactorRule
from onchain.model import LiquidationQuote as LiquidationQuote
from onchain.model import Position as Position
from onchain.model import RiskTerms as RiskTerms
from onchain.position_rows import PositionRows
from onchain.rpc.calls import Call
from onchain.rpc.client import BlockRef
from onchain.rpc.logs import Log

# A read plan is a generator: it yields a batch of calls, receives their decoded results, and
# finally returns its value. The pipeline executes each batch through Multicall3 at one block.
# A plan may also yield a LogQuery (below) and receive the matching logs up to that block.
ReadPlan = Generator["list[Call] | LogQuery", Any, Any]


@lru_cache(maxsize=1 << 18)
def checksummed(address: str) -> str:
    """`to_checksum_address`, remembered: the same accounts' positions are built again every
    block, and the checksum (a keccak) would otherwise cost as much as a position's math."""
    return str(to_checksum_address(address))


@dataclass(frozen=True)
class LogQuery:
    """A plan step asking for event logs from `from_block` up to the pinned block (the pipeline
    pages eth_getLogs), e.g. to discover a protocol's markets; adapters still never do I/O."""

    address: tuple[str, ...]
    topics: tuple[Any, ...]
    from_block: int = 0


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


@runtime_checkable
class DiscoveryNotes(Protocol):
    """Optional for adapters whose discovery logs say which positions an account holds (Morpho:
    which markets it used; ``note_discovery_logs`` fills that into the market state). A caller
    that loads a fresh market state per block (the daemon) carries the notes from one state to
    the next, so every read asks for the same pairs a one-shot scan asks for."""

    def note_discovery_logs(self, market_state: Any, logs: list[Any]) -> None: ...

    def discovery_notes(self, market_state: Any) -> Any: ...

    def adopt_discovery_notes(self, market_state: Any, notes: Any) -> None: ...


def indexed_addresses(logs: Sequence[Log]) -> set[str]:
    """Every address an indexed topic (after the event's signature) of these logs holds: the
    accounts a lending protocol's events name (onBehalfOf, user, borrower, from, to ...)."""
    out: set[str] = set()
    for log in logs:
        for topic in log.topics[1:]:
            if len(topic) == 32 and not any(topic[:12]) and any(topic[12:]):
                out.add(to_checksum_address(topic[12:]))
    return out


class IncrementalAdapter(Protocol):
    """What an adapter offers the incremental engine (`onchain.app.incremental`): the market
    re-read cheaply from the previous block's state, the contracts whose logs change accounts,
    the accounts a range's logs touch, the kept account state (plain records) and positions
    recomputed from it, exactly as `plan_positions` would read them."""

    def change_addresses(self, market_state: Any) -> list[str]: ...

    def touched_accounts(self, market_state: Any, logs: Sequence[Log]) -> set[str]: ...

    def plan_market_refresh(
        self, market: MarketRef, previous: Any, block: BlockRef, logs: Sequence[Log]
    ) -> ReadPlan: ...

    def plan_account_states(
        self, market_state: Any, accounts: list[str], block: BlockRef
    ) -> ReadPlan: ...

    def positions_from_states(
        self, market_state: Any, states: list[Any], block: BlockRef, *, flip_prices: bool = True
    ) -> list[Position]: ...

    def always_stale(self, market_state: Any, state: Any) -> bool: ...

    def plan_adopt_states(self, market_state: Any, states: list[Any], block: BlockRef) -> ReadPlan:
        """What the market state must also hold for kept states taken up without reading their
        accounts (a restart from the store), read at `block`."""
        ...

    # kept state as bytes (a store keeps them as opaque blobs; `protocols.state_codec`)
    def encode_market_state(self, market_state: Any) -> bytes: ...

    def decode_market_state(self, data: bytes) -> Any: ...

    def encode_account_states(self, states: list[Any]) -> bytes: ...

    def decode_account_states(self, data: bytes) -> list[Any]: ...


@dataclass(frozen=True)
class BookHealth:
    """Every position of a kept book at one block, the protocol's exact figures: row i is the
    i-th Position `positions_from_states` gives for the same states (same order, same rows),
    and each field equals that Position's, bit for bit. `scalar_rows`: rows whose figures
    came from the adapter's per-account math (inputs the vectorised path does not take)."""

    accounts: tuple[str, ...]  # Position.account per row
    markets: tuple[str, ...]  # Position.market per row
    health_factor: list[int | None]  # wad; None without debt
    total_collateral_base: list[int]
    total_debt_base: list[int]
    liquidatable: Any  # numpy bool array, Position.liquidatable (liquidation holds honoured)
    scalar_rows: int = 0

    def __len__(self) -> int:
        return len(self.accounts)

    @classmethod
    def of(cls, positions: Sequence[Position]) -> BookHealth:
        """The same figures read off built positions (adapters without `ExactHealth`)."""
        return cls(
            accounts=tuple(p.account for p in positions),
            markets=tuple(p.market for p in positions),
            health_factor=[p.health_factor for p in positions],
            total_collateral_base=[p.total_collateral_base for p in positions],
            total_debt_base=[p.total_debt_base for p in positions],
            liquidatable=np.array([p.liquidatable for p in positions], bool),
        )


@runtime_checkable
class ExactHealth(Protocol):
    """Optional for incremental adapters: the contract-level figures of every kept position
    recomputed at once (numpy arrays of Python ints, the contracts' operations in their order),
    without building Position objects. `health_book` builds the arrays from kept states once,
    `health_update` replaces one row (a re-read account), `exact_health` computes them at the
    market state's block."""

    def health_book(self, market_state: Any, states: list[Any]) -> Any: ...

    def health_update(self, market_state: Any, book: Any, row: int, state: Any) -> None: ...

    def exact_health(self, market_state: Any, book: Any, block: BlockRef) -> BookHealth: ...


@runtime_checkable
class RiskRows(Protocol):
    """Optional for incremental adapters: the risk book's inputs for every position of kept
    states as arrays (`onchain.position_rows.PositionRows`), equal to what the Positions
    `positions_from_states` builds would give the book, without building them: one row per
    Position that call would return, in its order."""

    def risk_rows(self, market_state: Any, states: list[Any]) -> PositionRows: ...


@runtime_checkable
class PriceFeedLogs(Protocol):
    """Optional for incremental adapters: the market's price feeds, whose logs the refresher
    reads in its one eth_getLogs per block range, so the feeds' AnswerUpdated history (the
    volatility model's) moves forward without a request of its own. Their logs touch no
    account (`touched_accounts` leaves them out)."""

    def price_feeds(self, market_state: Any) -> list[str]: ...
