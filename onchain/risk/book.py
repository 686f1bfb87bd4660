"""The protocol-neutral book as arrays: every position of a snapshot as rows, every asset as columns.

Everything in ``onchain.risk`` takes a :class:`Book` (or the plain arrays inside it) and works on all
positions at once. Shapes and units:

======================  ==========  =========================================================
field                   shape       meaning
======================  ==========  =========================================================
``collateral``          (n, m)      collateral that COUNTS for health, in whole asset units
                                    (``collateral_raw / 10**decimals``; 0 when not enabled)
``debt``                (n, m)      debt in whole asset units
``liquidation_threshold`` (n, m)    fraction (0.83 = 83%) as this position counts the asset
                                    (eMode or market LLTV already applied by the adapter)
``liquidation_bonus``   (n, m)      fraction the liquidator gets on top of the repaid value
                                    when seizing this asset (0.05 = 5%; Morpho LIF - 1)
``close_factor_rule``   (n,)        :class:`CloseFactorRule` id (int8)
``price_base``          (m,)        price of one whole asset unit in the base currency
``is_stable``           (m,)        bool: held fixed in "volatile assets drop" shocks
``protocol_fee``        (m,)        share of the bonus kept by the protocol (Aave's
                                    liquidation protocol fee), fraction; 0 when unknown
======================  ==========  =========================================================

Assets are columns keyed by address (lower-case), so one book may mix markets as long as they
price an asset the same way; build one book per oracle/base currency otherwise
(:func:`book_from_positions` raises when two positions disagree on a price).

A position with no debt has HF = +inf everywhere in this package; one with debt but no collateral
has HF = 0.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from functools import cached_property
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from onchain.model import CloseFactorRule
from onchain.symbols import STABLE_SYMBOLS

if TYPE_CHECKING:
    from onchain.model import Position
    from onchain.position_rows import PositionRows

__all__ = ["Book", "CloseFactorRule", "book_from_positions", "book_from_rows", "make_book"]

FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]
IntArray = npt.NDArray[np.int64]


# HALF_OF_POSITION_ABOVE_HF_0_95 thresholds, in base currency units (USD on USD markets)
POSITION_RULE_MIN_BASE = 2000.0
POSITION_RULE_MIN_LEFTOVER_BASE = 1000.0


DEFAULT_STABLE_SYMBOLS: frozenset[str] = STABLE_SYMBOLS  # one list: onchain.symbols


@dataclass(frozen=True, eq=False)
class Book:
    """All positions of a snapshot as float64 matrices (see the module docstring for units)."""

    collateral: FloatArray
    debt: FloatArray
    liquidation_threshold: FloatArray
    liquidation_bonus: FloatArray
    close_factor_rule: npt.NDArray[np.int8]
    price_base: FloatArray
    is_stable: BoolArray
    assets: tuple[str, ...] = ()
    symbols: tuple[str, ...] = ()
    accounts: tuple[str, ...] = ()
    protocol_fee: FloatArray = field(default_factory=lambda: np.zeros(0))

    def __post_init__(self) -> None:
        n, m = np.shape(self.collateral)
        for name in ("debt", "liquidation_threshold", "liquidation_bonus"):
            if np.shape(getattr(self, name)) != (n, m):
                raise ValueError(f"{name} must have shape {(n, m)}")
        if np.shape(self.price_base) != (m,) or np.shape(self.is_stable) != (m,):
            raise ValueError(f"price_base and is_stable must have shape {(m,)}")
        if np.shape(self.close_factor_rule) != (n,):
            raise ValueError(f"close_factor_rule must have shape {(n,)}")
        if np.size(self.protocol_fee) == 0:
            object.__setattr__(self, "protocol_fee", np.zeros(m))
        elif np.shape(self.protocol_fee) != (m,):
            raise ValueError(f"protocol_fee must have shape {(m,)}")
        for name, size in (("assets", m), ("symbols", m), ("accounts", n)):
            value = getattr(self, name)
            if value and len(value) != size:
                raise ValueError(f"{name} must have {size} entries")

    @cached_property
    def collateral_lt(self) -> FloatArray:
        """collateral × liquidation threshold (asset units), the HF numerator before prices."""
        return self.collateral * self.liquidation_threshold

    @property
    def n_positions(self) -> int:
        return int(self.collateral.shape[0])

    @property
    def n_assets(self) -> int:
        return int(self.collateral.shape[1])

    def asset_index(self, key: str) -> int:
        """Column of an asset by address (any case) or symbol."""
        low = key.lower()
        for i, a in enumerate(self.assets):
            if a.lower() == low:
                return i
        for i, s in enumerate(self.symbols):
            if s.lower() == low:
                return i
        raise KeyError(key)

    def with_prices(self, price_base: FloatArray) -> Book:
        """The same positions valued at other prices (a scenario, the pending oracle prices)."""
        return replace(self, price_base=np.asarray(price_base, dtype=np.float64))

    def row_slice(self, start: int, stop: int) -> Book:
        """Positions start..stop-1 as views (no copy): for chunked, cache-friendly work."""
        return replace(
            self,
            collateral=self.collateral[start:stop],
            debt=self.debt[start:stop],
            liquidation_threshold=self.liquidation_threshold[start:stop],
            liquidation_bonus=self.liquidation_bonus[start:stop],
            close_factor_rule=self.close_factor_rule[start:stop],
            accounts=self.accounts[start:stop],
        )

    def subset(self, rows: npt.ArrayLike) -> Book:
        """Some positions (boolean mask or indexes), same assets."""
        idx = np.asarray(rows)
        accounts = tuple(np.asarray(self.accounts, dtype=object)[idx]) if self.accounts else ()
        return replace(
            self,
            collateral=self.collateral[idx],
            debt=self.debt[idx],
            liquidation_threshold=self.liquidation_threshold[idx],
            liquidation_bonus=self.liquidation_bonus[idx],
            close_factor_rule=self.close_factor_rule[idx],
            accounts=accounts,
        )


def make_book(
    collateral: npt.ArrayLike,
    debt: npt.ArrayLike,
    liquidation_threshold: npt.ArrayLike,
    price_base: npt.ArrayLike,
    *,
    is_stable: npt.ArrayLike | None = None,
    liquidation_bonus: npt.ArrayLike = 0.05,
    close_factor_rule: npt.ArrayLike = CloseFactorRule.HALF_ABOVE_HF_0_95,
    protocol_fee: npt.ArrayLike = 0.0,
    assets: Sequence[str] = (),
    symbols: Sequence[str] = (),
    accounts: Sequence[str] = (),
) -> Book:
    """Build a :class:`Book` from array-likes, broadcasting per-asset/per-position parameters.

    ``liquidation_threshold`` and ``liquidation_bonus`` may be (m,) (same for every position) or
    (n, m); ``close_factor_rule`` a scalar or (n,). Used by tests, benchmarks and scenario tools.
    """
    c = np.atleast_2d(np.asarray(collateral, dtype=np.float64))
    n, m = c.shape
    d = np.broadcast_to(np.asarray(debt, dtype=np.float64), (n, m)).copy()
    lt = np.broadcast_to(np.asarray(liquidation_threshold, dtype=np.float64), (n, m)).copy()
    bonus = np.broadcast_to(np.asarray(liquidation_bonus, dtype=np.float64), (n, m)).copy()
    rule = np.broadcast_to(np.asarray(close_factor_rule, dtype=np.int8), (n,)).copy()
    stable = (
        np.zeros(m, dtype=bool)
        if is_stable is None
        else np.broadcast_to(np.asarray(is_stable, dtype=bool), (m,)).copy()
    )
    return Book(
        collateral=c,
        debt=d,
        liquidation_threshold=lt,
        liquidation_bonus=bonus,
        close_factor_rule=rule,
        price_base=np.broadcast_to(np.asarray(price_base, dtype=np.float64), (m,)).copy(),
        is_stable=stable,
        assets=tuple(assets),
        symbols=tuple(symbols),
        accounts=tuple(accounts),
        protocol_fee=np.broadcast_to(np.asarray(protocol_fee, dtype=np.float64), (m,)).copy(),
    )


def _lookup(mapping: Mapping[str, Any] | None, *keys: str) -> Any:
    if not mapping:
        return None
    for k in keys:
        for cand in (k, k.lower()):
            if cand in mapping:
                return mapping[cand]
    return None


def book_from_positions(
    positions: Sequence[Position],
    *,
    bonus_by_asset: Mapping[str, float] | None = None,
    default_bonus: float = 0.05,
    close_factor_rule_by_protocol: Mapping[str, CloseFactorRule] | None = None,
    default_close_factor_rule: CloseFactorRule = CloseFactorRule.HALF_ABOVE_HF_0_95,
    stable_assets: Sequence[str] | None = None,
    protocol_fee_by_asset: Mapping[str, float] | None = None,
    price_rtol: float = 1e-12,
    per_market_columns: bool = False,
) -> Book:
    """Turn adapter positions (the dataclasses of ``onchain.protocols.base``) into a Book. Pure.

    Columns are asset addresses (lower-case) in order of first appearance; with
    ``per_market_columns`` they are ``"market:asset"`` instead, for protocols whose markets price
    the same token with different oracles (Morpho Blue): align a volatility model by symbol and
    the columns of one token move together. Amounts are
    ``raw / 10**decimals``; prices ``price_base / 10**base_currency_decimals``. Collateral counts
    only where ``collateral_enabled`` (as the protocol counts it).

    Liquidation bonus of a position-asset (fraction), first match wins:
    ``position.terms.liquidation_bonus[asset]`` (the adapter's :class:`~onchain.model.RiskTerms`),
    ``bonus_by_asset[address or symbol]`` (config), then ``default_bonus``.
    Close factor rule: ``position.terms.close_factor_rule``,
    ``close_factor_rule_by_protocol[position.protocol]`` (config), then the default.
    Protocol fee of an asset column: ``protocol_fee_by_asset[address or symbol]`` (config), else
    the first position whose terms publish one for that asset, else 0.
    Stable assets: addresses or symbols in ``stable_assets``; by default
    :data:`DEFAULT_STABLE_SYMBOLS` matched on symbol.
    """
    columns: dict[str, int] = {}
    symbols: list[str] = []
    prices: list[float] = []

    def column(pos: Position, a: Any) -> str:
        return f"{pos.market.lower()}:{a.asset.lower()}" if per_market_columns else a.asset.lower()

    for pos in positions:
        scale = 10.0**pos.base_currency_decimals
        for a in pos.assets:
            key = column(pos, a)
            price = a.price_base / scale
            if key not in columns:
                columns[key] = len(columns)
                symbols.append(a.symbol)
                prices.append(price)
            elif not np.isclose(prices[columns[key]], price, rtol=price_rtol, atol=0.0):
                raise ValueError(
                    f"asset {a.asset} ({a.symbol}) has two prices in one book "
                    f"({prices[columns[key]]} and {price}); build one book per oracle"
                )
    n, m = len(positions), len(columns)
    collateral = np.zeros((n, m))
    debt = np.zeros((n, m))
    lt = np.zeros((n, m))
    bonus = np.full((n, m), float(default_bonus))
    rule = np.full(n, int(default_close_factor_rule), dtype=np.int8)
    published_fee: dict[int, float] = {}
    for r, pos in enumerate(positions):
        terms = pos.terms
        term_bonus = terms.liquidation_bonus if terms is not None else None
        rule_value = terms.close_factor_rule if terms is not None else None
        if rule_value is None:
            rule_value = _lookup(close_factor_rule_by_protocol, pos.protocol)
        if rule_value is not None:
            rule[r] = int(rule_value)
        for a in pos.assets:
            j = columns[column(pos, a)]
            if terms is not None and j not in published_fee:
                published = _lookup(terms.protocol_fee, a.asset)
                if published is not None:
                    published_fee[j] = float(published)
            unit = 10.0**a.decimals
            if a.collateral_enabled:
                collateral[r, j] = a.collateral_raw / unit
            debt[r, j] = a.debt_raw / unit
            lt[r, j] = a.liquidation_threshold_bps / 1e4
            b = _lookup(term_bonus, a.asset)
            if b is None:
                b = _lookup(bonus_by_asset, a.asset, a.symbol)
            if b is not None:
                bonus[r, j] = float(b)
    stable = _stable_columns(tuple(columns), symbols, stable_assets)
    fee = np.zeros(m)
    for key, j in columns.items():
        f = _lookup(protocol_fee_by_asset, key.split(":")[-1], symbols[j])
        if f is not None:
            fee[j] = float(f)
        elif j in published_fee:
            fee[j] = published_fee[j]
    return Book(
        collateral=collateral,
        debt=debt,
        liquidation_threshold=lt,
        liquidation_bonus=bonus,
        close_factor_rule=rule,
        price_base=np.asarray(prices, dtype=np.float64).reshape(m),
        is_stable=stable,
        assets=tuple(columns),
        symbols=tuple(symbols),
        accounts=tuple(p.account for p in positions),
        protocol_fee=fee,
    )


def _stable_columns(
    keys: Sequence[str], symbols: Sequence[str], stable_assets: Sequence[str] | None
) -> BoolArray:
    """The stable columns, by `book_from_positions`'s rule (symbols by default)."""
    if stable_assets is None:
        return np.array([s.upper() in DEFAULT_STABLE_SYMBOLS for s in symbols], dtype=bool)
    wanted = {s.lower() for s in stable_assets}
    return np.array(
        [
            key.split(":")[-1] in wanted or sym.lower() in wanted
            for key, sym in zip(keys, symbols, strict=True)
        ],
        dtype=bool,
    )


def book_from_rows(
    rows: PositionRows,
    *,
    bonus_by_asset: Mapping[str, float] | None = None,
    default_bonus: float = 0.05,
    stable_assets: Sequence[str] | None = None,
    protocol_fee_by_asset: Mapping[str, float] | None = None,
    per_market_columns: bool = True,
) -> Book:
    """The Book `book_from_positions` gives for the same block's positions, from an adapter's
    arrays (`onchain.position_rows.PositionRows`, `RiskRows.risk_rows`) instead of Position
    objects: the same values to the bit, the same column order (assets in order of first
    appearance over rows; only assets some row holds), the same keyword rules (bonus: the
    adapter's, then `bonus_by_asset`, then `default_bonus`; stable and fee as there).

    Columns are ``"market:asset"`` (``per_market_columns``, what the risk assessment uses);
    without it plain asset addresses, for a record whose assets are one per column (one market)."""
    n = len(rows)
    keys = rows.column_keys
    if not per_market_columns:
        keys = tuple(a.lower() for a in rows.assets)
        if len(set(keys)) != len(keys):
            raise ValueError("an asset has a column per market: use per_market_columns")
    held = rows.held
    first = np.where(held.any(axis=0), np.argmax(held, axis=0), n) if n else np.zeros(0)
    order = np.argsort(first, kind="stable")[: int(np.count_nonzero(first < n))]
    symbols = tuple(rows.symbols[j] for j in order)
    assets = tuple(keys[j] for j in order)
    bonus = rows.liquidation_bonus[:, order]
    unset = np.isnan(bonus)
    if unset.any():
        configured = np.array(
            [
                float(default_bonus if b is None else b)
                for b in (_lookup(bonus_by_asset, rows.assets[j], rows.symbols[j]) for j in order)
            ]
        )
        filled = np.where(held[:, order], configured, float(default_bonus))
        bonus = np.where(unset, filled, bonus)
    fee = rows.protocol_fee[order].copy()
    for i, j in enumerate(order):
        f = _lookup(protocol_fee_by_asset, keys[j].split(":")[-1], rows.symbols[j])
        if f is not None:
            fee[i] = float(f)
    # C order, as book_from_positions lays them out: numpy's sums over a row follow the memory
    # layout, and a Fortran-ordered copy would differ from it in the last bits
    return Book(
        collateral=np.ascontiguousarray(rows.collateral[:, order]),
        debt=np.ascontiguousarray(rows.debt[:, order]),
        liquidation_threshold=np.ascontiguousarray(rows.liquidation_threshold[:, order]),
        liquidation_bonus=np.ascontiguousarray(bonus),
        close_factor_rule=np.asarray(rows.close_factor_rule, dtype=np.int8),
        price_base=rows.price_base[order].astype(np.float64),
        is_stable=_stable_columns(assets, symbols, stable_assets),
        assets=assets,
        symbols=symbols,
        accounts=rows.accounts,
        protocol_fee=fee,
    )
