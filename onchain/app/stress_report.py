"""`onchain stress` without the CLI: read a book at one pinned block, shock it, tabulate.

The I/O shell around :mod:`onchain.risk.stress` (which stays pure): positions come from the
pipeline (every discovered account of every selected market, one block), the book is built with
one column per (market, asset) because Morpho markets price a token with their own oracle, and
the results are regrouped per market, per asset and as totals.

Units. A market's figures are in its base currency: USD for Aave V3 (its oracle's base currency
on every deployment), the loan token for a Morpho market (``Position.base_currency``). A scenario
moves every column by its symbol (:data:`onchain.risk.stress.SYMBOL_ALIASES`: WETH and LSTs
follow ETH, LSTs also take the stETH/ETH discount when the scenario has one, WBTC/cbBTC follow
BTC, USDC/DAI take their depeg), the loan token of a Morpho market included, so a market's
"``*_base``" figures are reported in units of its base token AFTER the move (what the contract
would say). USD figures convert each base at its pre-shock USD price (an Aave price of the same
symbol, 1 for a stable, else unknown: ``usd_complete`` is then false) times its move.

Floats throughout: scenarios are what-ifs, and the exact verdict stays with the adapters (a
position whose float health factor is within ~1e-9 of 1 can come out either way; re-check it
with a scan at the shocked prices).

"Collateral seized" is what one liquidation call takes from the borrower (close factor, bonus;
the protocol's share of the bonus included), "debt repaid" what it repays, "bad debt" the debt
value above the collateral value at the shocked prices (before any liquidation).

The cascade (:func:`book_cascade`) reads the config's reference Uniswap V3 pools at the same
block and feeds the sale of each symbol's seized collateral back into its drop; see
:class:`PoolDepth` for what the impact model is exact for and where it is only a lower bound.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
from eth_abi import decode, encode
from eth_utils import function_signature_to_4byte_selector

from onchain.app.market_data.uniswap_v3 import pool_state_calls
from onchain.app.pipeline import read_markets
from onchain.errors import InputError
from onchain.protocols.base import MarketRef, Position
from onchain.risk.book import DEFAULT_STABLE_SYMBOLS, Book, book_from_positions
from onchain.risk.liquidity import (
    cascade,
    constant_product_spot_impact,
    sqrt_price_from_x96,
    tick_to_sqrt_price,
    v3_virtual_reserves,
)
from onchain.risk.stress import (
    DEPEG_ASSETS,
    SYMBOL_ALIASES,
    Scenario,
    StressResult,
    apply_shock,
    historical_scenarios,
    liquidation_curve,
    scenario_prices,
    shock_grid,
)
from onchain.rpc.calls import Call, execute
from onchain.rpc.client import BlockRef, RpcClient

DEFAULT_WINDOWS: tuple[str, ...] = ("1h", "24h")  # the worst hourly and daily moves
ALL_WINDOWS: tuple[str, ...] = ("1h", "4h", "24h")
DROP_PATTERN = re.compile(r"^\s*([A-Za-z0-9._/-]+)\s*=\s*([+-]?\d+(?:\.\d*)?|[+-]?\.\d+)\s*%?\s*$")
# scenario assets a --drop may name besides the book's own symbols
SCENARIO_ASSETS: frozenset[str] = frozenset(SYMBOL_ALIASES.values()) | DEPEG_ASSETS


# -- choosing scenarios ----------------------------------------------------------------------------


def scenario_key(s: Scenario) -> str:
    """The name a user types: the event's first date and the window, e.g. 2022-11-08/24h."""
    return f"{s.date}/{s.window}"


def library(windows: Sequence[str] = ALL_WINDOWS) -> dict[str, Scenario]:
    """Every historical scenario of the library, by :func:`scenario_key`."""
    return {scenario_key(s): s for w in windows for s in historical_scenarios(w)}


