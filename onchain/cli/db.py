"""`onchain db upgrade|downgrade|current`: the snapshot database's schema (Alembic)."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Annotated, Any

import typer

from onchain.cli.common import DbOpt, StoreConfigOpt, err
from onchain.cli.stored import config_or_none, quiet_alembic
from onchain.errors import InputError

db_app = typer.Typer(help="The snapshot database: create or migrate its schema (Alembic).")


@contextmanager
def _migrating(url: Any) -> Iterator[None]:
    """Alembic and the database speak in tracebacks: an unknown revision is bad input, a
    refused write (a read-only file, a read-only role) one line naming the database."""
    from alembic.util.exc import CommandError
    from sqlalchemy.exc import SQLAlchemyError

    from onchain.store.db import StoreError, safe_url

    try:
        yield
    except CommandError as exc:
        raise InputError(f"revision: {str(exc).splitlines()[0]}") from None
    except SQLAlchemyError as exc:
        inner = getattr(exc, "orig", None) or exc
        first = next((ln for ln in str(inner).splitlines() if ln.strip()), type(inner).__name__)
        raise StoreError(f"database {safe_url(url)}: {first.strip()}") from None
    except OSError as exc:
        raise StoreError(f"database {safe_url(url)}: {exc.strerror or exc}") from None


@db_app.command("upgrade")
def db_upgrade(
    revision: Annotated[str, typer.Argument(help="target revision")] = "head",
    config: StoreConfigOpt = None,
    db: DbOpt = None,
) -> None:
    """Create the schema or migrate it to the newest revision (the only way it changes)."""
    from onchain.store.db import (
        current_revision,
        head_revision,
        make_engine,
        resolve_db_url,
        safe_url,
        upgrade,
    )

    quiet_alembic()
    url = resolve_db_url(db, config_or_none(config))
    with _migrating(url):
        engine = make_engine(url, create_sqlite_dir=True)
        try:
            before = current_revision(engine)
            after = upgrade(engine, revision)
        finally:
            engine.dispose()
    head = head_revision()
    note = " (head)" if after == head else ""
    err.print(f"database {safe_url(url)}: {before or 'empty'} -> {after}{note}", highlight=False)


# `db downgrade -1`: a negative revision is an argument, not an unknown option
@db_app.command("downgrade", context_settings={"ignore_unknown_options": True})
def db_downgrade(
    revision: Annotated[
        str, typer.Argument(help="target revision: -1 (one step back), a revision id, or base")
    ],
    config: StoreConfigOpt = None,
    db: DbOpt = None,
    yes: Annotated[
        bool, typer.Option("--yes", help="do not ask: the tables dropped lose their data")
    ] = False,
) -> None:
    """Migrate the schema back (`base` drops every table: all stored data is lost). Asks first;
    without a terminal it refuses unless --yes is given."""
    from onchain.store.db import current_revision, downgrade, make_engine, resolve_db_url, safe_url

    if revision.startswith("--"):  # -1 is a revision, so unknown options arrive here
        raise InputError(f"no such option: {revision}")
    quiet_alembic()
    url = resolve_db_url(db, config_or_none(config))
    with _migrating(url):
        engine = make_engine(url)
        try:
            before = current_revision(engine)
            if not yes:
                _confirm_downgrade(safe_url(url), before, revision)
            try:
                after = downgrade(engine, revision)
            except RuntimeError as exc:  # a migration that refuses says why, in one line
                raise InputError(str(exc)) from None
        finally:
            engine.dispose()
    err.print(
        f"database {safe_url(url)}: {before or 'empty'} -> {after or 'base'}", highlight=False
    )


def _confirm_downgrade(url: str, before: str | None, revision: str) -> None:
    what = f"downgrade {url} from {before or 'empty'} to {revision}"
    if not sys.stdin.isatty():
        raise InputError(f"{what} drops tables and their data: pass --yes to confirm")
    if not typer.confirm(f"{what}? Dropped tables lose their data", default=False):
        raise InputError("downgrade cancelled: nothing changed")


@db_app.command("current")
def db_current(config: StoreConfigOpt = None, db: DbOpt = None) -> None:
    """Print the schema revision of the database and the one this code needs."""
    from onchain.store.db import current_revision, head_revision, make_engine, resolve_db_url

    quiet_alembic()
    url = resolve_db_url(db, config_or_none(config))
    engine = make_engine(url)
    try:
        current = current_revision(engine)
    finally:
        engine.dispose()
    print(f"{current or 'empty'} (head: {head_revision()})")
