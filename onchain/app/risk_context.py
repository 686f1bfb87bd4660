"""The imperative shell around `onchain.risk`: gather what the pure risk functions need (a book of
positions, a volatility model, the horizon, pending oracle prices) from the chain, files and
config, run the assessment, and turn it into per-position fields for the CLI and JSON.

Where an input is missing the assessment still runs on documented defaults, and `sources` says
which were used, so a reader never mistakes a default for a measurement."""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from functools import cached_property
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
from eth_abi import decode
from eth_utils import function_signature_to_4byte_selector, to_checksum_address

from onchain.app.market_data.blocks import recent_blocks
from onchain.app.market_data.dex_twap import hourly_twaps
from onchain.app.market_data.feed_history import feed_history, prefetch_logs
from onchain.app.market_data.feeds import latest_round_call
from onchain.app.market_data.uniswap_v3 import pool_state, pool_state_calls
from onchain.errors import CallReverted, InputError
from onchain.position_rows import PositionRows
from onchain.protocols.base import MarketSnapshot, Position

# through the package: it binds the function `assess` over the submodule of the same name
from onchain.risk import Assessment, assess, book_from_positions
from onchain.risk.book import Book, book_from_rows
from onchain.risk.latency import ChainLatency, estimate_chain_latency
from onchain.risk.oracle_lag import PendingPrices, next_oracle_prices
from onchain.risk.reactive import (
    DEFAULT_DOF,
    DEFAULT_TAIL_SCALE,
    LOOKBACK_STEPS,
    hourly_closes,
    reactive_volatility,
)
from onchain.risk.settings import DEFAULT_ORACLE_STEP_S as DEFAULT_ORACLE_STEP_S
from onchain.risk.settings import Reference as Reference
from onchain.risk.settings import RiskSettings as RiskSettings
from onchain.risk.tiers import Tier, reason_names
from onchain.risk.verdict import Advice, RiskVerdict
from onchain.risk.volatility import VolatilityModel
from onchain.rpc.calls import Call, execute
from onchain.rpc.client import BlockRef, RpcClient
from onchain.symbols import STABLE_SYMBOLS, underlying

SECONDS_PER_YEAR = 365 * 24 * 3600
_TIER_NAMES = {int(t): t.name for t in Tier}
HOUR_S = 3600.0

# Annualised volatility used when no price history is given (documented defaults, not forecasts).
DEFAULT_ANNUAL_VOLATILITY = {"ETH": 0.75, "BTC": 0.60, "LINK": 1.0, "STABLE": 0.02}
# Hours of an oracle's own history needed before its estimate replaces the configured default.
MIN_FEED_HOURS = 24


@dataclass(frozen=True)
class VolatilitySource:
    """Where one asset's volatility estimate came from and how old its newest price is."""

    # "oracle feed rounds" | "oracle feed events" | "stored oracle prices" | "dex twap"
    # | "price history" | "config default"
    source: str
    annual_volatility: float
    hourly_closes: int = 0  # closes the estimate was fitted on
    newest_s: int | None = None  # time of the newest price used; None for a default
    feed: str | None = None  # the oracle feed, or the pool for "dex twap"
    age_s: float | None = None  # block time minus newest_s

    def as_json(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "annual_volatility": self.annual_volatility,
            "hourly_closes": self.hourly_closes,
            "age_s": self.age_s,
            "feed": self.feed,
        }


class HeldAsset(NamedTuple):
    """One asset of one assessed position, as a verdict's volatility and advice need it."""

    column: str  # the book's column key, "market:asset"
    symbol: str
    decimals: int
    has_debt: bool
    collateral_enabled: bool


