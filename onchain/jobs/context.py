"""What every job run gets: the config, the store, the markets it covers, a stop flag, and a
fresh RPC client per chain (clients are not thread-safe and jobs run in parallel threads).
A worker (`run --worker`) works only on the markets its lease keeper holds.
The clients of one chain share its endpoints for the daemon's whole life, so an endpoint set
aside by one run stays aside for the next, and each run records the endpoints' health."""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Connection

from onchain.config import Config
from onchain.errors import ConfigError
from onchain.jobs.workers import LeaseKeeper
from onchain.protocols.base import MarketRef
from onchain.rpc.client import RpcClient
from onchain.rpc.endpoints import Budget, EndpointSet
from onchain.store.crud import MarketInfo
from onchain.store.db import Store

Counts = Counter[str]


@dataclass
class JobContext:
    config: Config
    store: Store
    markets: list[MarketInfo]
    stop: threading.Event = field(default_factory=threading.Event)
    rpc_timeout_s: float = 10.0
    rpc_retry_budget_s: float = 60.0
    endpoint_sets: dict[str, EndpointSet] = field(default_factory=dict)
    # market id -> the adapter's discovery notes (DiscoveryNotes), carried from block to block
    discovery_notes: dict[int, Any] = field(default_factory=dict)
    # market id -> its MarketRefresher (onchain.app.incremental): kept state, block to block
    refreshers: dict[int, Any] = field(default_factory=dict)
    # market id -> account -> (its kept states, their bytes): the change layout's encodings
    # (equal states always encode alike, so a stale entry is only a wasted lookup)
    encoded_states: dict[int, dict[str, tuple[tuple[Any, ...], bytes]]] = field(
        default_factory=dict
    )
    # market id -> (the block, its tracked accounts, their bytes) of the last `encode_kept`
    encoded_book: dict[int, tuple[tuple[int, str], list[str], dict[str, bytes]]] = field(
        default_factory=dict
    )
    # market id -> what its last written block left standing in the store (changes.Standing)
    standing: dict[int, Any] = field(default_factory=dict)
    # market id -> (block, the tracked accounts the store gave up to it): `tracked_accounts`
    tracked: dict[int, tuple[int, list[str]]] = field(default_factory=dict)
    keeper: LeaseKeeper | None = None  # a worker's leases; None: one process, every market
    # market id -> the lease epoch what `market_memory` keeps of it was built under
    notes_epoch: dict[int, int] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def market_memory(self) -> list[dict[int, Any]]:
        """Everything kept in memory per market id between runs: a worker drops a market's
        entries when it stops holding it, or holds it again under a new lease (another worker
        moved it on meanwhile), so nothing stale is carried over."""
        return [
            self.discovery_notes,
            self.refreshers,
            self.encoded_states,
            self.encoded_book,
            self.standing,
            self.tracked,
        ]

    def active_markets(self) -> list[MarketInfo]:
        """The markets this process works on now: all of them, or a worker's leased ones."""
        if self.keeper is None:
            return self.markets
        held = self.keeper.held()
        with self._lock:
            for market_id in list(self.notes_epoch):
                if self.notes_epoch[market_id] != held.get(market_id):
                    del self.notes_epoch[market_id]
            for memory in self.market_memory():
                for market_id in [m for m in memory if m not in self.notes_epoch]:
                    del memory[market_id]
            for market_id, epoch in held.items():
                self.notes_epoch.setdefault(market_id, epoch)
        return [m for m in self.markets if m.id in held]

    def holds(self, market: MarketInfo) -> bool:
        return self.keeper is None or self.keeper.lease(market.id) is not None

    def lease_guard(self, market: MarketInfo) -> Callable[[Connection], None] | None:
        """For a worker: the lease check alone (reorg repairs: rewinding a cursor, dropping
        blocks); None for one process."""
        if self.keeper is None:
            return None
        return self.keeper.guard(market, 0, in_order=False)

    def write_guard(self, market: MarketInfo, number: int) -> Callable[[Connection], None] | None:
        """For a worker: the check a block's write runs first in its transaction (lease still
        ours; in each-block mode, the block follows the cursor). None for one process."""
        if self.keeper is None:
            return None
        in_order = self.config.jobs.refresh.at == "each-block"
        return self.keeper.guard(market, number, in_order=in_order)

    def endpoints(self, market: MarketInfo) -> EndpointSet:
        chain = self.config.chains[market.chain_name]
        with self._lock:
            found = self.endpoint_sets.get(chain.name)
            if found is None:
                urls = chain.resolve_rpc_urls()
                if not urls:
                    raise ConfigError(
                        f"{self.config.path}: no RPC URL for chain {chain.name} "
                        f"({chain.rpc_hint()})"
                    )
                budget = Budget(chain.rpc_max_rps, chain.rpc_max_batch)
                found = self.endpoint_sets[chain.name] = EndpointSet.of(urls, budget)
            return found

    def client(self, market: MarketInfo) -> RpcClient:
        return RpcClient(
            self.endpoints(market),
            timeout_s=self.rpc_timeout_s,
            expected_chain_id=market.chain_id,
            retry_budget_s=self.rpc_retry_budget_s,
        )

    def endpoint_health(self) -> dict[str, list[dict[str, object]]]:
        """Per chain, each endpoint's requests, errors, last error and set-aside time."""
        with self._lock:
            return {name: s.health() for name, s in self.endpoint_sets.items()}


def note(counts: Counts, key: str, text: str) -> None:
    """A run's note kept with its counts (why it degraded, e.g. a risk fallback): job_runs.counts
    is JSON, so `onchain status` shows the text next to the numbers. The newest note wins."""
    counts[key] = text  # type: ignore[assignment]  # a note rides in the JSON counts


def market_ref(market: MarketInfo) -> MarketRef:
    return MarketRef(
        market.protocol, market.address, market.start_block, market.version, market.market_id
    )
