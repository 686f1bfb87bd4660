"""Alembic environment: run migrations on the connection `onchain db upgrade` hands over, or on
the URL given with `-x db=URL` / ONCHAIN_DB_URL when the alembic command is used directly."""

from __future__ import annotations

import os
from logging.config import fileConfig
from typing import Any

from alembic import context

from onchain.store.db import make_engine, parse_db_url
from onchain.store.models import Base

config = context.config
target_metadata = Base.metadata


def _configure(connection: Any) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        compare_type=True,
        render_as_batch=True,  # SQLite alters tables by copying them; batch mode does that
    )


def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        _configure(connection)
        with context.begin_transaction():
            context.run_migrations()
        return
    if config.config_file_name:  # the alembic command: log as alembic.ini says
        fileConfig(config.config_file_name, disable_existing_loggers=False)
    url = context.get_x_argument(as_dictionary=True).get("db") or os.environ.get("ONCHAIN_DB_URL")
    if not url:
        raise SystemExit("give the database: alembic -x db=URL ... (or set ONCHAIN_DB_URL)")
    engine = make_engine(parse_db_url(url), create_sqlite_dir=True)
    with engine.connect() as conn:
        _configure(conn)
        with context.begin_transaction():
            context.run_migrations()
    engine.dispose()


if context.is_offline_mode():
    raise SystemExit("offline (--sql) mode is not supported: migrations run on a live database")
run_migrations_online()
