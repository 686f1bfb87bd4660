"""`onchain stress` without the CLI: read a book at one pinned block, shock it, tabulate.

The I/O shell around :mod:`onchain.risk.stress` (which stays pure): positions come from the
pipeline (every discovered account of every selected market, one block), the book is built with
one column per (market, asset) because Morpho markets price a token with their own oracle, and
the results are regrouped per market, per asset and as totals.

Units. A market's figures are in its base currency: USD for Aave V3 (its oracle's base currency
on every deployment), the loan token for a Morpho market (``extra["base_currency"]``). A scenario
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

from onchain.errors import InputError
from onchain.pipeline import discover_accounts, load_market, read_positions
from onchain.protocols.base import MarketRef, Position
from onchain.risk.book import DEFAULT_STABLE_SYMBOLS, Book, book_from_positions
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
    """``--drop ETH=-30%`` (repeatable) as one scenario; ``ETH=+10%`` is a rise. Names are
    scenario assets (ETH, BTC, LINK, USDC/USD, stETH/ETH...) or book symbols; a book symbol with
    an alias (WETH -> ETH) moves the whole family. Malformed input is an InputError."""
    drops: dict[str, float] = {}
    for item in items:
        match = DROP_PATTERN.match(item)
        if not match:
            raise InputError(f"malformed --drop {item!r}: expected ASSET=-30% (e.g. ETH=-30%)")
        name, pct = match.group(1), float(match.group(2))
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
    block = client.pin_block(block_number)
    positions: list[Position] = []
    states: list[Any] = []
    for ref in markets:
        state = load_market(client, ref, block)
        states.append(state)
        accounts = discover_accounts(client, ref.protocol, state, block, from_block=ref.start_block)
        positions += read_positions(client, ref.protocol, state, accounts, block)
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
    extra = p.extra or {}
    if extra.get("market_label"):
        return f"{p.protocol} {extra['market_label']}"
    return f"{p.protocol} {p.market[:10]}…"


def stress_book(block: BlockRef, positions: Sequence[Position]) -> StressBook:
    """Positions with debt (nothing else can be liquidated) as a book with market groups."""
    held = [p for p in positions if p.has_debt]
    book = book_from_positions(held, per_market_columns=True)
    # USD per unit of each symbol, from USD-based (Aave) markets; stables default to 1
    usd: dict[str, float] = {}
    for p in held:
        if "base_currency" not in (p.extra or {}):
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
        base = (first.extra or {}).get("base_currency", "USD")
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
