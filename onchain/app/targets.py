"""Liquidation targets: for every position liquidatable now (or one oracle update away), the best
single liquidation call, what it costs and what it earns, ranked by net profit.

This is the I/O shell around the exact adapter math and `onchain.risk`:

* positions of every market at ONE pinned block (`pipeline`);
* the call: each (collateral, debt) pair is priced by the adapter's ``liquidation_quote`` with the
  protocol's own integer math (Aave, by the Pool's release: close factor, 3.3+ dust and deficit,
  ``_calculateAvailableCollateralToLiquidate`` with bonus and protocol fee; Morpho Blue: a full ``liquidate`` with its incentive factor and
  the bad debt it realises); the pair with the best net profit wins;
* the sale of the seized collateral for the debt asset: Uniswap V3 pools found through the
  factory (every fee tier), each quoted with QuoterV2 by ``eth_call`` at the pinned block
  (exact); without a quoter, the pool's state through the float model of
  `onchain.risk.liquidity.v3_swap_exact_in` (one range); without a DEX, at the oracle price;
* gas: the adapter's liquidation gas plus a swap, at the pinned block's base fee (plus a tip),
  priced with the native token's price (by default the oracle price of ``WETH`` in a scanned
  market; configurable);
* pending positions (healthy at the oracle price, liquidatable at the price its next update
  will most likely publish, `onchain.risk.oracle_lag`): the same exact math at those prices.

Money figures are floats in whole units of the position's base currency (USD for Aave markets,
the loan token for Morpho markets) and in USD for ranking across markets; token amounts are raw
integers. A target's profit is ``dex_out - debt_to_cover`` (debt-asset units, valued at its
oracle price) ``- gas``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from onchain.app.market_data.uniswap_v3 import (
    get_pool_call,
    pool_state,
    pool_state_calls,
    quote_call,
)
from onchain.app.pipeline import discover_accounts, load_market, read_positions
from onchain.errors import InputError
from onchain.protocols.base import LiquidationQuote, MarketRef, Position
from onchain.protocols.registry import get_adapter
from onchain.risk import book_from_positions
from onchain.risk.liquidity import v3_swap_exact_in
from onchain.risk.oracle_lag import pending_health
from onchain.rpc.calls import execute
from onchain.rpc.client import BlockRef, RpcClient
from onchain.symbols import STABLE_SYMBOLS

DEFAULT_FEE_TIERS = (100, 500, 3000, 10000)
# gas of one SwapRouter.exactInputSingle, measured on the devnet (tests/cli/test_targets.py)
DEFAULT_SWAP_GAS = 125_000
QUOTES_PER_CHUNK = 40  # QuoterV2 simulates a swap (~100k+ gas each): keep chunks under caps

Progress = Callable[[str], Callable[[int, int], None]]


@dataclass(frozen=True)
class DexConfig:
    """A Uniswap V3 deployment to sell seized collateral into (addresses come from config)."""

    factory: str
    quoter: str | None = None
    fee_tiers: tuple[int, ...] = DEFAULT_FEE_TIERS


@dataclass(frozen=True)
class TargetSettings:
    """What the chain does not say: the DEX, the native token's price, gas, reference prices."""

    dex: DexConfig | None = None
    native_symbol: str = "WETH"
    native_price_usd: float | None = None  # None: the native symbol's oracle price (USD markets)
    swap_gas: int = DEFAULT_SWAP_GAS
    liquidation_gas: int | None = None  # None: the adapter's measured default
    priority_fee_wei: int = 0
    references: tuple[Any, ...] = ()  # onchain.app.risk_context.Reference: pools the oracle lags
    include_pending: bool = True
    horizon_s: float = math.inf  # oracle updates later than this keep today's price


