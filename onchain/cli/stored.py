"""What the commands over the snapshot store share (status, history, report, alerts list):
opening the store, choosing a stored market, and how times and health factors print."""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from onchain.errors import InputError

if TYPE_CHECKING:
    from onchain.config import Config
    from onchain.store.db import Store

MARKET_ID = re.compile(r"^0x[0-9a-fA-F]{64}$")


def config_or_none(path: Path | None) -> Config | None:
    from onchain.config import load_config

    return load_config(path) if path is not None else None


@contextmanager
def opened_store(db: str | None, config: Path | None) -> Iterator[Store]:
    """Open an existing, up-to-date store; database errors become one-line StoreErrors."""
    from sqlalchemy.exc import SQLAlchemyError

    from onchain.store.db import StoreError, open_store, resolve_db_url

    store = open_store(resolve_db_url(db, config_or_none(config)))
    try:
        yield store
    except SQLAlchemyError as exc:
        inner = getattr(exc, "orig", None) or exc
        first = next((ln for ln in str(inner).splitlines() if ln.strip()), type(inner).__name__)
        raise StoreError(f"database {store.url}: {first.strip()}") from None
    finally:
        store.close()


def select_market(store: Store, market: str | None) -> tuple[str | None, str | None]:
    """--market of history/report as (market name, book key): a config name the store knows,
    or a market id (0x + 64 hex: one Morpho book); anything else is an error naming them."""
    from onchain.store import queries

    if market is None:
        return None, None
    names = queries.market_names(store)
    if market in names:
        return market, None
    if MARKET_ID.match(market):
        return None, market.lower()
    raise InputError(
        f"market {market!r} is not in {store.url} (known: {', '.join(names) or 'none yet'}; "
        "or a market id, 0x + 64 hex)"
    )


def no_book(store: Store, key: str) -> InputError:
    from onchain.store import queries

    names = ", ".join(queries.market_names(store)) or "none yet"
    return InputError(f"no stored book with market id {key} in {store.url} (markets: {names})")


def format_hf(value: int | None) -> str:
    """Four decimals, truncated: 0.99999 must never print as 1.0000."""
    from onchain.numbers import format_wad

    if value is None:
        return "∞ (no debt)"
    return format_wad(value, 4, trim=False)


def when(value: datetime | None) -> str:
    if value is None:
        return "-"
    seconds = (datetime.now(UTC) - value).total_seconds()
    if seconds < 120:
        ago = f"{seconds:.0f}s ago"
    elif seconds < 7200:
        ago = f"{seconds / 60:.0f}m ago"
    elif seconds < 172_800:
        ago = f"{seconds / 3600:.0f}h ago"
    else:
        ago = f"{seconds / 86400:.0f}d ago"
    return f"{value:%Y-%m-%d %H:%M:%S} ({ago})"


def quiet_alembic() -> None:
    import logging

    logging.getLogger("alembic").setLevel(logging.WARNING)
