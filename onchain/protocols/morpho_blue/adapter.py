"""Morpho Blue adapter: plans the reads of a Morpho deployment (every market, or one market id)
and its borrowers at one pinned block, and decodes them into protocol-neutral positions whose
verdict is the contract's own (`math` mirrors `_accrueInterest`, `_isHealthy`, `liquidate`).

- Markets are discovered from `CreateMarket` logs (their parameters are in the event), borrowers
  from `Borrow` and `SupplyCollateral` logs (`onBehalf`), both paged by the pipeline.
- Market state is read as stored, then interest is accrued off-chain to the block's timestamp with
  the IRM's `borrowRateView` for the stored market: exactly what `accrueInterest` would do in
  that block, so "borrowed" equals what the contract would charge there, to the wei.
- One position per (market, account) with collateral or debt; `market` is the market id, values
  ("base") are in raw loan-token units (`base_currency_decimals` = the loan token's decimals).
- health_factor (wad) = maxBorrow * 1e18 // borrowed, rounding down: below 1e18 exactly when
  `_isHealthy` is false. `liquidatable` is `not _isHealthy`.
- A market whose oracle (or IRM) reverts cannot be valued or liquidated: asked for by id it is an
  error; among all markets it is skipped and listed in `MorphoState.skipped_markets`."""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from functools import cached_property
from typing import Any

from eth_abi import decode
from eth_utils import to_checksum_address

from onchain.errors import InputError, NotAMarket
from onchain.model import CloseFactorRule, DetailColumn, RiskTerms
from onchain.protocols.base import (
    AssetPosition,
    LiquidationQuote,
    LogQuery,
    MarketRef,
    Position,
    ReadPlan,
)
from onchain.protocols.morpho_blue import math
from onchain.rpc.abi import event, function
from onchain.rpc.calls import Call
from onchain.rpc.client import BlockRef
from onchain.rpc.logs import Log

PROTOCOL = "morpho-blue"
ABI = "morpho_blue"
ZERO_ID = "0x" + "00" * 32
ZERO_ADDRESS = "0x0000000000000000000000000000000000000000"
MARKET_ID = re.compile(r"^0x[0-9a-fA-F]{64}$")
# gas of one Morpho.liquidate (no callback), measured on the devnet; tests/cli/test_targets.py
# checks real calls stay near it
LIQUIDATION_GAS = 150_000

_morpho = {
    n: function(ABI, "Morpho", n)
    for n in ("market", "position", "idToMarketParams", "owner", "feeRecipient")
}
_price = function(ABI, "IOracle", "price")
_borrow_rate_view = function(ABI, "IIrm", "borrowRateView")
_symbol = function(ABI, "ERC20", "symbol")
_decimals = function(ABI, "ERC20", "decimals")
CREATE_MARKET = event(ABI, "Morpho", "CreateMarket")
BORROW = event(ABI, "Morpho", "Borrow")
SUPPLY_COLLATERAL = event(ABI, "Morpho", "SupplyCollateral")
_BORROW_TOPIC = BORROW.topic
_SUPPLY_COLLATERAL_TOPIC = SUPPLY_COLLATERAL.topic
_POSITION_SELECTOR = _morpho["position"].selector


def normalize_market_id(value: str) -> str:
    """Lower-case 0x + 64 hex digits; anything else is one clear InputError."""
    if not isinstance(value, str) or not MARKET_ID.match(value):
        raise InputError(f"malformed Morpho market id: {value!r} (expected 0x followed by 64 hex)")
    return value.lower()