@dataclass(frozen=True)
class Target:
    """The best single liquidation call of one position and its economics."""

    account: str
    protocol: str
    market: str
    block_number: int
    block_hash: str
    health_factor: int | None  # exact wad at the oracle price
    pending: bool  # liquidatable only at the next oracle price
    health_factor_pending: float | None
    collateral_asset: str
    collateral_symbol: str
    debt_asset: str
    debt_symbol: str
    quote: LiquidationQuote
    base_currency: str
    base_currency_decimals: int
    base_usd: float  # USD per whole base-currency unit (nan: unknown)
    debt_to_cover_base: float
    collateral_seized_base: float  # at the (pending) oracle price
    gas_units: int
    gas_price_wei: int
    gas_cost_base: float
    dex_source: str  # "quoter" (exact eth_call), "model" (float pool model), "none", "same-asset"
    dex_pool: str | None
    dex_fee: int | None
    dex_out_raw: int
    dex_out_base: float
    slippage_bps: float  # 1 - DEX proceeds / oracle value of the seized collateral
    net_profit_base: float

    @property
    def tier(self) -> str:
        return "PENDING" if self.pending else "LIQUIDATABLE"

    @property
    def net_profit_usd(self) -> float:
        return self.net_profit_base * self.base_usd

    @property
    def profitable(self) -> bool:
        return self.net_profit_base > 0

    def to_json(self) -> dict[str, Any]:
        """The stable machine row: raw integers as decimal strings, money as floats."""
        q = self.quote
        return {
            "account": self.account,
            "protocol": self.protocol,
            "market": self.market,
            "block_number": self.block_number,
            "block_hash": self.block_hash,
            "tier": self.tier,
            "pending": self.pending,
            "health_factor": None if self.health_factor is None else str(self.health_factor),
            "health_factor_pending": self.health_factor_pending,
            "collateral_asset": self.collateral_asset,
            "collateral_symbol": self.collateral_symbol,
            "debt_asset": self.debt_asset,
            "debt_symbol": self.debt_symbol,
            "close_factor": q.close_factor,
            "debt_to_cover_raw": str(q.debt_to_cover_raw),
            "collateral_seized_raw": str(q.collateral_seized_raw),
            "protocol_fee_raw": str(q.protocol_fee_raw),
            "bad_debt_raw": str(q.bad_debt_raw),
            "bonus": q.bonus,
            "call_args": {k: str(v) for k, v in q.call_args.items()},
            "base_currency": self.base_currency,
            "base_currency_decimals": self.base_currency_decimals,
            "debt_to_cover_base": self.debt_to_cover_base,
            "collateral_seized_base": self.collateral_seized_base,
            "gas_units": self.gas_units,
            "gas_price_wei": str(self.gas_price_wei),
            "gas_cost_base": self.gas_cost_base,
            "dex_source": self.dex_source,
            "dex_pool": self.dex_pool,
            "dex_fee": self.dex_fee,
            "dex_out_raw": str(self.dex_out_raw),
            "dex_out_base": self.dex_out_base,
            "slippage_bps": self.slippage_bps,
            "net_profit_base": self.net_profit_base,
            "net_profit_usd": None if math.isnan(self.net_profit_usd) else self.net_profit_usd,
            "profitable": self.profitable,
        }


@dataclass(frozen=True)
class TargetsResult:
    block: BlockRef
    targets: list[Target]  # best net profit (USD, else base) first
    base_fee_wei: int
    native_price_usd: float
    positions_read: int
    notes: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class _Candidate:
    position: Position
    state: Any
    quote: LiquidationQuote
    prices: dict[str, int]  # asset (lower) -> base units per whole token used by the quote
    pending_hf: float | None


