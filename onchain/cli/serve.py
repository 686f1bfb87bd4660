"""`onchain serve`: the JSON API, the dashboard and /metrics over the stored snapshots.

Binds 127.0.0.1 by default; any other address refuses to start without ONCHAIN_API_TOKEN (one
line, exit 2). With a token, API clients and scrapers send `Authorization: Bearer <token>` and
browsers sign in once at /login (a session cookie; onchain.api.signin). Read-only. `--demo`
first records a history of the devnet with the daemon's own jobs, then serves it."""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from onchain.cli.common import err
from onchain.cli.log_setup import configure, hide_secrets
from onchain.errors import InputError

DEMO_DIR = Path(".cache") / "demo"


def serve_cmd(
    config: Annotated[
        Path | None,
        typer.Option(
            "--config", help="TOML config: its [store] names the database, [api] the limits"
        ),
    ] = None,
    db: Annotated[
        str | None,
        typer.Option("--db", help="database URL (default: ONCHAIN_DB_URL, the config's)"),
    ] = None,
    host: Annotated[
        str,
        typer.Option(
            "--host", help="address to listen on; a non-loopback one needs ONCHAIN_API_TOKEN"
        ),
    ] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", help="port to listen on")] = 8000,
    demo: Annotated[
        bool,
        typer.Option(
            "--demo",
            help="record a devnet history into .cache/demo/ first (both protocols, prices "
            "sliding and recovering), then serve it; without a terminal on stdout it checks "
            "the server answers and exits",
        ),
    ] = False,
) -> None:
    """The HTTP API (/api/..., /docs), the dashboard (/) and Prometheus metrics (/metrics).

    Loopback only unless ONCHAIN_API_TOKEN is set: then API clients and /metrics scrapers send
    'Authorization: Bearer <token>', and browsers sign in with the token at /login."""
    from onchain.api.settings import api_settings
    from onchain.config import load_config
    from onchain.store.db import resolve_db_url

    settings = api_settings(config, host, port)  # the token check comes before anything else
    if demo:
        if config is not None or db is not None:
            raise InputError("--demo makes its own config and database: drop --config/--db")
        config = _record_demo(DEMO_DIR.resolve())
        settings = api_settings(config, host, port)
    elif config is None and db is None:
        raise InputError("give --config FILE (or --db URL): the store to serve")
    url = resolve_db_url(db, load_config(config) if config is not None else None)
    from onchain.api.app import create_app
    from onchain.api.server import check_address_free, open_read_only, uvicorn_server

    check_address_free(settings.host, settings.port)
    store = open_read_only(url)
    hide_secrets(secrets=[url.password])
    configure(base_level=logging.INFO)  # the server's log is its output
    try:
        app = create_app(store, settings)
        where = f"http://{settings.host}:{settings.port}/"
        if demo and not sys.stdout.isatty():
            _check_once(app, settings, where)
            return
        err.print(
            f"serving {store.url} on {where} (dashboard), {where}docs (API), "
            f"{where}metrics; Ctrl-C stops",
            highlight=False,
        )
        uvicorn_server(app, settings).run()
    finally:
        store.close()


def _record_demo(folder: Path) -> Path:
    """A fresh devnet history in `folder` (the previous one is replaced); returns its config."""
    from onchain.api.history import DEFAULT_PATH, devnet_config, record_history
    from onchain.devnet.build import running_devnet
    from onchain.store.db import make_engine, open_store, parse_db_url, upgrade

    folder.mkdir(parents=True, exist_ok=True)
    database = folder / "onchain-demo.sqlite"
    for stale in folder.glob("onchain-demo.sqlite*"):
        stale.unlink()
    url = f"sqlite:///{database}"
    engine = make_engine(parse_db_url(url), create_sqlite_dir=True)
    logging.getLogger("alembic").setLevel(logging.WARNING)
    upgrade(engine)
    engine.dispose()
    store = open_store(url)
    try:
        with running_devnet(300, 7) as info:
            config = devnet_config(info, folder, url)
            outcomes = record_history(info, store, config)
    finally:
        store.close()
    err.print(
        f"demo history: the daemon's jobs over {len(DEFAULT_PATH)} "
        f"blocks of falling then recovering prices ({outcomes}) in {database}",
        highlight=False,
    )
    return config


def _check_once(app: object, settings: Any, where: str) -> None:
    """Non-interactive demo: serve, fetch the dashboard and /readyz once, stop."""
    import requests

    from onchain.api.server import serving_in_thread

    with serving_in_thread(app, settings) as base:
        page = requests.get(base + "/", timeout=30)
        ready = requests.get(base + "/readyz", timeout=30)
    err.print(
        f"dashboard answered {page.status_code}, /readyz {ready.status_code}. In a terminal, "
        f"`make demo` keeps serving it at {where}; or run: .venv/bin/onchain serve "
        f"--config {DEMO_DIR / 'devnet.toml'}",
        highlight=False,
    )
