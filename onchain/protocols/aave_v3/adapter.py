"""Aave V3 adapter: plans the reads of a market and its accounts at one block, and turns the
results into protocol-neutral positions with health computed by `math` exactly as the Pool does.

Market version: the Pool's `POOL_REVISION` chooses the rules (`rules.rules_for`: 3.0.2, 3.1 ...
3.6); an unknown revision is refused. The adapter reads what that release has and nothing it
lacks, and records the release so a report says which rules were applied."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

from eth_utils import to_checksum_address

from onchain.errors import NotAMarket
from onchain.gc_pause import without_cycle_collection as _without_cycle_collection
from onchain.model import CloseFactorRule, DetailColumn, LiquidationHold, RiskTerms
from onchain.protocols.aave_v3 import math
from onchain.protocols.aave_v3.liquidation_price import (
    PricedAsset,
    liquidation_price,
    priced_assets,
)
from onchain.protocols.aave_v3.rules import V3_0_2, AaveRules, rules_for
from onchain.protocols.base import (
    AssetPosition,
    LiquidationQuote,
    MarketRef,
    MarketSnapshot,
    Position,
    ReadPlan,
    ReserveSnapshot,
    checksummed,
)
from onchain.rpc.abi import event, function
from onchain.rpc.calls import Call
from onchain.rpc.client import BlockRef
from onchain.rpc.logs import Log

PROTOCOL = "aave-v3"
ABI = "aave_v3"
# gas of one Pool.liquidationCall (receiveAToken=false), measured on the devnet (3.0.2; 3.6 uses
# 340-370k): tests/cli/test_targets.py and test_targets_aave36.py check real calls stay near it
LIQUIDATION_GAS = 400_000
# GHO on Ethereum: its debt token had the stkAAVE interest discount until the 3.4 upgrade
GHO_TOKENS = frozenset({"0x40d16fc0246ad3160ccc09b8d0d3a2cd28ae6c2f"})
GHO_CAVEAT = (
    "GHO debt before Aave 3.3: the Pool repays up to the discounted GhoVariableDebtToken."
    "balanceOf, which can be below this quote's debt (the health factor is exact)"
)

_provider = {
    n: function(ABI, "PoolAddressesProvider", n)
    for n in ("getPool", "getPriceOracle", "getMarketId")
}
_pool = {
    n: function(ABI, "Pool", n)
    for n in (
        "getReservesList",
        "getReserveData",
        "getUserConfiguration",
        "getUserEMode",
        "getEModeCategoryData",
        "getEModeCategoryCollateralConfig",
        "getEModeCategoryLabel",
        "getEModeCategoryCollateralBitmap",
        "getEModeCategoryBorrowableBitmap",
        "getEModeCategoryLtvzeroBitmap",
        "getVirtualUnderlyingBalance",
        "getLiquidationGracePeriod",
        "getReserveDeficit",
        "getReserveNormalizedIncome",
        "getReserveNormalizedVariableDebt",
        "POOL_REVISION",
        "ADDRESSES_PROVIDER",
    )
}
_oracle = {
    n: function(ABI, "AaveOracle", n)
    for n in ("getAssetPrice", "BASE_CURRENCY_UNIT", "getSourceOfAsset")
}
_balance_of = function(ABI, "ERC20", "balanceOf")
_scaled_balance_of = function(ABI, "ScaledBalanceToken", "scaledBalanceOf")
_stable_balance_of = function(ABI, "StableDebtToken", "balanceOf")
_total_supply = function(ABI, "StableDebtToken", "totalSupply")
_symbol = function(ABI, "ERC20", "symbol")
BORROW_EVENT = event(ABI, "Pool", "Borrow")


@dataclass(frozen=True)
class AaveReserve:
    asset: str
    symbol: str
    reserve_id: int
    config: math.ReserveConfiguration
    atoken: str
    stable_debt_token: str
    variable_debt_token: str
    price_base: int
    normalized_income_ray: int
    normalized_debt_ray: int
    has_stable_debt: bool
    available_liquidity_raw: int = (
        0  # underlying held by the aToken: what can be withdrawn/borrowed
    )
    total_debt_raw: int = 0
    price_feed: str | None = None  # the AaveOracle source (a Chainlink-style feed)
    deficit_raw: int = 0  # 3.3+: Pool.getReserveDeficit, bad debt not yet covered
    liquidation_grace_until: int = 0  # 3.1+: no liquidation with this reserve until after it
    # getReserveData's currentLiquidityRate / currentVariableBorrowRate: ray, per year
    liquidity_rate_ray: int = 0
    variable_borrow_rate_ray: int = 0

    @property
    def utilization(self) -> float:
        total = self.available_liquidity_raw + self.total_debt_raw
        return self.total_debt_raw / total if total else 0.0

    @property
    def interest_rates(self) -> tuple[float, float]:
        """(supply, variable borrow) ln growth per second of a unit at the stored rates: the
        income index grows linearly and the debt index compounded at rate / year, so both grow
        at rate / RAY / SECONDS_PER_YEAR per second at this instant."""
        per_second = math.RAY * math.SECONDS_PER_YEAR
        return (
            self.liquidity_rate_ray / per_second,
            self.variable_borrow_rate_ray / per_second,
        )


@dataclass(frozen=True)
class AaveMarketState:
    addresses_provider: str
    pool: str
    oracle: str
    market_id: str
    pool_revision: int | None
    version: str
    base_currency_unit: int
    block: BlockRef
    reserves: tuple[AaveReserve, ...]
    emode_categories: dict[int, math.EModeCategory] = field(default_factory=dict)
    emode_prices: dict[int, int] = field(default_factory=dict)
    start_block: int = 0
    rules: AaveRules = V3_0_2

    @cached_property
    def base_currency_decimals(self) -> int:
        return len(str(self.base_currency_unit)) - 1

    @cached_property
    def by_asset(self) -> dict[str, AaveReserve]:
        """The reserves by asset address, built once per state (every position looks up its
        assets here)."""
        return {r.asset: r for r in self.reserves}

    @cached_property
    def interest_rates(self) -> dict[str, tuple[float, float]]:
        """Asset (lower-case) -> (supply, borrow) ln growth per second: `RiskTerms.interest`,
        one mapping shared by every position of the state."""
        return {r.asset.lower(): r.interest_rates for r in self.reserves}

    @property
    def description(self) -> str:
        """How a scan's title names the market."""
        return f"market {self.addresses_provider}"


def _decode_string(data: bytes) -> str:
    try:
        return str(_symbol.decode(data))
    except Exception:  # non-standard tokens (bytes32 symbols): show the address instead
        return ""