@dataclass
class RiskReport:
    """One block's assessment; rows are `positions` (`assess_positions`) or, without them,
    the adapter's arrays `rows` (`assess_rows`), in book order either way."""

    positions: list[Position]
    book: Book
    assessment: Assessment
    horizon_s: float
    latency: ChainLatency | None
    sources: list[str]
    settings: RiskSettings
    volatility: dict[str, VolatilitySource] = field(default_factory=dict)  # underlying -> source
    rows: PositionRows | None = None

    def held(self, row: int) -> list[HeldAsset]:
        """The assets of one row, in the order its Position lists them."""
        if self.rows is None:
            p = self.positions[row]
            return [
                HeldAsset(
                    f"{p.market.lower()}:{a.asset.lower()}",
                    a.symbol,
                    a.decimals,
                    bool(a.debt_raw),
                    a.collateral_enabled,
                )
                for a in p.assets
            ]
        if "_held_rows" in self.__dict__ or len(self._held_one) > len(self.rows) // 8:
            return self._held_rows[row]
        found = self._held_one.get(row)
        if found is None:  # a few rows' verdicts (a block's rows written whole): row by row
            r = self.rows
            cols = np.flatnonzero(r.held[row]).tolist()
            debts = (r.debt[row, cols] > 0).tolist()
            enabled = r.collateral_enabled[row, cols].tolist()
            found = self._held_one[row] = [
                HeldAsset(r.column_keys[j], r.symbols[j], int(r.decimals[j]), d, e)
                for j, d, e in zip(cols, debts, enabled, strict=True)
            ]
        return found

    @cached_property
    def _held_one(self) -> dict[int, list[HeldAsset]]:
        return {}

    @cached_property
    def _held_rows(self) -> list[list[HeldAsset]]:
        """Every row's assets from the record's arrays, in one pass over the held cells."""
        r = self.rows
        assert r is not None
        keys, symbols, decimals = r.column_keys, r.symbols, r.decimals.tolist()
        rows, cols = np.nonzero(r.held)  # by row, then ascending column: the Position's order
        out: list[list[HeldAsset]] = [[] for _ in range(len(r))]
        for i, j, debt, enabled in zip(
            rows.tolist(),
            cols.tolist(),
            (r.debt[rows, cols] > 0).tolist(),
            r.collateral_enabled[rows, cols].tolist(),
            strict=True,
        ):
            out[i].append(HeldAsset(keys[j], symbols[j], decimals[j], debt, enabled))
        return out

    def verdict(self, row: int) -> RiskVerdict:
        """One position's verdict (the row of `positions`), typed."""
        tiers, all_flags, probabilities, pendings, safes, drops = self._columns_as_lists
        flags = all_flags[row]
        reasons = self._reasons.get(flags)
        if reasons is None:
            reasons = self._reasons[flags] = tuple(reason_names(flags))
        return RiskVerdict(
            tier=_TIER_NAMES[tiers[row]],
            reasons=reasons,
            liquidation_probability=probabilities[row],
            horizon_s=self.horizon_s,
            pending_health_factor=pendings[row],
            safe_health_factor=safes[row],
            advice=self.advice(row),
            volatile_drop_to_liquidation=drops[row],
            volatility={
                name: dict(self._volatility_json[name])
                for name in self._volatility_names(tuple(x.symbol for x in self.held(row)))
            },
        )

    # what every row's verdict looks up, computed once per report (a verdict per row of a
    # 30,000-position book is otherwise mostly these)
    @cached_property
    def _advice_at(self) -> dict[int, int]:
        rows = self.assessment.advice_rows
        out: dict[int, int] = {}
        for k, row in enumerate(() if rows is None else rows.tolist()):
            out.setdefault(int(row), k)
        return out

    @cached_property
    def _columns(self) -> dict[str, int]:
        return {key: j for j, key in enumerate(self.book.assets)}

    @cached_property
    def _volatility_json(self) -> dict[str, dict[str, Any]]:
        return {name: v.as_json() for name, v in self.volatility.items()}

    @cached_property
    def _reasons(self) -> dict[int, tuple[str, ...]]:
        return {}

    @cached_property
    def _names_by_symbols(self) -> dict[tuple[str, ...], list[str]]:
        return {}

    def _volatility_names(self, symbols: tuple[str, ...]) -> list[str]:
        """The underlyings of a position's symbols that have a volatility source, sorted."""
        names = self._names_by_symbols.get(symbols)
        if names is None:
            held = {underlying(s) for s in symbols}
            names = self._names_by_symbols[symbols] = sorted(held & set(self.volatility))
        return names

    @cached_property
    def _columns_as_lists(self) -> tuple[list[Any], ...]:
        """Per row, as Python values: tier, reason flags, probability, pending and safe health
        factors and the uniform drop (None where not finite or not computed)."""
        a = self.assessment
        n = self.book.n_positions

        def finite(values: Any) -> list[float | None]:
            if values is None:
                return [None] * n
            array = np.asarray(values, float)
            out: list[float | None] = array.tolist()
            for i in np.flatnonzero(~np.isfinite(array)).tolist():
                out[i] = None
            return out

        return (
            np.asarray(a.tier).astype(int).tolist(),
            np.asarray(a.reasons).astype(int).tolist(),
            np.asarray(a.probability.probability, float).tolist(),
            finite(None if a.pending is None else a.pending.health_pending),
            finite(a.safe_health_factor),
            finite(a.uniform.drop_fraction),
        )

    def verdict_columns(
        self,
    ) -> tuple[list[str], list[tuple[str, ...]], list[float], list[float | None]]:
        """Every row's tier, reason codes, probability and pending health factor, as `verdict`
        gives them, without building a verdict per row (a block's whole book)."""
        tiers, all_flags, probabilities, pendings, _safes, _drops = self._columns_as_lists
        reasons = self._reasons
        for flags in set(all_flags) - set(reasons):
            reasons[flags] = tuple(reason_names(flags))
        return (
            [_TIER_NAMES[t] for t in tiers],
            [reasons[f] for f in all_flags],
            probabilities,
            pendings,
        )

    def verdicts(self) -> list[RiskVerdict]:
        """Every position's verdict, in the order of `positions`."""
        return [self.verdict(i) for i in range(self.book.n_positions)]

    def fields(self, row: int) -> dict[str, Any]:
        """The risk part of a position's JSON row."""
        return self.verdict(row).to_json()

    def advice(self, row: int) -> Advice | None:
        """Repay (per debt asset) or top up (per collateral asset), each alone reaching the target."""
        a = self.assessment
        if a.advice is None:
            return None
        k = self._advice_at.get(row)
        if k is None:
            return None
        column = self._columns
        repay: dict[str, int] = {}
        topup: dict[str, int] = {}
        for asset in self.held(row):
            j = column[asset.column]
            unit = 10**asset.decimals
            r = float(a.advice.repay_units[k, j])
            t = float(a.advice.topup_units[k, j])
            if asset.has_debt and math.isfinite(r) and r > 0:
                repay[asset.symbol] = math.ceil(r * unit)
            if asset.collateral_enabled and math.isfinite(t) and t > 0:
                topup[asset.symbol] = math.ceil(t * unit)
        return Advice(self.settings.target_probability, repay, topup)


