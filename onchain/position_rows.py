"""A block's positions as arrays, protocol-neutral: what the risk book needs of every position of a
market, built by an incremental adapter straight from its kept state (``RiskRows``), without one
:class:`~onchain.model.Position` object per account (those cost 0.1-0.5 ms each, the arrays a
few microseconds).

Rows are the positions, in the order the adapter's ``positions_from_states`` gives them for the
same states; columns are (market, asset) pairs. Shapes and units (n rows, m columns):

==========================  ========  ======================================================
field                       shape     meaning (the same as the Position field it stands for)
==========================  ========  ======================================================
``accounts``                (n,)      ``Position.account``
``row_market``              (n,)      index into ``markets`` (``Position.market``)
``held``                    (n, m)    the asset is one of ``Position.assets``
``collateral_enabled``      (n, m)    ``AssetPosition.collateral_enabled``
``collateral``              (n, m)    ``collateral_raw / 10**decimals`` where enabled, else 0
``debt``                    (n, m)    ``debt_raw / 10**decimals``
``liquidation_threshold``   (n, m)    ``liquidation_threshold_bps / 1e4`` (eMode / LLTV applied)
``liquidation_bonus``       (n, m)    ``terms.liquidation_bonus`` of the asset; NaN: none given
``close_factor_rule``       (n,)      ``terms.close_factor_rule`` (:class:`CloseFactorRule`)
``column_market``           (m,)      index into ``markets``
``assets``/``symbols``      (m,)      ``AssetPosition.asset`` / ``.symbol``
``decimals``                (m,)      ``AssetPosition.decimals``
``price_base``              (m,)      ``price_base / 10**base_currency_decimals`` (one price per
                                      column: every row holding it counts it at that price)
``protocol_fee``            (m,)      ``terms.protocol_fee`` of the asset; 0 where none given
==========================  ========  ======================================================

Per market (index of ``markets``): ``base_currencies`` (``Position.base_currency``, None: USD) and
``market_labels``. ``holds``: row -> the :class:`~onchain.model.LiquidationHold` the position
would carry were it below the threshold (``Position.liquidation_hold`` is that hold when the
exact health factor is below 1, None otherwise); rows with none are absent.

Within a row, held columns come in the order the Position lists its assets (ascending column
index), so the book's column order (first appearance over rows) follows from the arrays alone.
Amounts are the exact integers' floats: equal to what the Position-based book holds."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cached_property

import numpy as np
import numpy.typing as npt

from onchain.model import LiquidationHold
from onchain.rpc.client import BlockRef

FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]


@dataclass(frozen=True, eq=False)
class PositionRows:
    """A market's positions at one block as arrays (see the module docstring)."""

    protocol: str
    version: str | None
    block: BlockRef
    accounts: tuple[str, ...]
    row_market: npt.NDArray[np.intp]
    markets: tuple[str, ...]
    base_currencies: tuple[str | None, ...]
    market_labels: tuple[str | None, ...]
    held: BoolArray
    collateral_enabled: BoolArray
    collateral: FloatArray
    debt: FloatArray
    liquidation_threshold: FloatArray
    liquidation_bonus: FloatArray
    close_factor_rule: npt.NDArray[np.int8]
    column_market: npt.NDArray[np.intp]
    assets: tuple[str, ...]
    symbols: tuple[str, ...]
    decimals: npt.NDArray[np.int64]
    price_base: FloatArray
    protocol_fee: FloatArray
    holds: Mapping[int, LiquidationHold] = field(default_factory=dict)
    # (m,) per column: (supply, borrow) ln growth per second of a unit supplied / borrowed at
    # the block's rates (`RiskTerms.interest`); None: the adapter does not know them
    supply_rate: FloatArray | None = None
    borrow_rate: FloatArray | None = None

    def __post_init__(self) -> None:
        n, m = len(self.accounts), len(self.assets)
        for name in (
            "held",
            "collateral_enabled",
            "collateral",
            "debt",
            "liquidation_threshold",
            "liquidation_bonus",
        ):
            if np.shape(getattr(self, name)) != (n, m):
                raise ValueError(f"{name} must have shape {(n, m)}")
        for name in ("row_market", "close_factor_rule"):
            if np.shape(getattr(self, name)) != (n,):
                raise ValueError(f"{name} must have shape {(n,)}")
        for name in ("column_market", "decimals", "price_base", "protocol_fee"):
            if np.shape(getattr(self, name)) != (m,):
                raise ValueError(f"{name} must have shape {(m,)}")
        for name in ("supply_rate", "borrow_rate"):
            if getattr(self, name) is not None and np.shape(getattr(self, name)) != (m,):
                raise ValueError(f"{name} must have shape {(m,)}")
        if len(self.symbols) != m:
            raise ValueError(f"symbols must have {m} entries")
        k = len(self.markets)
        if len(self.base_currencies) != k or len(self.market_labels) != k:
            raise ValueError(f"base_currencies and market_labels must have {k} entries")

    def __len__(self) -> int:
        return len(self.accounts)

    @cached_property
    def column_keys(self) -> tuple[str, ...]:
        """``"market:asset"`` (lower-case) per column: the risk book's per-market column names."""
        return tuple(
            f"{self.markets[int(i)].lower()}:{a.lower()}"
            for i, a in zip(self.column_market, self.assets, strict=True)
        )

    def market_of(self, row: int) -> str:
        return self.markets[int(self.row_market[row])]

    def hold(self, row: int, health_factor: int | None) -> LiquidationHold | None:
        """``Position.liquidation_hold`` of a row given its exact health factor (wad)."""
        if health_factor is None or health_factor >= 10**18:
            return None
        return self.holds.get(row)