@dataclass(frozen=True)
class AaveAccountState:
    """What the Pool keeps for one account: the configuration bitmap (collateral and borrowing
    bits per reserve), the eMode category and, per (reserve id, "a"|"v"|"s"), the scaled aToken
    balance, the scaled variable debt and the stable debt balance of the reserves the bitmap
    marks. Only events change it (Supply, Borrow, Mint, BalanceTransfer ...), so a position is
    recomputed exactly from it and the market's indexes and prices at any later block."""

    account: str
    user_configuration: int
    emode: int
    balances: dict[tuple[int, str], int]

    def rows(self) -> list[tuple[str, int, str, int]]:
        """(account, reserve id, kind, value): one plain row per kept balance, for a store."""
        return [(self.account, rid, kind, v) for (rid, kind), v in sorted(self.balances.items())]


class AaveV3Adapter:
    """Aave V3 and its forks (a fork is config plus a version, not new code)."""

    name = PROTOCOL
    # the account's eMode category (0: none), in every position's extra
    detail_columns = (DetailColumn("emode_category", "eMode"),)

    def plan_market(self, market: MarketRef, block: BlockRef) -> ReadPlan:
        provider = to_checksum_address(market.address)
        pool_addr, oracle_addr, market_id = yield [
            Call(
                provider,
                _provider["getPool"].encode(),
                _provider["getPool"].decode,
                allow_failure=True,
            ),
            Call(
                provider,
                _provider["getPriceOracle"].encode(),
                _provider["getPriceOracle"].decode,
                allow_failure=True,
            ),
            Call(
                provider,
                _provider["getMarketId"].encode(),
                _provider["getMarketId"].decode,
                allow_failure=True,
            ),
        ]
        if pool_addr is None or oracle_addr is None or int(pool_addr, 16) == 0:
            raise NotAMarket(
                f"{provider} is not an Aave V3 PoolAddressesProvider (getPool/getPriceOracle failed)"
            )
        pool = to_checksum_address(pool_addr)
        oracle = to_checksum_address(oracle_addr)
        reserves_list, revision, unit, back = yield [
            Call(
                pool,
                _pool["getReservesList"].encode(),
                _pool["getReservesList"].decode,
                allow_failure=True,
            ),
            Call(
                pool,
                _pool["POOL_REVISION"].encode(),
                _pool["POOL_REVISION"].decode,
                allow_failure=True,
            ),
            Call(
                oracle,
                _oracle["BASE_CURRENCY_UNIT"].encode(),
                _oracle["BASE_CURRENCY_UNIT"].decode,
                allow_failure=True,
            ),
            Call(
                pool,
                _pool["ADDRESSES_PROVIDER"].encode(),
                _pool["ADDRESSES_PROVIDER"].decode,
                allow_failure=True,
            ),
        ]
        if (
            reserves_list is None
            or unit is None
            or back is None
            or to_checksum_address(back) != provider
        ):
            raise NotAMarket(f"{provider} does not lead to an Aave V3 Pool and AaveOracle")
        rev = int(revision) if revision is not None else None
        rules = rules_for(rev, market.version, market=provider)
        assets = [to_checksum_address(a) for a in reserves_list]
        calls: list[Call] = []
        for asset in assets:
            calls += [
                *_reserve_state_calls(pool, oracle, asset),
                Call(asset, _symbol.encode(), _decode_string, allow_failure=True),
            ]
        results = yield calls
        raw_reserves = []
        for i, asset in enumerate(assets):
            data, income, debt, price, symbol = results[5 * i : 5 * i + 5]
            raw_reserves.append((asset, data, income, debt, price, symbol or asset[:10]))
        per_reserve = [
            _reserve_calls(pool, oracle, rules, *_reserve_tokens(r[0], r[1])) for r in raw_reserves
        ]
        supplies = yield [call for calls in per_reserve for call in calls]
        reserves = []
        cursor = 0
        for raw, calls in zip(raw_reserves, per_reserve, strict=True):
            values = supplies[cursor : cursor + len(calls)]
            cursor += len(calls)
            reserves.append(_build_reserve(rules, *raw, values))
        reserves.sort(key=lambda r: r.reserve_id)
        # 3.0.2/3.1: the categories the reserves name; 3.2+ has no such list (a reserve may be
        # in several): categories are read when an account is found in one (plan_positions)
        category_ids = (
            []
            if rules.emode_bitmaps
            else sorted({r.config.emode_category for r in reserves if r.config.emode_category})
        )
        categories: dict[int, math.EModeCategory] = {}
        emode_prices: dict[int, int] = {}
        yield from _load_categories(pool, oracle, rules, category_ids, categories, emode_prices)
        return AaveMarketState(
            addresses_provider=provider,
            pool=pool,
            oracle=oracle,
            market_id=str(market_id or ""),
            pool_revision=rev,
            version=rules.version,
            base_currency_unit=int(unit),
            block=block,
            reserves=tuple(reserves),
            emode_categories=categories,
            emode_prices=emode_prices,
            start_block=market.start_block,
            rules=rules,
        )

    def plan_market_snapshot(self, market_state: AaveMarketState, block: BlockRef) -> ReadPlan:
        """Per reserve: oracle price, indexes, available liquidity (underlying held by the
        aToken, as V3.0 counts it) and total debt, all read with the market state at this
        block: nothing more to read."""
        yield []
        reserves = tuple(
            ReserveSnapshot(
                asset=r.asset,
                symbol=r.symbol,
                decimals=r.config.decimals,
                price_base=r.price_base,
                supply_index=r.normalized_income_ray,
                borrow_index=r.normalized_debt_ray,
                available_liquidity_raw=r.available_liquidity_raw,
                total_debt_raw=r.total_debt_raw,
                utilization=r.utilization,
                extra={
                    "ltv_bps": r.config.ltv,
                    "liquidation_threshold_bps": r.config.liquidation_threshold,
                    "liquidation_bonus_bps": r.config.liquidation_bonus,
                    "emode_category": (
                        None if market_state.rules.emode_bitmaps else r.config.emode_category
                    ),
                    "price_feed": r.price_feed,
                    "pool_revision": market_state.pool_revision,
                    "deficit_raw": r.deficit_raw,
                    "liquidation_grace_until": r.liquidation_grace_until,
                },
            )
            for r in market_state.reserves
        )
        return MarketSnapshot(
            version=market_state.version,
            base_currency_decimals=market_state.base_currency_decimals,
            addresses={
                "addresses_provider": market_state.addresses_provider,
                "pool": market_state.pool,
                "oracle": market_state.oracle,
            },
            reserves=reserves,
        )

    def discovery_filter(self, market_state: AaveMarketState) -> tuple[list[str], list[Any]]:
        """Borrowers: every `onBehalfOf` of a Borrow event (the third topic)."""
        return [market_state.pool], ["0x" + BORROW_EVENT.topic.hex()]

    def accounts_from_logs(self, logs: list[Log]) -> set[str]:
        return {to_checksum_address(log.topics[2][-20:]) for log in logs if len(log.topics) > 2}

    def plan_positions(
        self, market_state: AaveMarketState, accounts: list[str], block: BlockRef
    ) -> ReadPlan:
        states = yield from self.plan_account_states(market_state, accounts, block)
        return self.positions_from_states(market_state, states, block)

    def plan_account_states(
        self, market_state: AaveMarketState, accounts: list[str], block: BlockRef
    ) -> ReadPlan:
        """What the Pool keeps per account (configuration bitmap, eMode, scaled balances): the
        inputs `position` recomputes from. Reads the aToken balance of every reserve the bitmap
        marks as collateral (also where the threshold is 0 today, so a later threshold change
        needs no read) and the stable debt only where the reserve has any. Loads the eMode
        categories these accounts are in (read at this block) into the market state."""
        pool = market_state.pool
        get_config, get_emode = _pool["getUserConfiguration"], _pool["getUserEMode"]
        calls: list[Call] = []
        for account in accounts:
            calls.append(Call(pool, get_config.encode(account), _decode_user_config))
            calls.append(Call(pool, get_emode.encode(account), get_emode.decode))
        first = yield calls
        user_configs = first[0::2]
        emodes = [int(e) for e in first[1::2]]
        # the categories these accounts are in, read at this block (any category, loaded or not)
        fresh: dict[int, math.EModeCategory] = {}
        prices: dict[int, int] = {}
        yield from _load_categories(
            pool,
            market_state.oracle,
            market_state.rules,
            sorted({e for e in emodes if e}),
            fresh,
            prices,
        )
        market_state.emode_categories.update(fresh)
        market_state.emode_prices.update(prices)
        balance_calls: list[Call] = []
        wanted: list[list[tuple[int, str]]] = []
        for account, user_config in zip(accounts, user_configs, strict=True):
            keys: list[tuple[int, str]] = []
            for reserve in market_state.reserves:
                rid = reserve.reserve_id
                tokens = []
                if math.is_using_as_collateral(user_config, rid):
                    tokens.append(("a", reserve.atoken, _scaled_balance_of))
                if math.is_borrowing(user_config, rid):
                    tokens.append(("v", reserve.variable_debt_token, _scaled_balance_of))
                    if reserve.has_stable_debt:
                        tokens.append(("s", reserve.stable_debt_token, _stable_balance_of))
                for kind, token, fn in tokens:
                    keys.append((rid, kind))
                    balance_calls.append(Call(token, fn.encode(account), fn.decode))
            wanted.append(keys)
        balances = iter((yield balance_calls))
        return [
            AaveAccountState(
                account=to_checksum_address(account),
                user_configuration=int(user_config),
                emode=emode,
                balances={key: int(next(balances)) for key in keys},
            )
            for account, user_config, emode, keys in zip(
                accounts, user_configs, emodes, wanted, strict=True
            )
        ]

    def positions_from_states(
        self,
        market_state: AaveMarketState,
        states: list[AaveAccountState],
        block: BlockRef,
        *,
        flip_prices: bool = True,
    ) -> list[Position]:
        """Every account's position recomputed from its kept state and the market at `block`:
        the balances GenericLogic reads under today's configuration (an aToken balance only
        where the reserve's threshold counts it, stable debt only where the reserve has any).
        `flip_prices`: as `position`'s. Each Position equals `position`'s for the account, field
        for field (`_BookPositions` builds them with the book's constants taken once)."""
        build = _BookPositions(self, market_state, block, flip_prices)
        with _without_cycle_collection():
            return [build.position(state) for state in states]

    def position(
        self,
        market_state: AaveMarketState,
        account: str,
        user_config: int,
        emode: int,
        balances: dict[tuple[int, str], int],
        block: BlockRef,
        *,
        flip_prices: bool = True,
    ) -> Position:
        """One account's position, the Pool's way. ``flip_prices=False`` leaves each asset's
        ``liquidation_price_base`` None: those searches are most of the cost, and a caller that
        re-evaluates a book block after block for its health factors alone (the backtest) skips
        them."""
        data = account_data(market_state, user_config, emode, balances)
        category = market_state.emode_categories.get(emode)
        by_asset = market_state.by_asset
        flips = (
            _liquidation_prices(data, by_asset, market_state.rules)
            if flip_prices
            else [None] * len(data.assets)
        )
        assets = []
        for part, flip in zip(data.assets, flips, strict=True):
            reserve = by_asset[part.asset]
            assets.append(
                AssetPosition(
                    asset=part.asset,
                    symbol=reserve.symbol,
                    decimals=reserve.config.decimals,
                    price_base=part.price_base,
                    collateral_raw=part.collateral_amount_raw,
                    debt_raw=part.debt_amount_raw,
                    collateral_base=part.collateral_base,
                    debt_base=part.debt_base,
                    collateral_enabled=part.counts_as_collateral,
                    liquidation_threshold_bps=part.liquidation_threshold_used,
                    liquidation_price_base=flip,
                )
            )
        has_debt = data.total_debt_base > 0
        below = has_debt and math.is_liquidatable(data.health_factor)
        hold = liquidation_hold(market_state, data.assets, block.timestamp) if below else None
        used = [
            r for r in market_state.reserves if math.reserve_bits(user_config, r.reserve_id) & 2
        ]
        # what the risk module needs to price a liquidation of this position
        terms = RiskTerms(
            liquidation_bonus={
                r.asset: (_bonus_bps(market_state.rules, r, emode, category) - 10_000) / 10_000
                for r in used
            },
            close_factor_rule=CloseFactorRule[market_state.rules.close_factor_rule],
            protocol_fee={r.asset: r.config.liquidation_protocol_fee / 10_000 for r in used},
            interest=market_state.interest_rates,
        )
        return Position(
            protocol=PROTOCOL,
            market=market_state.addresses_provider,
            account=checksummed(account),
            block=block,
            health_factor=data.health_factor if has_debt else None,
            liquidatable=below and hold is None,
            total_collateral_base=data.total_collateral_base,
            total_debt_base=data.total_debt_base,
            available_borrows_base=data.available_borrows_base,
            liquidation_threshold_bps=data.current_liquidation_threshold,
            ltv_bps=data.ltv,
            base_currency_decimals=market_state.base_currency_decimals,
            assets=tuple(assets),
            terms=terms,
            version=market_state.version,
            liquidation_hold=hold,
            extra=position_extra(market_state, emode, user_config, terms, balances, hold),
        )

    def liquidation_quote(
        self,
        market_state: AaveMarketState,
        position: Position,
        collateral_asset: str,
        debt_asset: str,
        *,
        prices: dict[str, int] | None = None,
        health_factor: int | None = None,
        liquidator: str | None = None,
    ) -> LiquidationQuote | None:
        """The largest single `liquidationCall` seizing `collateral_asset` for `debt_asset` that
        the Pool accepts, under the release's rules (`math.execute_liquidation_call`): 3.0.2's
        50%/100% of the reserve debt, or 3.3+'s whole reserve debt / 50% of the position,
        shrunk below the cap when the cap would revert `MustNotLeaveDust`. `prices` (asset ->
        base units) replace the oracle's, e.g. the pending prices: the account is then
        recomputed at them; `health_factor` (wad) replaces the resulting HF. None when this pair
        cannot be liquidated (healthy, inactive/paused reserve, grace period, the liquidator is
        the borrower from 3.4, or every amount would revert)."""
        rules = market_state.rules
        by_asset = {r.asset.lower(): r for r in market_state.reserves}
        held = {a.asset.lower(): a for a in position.assets}
        coll_r, debt_r = by_asset.get(collateral_asset.lower()), by_asset.get(debt_asset.lower())
        coll_p, debt_p = held.get(collateral_asset.lower()), held.get(debt_asset.lower())
        if coll_r is None or debt_r is None or coll_p is None or debt_p is None:
            return None
        if (
            rules.no_self_liquidation
            and liquidator
            and liquidator.lower() == position.account.lower()
        ):
            return None
        if not coll_p.collateral_enabled or coll_p.collateral_raw == 0:
            return None
        if pair_refusal(rules, coll_r, debt_r, market_state.block.timestamp) is not None:
            return None
        emode = int(position.extra.get("emode_category", 0))
        category = market_state.emode_categories.get(emode)
        coll_src, debt_src, bonus = math.liquidation_configuration(
            emode,
            category,
            coll_r.config,
            coll_r.asset,
            debt_r.asset,
            collateral_reserve_id=coll_r.reserve_id,
            rules=rules,
        )
        override = {k.lower(): v for k, v in (prices or {}).items()}
        data = account_data(
            market_state,
            int(position.extra["user_configuration"]),
            emode,
            scaled_balances(position),
            override,
        )
        hf = data.health_factor if health_factor is None else health_factor
        parts = {p.asset.lower(): p for p in data.assets}
        coll_part, debt_part = parts[coll_r.asset.lower()], parts[debt_r.asset.lower()]
        if debt_part.debt_amount_raw == 0 or not math.is_liquidatable(hf):
            return None

        def price(reserve: AaveReserve, source: str) -> int:
            if source != reserve.asset:  # the eMode category's price source (3.0.2/3.1)
                return market_state.emode_prices[emode]
            return override.get(reserve.asset.lower(), reserve.price_base)

        scaled = scaled_balances(position)
        collateral = math.LiquidationSide(
            coll_part.collateral_amount_raw,
            price(coll_r, coll_src),
            coll_r.config.decimals,
            scaled.get((coll_r.reserve_id, "a"), 0),
            coll_r.normalized_income_ray,
        )
        debt = math.LiquidationSide(
            debt_part.debt_amount_raw, price(debt_r, debt_src), debt_r.config.decimals
        )
        other_debts = {
            p.asset: p.debt_amount_raw
            for p in data.assets
            if p.debt_amount_raw
            and p.asset != debt_r.asset
            and by_asset[p.asset.lower()].config.active
        }

        def outcome(debt_to_cover: int) -> math.LiquidationOutcome:
            return math.execute_liquidation_call(
                health_factor=hf,
                total_collateral_base=data.total_collateral_base,
                total_debt_base=data.total_debt_base,
                collateral=collateral,
                debt=debt,
                liquidation_bonus=bonus,
                liquidation_protocol_fee=coll_r.config.liquidation_protocol_fee,
                debt_to_cover=debt_to_cover,
                debt_asset=debt_r.asset,
                other_debts=other_debts,
                rules=rules,
            )

        try:
            result = outcome(math.UINT256_MAX)
            cover = result.max_liquidatable_debt
        except math.LiquidationReverted as exc:
            if exc.reason != "MustNotLeaveDust":
                return None
            # the cap leaves dust: the largest smaller amount that leaves enough of both
            cover = _largest_accepted(
                outcome,
                math.close_factor_max_debt_3_3(hf, data.total_debt_base, collateral, debt, rules),
            )
            if cover == 0:
                return None
            result = outcome(cover)
        if result.debt_repaid == 0 or result.collateral_to_liquidator == 0:
            return None
        if result.collateral_to_liquidator + result.protocol_fee >= collateral.balance:
            limited_by = "collateral"
        elif cover < result.max_liquidatable_debt:
            limited_by = "dust"
        elif result.max_liquidatable_debt >= debt.balance:
            limited_by = "debt"
        else:
            limited_by = "close_factor"
        if rules.liquidation_33 and cover == debt.balance:
            cover = math.UINT256_MAX  # the whole debt, including interest accrued until mined
        return LiquidationQuote(
            collateral_asset=coll_r.asset,
            debt_asset=debt_r.asset,
            debt_to_cover_raw=result.debt_repaid,
            collateral_seized_raw=result.collateral_to_liquidator,
            protocol_fee_raw=result.protocol_fee,
            bonus=(bonus - 10_000) / 10_000,
            close_factor=(
                result.max_liquidatable_debt / debt.balance
                if rules.liquidation_33
                else math.close_factor(hf) / 10_000
            ),
            bad_debt_raw=result.deficit.get(debt_r.asset, 0),
            bad_debt_by_asset=dict(result.deficit),
            limited_by=limited_by,
            call_args={"debt_to_cover": cover},  # the Pool repays `debt_to_cover_raw` of it
            gas_units=LIQUIDATION_GAS,
            caveat=GHO_CAVEAT if gho_discount_applies(rules, debt_r.asset) else "",
        )