def parse_horizon(text: str | None) -> float | None:
    """`30m`, `1h`, `1d`, `90s` or plain seconds."""
    if text is None:
        return None
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    try:
        if text[-1].lower() in units:
            value = float(text[:-1]) * units[text[-1].lower()]
        else:
            value = float(text)
    except (ValueError, IndexError):
        raise InputError(f"malformed horizon {text!r} (e.g. 30m, 1h, 1d)") from None
    if not (value > 0 and math.isfinite(value)):
        raise InputError(f"horizon must be a positive, finite duration, got {text!r}")
    return value


def _annual(model: VolatilityModel, j: int) -> float:
    return float(np.sqrt(model.sigma2_next[j] * SECONDS_PER_YEAR / model.step_s))


def volatility_from_history(
    path: Path, symbols: Sequence[str]
) -> tuple[VolatilityModel, str, dict[str, VolatilitySource]]:
    """The model `onchain backtest` validates (``onchain.risk.reactive``) on the last 30 days of
    hourly closes of a CSV `timestamp,asset,price` or a folder of hourly OHLC files named like
    `eth_usdt_1h.csv` (the shared/data/prices layout)."""
    from onchain.app.risk_io import align_closes, load_long_price_csv, load_ohlc_csv

    wanted = sorted({underlying(s) for s in symbols} - {"STABLE"})
    series: dict[str, tuple[Any, Any]] = {}
    try:
        if path.is_dir():
            for name in wanted:
                files = sorted(path.glob(f"{name.lower()}_*1h.csv"))
                if files:
                    hist = load_ohlc_csv(files[0])
                    series[name] = (hist.timestamp_s, hist.close)
        elif path.is_file():
            for asset, data in load_long_price_csv(path).items():
                series[underlying(asset)] = data
        else:
            raise InputError(f"price history not found: {path}")
    except (ValueError, KeyError, TypeError, IndexError, OSError) as exc:
        raise InputError(f"price history {path}: unreadable ({exc})") from None
    for name, (_ts, prices) in series.items():
        if not np.all(np.isfinite(prices)) or np.any(np.asarray(prices) <= 0):
            raise InputError(f"price history {path}: {name} has a price that is not positive")
    missing = [n for n in wanted if n not in series]
    if missing:  # an asset without history must never look riskless
        raise InputError(
            f"price history {path} has no prices for {', '.join(missing)} "
            "(add them, or leave out --price-history to use the configured defaults)"
        )
    have = wanted
    if not have:
        raise InputError(f"price history {path}: the book holds no volatile asset to fit")
    ts, close = align_closes([series[n] for n in have])
    if len(ts) < 200:
        raise InputError(f"price history {path}: {len(ts)} common timestamps, need at least 200")
    keep = slice(max(0, len(ts) - LOOKBACK_STEPS - 1), None)
    model = reactive_volatility(close[keep], ts[keep], have, step_s=HOUR_S)
    last = int(ts[-1])
    how = (
        f"reactive model (fast/slow/12 h EWMA, t dof {DEFAULT_DOF:g}) on the last "
        f"{len(ts[keep])} hourly closes to {_iso(last)}"
    )
    sources = {
        name: VolatilitySource("price history", _annual(model, j), int(ts[keep].size), last)
        for j, name in enumerate(model.assets)
    }
    return model, f"volatility: {how} from {path.name} ({', '.join(have)})", sources


