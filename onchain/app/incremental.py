"""Incremental refresh: one market kept in memory and moved forward block by block at a cost
that follows what changed, not how many accounts are tracked.

Per new block range: the logs of the market's contracts are read once (one eth_getLogs for a
short range), the market state once (one batch of calls when nothing structural changed), the
accounts those logs name (and new ones discovery finds in the same logs) are read again, and
every position is recomputed from kept account state, the adapter's plain records
(`AaveAccountState`, `MorphoPositionState`). The positions equal what a full read at that block
gives (`pipeline.scan`), field for field; `reconcile` proves it against a full read of the
kept state and repairs (and reports) any difference.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from eth_utils import to_checksum_address

from onchain.app.market_data.feed_history import absorb_logs
from onchain.app.pipeline import ACCOUNTS_PER_PLAN, discover_accounts, load_market, run_plan
from onchain.errors import InputError
from onchain.protocols.base import (
    BookHealth,
    DiscoveryNotes,
    ExactHealth,
    IncrementalAdapter,
    MarketRef,
    Position,
    PriceFeedLogs,
)
from onchain.protocols.registry import get_adapter, get_incremental
from onchain.rpc.client import BlockRef, RpcClient
from onchain.rpc.logs import Log, iter_logs

log = logging.getLogger("onchain.app.incremental")


@dataclass(frozen=True)
class Advance:
    """What one step forward cost and found."""

    from_block: int
    to_block: int
    logs: int
    accounts_read: int  # accounts whose kept state was read again (touched, new, stale)
    accounts_new: int
    requests: int
    seconds: float
    read_again: tuple[str, ...] = ()  # those accounts (each now holds new state records)
    since_block: BlockRef | None = None  # the block moved forward from (None: a full read)


@dataclass(frozen=True)
class Repair:
    """An account whose kept state differed from the chain at a reconciliation."""

    account: str
    block: int
    kept: tuple[Any, ...]
    chain: tuple[Any, ...]


@dataclass
class MarketRefresher:
    """One market's kept state; `start` reads it whole, `advance_to` moves it forward.

    `accounts` None: the refresher discovers accounts itself (the same discovery as `scan`,
    from the logs it reads anyway); given: the caller's tracked set in the caller's order."""

    client: RpcClient
    market: MarketRef
    state: Any = None
    block: BlockRef | None = None
    accounts: list[str] = field(default_factory=list)
    kept: dict[str, list[Any]] = field(default_factory=dict)
    last: Advance | None = None
    advances: int = 0  # blocks moved forward since the last full read or reconciliation
    _book: Any = None  # the adapter's exact-health arrays, rows replaced as accounts are re-read
    _stale: set[str] = field(default_factory=set)  # accounts read again at every block
    # the caller's accounts as last given (a copy), and `accounts` then, as a set
    _given: tuple[list[str], frozenset[str]] | None = None

    def __post_init__(self) -> None:
        self.adapter = get_adapter(self.market.protocol)
        incremental = get_incremental(self.market.protocol)
        if incremental is None:
            raise InputError(f"{self.market.protocol} has no incremental refresh")
        self.incremental = incremental

    # -- reading whole ---------------------------------------------------------------------

    def start(
        self, block: BlockRef, accounts: Sequence[str] | None = None, *, notes: Any = None
    ) -> list[Position]:
        """Read the market and every account at `block` (a restart begins here). `notes`: the
        caller's discovery notes (Morpho: markets per account), adopted when given."""
        sent = self.client.requests_sent
        started = time.perf_counter()
        self.state = load_market(self.client, self.market, block)
        if notes is not None and isinstance(self.adapter, DiscoveryNotes):
            self.adapter.adopt_discovery_notes(self.state, notes)
        if accounts is None:
            accounts = discover_accounts(
                self.client,
                self.market.protocol,
                self.state,
                block,
                from_block=self.market.start_block,
            )
        self.block = block
        self.accounts = [to_checksum_address(a) for a in accounts]
        self._given = None
        self.kept, self._stale = {}, set()
        self._keep(self._read_states(self.accounts))
        self.advances = 0
        self.last = Advance(
            block.number,
            block.number,
            0,
            len(self.accounts),
            len(self.accounts),
            self.client.requests_sent - sent,
            time.perf_counter() - started,
            tuple(self.accounts),
        )
        return self.positions()

    def resume(
        self, block: BlockRef, state: Any, accounts: Sequence[str], kept: dict[str, list[Any]]
    ) -> None:
        """Take up kept state stored at `block` (a restart that needs no full read): the market
        state read at `block`, each tracked account's states as stored then; `advance` goes on
        from here with the logs since."""
        self.state = state
        self.block = block
        self.accounts = [to_checksum_address(a) for a in accounts]
        self._given = None
        self.kept, self._stale, self._book = {}, set(), None
        given = {str(to_checksum_address(a)): states for a, states in kept.items()}
        self._keep({a: given[a] for a in self.accounts})
        self.advances = 0
        self.last = None

    def _keep(self, states: dict[str, list[Any]]) -> None:
        """Keep these accounts' fresh states; note those to read again every block anyway."""
        self.kept.update(states)
        for account, kept in states.items():
            if any(self.incremental.always_stale(self.state, s) for s in kept):
                self._stale.add(account)
            else:
                self._stale.discard(account)

    def _read_states(self, accounts: Sequence[str]) -> dict[str, list[Any]]:
        """Kept state of `accounts` read at the current block, per account."""
        assert self.block is not None
        return read_account_states(self.client, self.incremental, self.state, accounts, self.block)

    # -- moving forward ----------------------------------------------------------------------

    def positions(self) -> list[Position]:
        """Every tracked account's positions recomputed from kept state at the current block."""
        assert self.block is not None
        return self.incremental.positions_from_states(self.state, self.rows(), self.block)

    def advance_to(
        self,
        block: BlockRef,
        accounts: Sequence[str] | None = None,
        *,
        logs: list[Log] | None = None,
    ) -> list[Position]:
        """The market at `block`, a later block than the current one: the range's logs once,
        the market once, the touched and new accounts again, every position recomputed. An
        earlier or equal block (a reorg) reads everything again."""
        if self.block is None or block.number <= self.block.number:
            return self.start(block, accounts, notes=self._notes())
        self.advance(block, accounts, logs=logs)
        return self.positions()

    def logs_to(self, block: BlockRef) -> list[Log]:
        """The logs `advance` reads for the range after the current block up to `block` (one
        eth_getLogs for a short range); give them back to `advance` to read them once."""
        assert self.block is not None and block.number > self.block.number
        return self._range_logs(self.block.number + 1, block.number)

    def first_seen(self, logs: list[Log]) -> dict[str, int]:
        """What discovery would find in these logs (the same filter as `scan`'s): each account
        with the first block it appears in, noted as discovery notes them."""
        addresses, topics = self.adapter.discovery_filter(self.state)
        matching = [g for g in logs if _matches(g, addresses, topics)]
        if isinstance(self.adapter, DiscoveryNotes) and matching:
            self.adapter.note_discovery_logs(self.state, matching)
        found: dict[str, int] = {}
        for number in sorted({g.block_number for g in matching}):
            here = [g for g in matching if g.block_number == number]
            for account in self.adapter.accounts_from_logs(here):
                found.setdefault(account, number)
        return found

    def advance(
        self,
        block: BlockRef,
        accounts: Sequence[str] | None = None,
        *,
        logs: list[Log] | None = None,
    ) -> None:
        """`advance_to` without recomputing the positions (`positions` or `liquidatable_now`
        then do, for all rows or for the verdicts alone). `logs`: the range's logs when the
        caller read them already (`logs_to`), so they are not read twice."""
        if self.block is None or block.number <= self.block.number:
            self.start(block, accounts, notes=self._notes())
            return
        sent = self.client.requests_sent
        started = time.perf_counter()
        since = self.block
        if logs is None:
            logs = self._range_logs(self.block.number + 1, block.number)
        found = self._discover(logs)
        self.state = run_plan(
            self.client,
            self.incremental.plan_market_refresh(self.market, self.state, block, logs),
            block,
        )
        self.block = block
        given = self._given
        same = accounts is not None and given is not None and given[0] == accounts
        if same:  # the caller's accounts of the last block: `accounts` as they were
            assert given is not None
            wanted, wanted_set = self.accounts, given[1]
        else:
            if accounts is None:
                wanted = sorted(set(self.accounts) | found)
            else:
                # kept accounts are checksummed already: only new ones need the (keccak) checksum
                wanted = [a if a in self.kept else to_checksum_address(a) for a in accounts]
            wanted_set = frozenset(wanted)
        self._given = None if accounts is None else (list(accounts), wanted_set)
        new = [a for a in wanted if a not in self.kept]
        self.accounts = wanted
        touched = self.incremental.touched_accounts(self.state, logs)
        touched = {a for a in touched if a in self.kept} | self._stale
        again = sorted(a for a in touched if a in wanted_set) + new
        self._keep(self._read_states(again))
        if not same:  # else the kept accounts are `wanted`'s still (none gone)
            for gone in set(self.kept) - wanted_set:
                del self.kept[gone]
                self._stale.discard(gone)
        self.advances += 1
        self.last = Advance(
            logs[0].block_number if logs else block.number,
            block.number,
            len(logs),
            len(again),
            len(new),
            self.client.requests_sent - sent,
            time.perf_counter() - started,
            tuple(again),
            since,
        )

    def _range_logs(self, from_block: int, to_block: int) -> list[Log]:
        """Every log of the contracts that change accounts (and of discovery's), in order; and
        of the market's price feeds, whose event histories (`feed_history`) they bring up to
        date, so the risk model's feed logs cost no request of their own."""
        addresses = set(self.incremental.change_addresses(self.state))
        addresses |= set(self.adapter.discovery_filter(self.state)[0])
        feeds = []
        if isinstance(self.incremental, PriceFeedLogs):
            feeds = self.incremental.price_feeds(self.state)
        logs = [
            item
            for page in iter_logs(
                self.client,
                address=sorted(addresses | set(feeds)),
                topics=[],
                from_block=from_block,
                to_block=to_block,
            )
            for item in page.logs
        ]
        absorb_logs(self.client, feeds, from_block, to_block, logs)
        return logs

    def _discover(self, logs: list[Log]) -> set[str]:
        """Accounts discovery finds in these logs (the same filter as `scan`'s), noted."""
        return set(self.first_seen(logs))

    def _notes(self) -> Any:
        if self.state is not None and isinstance(self.adapter, DiscoveryNotes):
            return self.adapter.discovery_notes(self.state)
        return None

    def rows(self) -> list[Any]:
        """Every tracked account's kept states, in account order: the book's rows."""
        return [s for a in self.accounts for s in self.kept.get(a, ())]

    def health(self, rows: list[Any] | None = None) -> BookHealth:
        """Every tracked position's exact figures at the current block (health factor, totals,
        liquidatable), row for row the positions `positions` gives, without building them
        where the adapter computes them over the whole book (`ExactHealth`): its arrays are
        kept across blocks and only the rows of re-read accounts are replaced. `rows`: `rows()`,
        where the caller has them."""
        assert self.block is not None
        exact = self.incremental
        if not isinstance(exact, ExactHealth):
            return BookHealth.of(self.positions())
        if rows is None:
            rows = self.rows()
        book = self._book
        if book is None or len(book.states) != len(rows):
            book = self._book = exact.health_book(self.state, rows)
        else:
            for row, state in enumerate(rows):
                if book.states[row] is not state:
                    exact.health_update(self.state, book, row, state)
        return exact.exact_health(self.state, book, self.block)

    def liquidatable_now(self) -> tuple[list[str], int]:
        """The accounts liquidatable at the current block, the protocol's own verdicts (exact
        for every row, `health`). Returns the accounts and how many positions were computed."""
        health = self.health()
        flagged = {a for a, v in zip(health.accounts, health.liquidatable, strict=True) if v}
        return sorted(flagged), len(health)

    # -- proving it ------------------------------------------------------------------------

    def reconcile(self) -> list[Repair]:
        """Read every tracked account's state whole at the current block, compare it with the
        kept state, and repair what differs (each difference is returned and logged)."""
        assert self.block is not None
        chain = self._read_states(self.accounts)
        repairs = []
        for account in self.accounts:
            kept, fresh = tuple(self.kept.get(account, ())), tuple(chain[account])
            if kept != fresh:
                repairs.append(Repair(account, self.block.number, kept, fresh))
                log.warning(
                    "%s %s block %d: kept state of %s differed from the chain; repaired",
                    self.market.protocol,
                    self.market.address,
                    self.block.number,
                    account,
                )
        self.kept, self._stale = {}, set()
        self._keep(chain)
        self.advances = 0
        return repairs