def gho_discount_applies(rules: AaveRules, debt_asset: str) -> bool:
    """Whether a liquidation repaying this asset takes its cap from GHO's discounted balanceOf
    (`math.gho_variable_debt_balance`), which the adapter does not read: the quote is flagged."""
    return rules.liquidation_debt_balance_of and debt_asset.lower() in GHO_TOKENS


def pair_refusal(
    rules: AaveRules, collateral: AaveReserve, debt: AaveReserve, block_timestamp: int
) -> LiquidationHold | None:
    """Why ValidationLogic.validateLiquidationCall refuses any call on this (collateral, debt)
    pair at a block with this timestamp, whatever the health factor, in its order: a reserve
    inactive, then paused, then (3.1+) a liquidation grace period running; None if none does."""
    pair = (collateral,) if collateral.asset == debt.asset else (collateral, debt)
    for reason, refused in (
        ("inactive", [r for r in pair if not r.config.active]),
        ("paused", [r for r in pair if r.config.paused]),
    ):
        if refused:
            return LiquidationHold(reason, None, tuple(r.asset for r in refused))
    if rules.grace_period:
        running = [
            r
            for r in pair
            if math.liquidation_grace_running(r.liquidation_grace_until, block_timestamp)
        ]
        if running:
            until = max(r.liquidation_grace_until for r in running)
            return LiquidationHold("grace_period", until, tuple(r.asset for r in running))
    return None