def select_scenarios(names: Sequence[str]) -> list[Scenario]:
    """Scenarios by name: ``DATE/WINDOW`` or ``DATE`` (its 1h and 24h windows); none: all of
    the library's 1h and 24h scenarios. An unknown name is an InputError listing the known."""
    known = library()
    if not names:
        return [s for k, s in sorted(known.items()) if s.window in DEFAULT_WINDOWS]
    chosen: list[Scenario] = []
    for name in names:
        key = name.strip()
        if key in known:
            hits = [known[key]]
        else:
            hits = [known[f"{key}/{w}"] for w in DEFAULT_WINDOWS if f"{key}/{w}" in known]
        if not hits:
            dates = sorted({s.date for s in known.values()})
            raise InputError(
                f"unknown scenario {name!r}; known: {', '.join(dates)} "
                f"(optionally /{'|/'.join(ALL_WINDOWS)}, e.g. {dates[-1]}/24h)"
            )
        chosen += [h for h in hits if h not in chosen]
    return chosen


def parse_drops(items: Sequence[str]) -> Scenario:
    """``--drop ETH=-30%`` (repeatable) as one scenario; ``ETH=+10%`` is a rise; an unsigned
    ``ETH=30`` is refused (read either way, it has surprised users). Names are
    scenario assets (ETH, BTC, LINK, USDC/USD, stETH/ETH...) or book symbols; a book symbol with
    an alias (WETH -> ETH) moves the whole family. Malformed input is an InputError."""
    drops: dict[str, float] = {}
    for item in items:
        match = DROP_PATTERN.match(item)
        if not match:
            raise InputError(f"malformed --drop {item!r}: expected ASSET=-30% (e.g. ETH=-30%)")
        name, pct = match.group(1), float(match.group(2))
        if match.group(2)[0] not in "+-" and pct != 0:  # ETH=30: a fall or a rise?
            raise InputError(
                f"--drop {item!r}: give the sign: {name}=-{match.group(2)}% for a fall, "
                f"{name}=+{match.group(2)}% for a rise"
            )
        if not pct > -100.0 or not math.isfinite(pct):
            raise InputError(f"malformed --drop {item!r}: a price cannot fall 100% or more")
        key = canonical_asset(name)
        if key in drops:
            raise InputError(f"--drop {item!r}: {key} is given twice")
        drops[key] = -pct / 100.0
    label = ", ".join(f"{k} {-v * 100:+g}%" for k, v in drops.items())
    return Scenario(f"custom: {label}", "custom", "given", drops, ("--drop",))


def canonical_asset(name: str) -> str:
    """ETH/BTC/... as the library spells them; a known symbol (WETH) -> its scenario asset."""
    for asset in SCENARIO_ASSETS:
        if asset.upper() == name.upper():
            return asset
    return SYMBOL_ALIASES.get(name.upper(), name)


def check_drop_assets(scenario: Scenario, book: Book) -> Scenario:
    """Spell names that are not scenario assets as the book does; an asset the book does not
    hold and the library does not know is an InputError (a typo would otherwise be silent)."""
    spelled = {s.upper(): s for s in book.symbols}
    drops: dict[str, float] = {}
    for key, value in scenario.drops.items():
        if key in SCENARIO_ASSETS:
            drops[key] = value
        elif key.upper() in spelled:
            drops[spelled[key.upper()]] = value
        else:
            have = ", ".join(sorted(set(book.symbols))) or "none"
            raise InputError(f"--drop {key}: no such asset in the book (assets: {have})")
    return replace(scenario, drops=drops)


# -- reading the book ------------------------------------------------------------------------------


def read_book_positions(
    client: RpcClient, markets: Sequence[MarketRef], block_number: int | None = None
) -> tuple[BlockRef, list[Position], list[Any]]:
    """Every discovered position of every market, all read at ONE pinned block."""
    reading = read_markets(client, markets, block_number=block_number)
    block, positions = reading.block, reading.positions
    states = [m.state for m in reading.markets]
    return block, positions, states


@dataclass(frozen=True)
class MarketGroup:
    """The rows of one market in the book, its base currency and that base's USD price."""

    key: str  # Position.market
    protocol: str
    label: str
    base_currency: str
    usd_per_base: float | None
    rows: npt.NDArray[np.int64]
    columns: npt.NDArray[np.int64]


@dataclass(frozen=True)
class StressBook:
    """The positions with debt as a per-market-column Book, grouped by market."""

    block: BlockRef
    positions: list[Position]
    book: Book
    markets: list[MarketGroup]
    column_market: npt.NDArray[np.int64]  # (m,) index into markets


