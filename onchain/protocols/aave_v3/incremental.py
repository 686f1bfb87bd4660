"""Aave V3, block after block: the market re-read in one batch of calls (indexes, prices,
configuration, supplies, eMode categories) from the addresses the previous block's state
already knows, the accounts an event names, and positions recomputed from kept account state.

The Pool changes an account's configuration bitmap, eMode or scaled balances only in calls that
log an event naming that account in an indexed topic (Supply's and Borrow's `onBehalfOf`,
Withdraw's and Repay's `user`, LiquidationCall's `user`, ReserveUsedAsCollateral*, UserEModeSet,
and the aToken / debt token Mint, Burn, BalanceTransfer and Transfer), so re-reading the
accounts named by the logs of the Pool and its tokens keeps every kept state exact. Stable debt
(3.0.2/3.1) is the exception: its balance grows with time at the user's own rate, so an account
holding any is re-read every block."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import Any, cast

from eth_utils import to_checksum_address

from onchain.position_rows import PositionRows
from onchain.protocols import state_codec
from onchain.protocols.aave_v3 import exact_book, risk_rows
from onchain.protocols.aave_v3.adapter import (
    AaveAccountState,
    AaveMarketState,
    AaveReserve,
    AaveV3Adapter,
    _build_reserve,
    _category_calls,
    _emode_price_call,
    _load_categories,
    _parse_categories,
    _pool,
    _provider,
    _reserve_calls,
    _reserve_state_calls,
    _reserve_tokens,
    _view,
)
from onchain.protocols.base import (
    BookHealth,
    MarketRef,
    Position,
    ReadPlan,
    indexed_addresses,
)
from onchain.rpc.client import BlockRef
from onchain.rpc.logs import Log


class AaveV3Incremental:
    """What the incremental engine asks of Aave V3 (see `onchain.app.incremental`)."""

    def __init__(self) -> None:
        self.adapter = AaveV3Adapter()

    def change_addresses(self, market_state: AaveMarketState) -> list[str]:
        """The contracts whose logs can change an account's state: the Pool and its tokens."""
        out = [market_state.pool]
        for r in market_state.reserves:
            out += [r.atoken, r.variable_debt_token]
            if int(r.stable_debt_token, 16):
                out.append(r.stable_debt_token)
        return out

    def touched_accounts(self, market_state: AaveMarketState, logs: Sequence[Log]) -> set[str]:
        """Every address an indexed topic of these logs names (reserves and referral codes
        included: they simply are not tracked accounts); the price feeds' logs name none."""
        feeds = {f.lower() for f in self.price_feeds(market_state)}
        return indexed_addresses([g for g in logs if g.address.lower() not in feeds])

    def price_feeds(self, market_state: AaveMarketState) -> list[str]:
        """The AaveOracle's sources: their AnswerUpdated logs ride along the refresher's read."""
        return sorted({r.price_feed for r in market_state.reserves if r.price_feed})

    def plan_market_refresh(
        self, market: MarketRef, previous: AaveMarketState, block: BlockRef, logs: Sequence[Log]
    ) -> ReadPlan:
        """The market at `block` in ONE batch of calls, assuming the Pool, oracle, reserve list,
        token addresses and eMode price sources of `previous`; each assumption is checked in
        the answers, and any that fails (a new reserve, a Pool upgrade ...) reads the market
        whole instead. eMode categories loaded for accounts are read again too."""
        rules = previous.rules
        pool, oracle = previous.pool, previous.oracle
        provider = previous.addresses_provider
        head = [
            _view(provider, _provider["getPool"]),
            _view(provider, _provider["getPriceOracle"]),
            _view(pool, _pool["getReservesList"]),
            _view(pool, _pool["POOL_REVISION"], allow_failure=True),
        ]
        per_reserve = [
            _reserve_state_calls(pool, oracle, r.asset)
            + _reserve_calls(pool, oracle, rules, *_kept_tokens(r))
            for r in previous.reserves
        ]
        ids = sorted(previous.emode_categories)
        sourced = sorted(
            (cid, c.price_source)
            for cid, c in previous.emode_categories.items()
            if c.has_price_source
        )
        categories = _category_calls(pool, rules, ids)
        prices = [_emode_price_call(oracle, source) for _cid, source in sourced]
        results = yield head + [c for calls in per_reserve for c in calls] + categories + prices

        it = iter(results)
        got_pool, got_oracle, reserves_list, revision = (next(it) for _ in range(4))
        same = (
            to_checksum_address(got_pool) == pool
            and to_checksum_address(got_oracle) == oracle
            and len(reserves_list) == len(previous.reserves)
            and {to_checksum_address(a) for a in reserves_list}
            == {r.asset for r in previous.reserves}
            and (int(revision) if revision is not None else None) == previous.pool_revision
        )
        reserves = []
        for r, calls in zip(previous.reserves, per_reserve, strict=True):
            values = [next(it) for _ in calls]
            data, income, debt, price = values[:4]
            if same and _reserve_tokens(r.asset, data) != _kept_tokens(r):
                same = False
            if same:
                reserves.append(
                    _build_reserve(rules, r.asset, data, income, debt, price, r.symbol, values[4:])
                )
        fresh = _parse_categories(rules, ids, [next(it) for _ in categories])
        emode_prices = {cid: int(next(it)) for cid, _source in sourced}
        if same:
            same = all(fresh[cid].price_source == source for cid, source in sourced) and not any(
                fresh[cid].has_price_source and cid not in emode_prices for cid in fresh
            )
        if same and not rules.emode_bitmaps:  # the categories the reserves name are all loaded
            named = {r.config.emode_category for r in reserves if r.config.emode_category}
            same = named <= set(fresh)
        if not same:
            return (yield from self._reload(market, previous, block))
        reserves.sort(key=lambda r: r.reserve_id)
        return replace(
            previous,
            block=block,
            reserves=tuple(reserves),
            emode_categories=fresh,
            emode_prices=emode_prices,
        )

    def _reload(self, market: MarketRef, previous: AaveMarketState, block: BlockRef) -> ReadPlan:
        """The whole market read again, with the categories accounts were found in."""
        state: AaveMarketState = yield from self.adapter.plan_market(market, block)
        yield from _load_more_categories(state, sorted(previous.emode_categories))
        return state

    def plan_account_states(
        self, market_state: AaveMarketState, accounts: list[str], block: BlockRef
    ) -> ReadPlan:
        return (yield from self.adapter.plan_account_states(market_state, accounts, block))

    def positions_from_states(
        self,
        market_state: AaveMarketState,
        states: list[Any],
        block: BlockRef,
        *,
        flip_prices: bool = True,
    ) -> list[Position]:
        return self.adapter.positions_from_states(
            market_state, states, block, flip_prices=flip_prices
        )

    def risk_rows(
        self, market_state: AaveMarketState, states: list[AaveAccountState]
    ) -> PositionRows:
        """The risk book's arrays for these states, no Position built (`risk_rows`)."""
        return risk_rows.risk_rows(market_state, states)

    def health_book(self, market_state: AaveMarketState, states: list[AaveAccountState]) -> Any:
        """Arrays for every kept position's exact figures (`exact_book.exact_health`)."""
        return exact_book.book(market_state, states)

    def health_update(
        self, market_state: AaveMarketState, book: Any, row: int, state: AaveAccountState
    ) -> None:
        exact_book.set_row(market_state, book, row, state)

    def exact_health(self, market_state: AaveMarketState, book: Any, block: BlockRef) -> BookHealth:
        return exact_book.exact_health(market_state, book, block)

    def plan_adopt_states(
        self, market_state: AaveMarketState, states: list[AaveAccountState], block: BlockRef
    ) -> ReadPlan:
        """The eMode categories the kept accounts are in: with per-category bitmaps (3.2+) the
        market read loads none, and reading accounts is what loads them (`plan_account_states`)."""
        wanted = sorted({s.emode for s in states if s.emode} - set(market_state.emode_categories))
        yield from _load_more_categories(market_state, wanted)
        return market_state

    def always_stale(self, market_state: AaveMarketState, state: AaveAccountState) -> bool:
        """Stable debt grows at the user's own rate: such an account is read every block."""
        return any(kind == "s" and v for (_rid, kind), v in state.balances.items())

    def encode_market_state(self, market_state: AaveMarketState) -> bytes:
        return state_codec.encode(market_state)

    def decode_market_state(self, data: bytes) -> AaveMarketState:
        return cast(AaveMarketState, state_codec.decode(data, AaveMarketState))

    def encode_account_states(self, states: list[Any]) -> bytes:
        return state_codec.encode(states)

    def decode_account_states(self, data: bytes) -> list[Any]:
        return cast(list[Any], state_codec.decode(data, list[AaveAccountState]))


def _kept_tokens(r: AaveReserve) -> tuple[str, str, str, str, bool]:
    """What `_reserve_tokens` gave for this reserve when it was read."""
    return (
        r.asset,
        r.atoken,
        r.stable_debt_token,
        r.variable_debt_token,
        r.config.virtual_accounting,
    )


def _load_more_categories(state: AaveMarketState, ids: list[int]) -> ReadPlan:
    yield from _load_categories(
        state.pool, state.oracle, state.rules, ids, state.emode_categories, state.emode_prices
    )