def liquidation_hold(
    market_state: AaveMarketState, parts: Sequence[math.AssetBreakdown], block_timestamp: int
) -> LiquidationHold | None:
    """For an account below the threshold: None when some (collateral, debt) pair it holds
    passes the reserve checks of validateLiquidationCall at this timestamp; else the refusal
    that ends first (a grace period), or the first one when none ends by itself."""
    by_asset = market_state.by_asset
    collaterals = [p for p in parts if p.counts_as_collateral and p.collateral_amount_raw]
    debts = [p for p in parts if p.debt_amount_raw]
    refusals = []
    for c in collaterals:
        for d in debts:
            refusal = pair_refusal(
                market_state.rules, by_asset[c.asset], by_asset[d.asset], block_timestamp
            )
            if refusal is None:
                return None
            refusals.append(refusal)
    timed = [r for r in refusals if r.until is not None]
    if timed:
        return min(timed, key=lambda r: r.until or 0)
    return refusals[0] if refusals else None


def _largest_accepted(outcome: Any, cap: int) -> int:
    """The largest debt_to_cover in [0, cap) the Pool accepts, 0 if none. Past the cap the
    MustNotLeaveDust test fails; below it the leftovers only grow as the amount shrinks, so the
    accepted amounts are a prefix and bisection finds its end."""

    def accepted(amount: int) -> bool:
        try:
            outcome(amount)
        except math.LiquidationReverted:
            return False
        return True

    lo, hi = 0, cap  # accepted(lo) or lo == 0; not accepted(hi)
    if not accepted(1):
        return 0
    lo = 1
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if accepted(mid):
            lo = mid
        else:
            hi = mid
    return lo