@dataclass(frozen=True)
class MorphoMarket:
    """One market at the pinned block: parameters, stored and accrued state, oracle price."""

    id: str
    loan_token: str
    collateral_token: str
    oracle: str
    irm: str
    lltv: int
    loan_symbol: str
    loan_decimals: int
    collateral_symbol: str
    collateral_decimals: int
    stored: math.Market
    borrow_rate: int | None  # per second, wad; None without an IRM
    accrued: math.Market  # as `accrueInterest` would leave it in this block
    price: int | None  # oracle price (1e36 scale); None when the oracle reverts
    problem: str | None = None  # why the market cannot be valued at this block

    @property
    def params(self) -> tuple[str, str, str, str, int]:
        return (self.loan_token, self.collateral_token, self.oracle, self.irm, self.lltv)

    @property
    def label(self) -> str:
        return f"{self.collateral_symbol}/{self.loan_symbol} {self.lltv / 1e16:g}%"

    @property
    def liquidation_incentive_factor(self) -> int:
        return math.liquidation_incentive_factor(self.lltv)

    @cached_property
    def interest_rates(self) -> dict[str, tuple[float, float]]:
        """Token (lower-case) -> (supply, borrow) ln growth per second at the IRM's rate:
        Morpho compounds the borrow rate continuously (per second, wad), lenders earn it on the
        borrowed share less the fee; collateral earns nothing."""
        borrow = (self.borrow_rate or 0) / math.WAD
        a = self.accrued
        used = a.total_borrow_assets / a.total_supply_assets if a.total_supply_assets else 0.0
        supply = borrow * used * (1.0 - a.fee / math.WAD)
        return {
            self.collateral_token.lower(): (0.0, 0.0),
            self.loan_token.lower(): (supply, borrow),
        }


@dataclass(frozen=True)
class MorphoState:
    """A Morpho deployment (all its markets, or the one asked for) at one block."""

    morpho: str
    block: BlockRef
    markets: tuple[MorphoMarket, ...]
    start_block: int = 0
    market_id: str | None = None
    version: str = math.MORPHO_BLUE_VERSION
    # account -> ids of the markets its discovery logs name (filled while discovering)
    account_markets: dict[str, set[str]] = field(default_factory=dict, compare=False)
    # who receives the fee's supply shares when interest accrues (no event names it then)
    fee_recipient: str | None = field(default=None, compare=False)

    @property
    def priced_markets(self) -> tuple[MorphoMarket, ...]:
        return tuple(m for m in self.markets if m.problem is None)

    @property
    def skipped_markets(self) -> tuple[tuple[str, str], ...]:
        """(market id, reason) of markets whose positions cannot be valued at this block."""
        return tuple((m.id, m.problem) for m in self.markets if m.problem is not None)

    @property
    def description(self) -> str:
        what = self.markets[0].label if self.market_id and self.markets else ""
        scope = (
            f"market {self.market_id} ({what})"
            if self.market_id
            else f"{len(self.markets)} markets"
        )
        return f"Morpho Blue {self.morpho}, {scope}"


def _decode_params(data: bytes) -> tuple[str, str, str, str, int]:
    loan, collateral, oracle, irm, lltv = decode(
        ["address", "address", "address", "address", "uint256"], data
    )
    return (
        to_checksum_address(loan),
        to_checksum_address(collateral),
        to_checksum_address(oracle),
        to_checksum_address(irm),
        int(lltv),
    )


def _decode_market(data: bytes) -> math.Market:
    return math.Market(*(int(v) for v in decode(["uint128"] * 6, data)))


def _decode_position(data: bytes) -> tuple[int, int, int]:
    """(supplyShares, borrowShares, collateral), by hand: one call per (market, account)."""
    if len(data) != 96:
        raise ValueError(f"position() returned {len(data)} bytes")
    return (
        int.from_bytes(data[0:32], "big"),
        int.from_bytes(data[32:64], "big"),
        int.from_bytes(data[64:96], "big"),
    )


def _position_call(morpho: str, market_id: str, account: str) -> Call:
    data = (
        _POSITION_SELECTOR
        + bytes.fromhex(market_id[2:])
        + b"\x00" * 12
        + bytes.fromhex(account[2:])
    )
    return Call(morpho, data, _decode_position)


def _decode_symbol(data: bytes) -> str | None:
    try:
        return str(_symbol.decode(data))
    except Exception:  # bytes32 symbols (MKR-like tokens): decode the raw word
        text = data[:32].rstrip(b"\x00")
        return text.decode("ascii", errors="ignore") or None