def _iso(ts: int) -> str:
    return time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(ts))


@dataclass(frozen=True)
class PriceSeries:
    """One asset's prices at their times (oldest first): what a store kept of an oracle."""

    symbol: str
    times_s: Sequence[int]
    prices: Sequence[float]


def _stored_grids(
    stored: Sequence[PriceSeries],
    snapshots: Sequence[MarketSnapshot],
    block: BlockRef,
    names: Sequence[str],
) -> dict[str, tuple[Any, Any, int]]:
    """Hourly closes per underlying from stored prices, the block's own snapshot price appended
    (it is not stored yet when the block is assessed); the series covering most hours wins."""
    now = {r.symbol: r.price_base for snap in snapshots for r in snap.reserves}
    out: dict[str, tuple[Any, Any, int]] = {}
    for series in stored:
        name = underlying(series.symbol)
        if name not in names or name == "STABLE":
            continue
        times = np.asarray(series.times_s, dtype=np.int64)
        prices = np.asarray(series.prices, dtype=np.float64)
        current = now.get(series.symbol)
        if current and (times.size == 0 or times[-1] < block.timestamp):
            times = np.append(times, int(block.timestamp))
            prices = np.append(prices, float(current))
        if times.size == 0 or not np.all(prices > 0):
            continue
        grid, closes = hourly_closes(times, prices, int(block.timestamp))
        if name not in out or grid.size > out[name][0].size:
            out[name] = (grid, closes, int(times[-1]))
    return out


def _dex_grids(
    client: RpcClient, block: BlockRef, references: Sequence[Reference], names: Sequence[str]
) -> dict[str, tuple[Any, Any, int, str]]:
    """Cold start: hourly TWAPs of each asset's reference pool ([risk.references]) from its
    own observations. The pool's orientation and quote do not matter: log returns of a price
    and of its inverse have the same variance, and the quote is a stablecoin."""
    wanted: dict[str, str] = {}  # pool -> underlying
    for ref in references:
        name = underlying(ref.symbol)
        if ref.pool and name in names and name != "STABLE" and name not in wanted.values():
            wanted[str(ref.pool)] = name
    out: dict[str, tuple[Any, Any, int, str]] = {}
    if not wanted:
        return out
    for pool, twap in hourly_twaps(client, block, list(wanted), LOOKBACK_STEPS).items():
        if not np.all(np.isfinite(twap.prices) & (twap.prices > 0)):
            continue
        grid, closes = hourly_closes(twap.times_s, twap.prices, int(block.timestamp))
        out[wanted[pool]] = (grid, closes, int(twap.times_s[-1]), pool)
    return out