def read_account_states(
    client: RpcClient,
    incremental: IncrementalAdapter,
    market_state: Any,
    accounts: Sequence[str],
    block: BlockRef,
) -> dict[str, list[Any]]:
    """Every account's protocol state at `block` in the adapter's plain records, per account: a
    full read as kept state (the refresher's, and what the change layout stores)."""
    out: dict[str, list[Any]] = {a: [] for a in accounts}
    for lo in range(0, len(accounts), ACCOUNTS_PER_PLAN):
        chunk = list(accounts[lo : lo + ACCOUNTS_PER_PLAN])
        for state in run_plan(
            client, incremental.plan_account_states(market_state, chunk, block), block
        ):
            out[state.account].append(state)
    return out


def _matches(item: Log, addresses: Sequence[str], topics: Sequence[Any]) -> bool:
    """Whether a log passes an eth_getLogs filter (addresses, positional topics with None
    wildcards and OR-lists), as the node would decide."""
    if addresses and item.address.lower() not in {a.lower() for a in addresses}:
        return False
    for i, want in enumerate(topics):
        if want is None:
            continue
        if i >= len(item.topics):
            return False
        options = want if isinstance(want, (list, tuple)) else [want]
        got = "0x" + item.topics[i].hex()
        if got.lower() not in {_hex(o).lower() for o in options}:
            return False
    return True


def _hex(value: Any) -> str:
    return "0x" + bytes(value).hex() if isinstance(value, (bytes, bytearray)) else str(value)