def scaled_balances(position: Position) -> dict[tuple[int, str], int]:
    """The scaled balances a Position keeps: (reserve id, "a"|"v"|"s") -> raw value."""
    return {
        (int(k.split(":")[0]), k.split(":")[1]): int(v)
        for k, v in position.extra["scaled_balances"].items()
    }


def account_data(
    market_state: AaveMarketState,
    user_config: int,
    emode: int,
    balances: dict[tuple[int, str], int],
    prices: dict[str, int] | None = None,
) -> math.UserAccountData:
    """`getUserAccountData` of one account under the market's rules; `prices` (lower-case
    asset -> base units) replace oracle prices."""
    return math.calculate_user_account_data(
        user_reserve_inputs(market_state, user_config, balances, prices),
        emode,
        market_state.emode_categories.get(emode),
        market_state.emode_prices.get(emode) if emode else None,
        market_state.rules,
    )


def user_reserve_inputs(
    market_state: AaveMarketState,
    user_config: int,
    balances: dict[tuple[int, str], int],
    prices: dict[str, int] | None = None,
) -> list[math.UserReserveInput]:
    """The per-reserve inputs of GenericLogic for one account: what its configuration bitmap
    marks, with the scaled balances read at the block."""
    inputs = []
    for reserve in market_state.reserves:
        rid = reserve.reserve_id
        bits = math.reserve_bits(user_config, rid)
        if not bits:
            continue
        inputs.append(
            math.UserReserveInput(
                asset=reserve.asset,
                reserve_id=rid,
                config=reserve.config,
                price_base=prices.get(reserve.asset.lower(), reserve.price_base)
                if prices
                else reserve.price_base,
                normalized_income_ray=reserve.normalized_income_ray,
                normalized_debt_ray=reserve.normalized_debt_ray,
                scaled_atoken_balance=balances.get((rid, "a"), 0),
                scaled_variable_debt=balances.get((rid, "v"), 0),
                stable_debt=balances.get((rid, "s"), 0),
                using_as_collateral=bool(bits & 2),
                borrowing=bool(bits & 1),
            )
        )
    return inputs


def health_after(
    market_state: AaveMarketState,
    position: Position,
    *,
    supply: dict[str, int] | None = None,
    repay: dict[str, int] | None = None,
) -> int:
    """The exact health factor (wad) right after supplying or repaying these raw amounts in the
    same block: the aToken mints `amount.rayDiv(index)` scaled units, the debt token burns
    `amount.rayDiv(index)` (both `rayDivFloor` from 3.5, TokenMath). Supplies only to assets
    already enabled as collateral (ValueError otherwise); repaying covers variable debt."""
    user_config = int(position.extra["user_configuration"])
    balances = scaled_balances(position)
    to_scaled = math.ray_div_floor if market_state.rules.directional_rounding else math.ray_div
    by_asset = {r.asset.lower(): r for r in market_state.reserves}
    for asset, amount in (supply or {}).items():
        reserve = by_asset[asset.lower()]
        rid = reserve.reserve_id
        if not math.is_using_as_collateral(user_config, rid):
            # Whether the supply turns collateral on depends on the account's existing aToken
            # balance (only a first supply does) and isolation mode: not predicted here.
            raise ValueError(f"{reserve.symbol} is not enabled as collateral for this account")
        balances[(rid, "a")] = balances.get((rid, "a"), 0) + to_scaled(
            amount, reserve.normalized_income_ray
        )
    for asset, amount in (repay or {}).items():
        reserve = by_asset[asset.lower()]
        rid = reserve.reserve_id
        scaled = balances.get((rid, "v"), 0) - to_scaled(amount, reserve.normalized_debt_ray)
        balances[(rid, "v")] = max(scaled, 0)
        if scaled <= 0 and balances.get((rid, "s"), 0) == 0:  # all debt of the asset repaid
            user_config &= ~(1 << (rid * 2))
    emode = int(position.extra.get("emode_category") or 0)
    return account_data(market_state, user_config, emode, balances).health_factor


def _bonus_bps(
    rules: AaveRules, reserve: AaveReserve, emode: int, category: math.EModeCategory | None
) -> int:
    """LiquidationLogic: the eMode bonus when the user's category holds the collateral (by the
    reserve's eMode bits before 3.2, by the category's collateral bitmap from 3.2)."""
    if category is None or emode == 0:
        return reserve.config.liquidation_bonus
    if rules.emode_bitmaps:
        if math.is_reserve_enabled_on_bitmap(category.collateral_bitmap, reserve.reserve_id):
            return category.liquidation_bonus
    elif reserve.config.emode_category == emode:
        return category.liquidation_bonus
    return reserve.config.liquidation_bonus


def _is_contract(address: str) -> bool:
    return int(address, 16) != 0


def _view(target: str, fn: Any, *args: Any, allow_failure: bool = False) -> Call:
    """One read of `fn` (an ABI function) on `target`."""
    return Call(target, fn.encode(*args), fn.decode, allow_failure=allow_failure)


def _reserve_state_calls(pool: str, oracle: str, asset: str) -> list[Call]:
    """getReserveData, the normalized income and debt, and the oracle price of one reserve."""
    return [
        _view(pool, _pool["getReserveData"], asset),
        _view(pool, _pool["getReserveNormalizedIncome"], asset),
        _view(pool, _pool["getReserveNormalizedVariableDebt"], asset),
        _view(oracle, _oracle["getAssetPrice"], asset),
    ]


def _reserve_tokens(asset: str, data: Any) -> tuple[str, str, str, str, bool]:
    """(asset, aToken, stable debt token, variable debt token, virtual accounting on) from
    `getReserveData`."""
    bitmap = data[0][0] if isinstance(data[0], tuple) else data[0]
    stable, variable, atoken = (to_checksum_address(a) for a in (data[9], data[10], data[8]))
    virtual = math.decode_reserve_configuration(bitmap).virtual_accounting
    return asset, atoken, stable, variable, virtual