def _label(p: Position) -> str:
    if p.market_label:
        return f"{p.protocol} {p.market_label}"
    return f"{p.protocol} {p.market[:10]}…"


def stress_book(block: BlockRef, positions: Sequence[Position]) -> StressBook:
    """Positions with debt (nothing else can be liquidated) as a book with market groups."""
    held = [p for p in positions if p.has_debt]
    book = book_from_positions(held, per_market_columns=True)
    # USD per unit of each symbol, from USD-based (Aave) markets; stables default to 1
    usd: dict[str, float] = {}
    for p in held:
        if p.base_currency is None:
            for a in p.assets:
                usd.setdefault(a.symbol.upper(), a.price_base / 10.0**p.base_currency_decimals)
    order: dict[str, int] = {}
    for p in held:
        order.setdefault(p.market, len(order))
    column_market = np.array(
        [order.get(_column_market(key, order), -1) for key in book.assets], dtype=np.int64
    )
    markets: list[MarketGroup] = []
    for key, i in order.items():
        first = next(p for p in held if p.market == key)
        base = first.base_currency or "USD"
        rate = 1.0 if base == "USD" else usd.get(str(base).upper())
        if rate is None and str(base).upper() in DEFAULT_STABLE_SYMBOLS:
            rate = 1.0
        rows = np.array([r for r, p in enumerate(held) if p.market == key], dtype=np.int64)
        cols = np.flatnonzero(column_market == i).astype(np.int64)
        markets.append(MarketGroup(key, first.protocol, _label(first), str(base), rate, rows, cols))
    return StressBook(block, held, book, markets, column_market)


def _column_market(column: str, markets: Mapping[str, int]) -> str:
    """The market part of a ``market:asset`` column (markets are matched case-insensitively)."""
    prefix = column.rsplit(":", 1)[0]
    for key in markets:
        if key.lower() == prefix:
            return key
    return prefix


_FIGURES = ("collateral_seized", "debt_repaid", "bad_debt", "collateral_at_risk", "debt_at_risk")


# -- running scenarios -----------------------------------------------------------------------------


def symbol_factors(sb: StressBook, shocked: npt.NDArray[np.float64]) -> dict[str, float]:
    """Price multiplier per symbol (shocked / current): what to publish on a devnet."""
    book = sb.book
    out: dict[str, float] = {}
    for j, sym in enumerate(book.symbols):
        if book.price_base[j] > 0:
            out.setdefault(sym, float(shocked[j] / book.price_base[j]))
    return out


def _usd(value: float, market: MarketGroup) -> float | None:
    return None if market.usd_per_base is None else value * market.usd_per_base


def _sum_usd(values: Sequence[float | None]) -> float:
    return float(sum(v for v in values if v is not None))