def volatility_from_feeds(
    client: RpcClient,
    block: BlockRef,
    symbols: Sequence[str],
    snapshots: Sequence[MarketSnapshot],
    settings: RiskSettings,
    stored: Sequence[PriceSeries] = (),
) -> tuple[VolatilityModel, str, dict[str, VolatilitySource]]:
    """The validated model fitted on what the chain holds: each volatile asset's oracle feed
    (its past rounds, or its AnswerUpdated events) over the last 30 days, as hourly closes (what
    the protocol saw). Where a store kept the oracle prices it saw at each block (``stored``,
    the daemon) and they cover more hours than the feed's history, they are used instead.
    Assets with under ``MIN_FEED_HOURS`` of either start cold on their reference pool's hourly
    TWAPs (Uniswap V3 ``observe``), else keep the configured default; correlations
    come from the fit where both assets have one."""
    base, _note = default_volatility(symbols, settings)
    feeds: dict[str, str] = {}
    for snap in snapshots:
        for reserve in snap.reserves:
            feed = reserve.extra.get("price_feed")
            name = underlying(reserve.symbol)
            if feed and name in base.assets and name != "STABLE":
                feeds.setdefault(name, str(feed))
    since = int(block.timestamp) - (LOOKBACK_STEPS + 1) * int(HOUR_S)
    grids: dict[str, tuple[Any, Any, int, str, str | None]] = {}
    prefetch_logs(client, block, sorted(feeds.values()))
    for name, feed in sorted(feeds.items()):
        hist = feed_history(client, block, feed, since)
        if hist is None or not np.all(hist.answers > 0):
            continue
        grid, closes = hourly_closes(hist.times_s, hist.answers, int(block.timestamp))
        if grid.size > MIN_FEED_HOURS:
            how = "oracle feed rounds" if hist.method == "rounds" else "oracle feed events"
            grids[name] = (grid, closes, int(hist.times_s[-1]), how, feed)
    for name, (grid, closes, newest) in _stored_grids(
        stored, snapshots, block, base.assets
    ).items():
        if grid.size > MIN_FEED_HOURS and grid.size > (grids[name][0].size if name in grids else 0):
            grids[name] = (grid, closes, newest, "stored oracle prices", feeds.get(name))
    for name, (grid, closes, newest, pool) in _dex_grids(
        client, block, settings.references, [n for n in base.assets if n not in grids]
    ).items():
        if grid.size > MIN_FEED_HOURS:
            grids[name] = (grid, closes, newest, "dex twap", pool)
    sources = {
        name: VolatilitySource("config default", _annual(base, j))
        for j, name in enumerate(base.assets)
    }
    if not grids:
        return base, _note, sources
    names = sorted(grids)
    k = min(grids[n][0].size for n in names)
    ts = grids[names[0]][0][-k:]
    close = np.column_stack([grids[n][1][-k:] for n in names])
    fitted = reactive_volatility(close, ts, names, step_s=HOUR_S)
    sigma2 = base.sigma2_next.copy()
    corr = base.correlation.copy()
    at = {n: base.assets.index(n) for n in names}
    for a, na in enumerate(names):
        sigma2[at[na]] = fitted.sigma2_next[a]
        for b, nb in enumerate(names):
            corr[at[na], at[nb]] = fitted.correlation[a, b]
    model = replace(base, sigma2_next=sigma2, correlation=corr)
    for n in names:
        _g, _c, newest, how, feed = grids[n]
        sources[n] = VolatilitySource(how, _annual(model, at[n]), k, newest, feed)
    text = ", ".join(
        f"{n} {sources[n].annual_volatility:.0%}/yr ({sources[n].source}, {k} hourly closes)"
        for n in names
    )
    rest = [n for n in base.assets if n not in grids and n != "STABLE"]
    tail = f"; config defaults for {', '.join(rest)}" if rest else ""
    whose = (
        "oracle feeds'"
        if all(g[3].startswith("oracle feed") for g in grids.values())
        else "oracles'"
    )
    note = f"volatility: reactive model on the {whose} own history: {text}{tail}"
    return model, note, sources


