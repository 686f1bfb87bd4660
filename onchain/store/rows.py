"""One position's and one asset's stored values, as both layouts write them (the snapshot
rows and the change layout's latest view), and the SQL helpers both writers share."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from sqlalchemy import JSON, Connection, Table
from sqlalchemy.dialects import postgresql, sqlite

from onchain.protocols.base import Position
from onchain.rpc.client import BlockRef
from onchain.store.types import UINT256_MAX, Uint256

if TYPE_CHECKING:  # a value the refresh hands over
    from onchain.store.crud import Assessed

WAD = 10**18
IN_CHUNK = 900  # values per IN (...) list: below SQLite's old 999-variable limit


def chunks(items: Sequence[Any], size: int = IN_CHUNK) -> Iterable[Sequence[Any]]:
    """`items` in slices of `size`, for IN (...) lists a backend takes in one statement."""
    for start in range(0, len(items), size):
        yield items[start : start + size]


def insert_for(conn: Connection, table: Table) -> Any:
    """INSERT with ON CONFLICT support on both backends."""
    dialect = postgresql if conn.dialect.name == "postgresql" else sqlite
    return dialect.insert(table)


# the types `jsonable` hands back as they are, exactly these (a subclass takes the long way)
_PLAIN = frozenset({type(None), bool, int, float, str})


def jsonable(value: Any) -> Any:
    """Protocol extras as JSON: ints stay exact (JSONB numerics and Python's json keep them).
    A dict keyed by strings and a list take a short way (a position's extras are tens of
    them, rebuilt for every row a reader shows); the result is the long way's."""
    kind = type(value)
    if kind in _PLAIN:
        return value
    plain = _PLAIN
    if kind is dict:
        return {
            k if type(k) is str else str(k): v if type(v) in plain else jsonable(v)
            for k, v in value.items()
        }
    if kind is list:
        return [v if type(v) in plain else jsonable(v) for v in value]
    return _jsonable(value)


def _jsonable(value: Any) -> Any:
    """`jsonable` of any value."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, (bytes, bytearray)):
        return "0x" + bytes(value).hex()
    if isinstance(value, Mapping):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [jsonable(v) for v in value]
    return str(value)


def position_values(block: BlockRef, p: Position, verdict: Assessed) -> dict[str, Any]:
    """A position's row at `block` with its verdict (the key columns are the caller's)."""
    hf = p.health_factor
    return {
        "block_number": block.number,
        "block_hash": block.hash,
        "block_timestamp": block.timestamp,
        "base_currency_decimals": p.base_currency_decimals,
        "health_factor": hf,
        "health_factor_float": None if hf is None else hf / WAD,
        "liquidatable": p.liquidatable,
        "total_collateral_base": p.total_collateral_base,
        "total_debt_base": p.total_debt_base,
        "available_borrows_base": p.available_borrows_base,
        "liquidation_threshold_bps": p.liquidation_threshold_bps,
        "ltv_bps": p.ltv_bps,
        "risk_tier": verdict.tier,
        "risk_reason": verdict.reason,
        "risk_reasons": verdict.reasons,
        "liquidation_probability": verdict.probability,
        "pending_health_factor": verdict.pending_health_factor,
        "horizon_s": verdict.horizon_s,
        "extra": jsonable(p.extra),
    }


def asset_values(asset: Any) -> dict[str, Any]:
    """One asset row's values (model.AssetPosition), as both layouts store them."""
    return {
        "price_base": asset.price_base,
        "collateral_raw": asset.collateral_raw,
        "debt_raw": asset.debt_raw,
        "collateral_base": asset.collateral_base,
        "debt_base": asset.debt_base,
        "collateral_enabled": asset.collateral_enabled,
        "liquidation_threshold_bps": asset.liquidation_threshold_bps,
        "liquidation_price_base": asset.liquidation_price_base,
        "liquidation_price_base_exact": _exact(asset.liquidation_price_base),
    }


def _exact(value: Any) -> int | None:
    """An adapter's exact integer; anything else (None, a float estimate) has no exact twin."""
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def copy_rows(conn: Connection, table: Table, rows: list[dict[str, Any]]) -> None:
    """Rows into `table` by COPY (PostgreSQL): uint256 bounds checked, JSON as text."""
    columns = list(rows[0])
    kinds: list[str] = []
    for name in columns:
        kind = table.c[name].type
        kinds.append("u" if isinstance(kind, Uint256) else "j" if isinstance(kind, JSON) else "")
    raw = conn.connection.driver_connection
    assert raw is not None
    with raw.cursor() as cursor:
        names = ", ".join(f'"{c}"' for c in columns)
        with cursor.copy(f'COPY "{table.name}" ({names}) FROM STDIN') as copy:
            for row in rows:
                values = []
                for name, how in zip(columns, kinds, strict=True):
                    value = row[name]
                    if value is not None and how == "u":
                        if isinstance(value, bool) or not 0 <= value <= UINT256_MAX:
                            raise ValueError(f"{table.name}.{name}: {value} is outside uint256")
                    elif value is not None and how == "j":
                        value = json.dumps(value)
                    values.append(value)
                copy.write_row(values)