def scenario_report(
    sb: StressBook, scenario: Scenario, *, unmapped_volatile: str = "max"
) -> dict[str, Any]:
    """One scenario: totals, per market, per asset, as plain JSON-able data."""
    book = sb.book
    shocked = scenario_prices(book, scenario.drops, unmapped_volatile=unmapped_volatile)
    result: StressResult = apply_shock(book, shocked)
    factors = symbol_factors(sb, shocked)
    coll_value = book.collateral @ shocked  # per position, pre-shock base units
    debt_value = book.debt @ shocked
    seized_value = result.collateral_seized_units_by_asset * shocked  # per column
    repaid_value = result.debt_repaid_units_by_asset * shocked
    liq = result.liquidatable
    by_market: list[dict[str, Any]] = []
    for m in sb.markets:
        base_factor = 1.0 if m.base_currency == "USD" else factors.get(m.base_currency, 1.0)
        in_rows = np.zeros(book.n_positions, dtype=bool)
        in_rows[m.rows] = True
        hit = liq & in_rows
        figures = {
            "collateral_at_risk": float(coll_value[hit].sum()),
            "debt_at_risk": float(debt_value[hit].sum()),
            "collateral_seized": float(seized_value[m.columns].sum()),
            "debt_repaid": float(repaid_value[m.columns].sum()),
            "bad_debt": float(result.bad_debt_base[m.rows].sum()),
        }
        row: dict[str, Any] = {
            "market": m.key,
            "protocol": m.protocol,
            "label": m.label,
            "base_currency": m.base_currency,
            "positions": int(m.rows.size),
            "positions_liquidatable": int(hit.sum()),
            "liquidatable_accounts": [book.accounts[i] for i in np.flatnonzero(hit)],
        }
        for name, value in figures.items():
            row[f"{name}_base"] = value / base_factor  # in base tokens after the move
            row[f"{name}_usd"] = _usd(value, m)
        by_market.append(row)
    by_asset: dict[str, dict[str, Any]] = {}
    for j, sym in enumerate(book.symbols):
        m = sb.markets[int(sb.column_market[j])]
        a = by_asset.setdefault(
            sym,
            {
                "symbol": sym,
                "price_factor": factors.get(sym, 1.0),
                "collateral_seized_units": 0.0,
                "debt_repaid_units": 0.0,
                "collateral_seized_usd": 0.0,
                "debt_repaid_usd": 0.0,
                "bad_debt_usd": 0.0,
            },
        )
        a["collateral_seized_units"] += float(result.collateral_seized_units_by_asset[j])
        a["debt_repaid_units"] += float(result.debt_repaid_units_by_asset[j])
        for field, value in (
            ("collateral_seized_usd", seized_value[j]),
            ("debt_repaid_usd", repaid_value[j]),
            ("bad_debt_usd", result.bad_debt_by_asset_base[j]),
        ):
            converted = _usd(float(value), m)
            if converted is not None:
                a[field] += converted
    totals = {
        "positions_liquidatable": int(liq.sum()),
        **{f"{name}_usd": _sum_usd([r[f"{name}_usd"] for r in by_market]) for name in _FIGURES},
        "usd_complete": all(m.usd_per_base is not None for m in sb.markets),
    }
    return {
        "name": scenario_key(scenario) if scenario.date != "custom" else "custom",
        "event": scenario.name,
        "date": scenario.date,
        "window": scenario.window,
        "drops": dict(scenario.drops),
        "price_factors": factors,
        "sources": list(scenario.sources),
        "totals": totals,
        "by_market": by_market,
        "by_asset": list(by_asset.values()),
    }


def curve_report(sb: StressBook, drops: npt.NDArray[np.float64]) -> dict[str, Any]:
    """Collateral liquidatable vs a uniform drop of every volatile asset (stables held), per
    market in its base (after the move) and in USD, plus totals."""
    book = sb.book
    per_market: list[dict[str, Any]] = []
    totals = {k: np.zeros(drops.size) for k in ("collateral", "debt", "bad")}
    count = np.zeros(drops.size, dtype=np.int64)
    for m in sb.markets:
        c = liquidation_curve(book.subset(m.rows), drops)
        base_moves = m.base_currency != "USD" and m.base_currency.upper() not in (
            DEFAULT_STABLE_SYMBOLS
        )
        base_factor = (1.0 - drops) if base_moves else np.ones(drops.size)
        count += c.n_liquidatable
        row: dict[str, Any] = {
            "market": m.key,
            "label": m.label,
            "base_currency": m.base_currency,
            "positions_liquidatable": c.n_liquidatable.tolist(),
        }
        for name, values in (
            ("collateral_at_risk", c.collateral_at_risk_base),
            ("debt_at_risk", c.debt_at_risk_base),
            ("bad_debt", c.bad_debt_base),
        ):
            with np.errstate(divide="ignore", invalid="ignore"):
                row[f"{name}_base"] = np.where(base_factor > 0, values / base_factor, 0.0).tolist()
            row[f"{name}_usd"] = (
                None if m.usd_per_base is None else (values * m.usd_per_base).tolist()
            )
        if m.usd_per_base is not None:
            totals["collateral"] += c.collateral_at_risk_base * m.usd_per_base
            totals["debt"] += c.debt_at_risk_base * m.usd_per_base
            totals["bad"] += c.bad_debt_base * m.usd_per_base
        per_market.append(row)
    return {
        "drops": drops.tolist(),
        "positions_liquidatable": count.tolist(),
        "collateral_at_risk_usd": totals["collateral"].tolist(),
        "debt_at_risk_usd": totals["debt"].tolist(),
        "bad_debt_usd": totals["bad"].tolist(),
        "by_market": per_market,
    }