def default_volatility(
    symbols: Sequence[str], settings: RiskSettings
) -> tuple[VolatilityModel, str]:
    names = sorted({underlying(s) for s in symbols})
    annual = []
    for n in names:
        override = settings.annual_volatility.get(n)
        annual.append(override if override is not None else DEFAULT_ANNUAL_VOLATILITY.get(n, 1.0))
    m = len(names)
    sigma2 = np.asarray(annual) ** 2 * HOUR_S / SECONDS_PER_YEAR
    corr = np.full((m, m), settings.correlation)
    stable = [i for i, n in enumerate(names) if n == "STABLE"]
    corr[stable, :] = 0.0
    corr[:, stable] = 0.0
    np.fill_diagonal(corr, 1.0)
    model = VolatilityModel(
        assets=tuple(names),
        step_s=HOUR_S,
        sigma2_next=sigma2,
        correlation=corr,
        tail_steps=(1.0,),
        tail_scale=np.full((1, m), DEFAULT_TAIL_SCALE),
        tail_dof=np.full((1, m), DEFAULT_DOF),
    )
    text = ", ".join(f"{n} {v:.0%}/yr" for n, v in zip(names, annual, strict=True))
    return (
        model,
        f"volatility: config defaults ({text}; correlation {settings.correlation}; t tails dof {DEFAULT_DOF:g})",
    )


def estimate_horizon(
    client: RpcClient, block: BlockRef, settings: RiskSettings
) -> tuple[float, ChainLatency | None, str]:
    blocks = recent_blocks(client, block, 32)
    if blocks.timestamps_s.size < 2:
        return (
            settings.reaction_s + 12.0,
            None,
            "horizon: reaction time + one 12 s block (too few blocks to measure)",
        )
    latency = estimate_chain_latency(
        blocks.timestamps_s, blocks.gas_used, blocks.gas_limit, blocks.base_fee_wei
    )
    horizon = float(latency.horizon_s(settings.reaction_s))
    return (
        horizon,
        latency,
        (
            f"horizon: {settings.reaction_s:g} s reaction + inclusion estimated from the last "
            f"{blocks.timestamps_s.size} blocks = {horizon:.0f} s"
        ),
    )


_TOKEN0 = function_signature_to_4byte_selector("token0()")
_TOKEN1 = function_signature_to_4byte_selector("token1()")
_DECIMALS = function_signature_to_4byte_selector("decimals()")


def _address(data: bytes) -> str:
    return to_checksum_address(decode(["address"], data)[0])


