"""The imperative shell around the adapters: pin a block, execute read plans through the RPC
layer, discover accounts from logs, and return positions. Library users call these directly."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from eth_utils import is_address, is_checksum_address, to_checksum_address

from onchain.errors import InputError, NotAMarket
from onchain.protocols.base import LogQuery, MarketRef, Position, ReadPlan
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
    block = client.pin_block(block_number)
    state = load_market(client, market, block)
    if accounts is None:
        found = discover_accounts(
            client,
            market.protocol,
            state,
            block,
            from_block=market.start_block,
            progress=discovery_progress,
        )
    else:
        found = [checked_address(a, "wallet address") for a in accounts]
    positions = read_positions(client, market.protocol, state, found, block, progress=read_progress)
    return ScanResult(block, state, found, positions)


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
    checked = [checked_address(w, "wallet address") for w in wallets]
    block = client.pin_block(block_number)
    positions: list[Position] = []
    states: list[tuple[MarketRef, Any]] = []
    for market in markets:
        state = load_market(client, market, block)
        states.append((market, state))
        positions += read_positions(client, market.protocol, state, checked, block)
    return WatchResult(block, positions, states)