def _build_reserve(
    rules: AaveRules,
    asset: str,
    data: Any,
    income: int,
    debt: int,
    price: int,
    symbol: str,
    values: list[Any],
) -> AaveReserve:
    """One reserve from `getReserveData`, the normalized indexes, the oracle price and the
    results of `_reserve_calls`."""
    stable_supply, variable_supply, available, source, deficit, grace = _reserve_values(
        rules, values
    )
    bitmap = data[0][0] if isinstance(data[0], tuple) else data[0]
    return AaveReserve(
        asset=asset,
        symbol=symbol,
        reserve_id=int(data[7]),
        config=math.decode_reserve_configuration(bitmap),
        atoken=to_checksum_address(data[8]),
        stable_debt_token=to_checksum_address(data[9]),
        variable_debt_token=to_checksum_address(data[10]),
        price_base=int(price),
        normalized_income_ray=int(income),
        normalized_debt_ray=int(debt),
        has_stable_debt=stable_supply > 0,
        available_liquidity_raw=int(available),
        total_debt_raw=int(stable_supply) + int(variable_supply),
        price_feed=to_checksum_address(source) if source else None,
        deficit_raw=int(deficit),
        liquidation_grace_until=int(grace),
        liquidity_rate_ray=int(data[2]),
        variable_borrow_rate_ray=int(data[4]),
    )


def _reserve_calls(
    pool: str,
    oracle: str,
    rules: AaveRules,
    asset: str,
    atoken: str,
    stable: str,
    variable: str,
    virtual_accounting: bool,
) -> list[Call]:
    """Per reserve, what this release has: debt supplies (stable only up to 3.1, and only when
    the token exists), available liquidity (the virtual balance from 3.1 where virtual accounting
    is on, else the underlying held by the aToken), the oracle source, deficit (3.3+) and the
    liquidation grace period (3.1+)."""
    calls = []
    if rules.stable_debt and _is_contract(stable):
        calls.append(Call(stable, _total_supply.encode(), _total_supply.decode))
    calls.append(Call(variable, _total_supply.encode(), _total_supply.decode))
    if rules.virtual_balance and virtual_accounting:
        get = _pool["getVirtualUnderlyingBalance"]
        calls.append(Call(pool, get.encode(asset), get.decode))
    else:
        calls.append(Call(asset, _balance_of.encode(atoken), _balance_of.decode))
    calls.append(
        Call(
            oracle,
            _oracle["getSourceOfAsset"].encode(asset),
            _oracle["getSourceOfAsset"].decode,
            allow_failure=True,
        )
    )
    if rules.liquidation_33:
        get = _pool["getReserveDeficit"]
        calls.append(Call(pool, get.encode(asset), get.decode))
    if rules.grace_period:
        get = _pool["getLiquidationGracePeriod"]
        calls.append(Call(pool, get.encode(asset), get.decode))
    return calls


def _reserve_values(rules: AaveRules, values: list[Any]) -> tuple[int, int, int, Any, int, int]:
    """(stable supply, variable supply, available, oracle source, deficit, grace until) from the
    results of `_reserve_calls`, 0 for what the release lacks."""
    it = iter(values)
    stable = next(it) if len(values) == _calls_per_reserve(rules) + 1 else 0
    variable, available, source = next(it), next(it), next(it)
    deficit = next(it) if rules.liquidation_33 else 0
    grace = next(it) if rules.grace_period else 0
    return int(stable), int(variable), int(available), source, int(deficit), int(grace)


def _calls_per_reserve(rules: AaveRules) -> int:
    """Calls of `_reserve_calls` without the stable supply."""
    return 3 + int(rules.liquidation_33) + int(rules.grace_period)


def _load_categories(
    pool: str,
    oracle: str,
    rules: AaveRules,
    category_ids: list[int],
    categories: dict[int, math.EModeCategory],
    emode_prices: dict[int, int],
) -> ReadPlan:
    """Read eMode categories into `categories` (and, 3.0.2/3.1, the prices of their price
    sources into `emode_prices`): getEModeCategoryData before 3.2; from 3.2 the collateral
    config, label and bitmaps (the ltvzero bitmap from 3.6)."""
    ids = [cid for cid in category_ids if cid not in categories]
    if not ids:
        return None
    fresh = _parse_categories(rules, ids, (yield _category_calls(pool, rules, ids)))
    categories.update(fresh)
    sourced = [c for c in fresh.values() if c.has_price_source]
    if sourced:
        prices = yield [_emode_price_call(oracle, c.price_source) for c in sourced]
        emode_prices.update({c.id: int(p) for c, p in zip(sourced, prices, strict=True)})
    return None


def _category_names(rules: AaveRules) -> list[str]:
    if not rules.emode_bitmaps:
        return ["getEModeCategoryData"]
    return [
        "getEModeCategoryCollateralConfig",
        "getEModeCategoryLabel",
        "getEModeCategoryCollateralBitmap",
        "getEModeCategoryBorrowableBitmap",
    ] + (["getEModeCategoryLtvzeroBitmap"] if rules.ltvzero_bitmap else [])


def _category_calls(pool: str, rules: AaveRules, ids: list[int]) -> list[Call]:
    """The reads of these eMode categories, `len(_category_names(rules))` per category."""
    return [
        Call(pool, _pool[n].encode(c), _pool[n].decode, allow_failure=n == "getEModeCategoryLabel")
        for c in ids
        for n in _category_names(rules)
    ]


def _emode_price_call(oracle: str, source: str) -> Call:
    return Call(oracle, _oracle["getAssetPrice"].encode(source), _oracle["getAssetPrice"].decode)


def _parse_categories(
    rules: AaveRules, ids: list[int], results: list[Any]
) -> dict[int, math.EModeCategory]:
    """The categories from the results of `_category_calls`."""
    out: dict[int, math.EModeCategory] = {}
    k = len(_category_names(rules))
    for i, cid in enumerate(ids):
        values = results[k * i : k * i + k]
        if not rules.emode_bitmaps:
            raw = values[0]
            ltv, lt, bonus, source, label = raw if len(raw) == 5 else raw[0]
            out[cid] = math.EModeCategory(cid, ltv, lt, bonus, to_checksum_address(source), label)
            continue
        config, label, collateral, borrowable, *ltvzero = values
        ltv, lt, bonus = config[0] if isinstance(config[0], tuple) else config
        out[cid] = math.EModeCategory(
            cid,
            int(ltv),
            int(lt),
            int(bonus),
            label=str(label or ""),
            collateral_bitmap=int(collateral),
            borrowable_bitmap=int(borrowable),
            ltvzero_bitmap=int(ltvzero[0]) if ltvzero else 0,
        )
    return out


def _decode_user_config(data: bytes) -> int:
    value = _pool["getUserConfiguration"].decode(data)
    return int(value[0] if isinstance(value, tuple) else value)