def pending_prices(
    client: RpcClient,
    block: BlockRef,
    book: Book,
    references: Sequence[Reference],
    horizon_s: float,
    usd_markets: set[str] | None = None,
) -> tuple[PendingPrices | None, str]:
    """Reference prices from DEX pools, converted to the base currency with the quote asset's
    oracle price, and what each feed will most likely publish next. References are in USD, so
    they only apply to columns of markets priced in USD or a stablecoin (`usd_markets`; None:
    all), never to e.g. a market whose base currency is WETH."""
    usable = [r for r in references if r.pool]
    if not usable:
        return None, "pending health: no reference prices configured ([risk.references])"
    calls: list[Call] = []
    for ref in usable:
        pool = str(ref.pool)
        calls += [Call(pool, _TOKEN0, _address), Call(pool, _TOKEN1, _address)]
        calls += pool_state_calls(pool)
        calls.append(latest_round_call(ref.feed) if ref.feed else Call(pool, _TOKEN0, _address))
    try:
        results = execute(client, calls, block)
    except CallReverted as exc:  # a misconfigured reference must not stop the whole assessment
        return None, f"pending health: reference pools unreadable, skipped ({exc})"
    tokens = sorted({t for i in range(len(usable)) for t in results[5 * i : 5 * i + 2]})
    decimals = dict(
        zip(
            tokens,
            execute(
                client,
                [Call(t, _DECIMALS, lambda d: decode(["uint8"], d)[0]) for t in tokens],
                block,
            ),
            strict=True,
        )
    )
    symbol_price: dict[str, float] = {}
    for j, sym in enumerate(book.symbols):
        if usd_markets is None or book.assets[j].rpartition(":")[0] in usd_markets:
            symbol_price.setdefault(sym.upper(), float(book.price_base[j]))
    ref_by_symbol: dict[str, tuple[float, float | None, Reference]] = {}
    for i, ref in enumerate(usable):
        token0, token1, slot0, liquidity, feed_round = results[5 * i : 5 * i + 5]
        state = pool_state(str(ref.pool), token0, token1, 0, [slot0, liquidity])
        quote_price = symbol_price.get(
            ref.quote.upper(), 1.0 if ref.quote.upper() in STABLE_SYMBOLS else float("nan")
        )
        p01 = state.price_token1_per_token0_raw() * 10 ** (decimals[token0] - decimals[token1])
        addresses = {
            key.rpartition(":")[2]
            for key, sym in zip(book.assets, book.symbols, strict=True)
            if sym.upper() == ref.symbol
        }
        if token0.lower() in addresses:  # the asset is token0: its price is token1 per token0
            price_quote = p01
        elif token1.lower() in addresses:
            price_quote = 1 / p01
        else:  # the book names the asset at another address: pick the side nearer the oracle
            oracle = symbol_price.get(ref.symbol, float("nan"))
            price_quote = min(
                (p01, 1 / p01),
                key=lambda c: abs(math.log(c * quote_price / oracle)) if oracle == oracle else 0,
            )
        since = None
        if ref.feed and feed_round is not None and hasattr(feed_round, "updated_at"):
            since = max(0.0, float(block.timestamp - feed_round.updated_at))
        ref_by_symbol[ref.symbol] = (price_quote * quote_price, since, ref)
    m = book.n_assets
    ref_price = np.full(m, np.nan)
    deviation = np.full(m, np.inf)
    heartbeat = np.full(m, np.inf)
    since_update = np.zeros(m)
    for j, sym in enumerate(book.symbols):
        hit = ref_by_symbol.get(sym.upper())
        market = book.assets[j].rpartition(":")[0]
        if hit is None or (usd_markets is not None and market not in usd_markets):
            continue
        ref_price[j], since, ref = hit
        deviation[j], heartbeat[j] = ref.deviation, ref.heartbeat_s
        since_update[j] = since if since is not None else 0.0
    pending = next_oracle_prices(
        ref_price, book.price_base, deviation, heartbeat, since_update, horizon_s
    )
    named = ", ".join(sorted(ref_by_symbol))
    return pending, f"pending health: reference prices from DEX pools for {named}"


def pool_liquidity(
    book: Book, snapshots: Sequence[MarketSnapshot]
) -> tuple[np.ndarray | None, np.ndarray | None]:
    """Per book column: what the reserve could pay out now (asset units) and its utilisation.
    A position's market is matched to the snapshot whose addresses include it; columns without
    a snapshot get unlimited liquidity (no reason is raised for them)."""
    if not snapshots:
        return None, None
    by_market: dict[str, dict[str, Any]] = {}
    for snap in snapshots:
        reserves = {r.asset.lower(): r for r in snap.reserves}
        for address in snap.addresses.values():
            by_market[str(address).lower()] = reserves
    available = np.full(book.n_assets, np.inf)
    utilization = np.zeros(book.n_assets)
    for j, key in enumerate(book.assets):
        market, _, asset = key.rpartition(":")
        reserve = by_market.get(market, {}).get(asset)
        if reserve is None or reserve.available_liquidity_raw is None:
            continue
        available[j] = reserve.available_liquidity_raw / 10**reserve.decimals
        utilization[j] = reserve.utilization or 0.0
    return available, utilization


def interest_rates(
    book: Book, positions: Sequence[Position] | PositionRows
) -> tuple[np.ndarray, np.ndarray, int]:
    """Per book column: (supply, borrow) ln growth per second at the block's rates, from the
    adapters (`RiskTerms.interest` of the Positions, the rows' `supply_rate`/`borrow_rate`), and
    how many columns had them; 0 where the adapter gave none."""
    known: dict[str, tuple[float, float]] = {}
    if isinstance(positions, PositionRows):
        if positions.supply_rate is not None and positions.borrow_rate is not None:
            known = dict(
                zip(
                    positions.column_keys,
                    zip(
                        positions.supply_rate.tolist(), positions.borrow_rate.tolist(), strict=True
                    ),
                    strict=True,
                )
            )
    else:
        seen: set[int] = set()
        for p in positions:
            # adapters share one mapping per market state: read each once
            if p.terms is None or not p.terms.interest or id(p.terms.interest) in seen:
                continue
            seen.add(id(p.terms.interest))
            market = p.market.lower()
            for asset, rates in p.terms.interest.items():
                known.setdefault(f"{market}:{asset.lower()}", rates)
    supply = np.zeros(book.n_assets)
    borrow = np.zeros(book.n_assets)
    found = 0
    for j, key in enumerate(book.assets):
        column = known.get(key)
        if column is not None:
            supply[j], borrow[j] = column
            found += 1
    return supply, borrow, found


