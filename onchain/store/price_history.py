"""The oracle prices the daemon stored with each market snapshot, as a price history: the last
stored price of each hour per asset, so a monitor's volatility can be fitted on what it has
already seen (one row per hour and asset, whatever the number of stored blocks)."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import and_, func, select

from onchain.store.crud import T_ASSETS, T_RESERVES, T_SNAPSHOTS
from onchain.store.db import Store

HOUR_S = 3600


@dataclass(frozen=True)
class StoredPrices:
    """One asset's stored oracle prices (base-currency integers), oldest first."""

    symbol: str
    address: str
    times_s: list[int]
    prices: list[int]


def hourly_stored_prices(
    store: Store, market_id: int, since_s: int, until_s: int, *, step_s: int = HOUR_S
) -> dict[str, StoredPrices]:
    """Per asset address (lower case): the price of the newest stored snapshot of each
    ``step_s`` bucket from ``since_s`` to ``until_s`` (block timestamps)."""
    s = T_SNAPSHOTS
    bucket = (s.c.block_timestamp // step_s).label("bucket")
    newest = (
        select(func.max(s.c.block_timestamp).label("ts"))
        .where(
            s.c.market_id == market_id,
            s.c.block_timestamp >= since_s,
            s.c.block_timestamp <= until_s,
        )
        .group_by(bucket)
        .subquery()
    )
    query = (
        select(s.c.block_timestamp, T_ASSETS.c.address, T_ASSETS.c.symbol, T_RESERVES.c.price_base)
        .join(newest, and_(s.c.block_timestamp == newest.c.ts, s.c.market_id == market_id))
        .join(T_RESERVES, T_RESERVES.c.snapshot_id == s.c.id)
        .join(T_ASSETS, T_ASSETS.c.id == T_RESERVES.c.asset_id)
        .order_by(s.c.block_timestamp)
    )
    out: dict[str, StoredPrices] = {}
    with store.read() as conn:
        for ts, address, symbol, price in conn.execute(query):
            key = str(address).lower()
            got = out.setdefault(key, StoredPrices(str(symbol), key, [], []))
            if got.times_s and got.times_s[-1] == int(ts):
                continue  # two snapshots at one timestamp: keep the first
            if int(price) > 0:
                got.times_s.append(int(ts))
                got.prices.append(int(price))
    return out
