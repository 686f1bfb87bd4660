"""What every job run gets: the config, the store, the markets it covers, a stop flag, and a
fresh RPC client per chain (clients are not thread-safe and jobs run in parallel threads)."""

from __future__ import annotations

import threading
from collections import Counter
from dataclasses import dataclass, field

from onchain.config import Config
from onchain.errors import ConfigError
from onchain.protocols.base import MarketRef
from onchain.rpc.client import RpcClient
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

    def rpc_url(self, market: MarketInfo) -> str:
        chain = self.config.chains[market.chain_name]
        url = chain.resolve_rpc_url()
        if not url:
            hint = f"set {chain.rpc_url_env}" if chain.rpc_url_env else "give rpc_url_env"
            raise ConfigError(f"{self.config.path}: no RPC URL for chain {chain.name} ({hint})")
        return url

    def client(self, market: MarketInfo) -> RpcClient:
        return RpcClient(
            self.rpc_url(market), timeout_s=self.rpc_timeout_s, expected_chain_id=market.chain_id
        )


def note(counts: Counts, key: str, text: str) -> None:
    """A run's note kept with its counts (why it degraded, e.g. a risk fallback): job_runs.counts
    is JSON, so `onchain status` shows the text next to the numbers. The newest note wins."""
    counts[key] = text  # type: ignore[assignment]


def market_ref(market: MarketInfo) -> MarketRef:
    return MarketRef(
        market.protocol, market.address, market.start_block, market.version, market.market_id
    )
