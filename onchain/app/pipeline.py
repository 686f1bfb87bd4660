"""The one reader: pin a block, load the market, discover accounts, read positions.

Every command (scan, watch, targets, stress, the demo, the backtest) reads through
`read_markets`; the daemon uses the same steps one by one (`load_market`, `discovery_logs`,
`read_positions`, `market_snapshot`) because it keeps its discovery cursor in the store. Adapters
plan the reads; here they are executed through the RPC layer, pinned to one block."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from eth_utils import is_address, is_checksum_address, to_checksum_address

from onchain.errors import InputError, NotAMarket
from onchain.protocols.base import (
    LogQuery,
    MarketRef,
    MarketSnapshot,
    MarketSnapshotPlanner,
    Position,
    ReadPlan,
)
from onchain.protocols.registry import get_adapter
from onchain.rpc.calls import execute
from onchain.rpc.client import BlockRef, RpcClient
from onchain.rpc.logs import Log, LogPage, iter_logs

Progress = Callable[[int, int], None]  # (done, total)
ACCOUNTS_PER_PLAN = 2_000


def checked_address(value: str, what: str = "address") -> str:
    """Checksum at the boundary; anything else is one clear InputError."""
    if not isinstance(value, str) or not is_address(value) or not value.startswith("0x"):
        raise InputError(f"malformed {what}: {value!r} (expected 0x followed by 40 hex digits)")
    digits = value[2:]
    if digits != digits.lower() and digits != digits.upper() and not is_checksum_address(value):
        # mixed case is a checksum (EIP-55): a wrong one means a mistyped address
        raise InputError(
            f"{what} {value} has a wrong checksum (its mixed case must match EIP-55): "
            "it is probably mistyped"
        )
    return to_checksum_address(value)


def run_plan(client: RpcClient, plan: ReadPlan, block: BlockRef) -> Any:
    """Drive an adapter's read plan: every batch of calls goes out pinned to `block` (and a
    LogQuery step gets the logs up to `block`)."""
    try:
        calls = next(plan)
        while True:
            if isinstance(calls, LogQuery):
                results: Any = fetch_logs(client, calls, block)
            else:
                results = execute(client, calls, block) if calls else []
            calls = plan.send(results)
    except StopIteration as done:
        return done.value


def fetch_logs(client: RpcClient, query: LogQuery, block: BlockRef) -> list[Log]:
    """Every log a plan's LogQuery asks for, up to the pinned block, paged like discovery."""
    return [
        log
        for page in iter_logs(
            client,
            address=list(query.address),
            topics=list(query.topics),
            from_block=query.from_block,
            to_block=block.number,
        )
        for log in page.logs
    ]


def load_market(client: RpcClient, market: MarketRef, block: BlockRef) -> Any:
    address = checked_address(market.address, "market address")
    if not client.get_code(address, block):
        raise NotAMarket(f"no contract at {address} on this chain at block {block.number}")
    adapter = get_adapter(market.protocol)
    return run_plan(client, adapter.plan_market(market, block), block)


def discovery_logs(
    client: RpcClient,
    protocol: str,
    market_state: Any,
    from_block: int,
    to_block: int,
    *,
    on_page: Callable[[LogPage], None] | None = None,
) -> dict[str, int]:
    """The one discovery every command and the daemon use: accounts the adapter's discovery logs
    name between two blocks, each with the first block it appears in.

    Adapters that key positions by (market, account) note which market each account used
    (``note_discovery_logs``), so reading positions asks only for those pairs."""
    adapter = get_adapter(protocol)
    addresses, topics = adapter.discovery_filter(market_state)
    note = getattr(adapter, "note_discovery_logs", None)
    found: dict[str, int] = {}
    for page in iter_logs(
        client, address=addresses, topics=topics, from_block=from_block, to_block=to_block
    ):
        if page.logs:
            by_block: dict[int, list[Any]] = defaultdict(list)
            for item in page.logs:
                by_block[item.block_number].append(item)
            for number in sorted(by_block):
                for account in adapter.accounts_from_logs(by_block[number]):
                    found.setdefault(account, number)
            if note is not None:
                note(market_state, page.logs)
        if on_page is not None:
            on_page(page)
    return found


def discover_accounts(
    client: RpcClient,
    protocol: str,
    market_state: Any,
    block: BlockRef,
    *,
    from_block: int = 0,
    progress: Progress | None = None,
) -> list[str]:
    """Accounts that ever borrowed, from event logs up to the pinned block, in a stable order."""
    total = max(block.number - from_block + 1, 1)

    def on_page(page: LogPage) -> None:
        if progress:
            progress(page.to_block - from_block + 1, total)

    found = discovery_logs(
        client, protocol, market_state, from_block, block.number, on_page=on_page
    )
    return sorted(found)