def stress_report(
    sb: StressBook,
    scenarios: Sequence[Scenario],
    *,
    curve_max: float = 0.6,
    curve_step: float = 0.05,
    unmapped_volatile: str = "max",
) -> dict[str, Any]:
    """The whole report (the ``--json`` document). An empty book (no debt anywhere) gives
    zero figures."""
    drops = shock_grid(curve_max, curve_step)
    empty = sb.book.n_positions == 0
    return {
        "block": {"number": sb.block.number, "hash": sb.block.hash},
        "positions": sb.book.n_positions,
        "markets": [
            {
                "market": m.key,
                "protocol": m.protocol,
                "label": m.label,
                "base_currency": m.base_currency,
                "usd_per_base": m.usd_per_base,
                "positions": int(m.rows.size),
            }
            for m in sb.markets
        ],
        "scenarios": [
            _empty_scenario(s)
            if empty
            else scenario_report(sb, s, unmapped_volatile=unmapped_volatile)
            for s in scenarios
        ],
        "curve": curve_report(sb, drops),
    }


def stress_chosen(
    sb: StressBook,
    chosen: Sequence[Scenario],
    custom: Scenario | None,
    *,
    curve_max_pct: float,
    curve_step_pct: float,
) -> dict[str, Any]:
    """The report for historical scenarios, or for a custom move (checked against the book's
    assets; then volatile assets it does not name are held, not given the largest drop)."""
    if custom is not None:
        chosen = [check_drop_assets(custom, sb.book)]
    return stress_report(
        sb,
        chosen,
        curve_max=curve_max_pct / 100.0,
        curve_step=curve_step_pct / 100.0,
        unmapped_volatile="hold" if custom is not None else "max",
    )


def _empty_scenario(scenario: Scenario) -> dict[str, Any]:
    """A scenario over a book without debt: nothing to liquidate."""
    zero = {f"{k}_usd": 0.0 for k in _FIGURES}
    return {
        "name": scenario_key(scenario) if scenario.date != "custom" else "custom",
        "event": scenario.name,
        "date": scenario.date,
        "window": scenario.window,
        "drops": dict(scenario.drops),
        "price_factors": {},
        "sources": list(scenario.sources),
        "totals": {"positions_liquidatable": 0, **zero, "usd_complete": True},
        "by_market": [],
        "by_asset": [],
    }


# -- the chart -------------------------------------------------------------------------------------


