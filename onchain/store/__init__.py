"""Snapshots in SQLite or PostgreSQL: models, migrations run from code, and the few reads and
writes the jobs and the CLI need (`crud` writes, `queries` reads)."""

from onchain.store.db import (
    Store,
    StoreError,
    current_revision,
    downgrade,
    head_revision,
    make_engine,
    open_store,
    parse_db_url,
    resolve_db_url,
    upgrade,
)

__all__ = [
    "Store",
    "StoreError",
    "current_revision",
    "downgrade",
    "head_revision",
    "make_engine",
    "open_store",
    "parse_db_url",
    "resolve_db_url",
    "upgrade",
]