def read_positions(
    client: RpcClient,
    protocol: str,
    market_state: Any,
    accounts: Sequence[str],
    block: BlockRef,
    *,
    progress: Progress | None = None,
) -> list[Position]:
    adapter = get_adapter(protocol)
    positions: list[Position] = []
    for start in range(0, len(accounts), ACCOUNTS_PER_PLAN):
        chunk = list(accounts[start : start + ACCOUNTS_PER_PLAN])
        positions += run_plan(client, adapter.plan_positions(market_state, chunk, block), block)
        if progress:
            progress(min(start + ACCOUNTS_PER_PLAN, len(accounts)), len(accounts))
    return positions


def market_snapshot(
    client: RpcClient, protocol: str, market_state: Any, block: BlockRef
) -> MarketSnapshot | None:
    """Reserve-level market state (liquidity, utilisation), when the protocol's adapter can
    describe it; None otherwise."""
    adapter = get_adapter(protocol)
    if not isinstance(adapter, MarketSnapshotPlanner):
        return None
    snapshot: MarketSnapshot = run_plan(
        client, adapter.plan_market_snapshot(market_state, block), block
    )
    return snapshot


@dataclass(frozen=True)
class MarketRead:
    """One market as the reader left it: its loaded state, the accounts read and their
    positions, all at the reading's block."""

    ref: MarketRef
    state: Any
    accounts: list[str]
    positions: list[Position]


@dataclass(frozen=True)
class Reading:
    """Markets (any protocols) read at ONE pinned block, so figures from different markets
    describe the same chain state. Markets and positions come in the order asked."""

    block: BlockRef
    markets: list[MarketRead]

    @property
    def positions(self) -> list[Position]:
        return [p for m in self.markets for p in m.positions]

    @property
    def market_states(self) -> list[tuple[MarketRef, Any]]:
        return [(m.ref, m.state) for m in self.markets]

    def market_snapshots(self, client: RpcClient) -> list[MarketSnapshot]:
        """Every market's reserve snapshot its adapter can give, at the reading's block."""
        found = (market_snapshot(client, m.ref.protocol, m.state, self.block) for m in self.markets)
        return [s for s in found if s is not None]


def read_markets(
    client: RpcClient,
    markets: Sequence[MarketRef],
    *,
    block_number: int | None = None,
    accounts: Iterable[str] | None = None,
    discovery_progress: Progress | None = None,
    read_progress: Progress | None = None,
) -> Reading:
    """The one reader every command uses: pin a block, then for each market load it, discover
    its accounts from logs since its start block (or take the `accounts` given, checksummed)
    and read their positions."""
    given = None if accounts is None else [checked_address(a, "wallet address") for a in accounts]
    block = client.pin_block(block_number)
    read: list[MarketRead] = []
    for ref in markets:
        state = load_market(client, ref, block)
        found = given
        if found is None:
            found = discover_accounts(
                client,
                ref.protocol,
                state,
                block,
                from_block=ref.start_block,
                progress=discovery_progress,
            )
        positions = read_positions(
            client, ref.protocol, state, found, block, progress=read_progress
        )
        read.append(MarketRead(ref, state, list(found), positions))
    return Reading(block, read)


@dataclass(frozen=True)
class ScanResult:
    block: BlockRef
    market_state: Any
    accounts: list[str]
    positions: list[Position]


def scan(
    client: RpcClient,
    market: MarketRef,
    *,
    block_number: int | None = None,
    accounts: Iterable[str] | None = None,
    discovery_progress: Progress | None = None,
    read_progress: Progress | None = None,
) -> ScanResult:
    """Every discovered (or given) account of one market, read at one pinned block."""
    reading = read_markets(
        client,
        [market],
        block_number=block_number,
        accounts=accounts,
        discovery_progress=discovery_progress,
        read_progress=read_progress,
    )
    (one,) = reading.markets
    return ScanResult(reading.block, one.state, one.accounts, one.positions)


@dataclass(frozen=True)
class WatchResult:
    """Wallets' positions across several markets (any protocols), all read at ONE block."""

    block: BlockRef
    positions: list[Position]
    market_states: list[tuple[MarketRef, Any]]


def watch_everywhere(
    client: RpcClient,
    markets: Sequence[MarketRef],
    wallets: Iterable[str],
    *,
    block_number: int | None = None,
) -> WatchResult:
    """Every position of `wallets` in every market given, read at one pinned block so figures
    from different protocols describe the same chain state. Positions come in market order."""
    reading = read_markets(client, markets, block_number=block_number, accounts=wallets)
    return WatchResult(reading.block, reading.positions, reading.market_states)