def find_targets(
    client: RpcClient,
    markets: Sequence[MarketRef],
    settings: TargetSettings,
    *,
    block_number: int | None = None,
    progress: Progress | None = None,
) -> TargetsResult:
    """Every liquidatable (and pending) position of `markets` at one block, best target first."""
    block = client.pin_block(block_number)
    notes: list[str] = []
    loaded: list[tuple[MarketRef, Any, list[Position]]] = []
    for ref in markets:
        state = load_market(client, ref, block)
        accounts = discover_accounts(
            client,
            ref.protocol,
            state,
            block,
            from_block=ref.start_block,
            progress=progress("discovering accounts (blocks)") if progress else None,
        )
        positions = read_positions(
            client,
            ref.protocol,
            state,
            accounts,
            block,
            progress=progress("reading positions") if progress else None,
        )
        loaded.append((ref, state, [p for p in positions if p.has_debt]))
    everything = [p for _r, _s, ps in loaded for p in ps]
    header = client.request("eth_getBlockByNumber", [hex(block.number), False])
    base_fee = int(header.get("baseFeePerGas") or "0x0", 16)
    usd = _usd_prices(everything)
    native_usd = _native_price_usd(settings, usd, everything)
    candidates: list[_Candidate] = []
    for ref, state, positions in loaded:
        adapter = get_adapter(ref.protocol)
        if not hasattr(adapter, "liquidation_quote"):
            notes.append(f"{ref.protocol}: the adapter cannot price a liquidation yet; skipped")
            continue
        pending = _pending(client, block, positions, settings, notes)
        for position in positions:
            if position.liquidatable:
                candidates += _quotes(adapter, state, position, {}, None, None)
            elif position.account in pending.get(position.market, {}):
                prices, hf = pending[position.market][position.account]
                candidates += _quotes(adapter, state, position, prices, int(hf * 1e18), hf)
    targets = _price_candidates(client, block, candidates, settings, base_fee, native_usd, usd)
    targets.sort(key=lambda t: -(t.net_profit_usd if math.isfinite(t.net_profit_usd) else -1e300))
    return TargetsResult(block, targets, base_fee, native_usd, len(everything), notes)


# -- prices in USD and the native token ---------------------------------------------------------


def _base_symbol(position: Position) -> str | None:
    """The base currency's symbol when it is a token (Morpho: the loan token); None: USD."""
    return position.base_currency or None


def _usd_prices(positions: Sequence[Position]) -> dict[str, float]:
    """USD per whole token by symbol, from markets priced in USD (stables default to 1)."""
    usd = {s: 1.0 for s in STABLE_SYMBOLS}
    for p in positions:
        if _base_symbol(p) is None:
            for a in p.assets:
                usd[a.symbol.upper()] = a.price_base / 10**p.base_currency_decimals
    return usd


def _native_price_usd(
    settings: TargetSettings, usd: dict[str, float], positions: Sequence[Position]
) -> float:
    if settings.native_price_usd is not None:
        if not settings.native_price_usd > 0:
            raise InputError(f"native price must be > 0, got {settings.native_price_usd}")
        return float(settings.native_price_usd)
    symbol = settings.native_symbol.upper()
    if symbol in usd:
        return usd[symbol]
    for p in positions:  # a market pricing the native token in a token we know in USD
        base = _base_symbol(p)
        for a in p.assets:
            if a.symbol.upper() == symbol and base and base.upper() in usd:
                return a.price_base / 10**p.base_currency_decimals * usd[base.upper()]
    raise InputError(
        f"no price for the native token {settings.native_symbol}: pass --native-price-usd"
    )


def _base_usd(position: Position, usd: dict[str, float]) -> float:
    base = _base_symbol(position)
    return 1.0 if base is None else usd.get(base.upper(), math.nan)


# -- pending: one oracle update away ---------------------------------------------------------------


def _pending(
    client: RpcClient,
    block: BlockRef,
    positions: Sequence[Position],
    settings: TargetSettings,
    notes: list[str],
) -> dict[str, dict[str, tuple[dict[str, int], float]]]:
    """market -> account -> (pending prices in base units per asset, pending HF), for positions
    healthy now and liquidatable at the prices the next oracle updates will most likely publish.
    One book per base currency, so reference prices convert with the right quote price."""
    if not settings.include_pending or not settings.references:
        return {}
    from onchain.app.risk_context import pending_prices  # the shared reference-price reader

    groups: dict[str | None, list[Position]] = {}
    for p in positions:
        if not p.liquidatable:
            groups.setdefault(_base_symbol(p), []).append(p)
    out: dict[str, dict[str, tuple[dict[str, int], float]]] = {}
    for members in groups.values():
        book = book_from_positions(members, per_market_columns=True)
        pending, note = pending_prices(client, block, book, settings.references, settings.horizon_s)
        if pending is None:
            notes.append(note)
            continue
        health = pending_health(book, pending)
        for row in np.flatnonzero(health.one_update_away):
            p = members[int(row)]
            scale = 10**p.base_currency_decimals
            prices = {}
            for a in p.assets:
                j = book.assets.index(f"{p.market.lower()}:{a.asset.lower()}")
                prices[a.asset.lower()] = round(float(pending.price_base[j]) * scale)
            out.setdefault(p.market, {})[p.account] = (prices, float(health.health_pending[row]))
    return out