def _valued_market(
    market_id: str,
    params: tuple[str, str, str, str, int],
    stored: math.Market,
    price: Any,
    rate: Any,
    meta: dict[str, tuple[Any, Any]],
    block: BlockRef,
    wanted: str | None,
) -> MorphoMarket:
    """One market at `block`: stored state accrued off-chain with the IRM's rate, valued at the
    oracle price; a reverting oracle or IRM is the market's `problem` (an error when the market
    was asked for by id)."""
    loan, collateral, oracle, irm, lltv = params
    has_irm = bool(int(irm, 16))
    problem = None
    if price is None:
        problem = f"oracle {oracle} reverts"
    elif has_irm and rate is None:
        problem = f"IRM {irm} reverts"
    if problem and wanted is not None:
        raise NotAMarket(
            f"Morpho Blue market {market_id}: {problem} at block {block.number}, so its "
            "positions cannot be valued (nor liquidated on-chain)"
        )
    accrued = math.accrue_interest(
        stored, int(rate) if has_irm and rate is not None else None, block.timestamp
    ).market
    loan_symbol, loan_decimals = meta[loan]
    coll_symbol, coll_decimals = meta[collateral]
    return MorphoMarket(
        id=market_id,
        loan_token=loan,
        collateral_token=collateral,
        oracle=oracle,
        irm=irm,
        lltv=lltv,
        loan_symbol=loan_symbol or loan[:10],
        loan_decimals=int(loan_decimals) if loan_decimals is not None else 18,
        collateral_symbol=coll_symbol or collateral[:10],
        collateral_decimals=int(coll_decimals) if coll_decimals is not None else 18,
        stored=stored,
        borrow_rate=int(rate) if rate is not None else None,
        accrued=accrued,
        price=int(price) if price is not None else None,
        problem=problem,
    )


@dataclass(frozen=True)
class MorphoPositionState:
    """What Morpho keeps for one (market, account): `position(id, account)`. Only the market's
    events naming the account change it, so positions are recomputed exactly from it and the
    market's totals and oracle price at any later block."""

    market_id: str
    account: str
    supply_shares: int
    borrow_shares: int
    collateral: int


