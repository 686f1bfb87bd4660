"""Opening the store: validate the database URL, tune SQLite, and run Alembic migrations from
code (`onchain db upgrade` is the only way the schema is made or changed)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, create_engine, event, text
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError, DBAPIError, NoSuchModuleError, SQLAlchemyError

from onchain.errors import OnchainError

# Inside the package so an installed wheel migrates; alembic.ini is optional (a checkout has one).
MIGRATIONS_DIR = Path(__file__).resolve().parents[1] / "migrations"
ALEMBIC_INI = Path(__file__).resolve().parents[2] / "alembic.ini"
DEFAULT_SQLITE_FILE = "onchain.sqlite"
SQLITE_BUSY_TIMEOUT_MS = 30_000


class StoreError(OnchainError):
    """The database URL is malformed, the database cannot be reached, or its schema is not the
    one this code expects. Exit code 2, like other bad input."""

    exit_code = 2


def safe_url(url: URL | str) -> str:
    """The URL without its password, for messages and logs."""
    try:
        parsed = url if isinstance(url, URL) else make_url(url)
    except ArgumentError:
        return "<malformed database URL>"
    return parsed.render_as_string(hide_password=True)


def parse_db_url(value: str) -> URL:
    """A validated URL: SQLite (a file) or PostgreSQL through psycopg 3; anything else is one
    clear StoreError before anything is opened or written."""
    if not isinstance(value, str) or not value.strip():
        raise StoreError("empty database URL")
    try:
        url = make_url(value.strip())
    except ArgumentError:
        raise StoreError(
            "malformed database URL (expected sqlite:///PATH or "
            "postgresql+psycopg://USER@HOST:PORT/DB)"
        ) from None
    backend, _, driver = url.drivername.partition("+")
    if backend == "sqlite":
        if driver not in ("", "pysqlite"):
            raise StoreError(f"unsupported SQLite driver {driver!r} in {safe_url(url)}")
        if not url.database or url.database == ":memory:":
            raise StoreError(f"the SQLite URL must name a file: {safe_url(url)}")
        return url
    if backend in ("postgresql", "postgres"):
        if driver not in ("", "psycopg"):
            raise StoreError(
                f"unsupported PostgreSQL driver {driver!r}: use postgresql+psycopg:// (psycopg 3)"
            )
        if not url.database:
            raise StoreError(f"the PostgreSQL URL must name a database: {safe_url(url)}")
        return url.set(drivername="postgresql+psycopg")
    raise StoreError(f"unsupported database {backend!r}: use sqlite:/// or postgresql+psycopg://")


def resolve_db_url(flag: str | None, config: Any | None) -> URL:
    """--db, then ONCHAIN_DB_URL, then the config's [store], then ./onchain.sqlite."""
    candidate = flag or os.environ.get("ONCHAIN_DB_URL")
    if not candidate and config is not None:
        candidate = config.store.resolve_url()
    if not candidate:
        candidate = f"sqlite:///{Path(DEFAULT_SQLITE_FILE).resolve()}"
    return parse_db_url(candidate)


# SQLite's page cache per connection, KiB (its default is 2 MiB): the latest view of a book of
# tens of thousands of positions and its indexes are tens of MiB, read and updated every block
SQLITE_CACHE_KIB = 65_536


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    """Foreign keys on; wait for the write lock instead of failing; Python's sqlite3 must not
    open transactions itself; a page cache the size of a large book's latest view (filled only
    as pages are read). (WAL is set once, by `upgrade`: it is stored in the file.)"""
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    cursor.execute(f"PRAGMA cache_size=-{SQLITE_CACHE_KIB}")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
    cursor.close()


def _sqlite_begin(conn: Connection) -> None:
    """Writers take SQLite's write lock up front (BEGIN IMMEDIATE): a read-then-write transaction
    cannot then fail halfway because another writer got in between."""
    immediate = conn.get_execution_options().get("sqlite_immediate", False)
    conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")