def _quotes(
    adapter: Any,
    state: Any,
    position: Position,
    prices: dict[str, int],
    health_factor: int | None,
    pending_hf: float | None,
) -> list[_Candidate]:
    """Every (collateral, debt) pair of the position priced by the adapter's exact math."""
    out = []
    for c in position.assets:
        if not (c.collateral_enabled and c.collateral_raw):
            continue
        for d in position.assets:
            if not d.debt_raw:
                continue
            quote = adapter.liquidation_quote(
                state,
                position,
                c.asset,
                d.asset,
                prices=prices or None,
                health_factor=health_factor,
            )
            if quote is not None:
                used = {a.asset.lower(): a.price_base for a in position.assets} | prices
                out.append(_Candidate(position, state, quote, used, pending_hf))
    return out


# -- the DEX and the economics ---------------------------------------------------------------------


def _price_candidates(
    client: RpcClient,
    block: BlockRef,
    candidates: Sequence[_Candidate],
    settings: TargetSettings,
    base_fee: int,
    native_usd: float,
    usd: dict[str, float],
) -> list[Target]:
    """DEX proceeds of every candidate's seized collateral, then the best pair per position."""
    sales = [
        (c.quote.collateral_asset, c.quote.debt_asset, c.quote.collateral_seized_raw)
        for c in candidates
    ]
    proceeds = _dex_proceeds(client, block, sales, settings.dex)
    gas_price = base_fee + settings.priority_fee_wei
    best: dict[tuple[str, str, str], Target] = {}
    for cand, (source, pool, fee, out_raw) in zip(candidates, proceeds, strict=True):
        t = _target(cand, source, pool, fee, out_raw, settings, gas_price, native_usd, usd)
        key = (t.protocol, t.market, t.account)
        if key not in best or t.net_profit_base > best[key].net_profit_base:
            best[key] = t
    return list(best.values())


def _target(
    cand: _Candidate,
    source: str,
    pool: str | None,
    fee: int | None,
    out_raw: int,
    settings: TargetSettings,
    gas_price: int,
    native_usd: float,
    usd: dict[str, float],
) -> Target:
    p, q = cand.position, cand.quote
    held = {a.asset.lower(): a for a in p.assets}
    coll, debt = held[q.collateral_asset.lower()], held[q.debt_asset.lower()]
    scale = 10**p.base_currency_decimals
    coll_price = cand.prices[coll.asset.lower()] / scale
    debt_price = cand.prices[debt.asset.lower()] / scale
    repaid_base = q.debt_to_cover_raw / 10**debt.decimals * debt_price
    seized_base = q.collateral_seized_raw / 10**coll.decimals * coll_price
    if source == "none":  # no pool to sell into: valued at the oracle price, no slippage
        out_raw = int(seized_base / debt_price * 10**debt.decimals) if debt_price > 0 else 0
    out_base = out_raw / 10**debt.decimals * debt_price
    liq_gas = settings.liquidation_gas if settings.liquidation_gas is not None else q.gas_units
    gas_units = liq_gas + (settings.swap_gas if source != "same-asset" else 0)
    base_usd = _base_usd(p, usd)
    gas_usd = gas_units * gas_price / 1e18 * native_usd
    gas_base = gas_usd / base_usd if base_usd > 0 else math.nan
    slippage = (1.0 - out_base / seized_base) * 1e4 if seized_base > 0 else 0.0
    return Target(
        account=p.account,
        protocol=p.protocol,
        market=p.market,
        block_number=p.block.number,
        block_hash=p.block.hash,
        health_factor=p.health_factor,
        pending=not p.liquidatable,
        health_factor_pending=cand.pending_hf,
        collateral_asset=coll.asset,
        collateral_symbol=coll.symbol,
        debt_asset=debt.asset,
        debt_symbol=debt.symbol,
        quote=q,
        base_currency=_base_symbol(p) or "USD",
        base_currency_decimals=p.base_currency_decimals,
        base_usd=base_usd,
        debt_to_cover_base=repaid_base,
        collateral_seized_base=seized_base,
        gas_units=gas_units,
        gas_price_wei=gas_price,
        gas_cost_base=gas_base,
        dex_source=source,
        dex_pool=pool,
        dex_fee=fee,
        dex_out_raw=out_raw,
        dex_out_base=out_base,
        slippage_bps=slippage,
        net_profit_base=out_base - repaid_base - gas_base,
    )