def write_curve_chart(report: Mapping[str, Any], path: Path) -> None:
    """The liquidation curve as a PNG (matplotlib, Agg backend: no display needed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    curve = report["curve"]
    x = [100.0 * d for d in curve["drops"]]
    fig, ax = plt.subplots(figsize=(8, 4.5), dpi=100)
    try:
        bottom = np.zeros(len(x))
        for m in curve["by_market"]:
            if m["collateral_at_risk_usd"] is None:
                continue
            y = np.asarray(m["collateral_at_risk_usd"])
            ax.fill_between(x, bottom, bottom + y, step=None, alpha=0.5, label=m["label"])
            bottom = bottom + y
        ax.plot(x, curve["collateral_at_risk_usd"], color="black", lw=1.5, label="total")
        ax.set_xlabel("uniform drop of volatile assets (%)")
        ax.set_ylabel("collateral liquidatable (USD)")
        ax.set_title(f"Liquidation curve at block {report['block']['number']}")
        ax.grid(alpha=0.3)
        twin = ax.twinx()
        twin.plot(x, curve["positions_liquidatable"], color="tab:red", ls="--", lw=1)
        twin.set_ylabel("positions liquidatable", color="tab:red")
        ax.legend(loc="upper left", fontsize=8)
        fig.tight_layout()
        fig.savefig(path, format="png")
    finally:
        plt.close(fig)


# -- the liquidation cascade -----------------------------------------------------------------------

CASCADE_DROPS: tuple[float, ...] = tuple(float(d) for d in shock_grid(0.5, 0.05))  # 0..50%
CASCADE_GRID = 1001  # seizures tabulated every 0.1% of drop, then interpolated
_SEL = {
    name: function_signature_to_4byte_selector(f"{name}()")
    for name in ("token0", "token1", "fee", "tickSpacing", "decimals")
}
_TICK_BITMAP = function_signature_to_4byte_selector("tickBitmap(int16)")
BITMAP_WORDS = 4  # words of the tick bitmap scanned for the edge of the current range


def _address(data: bytes) -> str:
    return str(decode(["address"], data)[0]).lower()


def _uint(data: bytes) -> int:
    return int(decode(["uint256"], data)[0])


@dataclass(frozen=True)
class PoolDepth:
    """One reference Uniswap V3 pool as the depth a symbol's seized collateral is sold into.

    Its current range acts as a constant-product pool on virtual reserves (x_v = L/sqrt(P) for
    token0, y_v = L·sqrt(P) for token1): exact while the sale stays in the range
    (``range_drop``: the fall of the symbol's pool price at which the range ends), a lower bound
    on the impact beyond it where liquidity thins away from the price (the usual shape, not a
    guarantee: the model does not read the ticks beyond)."""

    symbol: str
    pool: str
    quote: str
    token: str  # the symbol's token in the pool
    sells_token0: bool
    fee: float  # fraction
    reserve_units: float  # virtual reserve of the symbol, whole units
    range_drop: float | None  # None: no initialized tick within the scanned bitmap words

    def spot_impact(self, units: npt.ArrayLike) -> npt.NDArray[np.float64]:
        """Relative fall of the pool's price of the symbol after selling ``units`` at once."""
        return constant_product_spot_impact(units, self.reserve_units, self.fee)


def _range_edge(bitmap: Mapping[int, int], tick: int, spacing: int, downward: bool) -> int | None:
    """The initialized tick that ends the current range in the swap direction (<= tick going
    down, > tick going up, as the pool's own search does), from the scanned bitmap words."""
    compressed = tick // spacing
    for word in sorted(bitmap, reverse=downward):
        bits = bitmap[word]
        for bit in range(255, -1, -1) if downward else range(256):
            t = word * 256 + bit
            if (t <= compressed if downward else t > compressed) and bits >> bit & 1:
                return t * spacing
    return None


def read_pool_depths(
    client: RpcClient, block: BlockRef, sb: StressBook, references: Sequence[Any]
) -> tuple[dict[str, PoolDepth], list[dict[str, str]]]:
    """Each reference pool's state at the pinned block as a :class:`PoolDepth`, for the volatile
    symbols the book holds as collateral; the others with the reason they are left out."""
    held = {
        sym.upper()
        for j, sym in enumerate(sb.book.symbols)
        if sb.book.collateral[:, j].any() and sym.upper() not in DEFAULT_STABLE_SYMBOLS
    }
    skipped: list[dict[str, str]] = []
    usable = []
    for ref in references:
        sym = ref.symbol.upper()
        if not ref.pool:
            skipped.append({"symbol": sym, "reason": "no pool configured"})
        elif sym in DEFAULT_STABLE_SYMBOLS:
            skipped.append({"symbol": sym, "reason": "stable: not shocked"})
        elif sym not in held:
            skipped.append({"symbol": sym, "reason": "no collateral of it in the book"})
        else:
            usable.append(ref)
    if not usable:
        return {}, skipped
    calls: list[Call] = []
    for ref in usable:
        calls += [
            Call(ref.pool, _SEL["token0"], _address),
            Call(ref.pool, _SEL["token1"], _address),
            Call(ref.pool, _SEL["fee"], _uint),
            Call(ref.pool, _SEL["tickSpacing"], lambda d: int(decode(["int24"], d)[0])),
            *pool_state_calls(ref.pool),
        ]
    results = execute(client, calls, block)
    states = [results[6 * i : 6 * i + 6] for i in range(len(usable))]
    tokens = sorted({t for s in states for t in s[:2]})
    decimals = dict(
        zip(
            tokens,
            execute(client, [Call(t, _SEL["decimals"], _uint) for t in tokens], block),
            strict=True,
        )
    )
    # the symbol's token: an address of the book's columns of that symbol
    book_tokens: dict[str, set[str]] = {}
    for key, sym in zip(sb.book.assets, sb.book.symbols, strict=True):
        book_tokens.setdefault(sym.upper(), set()).add(key.rsplit(":", 1)[-1].lower())
    words: list[tuple[int, int]] = []  # (state index, word)
    sides: dict[int, bool] = {}
    for i, (ref, s) in enumerate(zip(usable, states, strict=True)):
        token0, token1, _, spacing, (_, tick), _ = s
        ours = book_tokens.get(ref.symbol.upper(), set())
        if not ({token0, token1} & ours):
            reason = f"pool {ref.pool} trades none of the book's {ref.symbol} tokens"
            skipped.append({"symbol": ref.symbol.upper(), "reason": reason})
            continue
        sells_token0 = sides[i] = token0 in ours
        start = (tick // spacing) >> 8
        step = -1 if sells_token0 else 1  # selling token0 moves the tick down
        words += [(i, start + step * k) for k in range(BITMAP_WORDS)]
    bitmap_calls = [
        Call(usable[i].pool, _TICK_BITMAP + encode(["int16"], [w]), _uint, allow_failure=True)
        for i, w in words
    ]
    bitmaps: list[dict[int, int]] = [{} for _ in usable]
    for (i, w), bits in zip(words, execute(client, bitmap_calls, block), strict=True):
        bitmaps[i][w] = bits or 0
    depths: dict[str, PoolDepth] = {}
    for i, sells_token0 in sides.items():
        ref = usable[i]
        token0, token1, fee, spacing, (sqrt_x96, tick), liquidity = states[i]
        x_v, y_v = v3_virtual_reserves(sqrt_x96, float(liquidity))
        reserve = x_v / 10.0 ** decimals[token0] if sells_token0 else y_v / 10.0 ** decimals[token1]
        edge = _range_edge(bitmaps[i], int(tick), int(spacing), downward=sells_token0)
        range_drop = None
        if edge is not None:
            ratio = (float(tick_to_sqrt_price(edge)) / sqrt_price_from_x96(sqrt_x96)) ** 2
            range_drop = 1.0 - (ratio if sells_token0 else 1.0 / ratio)
        depths[ref.symbol.upper()] = PoolDepth(
            ref.symbol.upper(),
            ref.pool,
            ref.quote,
            token0 if sells_token0 else token1,
            sells_token0,
            fee / 1e6,
            reserve,
            range_drop,
        )
    return depths, skipped


def merged_symbol_book(sb: StressBook, symbol: str) -> tuple[Book, float, list[str]] | None:
    """The positions that hold ``symbol`` as collateral, with its per-market columns merged into
    column 0, so :func:`onchain.risk.liquidity.cascade` moves it everywhere at once.

    Each position lives in one market, so it has at most one column of the symbol; the merged
    column is priced at one reference price (USD when a market gives it) and every other column
    of the position is rescaled by reference / market price of the symbol. Health factors and
    units seized are ratios of the position's own values, so they are unchanged. Columns where
    the symbol is only a Morpho loan token are left out of the move (its collateral there is
    priced in it; an LST would follow it anyway). Returns (book, reference price, market
    labels), or None when no position holds the symbol as collateral."""
    book = sb.book
    cols = [
        j
        for j, s in enumerate(book.symbols)
        if s.upper() == symbol.upper() and book.collateral[:, j].any()
    ]
    if not cols:
        return None
    groups = [sb.markets[int(sb.column_market[j])] for j in cols]
    priced = [(j, g) for j, g in zip(cols, groups, strict=True) if g.usd_per_base is not None]
    ref_j, ref_g = priced[0] if priced else (cols[0], groups[0])
    p_ref = float(book.price_base[ref_j]) * (ref_g.usd_per_base or 1.0)
    rows = np.concatenate([g.rows for g in groups])
    others = np.array([j for g in groups for j in g.columns if j not in cols], dtype=np.int64)
    own = np.empty(book.n_positions, dtype=np.int64)  # each row's column of the symbol
    for j, g in zip(cols, groups, strict=True):
        own[g.rows] = j
    col = own[rows]
    scale = p_ref / book.price_base[col]

    def merge(a: npt.NDArray[Any], scaled: bool) -> npt.NDArray[Any]:
        rest = a[rows][:, others] * (scale[:, None] if scaled else 1.0)
        return np.column_stack([a[rows, col], rest])

    merged = Book(
        collateral=merge(book.collateral, True),
        debt=merge(book.debt, True),
        liquidation_threshold=merge(book.liquidation_threshold, False),
        liquidation_bonus=merge(book.liquidation_bonus, False),
        close_factor_rule=book.close_factor_rule[rows],
        price_base=np.concatenate([[p_ref], book.price_base[others]]),
        is_stable=np.concatenate([[False], book.is_stable[others]]),
        symbols=(symbol, *(book.symbols[j] for j in others)),
        protocol_fee=np.concatenate([[book.protocol_fee[cols[0]]], book.protocol_fee[others]]),
    )
    return merged, p_ref if priced else float("nan"), [g.label for g in groups]


def cascade_report(
    sb: StressBook,
    depths: Mapping[str, PoolDepth],
    skipped: Sequence[Mapping[str, str]],
    drops: Sequence[float] = CASCADE_DROPS,
) -> dict[str, Any]:
    """Per symbol and initial drop of that symbol alone (everything else held): the drop after
    selling the seized collateral into its reference pool, again and again to the fixed point
    (:func:`onchain.risk.liquidity.cascade`), the units seized there and their USD value at the
    final price. The pool is taken as it is at the block (not already moved by the initial
    drop), and the seizures are each position's first liquidation call."""
    grid = np.asarray(drops, dtype=np.float64)
    out: list[dict[str, Any]] = []
    for sym, depth in depths.items():
        merged = merged_symbol_book(sb, sym)
        if merged is None:  # held only as a loan token: nothing to seize
            continue
        book, p_ref, labels = merged
        res = cascade(book, 0, grid, depth.spot_impact, grid_size=CASCADE_GRID)
        # cumulative sums leave ~1e-12 of float dust where nothing is seized
        dust = 1e-9 * float(book.collateral[:, 0].sum())
        seized = np.where(res.seized_units > dust, res.seized_units, 0.0)
        impact = depth.spot_impact(seized)
        steps = []
        for k in range(grid.size):
            value = float(seized[k]) * p_ref * (1.0 - float(res.final_drop[k]))
            steps.append(
                {
                    "initial_drop": float(grid[k]),
                    "final_drop": float(res.final_drop[k]),
                    "seized_units": float(seized[k]),
                    "seized_value_usd": value if math.isfinite(value) else None,
                    "pool_impact": float(impact[k]),
                    "within_range": depth.range_drop is not None
                    and float(impact[k]) <= depth.range_drop,
                    "iterations": int(res.iterations[k]),
                    "wiped_out": bool(res.collapsed[k]),
                }
            )
        out.append(
            {
                "symbol": sym,
                "pool": depth.pool,
                "quote": depth.quote,
                "token": depth.token,
                "fee": depth.fee,
                "virtual_reserve_units": depth.reserve_units,
                "range_drop": depth.range_drop,
                "price_usd": p_ref if math.isfinite(p_ref) else None,
                "markets": labels,
                "positions": book.n_positions,
                "steps": steps,
            }
        )
    return {
        "available": bool(out),
        "reason": None if out else "no reference pool for a volatile collateral of the book",
        "model": "V3 current range as constant product on virtual reserves; exact within "
        "range_drop, a lower bound on the impact beyond where liquidity thins",
        "by_symbol": out,
        "skipped": list(skipped),
    }


def no_cascade(reason: str) -> dict[str, Any]:
    """The ``cascade`` key when there is nothing to sell into."""
    return {"available": False, "reason": reason, "by_symbol": [], "skipped": []}


def book_cascade(client: RpcClient, sb: StressBook, references: Sequence[Any]) -> dict[str, Any]:
    """The ``cascade`` key of the report: pools read at the book's pinned block."""
    if not any(r.pool for r in references):
        return no_cascade("no reference pools configured ([risk.references.SYMBOL] pool = ...)")
    depths, skipped = read_pool_depths(client, sb.block, sb, references)
    return cascade_report(sb, depths, skipped)
