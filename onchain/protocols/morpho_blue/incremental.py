"""Morpho Blue, block after block: per market the stored totals, the oracle price and the IRM's
rate (interest accrued off-chain to the block's timestamp as `_accrueInterest` does), positions
recomputed from kept (market, account) state, and only the accounts an event names re-read.

Every call that changes a position (supply, withdraw, borrow, repay, supplyCollateral,
withdrawCollateral, liquidate) logs an event whose first indexed topic is the market id and
whose later indexed topics name the account (`onBehalf`, `borrower`); a market none of the
range's logs names kept its stored totals (any accrual logs AccrueInterest), so its IRM rate is
read with the previous totals in the same single batch as its price."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import Any, cast

from eth_utils import to_checksum_address

from onchain.position_rows import PositionRows
from onchain.protocols import state_codec
from onchain.protocols.base import (
    BookHealth,
    MarketRef,
    Position,
    ReadPlan,
    indexed_addresses,
)
from onchain.protocols.morpho_blue import exact_book, math, risk_rows
from onchain.protocols.morpho_blue.adapter import (
    CREATE_MARKET,
    MorphoBlueAdapter,
    MorphoMarket,
    MorphoPositionState,
    MorphoState,
    _borrow_rate_view,
    _decode_market,
    _morpho,
    _price,
    _valued_market,
)
from onchain.rpc.abi import event
from onchain.rpc.calls import Call
from onchain.rpc.client import BlockRef
from onchain.rpc.logs import Log

ACCRUE_INTEREST = event("morpho_blue", "Morpho", "AccrueInterest")
SET_FEE_RECIPIENT = event("morpho_blue", "Morpho", "SetFeeRecipient")


class MorphoBlueIncremental:
    """What the incremental engine asks of Morpho Blue (see `onchain.app.incremental`)."""

    def __init__(self) -> None:
        self.adapter = MorphoBlueAdapter()

    def change_addresses(self, market_state: MorphoState) -> list[str]:
        return [market_state.morpho]

    def touched_accounts(self, market_state: MorphoState, logs: Sequence[Log]) -> set[str]:
        """The accounts the market's events name, and the fee recipient when accrued interest
        minted it supply shares (AccrueInterest names no account)."""
        ids = {m.id for m in market_state.markets}
        touched = indexed_addresses([g for g in logs if _market_of(g) in ids])
        fee_shares = any(
            g.topics[0] == ACCRUE_INTEREST.topic and int.from_bytes(g.data[64:96], "big")
            for g in logs
            if g.topics
        )
        if fee_shares and market_state.fee_recipient:
            touched.add(market_state.fee_recipient)
        return touched

    def plan_market_refresh(
        self, market: MarketRef, previous: MorphoState, block: BlockRef, logs: Sequence[Log]
    ) -> ReadPlan:
        """Every market's totals, price and rate: one batch when no log names the market (the
        rate from the previous totals, checked against the totals read in the same batch), a
        second for the rates of markets that changed. A new market reads the deployment
        whole (its discovery notes carried over)."""
        created = any(g.topics and g.topics[0] == CREATE_MARKET.topic for g in logs)
        if created and previous.market_id is None:
            state: MorphoState = yield from self.adapter.plan_market(market, block)
            self.adapter.adopt_discovery_notes(state, previous.account_markets)
            return state
        named = {_market_of(g) for g in logs}
        markets = previous.markets
        first: list[Call] = []
        for m in markets:
            first.append(_market_call(previous.morpho, m.id))
            first.append(Call(m.oracle, _price.encode(), _price.decode, allow_failure=True))
            if m.id not in named and _has_irm(m):
                first.append(_rate_call(m, m.stored))
        it = iter((yield first))
        read: list[tuple[MorphoMarket, math.Market, Any, Any, bool]] = []
        for m in markets:
            stored, price = next(it), next(it)
            rate = next(it) if m.id not in named and _has_irm(m) else None
            fresh = _has_irm(m) and (m.id in named or stored != m.stored)
            read.append((m, stored, price, rate, fresh))
        again = [(m, stored) for m, stored, _p, _r, fresh in read if fresh]
        rates = iter((yield [_rate_call(m, stored) for m, stored in again]) if again else [])
        valued = []
        for m, stored, price, rate, fresh in read:
            if fresh:
                rate = next(rates)
            meta = {
                m.loan_token: (m.loan_symbol, m.loan_decimals),
                m.collateral_token: (m.collateral_symbol, m.collateral_decimals),
            }
            valued.append(
                _valued_market(m.id, m.params, stored, price, rate, meta, block, previous.market_id)
            )
        recipient = previous.fee_recipient
        for g in logs:  # SetFeeRecipient(newFeeRecipient indexed)
            if g.topics and g.topics[0] == SET_FEE_RECIPIENT.topic and len(g.topics) > 1:
                recipient = to_checksum_address(g.topics[1][-20:])
        return replace(previous, block=block, markets=tuple(valued), fee_recipient=recipient)

    def plan_account_states(
        self, market_state: MorphoState, accounts: list[str], block: BlockRef
    ) -> ReadPlan:
        return (yield from self.adapter.plan_account_states(market_state, accounts, block))

    def positions_from_states(
        self,
        market_state: MorphoState,
        states: list[Any],
        block: BlockRef,
        *,
        flip_prices: bool = True,
    ) -> list[Position]:
        """`flip_prices` changes nothing here: a Morpho liquidation price is one division."""
        return self.adapter.positions_from_states(market_state, states, block)

    def risk_rows(
        self, market_state: MorphoState, states: list[MorphoPositionState]
    ) -> PositionRows:
        """The risk book's arrays for these states, no Position built (`risk_rows`)."""
        return risk_rows.risk_rows(market_state, states)

    def health_book(self, market_state: MorphoState, states: list[MorphoPositionState]) -> Any:
        """Arrays for every kept position's exact figures (`exact_book.exact_health`)."""
        return exact_book.book(market_state, states)

    def health_update(
        self, market_state: MorphoState, book: Any, row: int, state: MorphoPositionState
    ) -> None:
        exact_book.set_row(market_state, book, row, state)

    def exact_health(self, market_state: MorphoState, book: Any, block: BlockRef) -> BookHealth:
        return exact_book.exact_health(market_state, book, block)

    def always_stale(self, market_state: MorphoState, state: MorphoPositionState) -> bool:
        return False

    def encode_market_state(self, market_state: MorphoState) -> bytes:
        return state_codec.encode(market_state)

    def decode_market_state(self, data: bytes) -> MorphoState:
        return cast(MorphoState, state_codec.decode(data, MorphoState))

    def encode_account_states(self, states: list[Any]) -> bytes:
        return state_codec.encode(states)

    def plan_adopt_states(
        self, market_state: MorphoState, states: list[Any], block: BlockRef
    ) -> ReadPlan:
        """Nothing: a Morpho market state holds all its positions need."""
        return market_state
        yield  # a read plan that reads nothing

    def decode_account_states(self, data: bytes) -> list[Any]:
        return cast(list[Any], state_codec.decode(data, list[MorphoPositionState]))


def _market_of(log: Log) -> str | None:
    return "0x" + log.topics[1].hex() if len(log.topics) > 1 else None


def _has_irm(m: MorphoMarket) -> bool:
    return bool(int(m.irm, 16))


def _market_call(morpho: str, market_id: str) -> Call:
    return Call(morpho, _morpho["market"].encode(bytes.fromhex(market_id[2:])), _decode_market)


def _rate_call(m: MorphoMarket, stored: math.Market) -> Call:
    return Call(
        m.irm,
        _borrow_rate_view.encode(m.params, stored.as_tuple()),
        _borrow_rate_view.decode,
        allow_failure=True,
    )
