"""Running the API: the store opened read-only (SQLite `query_only`, PostgreSQL read-only
transactions), the address checked before anything listens, uvicorn in front."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import URL

from onchain.api.settings import ApiSettings
from onchain.errors import InputError
from onchain.store.db import Store, check_connection, make_engine, require_head


def _read_only(dbapi_connection: Any, _record: Any) -> None:
    """Every connection refuses writes: the API never changes the store."""
    if type(dbapi_connection).__module__.startswith("sqlite3"):
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA query_only = ON")
        cursor.close()
        return
    autocommit = dbapi_connection.autocommit
    dbapi_connection.autocommit = True
    try:
        dbapi_connection.execute("SET default_transaction_read_only = on")
    finally:
        dbapi_connection.autocommit = autocommit


def open_read_only(url: URL) -> Store:
    """An existing store at the schema head, opened so that no statement can write."""
    engine = make_engine(url)
    event.listen(engine, "connect", _read_only)
    check_connection(engine)
    require_head(engine)
    return Store(engine)


def check_address_free(host: str, port: int) -> None:
    """One clear line (exit 2) instead of a traceback when the port is taken."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as exc:
            raise InputError(f"cannot listen on {host}:{port}: {exc.strerror}") from None


def uvicorn_server(app: Any, settings: ApiSettings) -> Any:
    import uvicorn

    config = uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        log_level="info",
        access_log=True,
        server_header=False,
        proxy_headers=False,
    )
    return uvicorn.Server(config)


@contextlib.contextmanager
def serving_in_thread(app: Any, settings: ApiSettings) -> Iterator[str]:
    """The app served in a background thread until the block ends; yields its base URL."""
    server = uvicorn_server(app, settings)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError(f"the server did not start on {settings.host}:{settings.port}")
        time.sleep(0.05)
    try:
        yield f"http://{settings.host}:{settings.port}"
    finally:
        server.should_exit = True
        thread.join(timeout=20)