def make_engine(url: URL, *, create_sqlite_dir: bool = False) -> Engine:
    """An engine for a validated URL. A SQLite file must already exist unless we are creating
    the schema (so `status` on a mistyped path does not leave an empty database behind)."""
    if url.get_backend_name() == "sqlite":
        path = Path(str(url.database)).expanduser()
        if create_sqlite_dir:
            path.parent.mkdir(parents=True, exist_ok=True)
        elif not path.exists():
            raise StoreError(f"no database at {path}: create it with `onchain db upgrade`")
        engine = create_engine(url, connect_args={"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000})
        event.listen(engine, "connect", _sqlite_pragmas)
        event.listen(engine, "begin", _sqlite_begin)
        return engine
    try:
        return create_engine(url, pool_pre_ping=True, connect_args={"connect_timeout": 10})
    except NoSuchModuleError:
        raise StoreError("PostgreSQL needs psycopg 3: pip install 'psycopg[binary]'") from None


def check_connection(engine: Engine) -> None:
    try:
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
    except (DBAPIError, SQLAlchemyError) as exc:
        raise StoreError(
            f"cannot open database {safe_url(engine.url)}: {_first_line(exc)}"
        ) from None


def _first_line(exc: BaseException) -> str:
    inner = getattr(exc, "orig", None) or exc
    lines = [line.strip() for line in str(inner).splitlines() if line.strip()]
    return lines[0] if lines else type(inner).__name__


# -- migrations ------------------------------------------------------------------------------


def alembic_config(connection: Connection | None = None) -> Any:
    """Alembic's config pointing at migrations/, whether or not alembic.ini is at hand."""
    from alembic.config import Config as AlembicConfig

    if not (MIGRATIONS_DIR / "env.py").exists():
        raise StoreError(f"migrations not found at {MIGRATIONS_DIR}")
    cfg = AlembicConfig(str(ALEMBIC_INI)) if ALEMBIC_INI.exists() else AlembicConfig()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    if connection is not None:
        cfg.attributes["connection"] = connection
    return cfg


def head_revision() -> str:
    from alembic.script import ScriptDirectory

    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    if head is None:
        raise StoreError("migrations/ has no revisions")
    return head


def current_revision(engine: Engine) -> str | None:
    from alembic.runtime.migration import MigrationContext

    try:
        with engine.connect() as conn:
            return MigrationContext.configure(conn).get_current_revision()
    except (DBAPIError, SQLAlchemyError) as exc:
        raise StoreError(
            f"cannot open database {safe_url(engine.url)}: {_first_line(exc)}"
        ) from None


def upgrade(engine: Engine, revision: str = "head") -> str | None:
    """Bring the schema to `revision` in one transaction per migration; returns the new one."""
    from alembic import command

    check_connection(engine)
    if engine.dialect.name == "sqlite":  # readers (status, report) never wait for the daemon
        raw = engine.raw_connection()  # outside any transaction, as SQLite requires
        try:
            raw.cursor().execute("PRAGMA journal_mode=WAL")
        finally:
            raw.close()
    with engine.begin() as conn:
        command.upgrade(alembic_config(conn), revision)
    return current_revision(engine)


def downgrade(engine: Engine, revision: str) -> str | None:
    from alembic import command

    check_connection(engine)
    with engine.begin() as conn:
        command.downgrade(alembic_config(conn), revision)
    return current_revision(engine)


def require_head(engine: Engine) -> None:
    """Refuse to run against a schema other than the one this code was written for."""
    current, head = current_revision(engine), head_revision()
    if current != head:
        found = f"at revision {current}" if current else "empty (no schema)"
        raise StoreError(
            f"database {safe_url(engine.url)} is {found}, this version needs {head}: "
            "run `onchain db upgrade`"
        )


@dataclass
class Store:
    """An open database: the engine plus the transaction helpers every writer uses."""

    engine: Engine

    @property
    def url(self) -> str:
        return safe_url(self.engine.url)

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    @contextmanager
    def write(self) -> Iterator[Connection]:
        """One transaction that writes: committed whole on success, rolled back on any error."""
        with self.engine.connect().execution_options(sqlite_immediate=True) as conn, conn.begin():
            yield conn

    @contextmanager
    def read(self) -> Iterator[Connection]:
        """One read transaction: every query inside sees the same committed state."""
        with self.engine.connect() as conn, conn.begin():
            yield conn

    def close(self) -> None:
        self.engine.dispose()


def open_store(url: URL | str, *, check_schema: bool = True) -> Store:
    """Open an existing, up-to-date store; StoreError (exit 2) if it is missing or stale."""
    engine = make_engine(url if isinstance(url, URL) else parse_db_url(url))
    check_connection(engine)
    if check_schema:
        require_head(engine)
    return Store(engine)