def _liquidation_prices(
    data: math.UserAccountData, reserves: dict[str, AaveReserve], rules: AaveRules
) -> list[int | None]:
    """Exact flip price per asset; None where an eMode price source overrides the asset's own
    oracle price (moving it then changes nothing) or where its price alone cannot liquidate."""
    if data.total_debt_base == 0:
        return [None] * len(data.assets)
    parts = priced_assets(data.assets, [reserves[a.asset].config.decimals for a in data.assets])
    return [
        None
        if part.price_base != reserves[part.asset].price_base
        else liquidation_price(parts, i, rules)
        for i, part in enumerate(data.assets)
    ]


def position_extra(
    market_state: AaveMarketState,
    emode: int,
    user_config: int,
    terms: RiskTerms,
    balances: dict[tuple[int, str], int],
    hold: LiquidationHold | None,
) -> dict[str, Any]:
    """A Position's JSON details, the same whichever path built it (`position`, the book's)."""
    return {
        "emode_category": emode,
        "version": market_state.version,
        "pool_revision": market_state.pool_revision,
        "user_configuration": user_config,
        # the risk terms, kept in the JSON details as before
        "liquidation_bonus": dict(terms.liquidation_bonus),
        "liquidation_protocol_fee": dict(terms.protocol_fee),
        "close_factor_rule": terms.close_factor_rule.name,
        # (reserve id, "a"|"v"|"s") -> scaled aToken / scaled variable debt / stable debt
        "scaled_balances": {f"{rid}:{kind}": v for (rid, kind), v in balances.items()},
        **({"liquidation_hold": hold.as_json()} if hold else {}),
    }


# Bounds under which GenericLogic's per-reserve products stay far inside uint256 (scaled balance
# · index < 2**228, amount · price < 2**220, Σ base · LT < 2**243), so `_BookPositions` may skip
# the contracts' overflow checks there; an account past them takes `position`'s checked math.
_BALANCE_BITS = 128
_PRICE_BITS = 80
_INDEX_BITS = 100
_MAX_DECIMALS = 60


@dataclass(frozen=True, slots=True)
class _BookReserve:
    """One reserve's constants at the block, taken once per book instead of once per account."""

    reserve: AaveReserve
    rid: int
    unit: int  # 10 ** decimals
    income: int
    debt_index: int
    counted: bool  # an aToken balance counts as collateral (LT != 0, or the 3.6 rule)
    stable: bool  # the reserve has stable debt: the account's stable balance is added
    checked: bool  # within the bounds above: the unchecked per-reserve math is exact