def assess_positions(
    client: RpcClient,
    block: BlockRef,
    positions: Sequence[Position] | PositionRows,
    settings: RiskSettings,
    *,
    horizon_s: float | None = None,
    price_history: Path | None = None,
    market_snapshots: Sequence[MarketSnapshot] = (),
    stored_prices: Sequence[PriceSeries] = (),
) -> RiskReport:
    """Assess positions read at `block` (all protocols in one book, one column per market-asset).
    `market_snapshots` (the adapters' per-reserve liquidity) enable the pool-liquidity reasons;
    `stored_prices` (the oracle prices a store kept) are a volatility source besides the feeds.

    `positions` may be a market's positions as an adapter's arrays (`RiskRows.risk_rows`)
    instead of Position objects: the same book (`book_from_rows`), the same assessment and
    verdicts; the report's rows are then the record's."""
    rows: PositionRows | None = None
    if isinstance(positions, PositionRows):
        rows, listed = positions, []
        book = book_from_rows(rows, stable_assets=sorted(STABLE_SYMBOLS))
        bases = {
            rows.markets[int(i)].lower(): rows.base_currencies[int(i)]
            for i in np.unique(rows.row_market)
        }
    else:
        listed = list(positions)
        book = book_from_positions(
            listed, per_market_columns=True, stable_assets=sorted(STABLE_SYMBOLS)
        )
        bases = {p.market.lower(): p.base_currency for p in listed}
    usd_markets = {
        m for m, base in bases.items() if (base or "USD").upper() in STABLE_SYMBOLS | {"USD"}
    }
    sources: list[str] = []
    if horizon_s is None:
        horizon_s, latency, note = estimate_horizon(client, block, settings)
    else:
        latency, note = None, f"horizon: {horizon_s:g} s (given)"
    sources.append(note)
    symbols = list(book.symbols)
    if price_history is not None:
        model, note, vol_sources = volatility_from_history(price_history, symbols)
    else:
        model, note, vol_sources = volatility_from_feeds(
            client, block, symbols, market_snapshots, settings, stored_prices
        )
    vol_sources = {
        n: v if v.newest_s is None else replace(v, age_s=float(block.timestamp - v.newest_s))
        for n, v in vol_sources.items()
    }
    sources.append(note)
    aligned = model.with_assets([underlying(s) for s in symbols])
    covariance = aligned.effective_covariance(horizon_s)
    tail_dof = aligned.horizon_tail_dof(horizon_s)
    pending, note = pending_prices(client, block, book, settings.references, horizon_s, usd_markets)
    sources.append(note)
    available, utilization = pool_liquidity(book, market_snapshots)
    if available is not None:
        sources.append(
            "pool liquidity: available liquidity and utilisation per reserve at the block"
        )
    oracle_steps = horizon_s / settings.oracle_step_s
    sources.append(
        f"oracle steps: one published price per {settings.oracle_step_s:g} s "
        f"({max(oracle_steps, 1.0):.3g} within the horizon)"
    )
    supply, borrow, found = interest_rates(book, positions)
    sources.append(
        f"interest: supply and borrow rates at the block for {found} of {book.n_assets} "
        "reserves (the rest 0)"
        if found < book.n_assets
        else "interest: supply and borrow rates at the block for every reserve"
    )
    assessment = assess(
        book,
        covariance,
        interest=(supply * horizon_s, borrow * horizon_s),
        tail_dof=tail_dof,
        oracle_steps=oracle_steps,
        pending=pending,
        pool_available=available,
        pool_utilization=utilization,
        thresholds=settings.thresholds,
        target_probability=settings.target_probability,
        workers=1,
    )
    return RiskReport(
        listed,
        book,
        assessment,
        horizon_s,
        latency,
        sources,
        settings,
        vol_sources,
        rows,
    )