Sale = tuple[str, str, int]  # (token in, token out, raw amount in)
Proceeds = tuple[str, str | None, int | None, int]  # (source, pool, fee tier, raw amount out)


def _dex_proceeds(
    client: RpcClient, block: BlockRef, sales: Sequence[Sale], dex: DexConfig | None
) -> list[Proceeds]:
    """Best output of each sale over the pair's pools: QuoterV2 quotes (exact, at the pinned
    block), else the pool-state model; no pool (or no DEX): valued at the oracle price."""
    pairs = sorted({_pair(a, b) for a, b, _ in sales if a.lower() != b.lower()})
    pools: dict[tuple[str, str], list[tuple[str, int]]] = {}
    if dex is not None and pairs:
        calls = [get_pool_call(dex.factory, a, b, fee) for a, b in pairs for fee in dex.fee_tiers]
        found = execute(client, calls, block)
        k = 0
        for pair in pairs:
            for fee in dex.fee_tiers:
                addr = found[k]
                k += 1
                if addr and int(addr, 16) != 0:
                    pools.setdefault(pair, []).append((addr, fee))
    out: list[Proceeds | None] = [None] * len(sales)
    jobs: list[tuple[int, str, int]] = []  # (sale index, pool, fee)
    for i, (a, b, amount) in enumerate(sales):
        if a.lower() == b.lower():
            out[i] = ("same-asset", None, None, amount)
        elif not pools.get(_pair(a, b)) or amount == 0:
            out[i] = ("none", None, None, -1)  # filled at the oracle price below
        else:
            jobs += [(i, pool, fee) for pool, fee in pools[_pair(a, b)]]
    if jobs and dex is not None:
        results = (
            _quoter_outputs(client, block, dex.quoter, sales, jobs)
            if dex.quoter
            else _model_outputs(client, block, sales, jobs)
        )
        source = "quoter" if dex.quoter else "model"
        for (i, pool, fee), amount_out in zip(jobs, results, strict=True):
            if amount_out is None:
                continue
            current = out[i]
            if current is None or amount_out > current[3]:
                out[i] = (source, pool, fee, amount_out)
    return [o if o is not None else ("none", None, None, -1) for o in out]


def _pair(a: str, b: str) -> tuple[str, str]:
    return (a, b) if int(a, 16) < int(b, 16) else (b, a)


def _quoter_outputs(
    client: RpcClient,
    block: BlockRef,
    quoter: str,
    sales: Sequence[Sale],
    jobs: Sequence[tuple[int, str, int]],
) -> list[int | None]:
    calls = [quote_call(quoter, sales[i][0], sales[i][1], fee, sales[i][2]) for i, _p, fee in jobs]
    quotes = execute(client, calls, block, chunk_size=QUOTES_PER_CHUNK)
    return [None if q is None else int(q.amount_out) for q in quotes]


def _model_outputs(
    client: RpcClient,
    block: BlockRef,
    sales: Sequence[Sale],
    jobs: Sequence[tuple[int, str, int]],
) -> list[int | None]:
    """One-range V3 model over each pool's slot0 and liquidity (no quoter configured)."""
    unique = sorted({pool for _i, pool, _f in jobs})
    raw = execute(client, [c for pool in unique for c in pool_state_calls(pool)], block)
    states = {pool: raw[2 * k : 2 * k + 2] for k, pool in enumerate(unique)}
    outs: list[int | None] = []
    for i, pool, fee in jobs:
        token_in, token_out, amount = sales[i]
        t0, t1 = _pair(token_in, token_out)
        state = pool_state(pool, t0, t1, fee, states[pool])
        if state.liquidity == 0:
            outs.append(None)
            continue
        swap = v3_swap_exact_in(
            float(amount),
            state.sqrt_price_x96,
            float(state.liquidity),
            zero_for_one=token_in.lower() == t0.lower(),
            fee=fee / 1e6,
        )
        outs.append(int(float(swap.amount_out)))
    return outs
