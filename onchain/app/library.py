"""The Python API (`import onchain`): read a lending market at one block through the caller's own
web3 `Web3` (or provider, or URL) and assess the positions, with the same reader and risk
assessment the commands use. Health factors are exact integers (wads), the contracts' own.

    from web3 import Web3, HTTPProvider
    import onchain

    w3 = Web3(HTTPProvider("http://127.0.0.1:8545"))
    reading = onchain.read_market(w3, "0x...PoolAddressesProvider", block=21_000_000)
    for position, verdict in zip(reading.positions, onchain.assess(w3, reading)):
        print(position.account, position.health_factor, verdict.tier)
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from onchain.app.pipeline import Reading, read_markets
from onchain.app.risk_context import RiskSettings, assess_positions
from onchain.errors import InputError
from onchain.protocols.base import MarketRef
from onchain.protocols.registry import DEFAULT_PROTOCOL, get_adapter
from onchain.risk.verdict import RiskVerdict
from onchain.rpc.client import RpcClient


def connect(w3: Any, *, timeout_s: float = 10.0) -> RpcClient:
    """An RpcClient over what the caller has: a `web3.Web3` (its provider is used, so its
    transport, headers and session are the caller's), a provider (anything with
    ``make_request``), an RpcClient, or an endpoint URL."""
    if isinstance(w3, RpcClient):
        return w3
    if isinstance(w3, str):
        return RpcClient(w3, timeout_s=timeout_s)
    provider = getattr(w3, "provider", w3)
    if not callable(getattr(provider, "make_request", None)):
        raise InputError(
            f"expected a web3.Web3, a web3 provider or an RPC URL, got {type(w3).__name__}"
        )
    name = f"web3://{type(provider).__name__}"
    return RpcClient(name, timeout_s=timeout_s, provider=provider)


def read_market(
    w3: Any,
    market: str | MarketRef,
    *,
    protocol: str = DEFAULT_PROTOCOL,
    block: int | None = None,
    accounts: Iterable[str] | None = None,
    market_id: str | None = None,
    start_block: int = 0,
) -> Reading:
    """Every position of one market at one pinned block (default: the latest): discovered from
    the market's logs since `start_block`, or only `accounts`. `market` is the deployment's
    address (Aave V3: the PoolAddressesProvider; Morpho Blue: the Morpho contract, with
    `market_id` for one market of it) or a MarketRef."""
    ref = (
        market
        if isinstance(market, MarketRef)
        else MarketRef(protocol, market, start_block, market_id=market_id)
    )
    get_adapter(ref.protocol)  # an unknown protocol is one clear error, before any request
    return read_markets(connect(w3), [ref], block_number=block, accounts=accounts)


def read_many(
    w3: Any,
    markets: Sequence[MarketRef],
    *,
    block: int | None = None,
    accounts: Iterable[str] | None = None,
) -> Reading:
    """Several markets (any protocols) read at ONE pinned block."""
    return read_markets(connect(w3), markets, block_number=block, accounts=accounts)


def assess(
    w3: Any,
    reading: Reading,
    *,
    horizon_s: float | None = None,
    settings: RiskSettings | None = None,
) -> list[RiskVerdict]:
    """The risk verdict of each position of `reading` (same order) at the reading's block:
    tier, reasons, P(liquidation within the horizon), advice. The horizon defaults to the
    chain's confirmation latency measured from recent blocks; `settings` to the documented
    defaults (a config's are `onchain.config.load_config(path).risk_settings`)."""
    if not reading.positions:
        return []
    client = connect(w3)
    report = assess_positions(
        client,
        reading.block,
        reading.positions,
        settings or RiskSettings(),
        horizon_s=horizon_s,
        market_snapshots=reading.market_snapshots(client),
    )
    return report.verdicts()