class _BookPositions:
    """`positions_from_states`' Positions, the same fields bit for bit as `position` gives for
    each account, built with what is constant across a book hoisted out of the per-account
    work: per-reserve constants, per-eMode prices/LTV/LT, the risk terms per (eMode, collateral
    set), and GenericLogic's loop over the reserves the bitmap marks without the intermediate
    dataclasses. Accounts past the bounds above, or whose eMode category is not loaded, take
    `position` itself (which also raises what the Pool would)."""

    def __init__(
        self,
        adapter: AaveV3Adapter,
        market_state: AaveMarketState,
        block: BlockRef,
        flip_prices: bool,
    ) -> None:
        self.adapter, self.market_state, self.block = adapter, market_state, block
        self.flip_prices = flip_prices
        rules = self.rules = market_state.rules
        self.reserves = [
            _BookReserve(
                reserve=r,
                rid=r.reserve_id,
                unit=10**r.config.decimals,
                income=r.normalized_income_ray,
                debt_index=r.normalized_debt_ray,
                counted=r.config.liquidation_threshold != 0 or rules.lt_zero_collateral,
                stable=r.has_stable_debt,
                checked=0 <= r.reserve_id < math.MAX_RESERVES_COUNT
                and r.config.decimals <= _MAX_DECIMALS
                and 0 <= r.price_base < 1 << _PRICE_BITS
                and 0 <= r.normalized_income_ray < 1 << _INDEX_BITS
                and 0 <= r.normalized_debt_ray < 1 << _INDEX_BITS,
            )
            for r in market_state.reserves
        ]
        self.by_id = {r.rid: r for r in self.reserves}
        ids = [r.rid for r in self.reserves]
        # bits are visited by ascending reserve id, as GenericLogic does; the balances are kept
        # in the market's order: both agree when the market lists its reserves by id
        self.ascending = ids == sorted(set(ids))
        self.collateral_mask = sum(2 << (2 * rid) for rid in set(ids))
        self.tables: dict[int, dict[int, tuple[int, int, int]] | None] = {}
        self.terms: dict[tuple[int, int], tuple[dict[str, float], dict[str, float]]] = {}

    @staticmethod
    def values(
        state: AaveAccountState, used: list[tuple[_BookReserve, int]]
    ) -> dict[tuple[int, str], int]:
        """The balances GenericLogic reads under today's configuration, in `used`'s order."""
        balances = state.balances
        values: dict[tuple[int, str], int] = {}
        for r, bits in used:
            if r.counted and bits & 2:
                values[(r.rid, "a")] = balances.get((r.rid, "a"), 0)
            if bits & 1:
                values[(r.rid, "v")] = balances.get((r.rid, "v"), 0)
                if r.stable:  # absent: read while the reserve had no stable debt at all, so 0
                    values[(r.rid, "s")] = balances.get((r.rid, "s"), 0)
        return values

    def table(self, emode: int) -> dict[int, tuple[int, int, int]] | None:
        """Reserve id -> (price, LTV, LT) an account in `emode` counts it with: the choices of
        `calculate_user_account_data`, which depend on the category alone. None when the
        category is not usable here (not loaded, no price, a bitmap out of range): such
        accounts take `position`, which raises where the Pool reverts."""
        if emode not in self.tables:
            try:
                self.tables[emode] = self.build_table(emode)
            except (ArithmeticError, ValueError):
                self.tables[emode] = None
        return self.tables[emode]

    def build_table(self, emode: int) -> dict[int, tuple[int, int, int]] | None:
        market_state, rules = self.market_state, self.rules
        category = market_state.emode_categories.get(emode)
        emode_ltv = emode_lt = emode_price = 0
        if emode:
            if not 0 < emode < 256 or category is None or category.id != emode:
                return None
            emode_ltv, emode_lt = category.ltv, category.liquidation_threshold
            if category.has_price_source and not rules.emode_bitmaps:
                emode_price = market_state.emode_prices.get(emode, -1)
                if not 0 <= emode_price < 1 << _PRICE_BITS:
                    return None
        table = {}
        for r in self.reserves:
            cfg = r.reserve.config
            use_emode_price = emode_price != 0 and emode == cfg.emode_category
            price = emode_price if use_emode_price else r.reserve.price_base
            in_emode = math.in_emode_collateral(emode, category, cfg, r.rid, rules)
            if rules.ltvzero_bitmap:
                ltv = math.get_user_reserve_ltv(cfg.ltv, category, emode, r.rid)
            elif cfg.ltv != 0:
                ltv = emode_ltv if in_emode else cfg.ltv
            else:
                ltv = 0
            table[r.rid] = (price, ltv, emode_lt if in_emode else cfg.liquidation_threshold)
        return table

    def risk_terms(self, emode: int, user_config: int) -> RiskTerms:
        """`position`'s terms: bonus and protocol fee of every reserve marked as collateral,
        computed once per (eMode, collateral set) and copied per position."""
        key = (emode, user_config & self.collateral_mask)
        if key not in self.terms:
            rules, category = self.rules, self.market_state.emode_categories.get(emode)
            used = [r.reserve for r in self.reserves if math.reserve_bits(user_config, r.rid) & 2]
            self.terms[key] = (
                {r.asset: (_bonus_bps(rules, r, emode, category) - 10_000) / 10_000 for r in used},
                {r.asset: r.config.liquidation_protocol_fee / 10_000 for r in used},
            )
        bonus, fee = self.terms[key]
        return RiskTerms(
            liquidation_bonus=dict(bonus),
            close_factor_rule=CloseFactorRule[self.rules.close_factor_rule],
            protocol_fee=dict(fee),
            interest=self.market_state.interest_rates,
        )

    def position(self, state: AaveAccountState) -> Position:
        config, emode = state.user_configuration, state.emode
        fast = self.ascending and 0 < config <= math.UINT256_MAX
        if fast:
            used = self.in_use(config)
        else:  # the market's order
            used = [(r, math.reserve_bits(config, r.rid)) for r in self.reserves]
        values = self.values(state, used)
        table = self.table(emode) if fast else None
        if (
            table is None
            or not used
            or not all(r.checked for r, _ in used)
            or any(not 0 <= v < 1 << _BALANCE_BITS for v in values.values())
        ):
            return self.adapter.position(
                self.market_state,
                state.account,
                config,
                emode,
                values,
                self.block,
                flip_prices=self.flip_prices,
            )
        assert table is not None
        return self.checked_position(state, table, used, values)

    def in_use(self, config: int) -> list[tuple[_BookReserve, int]]:
        """(reserve, its two bits) for every market reserve the bitmap marks, by ascending id."""
        out = []
        rest = config
        while rest:
            rid = ((rest & -rest).bit_length() - 1) >> 1
            rest &= ~(3 << (2 * rid))
            reserve = self.by_id.get(rid)
            if reserve is not None:
                out.append((reserve, (config >> (2 * rid)) & 3))
        return out

    def checked_position(
        self,
        state: AaveAccountState,
        table: dict[int, tuple[int, int, int]],
        used: list[tuple[_BookReserve, int]],
        values: dict[tuple[int, str], int],
    ) -> Position:
        """calculate_user_account_data's loop for one account within the bounds (no overflow
        possible, so no checks), then `position`'s fields from it."""
        rules, market_state = self.rules, self.market_state
        ceil = rules.directional_rounding
        total_collateral = total_debt = weighted_ltv = weighted_lt = 0
        # (reserve, price, collateral raw, collateral base, debt raw, debt base, LT, counted)
        rows = []
        for r, bits in used:
            price, ltv, lt = table[r.rid]
            collateral = collateral_base = lt_used = 0
            counts = bool(bits & 2) and r.counted
            if counts:
                scaled = values[(r.rid, "a")]
                if ceil:  # rayMulFloor
                    collateral = scaled * r.income // math.RAY
                else:
                    collateral = (scaled * r.income + math.HALF_RAY) // math.RAY
                collateral_base = collateral * price // r.unit
                total_collateral += collateral_base
                weighted_ltv += collateral_base * ltv
                lt_used = lt
                weighted_lt += collateral_base * lt
            debt = debt_base = 0
            if bits & 1:
                scaled = values[(r.rid, "v")]
                if ceil:  # rayMulCeil, then mulDivCeil
                    debt = -(-(scaled * r.debt_index) // math.RAY) + values.get((r.rid, "s"), 0)
                    debt_base = -(-(debt * price) // r.unit)
                else:
                    debt = (scaled * r.debt_index + math.HALF_RAY) // math.RAY
                    debt += values.get((r.rid, "s"), 0)
                    debt_base = price * debt // r.unit
                total_debt += debt_base
            rows.append((r, price, collateral, collateral_base, debt, debt_base, lt_used, counts))
        if ceil:
            health_factor = math.calculate_health_factor_3_5(weighted_lt, total_debt)
        ltv = weighted_ltv // total_collateral if total_collateral else 0
        average_lt = weighted_lt // total_collateral if total_collateral else 0
        if not ceil:
            health_factor = math.calculate_health_factor(total_collateral, total_debt, average_lt)
        available = math.calculate_available_borrows(total_collateral, total_debt, ltv, rules)
        has_debt = total_debt > 0
        flips: list[int | None] = [None] * len(rows)
        if self.flip_prices and has_debt:
            parts = [PricedAsset(c, d, lt, r.unit, p) for r, p, c, _, d, _, lt, _ in rows]
            flips = [
                None if p != r.reserve.price_base else liquidation_price(parts, i, rules)
                for i, (r, p, *_) in enumerate(rows)
            ]
        below = has_debt and health_factor < math.HEALTH_FACTOR_LIQUIDATION_THRESHOLD
        hold = None
        if below:  # rare: the breakdown `liquidation_hold` reads
            breakdown = [
                math.AssetBreakdown(r.reserve.asset, cb, db, c, d, 0, lt, False, p, r.rid, counts)
                for r, p, c, cb, d, db, lt, counts in rows
            ]
            hold = liquidation_hold(market_state, breakdown, self.block.timestamp)
        terms = self.risk_terms(state.emode, state.user_configuration)
        return Position(
            protocol=PROTOCOL,
            market=market_state.addresses_provider,
            account=checksummed(state.account),
            block=self.block,
            health_factor=health_factor if has_debt else None,
            liquidatable=below and hold is None,
            total_collateral_base=total_collateral,
            total_debt_base=total_debt,
            available_borrows_base=available,
            liquidation_threshold_bps=average_lt,
            ltv_bps=ltv,
            base_currency_decimals=market_state.base_currency_decimals,
            assets=tuple(
                AssetPosition(
                    asset=r.reserve.asset,
                    symbol=r.reserve.symbol,
                    decimals=r.reserve.config.decimals,
                    price_base=p,
                    collateral_raw=c,
                    debt_raw=d,
                    collateral_base=cb,
                    debt_base=db,
                    collateral_enabled=counts,
                    liquidation_threshold_bps=lt,
                    liquidation_price_base=flip,
                )
                for (r, p, c, cb, d, db, lt, counts), flip in zip(rows, flips, strict=True)
            ),
            terms=terms,
            version=market_state.version,
            liquidation_hold=hold,
            extra=position_extra(
                market_state, state.emode, state.user_configuration, terms, values, hold
            ),
        )