class MorphoBlueAdapter:
    """Morpho Blue (immutable core, one version): markets by id inside one deployment."""

    name = PROTOCOL
    markets_by_id = True  # a market is named by its id inside the deployment's contract
    detail_columns: tuple[DetailColumn, ...] = ()

    def plan_market(self, market: MarketRef, block: BlockRef) -> ReadPlan:
        morpho = to_checksum_address(market.address)
        wanted = normalize_market_id(market.market_id) if market.market_id else None
        owner, fee_recipient, probe = yield [
            Call(morpho, _morpho["owner"].encode(), _morpho["owner"].decode, allow_failure=True),
            Call(
                morpho,
                _morpho["feeRecipient"].encode(),
                _morpho["feeRecipient"].decode,
                allow_failure=True,
            ),
            Call(morpho, _morpho["market"].encode(bytes(32)), _decode_market, allow_failure=True),
        ]
        if owner is None or fee_recipient is None or probe is None:
            raise NotAMarket(
                f"{morpho} is not a Morpho Blue contract (owner(), feeRecipient() and "
                f"market(id) do not answer as Morpho's do at block {block.number})"
            )
        params_by_id: dict[str, tuple[str, str, str, str, int]] = {}
        if wanted is not None:
            params, stored = yield [
                Call(
                    morpho,
                    _morpho["idToMarketParams"].encode(bytes.fromhex(wanted[2:])),
                    _decode_params,
                ),
                Call(morpho, _morpho["market"].encode(bytes.fromhex(wanted[2:])), _decode_market),
            ]
            if stored.last_update == 0 or math.market_id(*params) != wanted:
                raise NotAMarket(
                    f"no Morpho Blue market with id {wanted} at {morpho} (block {block.number})"
                )
            params_by_id[wanted] = params
            stored_by_id = {wanted: stored}
        else:
            logs = yield LogQuery(
                address=(morpho,),
                topics=("0x" + CREATE_MARKET.topic.hex(),),
                from_block=market.start_block,
            )
            for log in logs:
                if len(log.topics) > 1:
                    params_by_id["0x" + log.topics[1].hex()] = _decode_params(log.data)
            ids = sorted(params_by_id)
            stored_list = yield [
                Call(morpho, _morpho["market"].encode(bytes.fromhex(i[2:])), _decode_market)
                for i in ids
            ]
            stored_by_id = dict(zip(ids, stored_list, strict=True))
        state: MorphoState = yield from self._plan_valuation(
            market, morpho, wanted, params_by_id, stored_by_id, block
        )
        return replace(state, fee_recipient=to_checksum_address(fee_recipient))

    def _plan_valuation(
        self,
        market: MarketRef,
        morpho: str,
        wanted: str | None,
        params_by_id: dict[str, tuple[str, str, str, str, int]],
        stored_by_id: dict[str, math.Market],
        block: BlockRef,
    ) -> ReadPlan:
        """Oracle prices, IRM rates and token metadata in one round; then accrue off-chain."""
        ids = sorted(params_by_id)
        tokens = sorted({t for i in ids for t in params_by_id[i][:2]})
        calls: list[Call] = []
        for i in ids:
            _loan, _collateral, oracle, irm, _lltv = params_by_id[i]
            calls.append(Call(oracle, _price.encode(), _price.decode, allow_failure=True))
            if int(irm, 16):
                stored = stored_by_id[i]
                calls.append(
                    Call(
                        irm,
                        _borrow_rate_view.encode(params_by_id[i], stored.as_tuple()),
                        _borrow_rate_view.decode,
                        allow_failure=True,
                    )
                )
        for token in tokens:
            calls.append(Call(token, _symbol.encode(), _decode_symbol, allow_failure=True))
            calls.append(Call(token, _decimals.encode(), _decimals.decode, allow_failure=True))
        results = iter((yield calls))
        priced: dict[str, tuple[Any, Any]] = {}
        for i in ids:
            price = next(results)
            rate = next(results) if int(params_by_id[i][3], 16) else None
            priced[i] = (price, rate)
        meta = {t: (next(results), next(results)) for t in tokens}
        markets = [
            _valued_market(i, params_by_id[i], stored_by_id[i], *priced[i], meta, block, wanted)
            for i in ids
        ]
        return MorphoState(
            morpho=morpho,
            block=block,
            markets=tuple(markets),
            start_block=market.start_block,
            market_id=wanted,
        )

    def discovery_filter(self, market_state: MorphoState) -> tuple[list[str], list[Any]]:
        """Borrowers: `onBehalf` of Borrow and SupplyCollateral events (of one market if named)."""
        topics: list[Any] = [["0x" + _BORROW_TOPIC.hex(), "0x" + _SUPPLY_COLLATERAL_TOPIC.hex()]]
        if market_state.market_id:
            topics.append(market_state.market_id)
        return [market_state.morpho], topics

    def accounts_from_logs(self, logs: list[Log]) -> set[str]:
        return {account for _market, account in _pairs(logs)}

    def note_discovery_logs(self, market_state: MorphoState, logs: list[Log]) -> None:
        """Remember which markets each discovered account used, so reading positions asks only
        for those (not every market times every account)."""
        for market_id, account in _pairs(logs):
            market_state.account_markets.setdefault(account, set()).add(market_id)

    def discovery_notes(self, market_state: MorphoState) -> dict[str, set[str]]:
        return market_state.account_markets

    def adopt_discovery_notes(self, market_state: MorphoState, notes: dict[str, set[str]]) -> None:
        """Share ``notes`` (kept by the caller across blocks): later notes land in it too."""
        object.__setattr__(market_state, "account_markets", notes)

    def plan_positions(
        self, market_state: MorphoState, accounts: list[str], block: BlockRef
    ) -> ReadPlan:
        states = yield from self.plan_account_states(
            market_state, accounts, block, market_state.priced_markets
        )
        return self.positions_from_states(market_state, states, block)

    def plan_account_states(
        self,
        market_state: MorphoState,
        accounts: list[str],
        block: BlockRef,
        markets: tuple[MorphoMarket, ...] | None = None,
    ) -> ReadPlan:
        """`position(id, account)` of each account in each market its discovery logs name (all
        markets, or `markets`, when none are noted): what Morpho keeps per position."""
        pairs: list[tuple[MorphoMarket, str]] = []
        for account in accounts:
            account = to_checksum_address(account)
            used = market_state.account_markets.get(account)
            pairs += [
                (m, account)
                for m in (market_state.markets if markets is None else markets)
                if used is None or m.id in used
            ]
        raw = yield [_position_call(market_state.morpho, m.id, a) for m, a in pairs]
        return [
            MorphoPositionState(m.id, account, supply, borrow, collateral)
            for (m, account), (supply, borrow, collateral) in zip(pairs, raw, strict=True)
        ]

    def positions_from_states(
        self, market_state: MorphoState, states: list[MorphoPositionState], block: BlockRef
    ) -> list[Position]:
        """The positions (with collateral or debt) of kept states in priced markets the
        account's discovery logs name, valued at the market state's block."""
        priced = {m.id: m for m in market_state.priced_markets}
        positions = []
        for s in states:
            m = priced.get(s.market_id)
            used = market_state.account_markets.get(s.account)
            if m is None or (used is not None and m.id not in used):
                continue
            if s.borrow_shares or s.collateral:
                positions.append(
                    self.position(market_state, m, s.account, s.borrow_shares, s.collateral, block)
                )
        return positions

    def position(
        self,
        market_state: MorphoState,
        m: MorphoMarket,
        account: str,
        borrow_shares: int,
        collateral: int,
        block: BlockRef,
    ) -> Position:
        """One (market, account) the contract's way; figures in raw loan-token units."""
        price = m.price if m.price is not None else 0
        acc = m.accrued
        borrowed = math.borrowed_assets(borrow_shares, acc)
        value = math.collateral_value(collateral, price)
        limit = math.max_borrow(collateral, price, m.lltv)
        healthy = math.is_healthy(collateral, borrow_shares, acc, price, m.lltv)
        lif = m.liquidation_incentive_factor
        flip = math.liquidation_price(collateral, borrowed, m.lltv)
        full = math.full_liquidation(collateral, borrow_shares, acc, price, m.lltv)
        lltv_bps = m.lltv // 10**14
        per_whole = 10**m.collateral_decimals
        assets = []
        if collateral:
            assets.append(
                AssetPosition(
                    asset=m.collateral_token,
                    symbol=m.collateral_symbol,
                    decimals=m.collateral_decimals,
                    price_base=price * per_whole // math.ORACLE_PRICE_SCALE,
                    collateral_raw=collateral,
                    debt_raw=0,
                    collateral_base=value,
                    debt_base=0,
                    collateral_enabled=True,
                    liquidation_threshold_bps=lltv_bps,
                    liquidation_price_base=None
                    if flip is None
                    else flip * per_whole // math.ORACLE_PRICE_SCALE,
                )
            )
        if borrow_shares:
            assets.append(
                AssetPosition(
                    asset=m.loan_token,
                    symbol=m.loan_symbol,
                    decimals=m.loan_decimals,
                    price_base=10**m.loan_decimals,
                    collateral_raw=0,
                    debt_raw=borrowed,
                    collateral_base=0,
                    debt_base=borrowed,
                    collateral_enabled=False,
                    liquidation_threshold_bps=0,
                )
            )
        return Position(
            protocol=PROTOCOL,
            market=m.id,
            account=account,
            block=block,
            health_factor=math.health_factor(collateral, borrow_shares, acc, price, m.lltv),
            liquidatable=not healthy,
            total_collateral_base=value,
            total_debt_base=borrowed,
            available_borrows_base=max(limit - borrowed, 0),
            liquidation_threshold_bps=lltv_bps,
            ltv_bps=lltv_bps,
            base_currency_decimals=m.loan_decimals,
            assets=tuple(assets),
            terms=RiskTerms(
                liquidation_bonus={m.collateral_token.lower(): (lif - math.WAD) / math.WAD},
                close_factor_rule=CloseFactorRule.FULL,
                interest=m.interest_rates,
            ),
            version=market_state.version,
            base_currency=m.loan_symbol,
            market_label=m.label,
            extra={
                "version": market_state.version,
                "morpho": market_state.morpho,
                "market_label": m.label,
                "base_currency": m.loan_symbol,
                "lltv": m.lltv,
                "oracle": m.oracle,
                "oracle_price": price,
                "liquidation_oracle_price": flip,
                "liquidation_incentive_factor": lif,
                "liquidation_bonus": {m.collateral_token.lower(): (lif - math.WAD) / math.WAD},
                "close_factor_rule": "FULL",
                "bad_debt_if_fully_liquidated": full.bad_debt_assets,
                "borrow_shares": borrow_shares,
                "max_borrow": limit,
            },
        )

    def liquidation_quote(
        self,
        market_state: MorphoState,
        position: Position,
        collateral_asset: str,
        debt_asset: str,
        *,
        prices: dict[str, int] | None = None,
        health_factor: int | None = None,
    ) -> LiquidationQuote | None:
        """A full `liquidate` of the position (Morpho has no close factor): all borrow shares
        repaid, or all collateral seized when it cannot cover debt plus incentive (then the rest
        is bad debt, realised in the same call), exactly as the contract computes it on the
        accrued market. `prices` (collateral -> loan-token units per whole collateral token)
        replaces the oracle's price; None when the position is healthy at that price."""
        m = next((x for x in market_state.priced_markets if x.id == position.market), None)
        if m is None or m.price is None:
            return None
        if collateral_asset.lower() != m.collateral_token.lower():
            return None
        if debt_asset.lower() != m.loan_token.lower():
            return None
        collateral = next((a.collateral_raw for a in position.assets if a.collateral_raw), 0)
        shares = int(position.extra.get("borrow_shares", 0))
        override = {k.lower(): v for k, v in (prices or {}).items()}
        price = m.price
        if m.collateral_token.lower() in override:
            price = override[m.collateral_token.lower()] * math.ORACLE_PRICE_SCALE
            price //= 10**m.collateral_decimals
        if shares == 0 or math.is_healthy(collateral, shares, m.accrued, price, m.lltv):
            return None
        full = math.full_liquidation(collateral, shares, m.accrued, price, m.lltv)
        if full.seized_assets == 0 or full.repaid_assets == 0:
            return None
        by_seizing = full.seized_assets == collateral and full.repaid_shares < shares
        args = (
            {"seized_assets": collateral, "repaid_shares": 0}
            if by_seizing
            else {"seized_assets": 0, "repaid_shares": shares}
        )
        return LiquidationQuote(
            collateral_asset=m.collateral_token,
            debt_asset=m.loan_token,
            debt_to_cover_raw=full.repaid_assets,
            collateral_seized_raw=full.seized_assets,
            protocol_fee_raw=0,
            bonus=(m.liquidation_incentive_factor - math.WAD) / math.WAD,
            close_factor=1.0,
            bad_debt_raw=full.bad_debt_assets,
            call_args=args,
            gas_units=LIQUIDATION_GAS,
        )


def _pairs(logs: list[Log]) -> list[tuple[str, str]]:
    """(market id, onBehalf) of each Borrow / SupplyCollateral log."""
    out = []
    for log in logs:
        if len(log.topics) < 3:
            continue
        if log.topics[0] == _BORROW_TOPIC:  # Borrow(id, caller, onBehalf indexed, receiver indexed)
            who = log.topics[2]
        elif log.topics[0] == _SUPPLY_COLLATERAL_TOPIC and len(log.topics) > 3:
            who = log.topics[3]  # SupplyCollateral(id, caller indexed, onBehalf indexed, assets)
        else:
            continue
        out.append(("0x" + log.topics[1].hex(), str(to_checksum_address(who[-20:]))))
    return out


__all__ = [
    "PROTOCOL",
    "ZERO_ADDRESS",
    "ZERO_ID",
    "MorphoBlueAdapter",
    "MorphoMarket",
    "MorphoPositionState",
    "MorphoState",
]
