"""The demo's last act: alerts arriving. A signed webhook receiver starts on 127.0.0.1, a
throw-away store gets one refresh of the devnet's Aave market (the same job `onchain run`
runs), the rule fires for every liquidatable position inside that block's transaction, and the
delivery job sends them; the receiver verifies each signature."""

from __future__ import annotations

import os
import secrets
import tempfile
from collections import Counter
from pathlib import Path
from typing import Any

SECRET_ENV = "ONCHAIN_DEMO_WEBHOOK_SECRET"


def demo_alerts(info: Any, out: Any) -> None:
    """Print what arrived: how many, signatures checked, and the first message in full."""
    from onchain.alerts.delivery import deliver_all
    from onchain.alerts.receiver import Receiver
    from onchain.config import load_config
    from onchain.devnet.config_file import devnet_config_text
    from onchain.jobs.context import JobContext
    from onchain.jobs.refresh import refresh_job
    from onchain.store import crud
    from onchain.store.db import make_engine, open_store, parse_db_url, upgrade

    secret = secrets.token_hex(16)
    os.environ[SECRET_ENV] = secret  # this process only: the channel reads it like any secret
    with tempfile.TemporaryDirectory() as folder, Receiver(secret) as hook:
        path = Path(folder) / "alerts-demo.toml"
        path.write_text(
            devnet_config_text(info)
            + '\n[[alerts.rules]]\nname = "liquidatable"\nmarkets = ["aave-v3-devnet"]\n'
            'from_tier = "LIQUIDATABLE"\n'
            f'\n[[alerts.channels]]\nname = "demo-webhook"\nurl = "{hook.url}"\n'
            f'secret_env = "{SECRET_ENV}"\n'
        )
        cfg = load_config(path)
        cfg.alerts.check()
        url = str(cfg.store.resolve_url())
        engine = make_engine(parse_db_url(url), create_sqlite_dir=True)
        upgrade(engine)
        engine.dispose()
        store = open_store(url)
        try:
            ctx = JobContext(cfg, store, crud.sync_markets(store, cfg, ["aave-v3-devnet"]))
            counts: Counter[str] = Counter()
            errors = refresh_job(ctx, counts)
            totals = deliver_all(store, cfg.alerts)
        finally:
            store.close()
    if errors:
        out.print(f"alerts: the refresh failed: {errors[0]}")
        return
    arrived = hook.delivered
    verified = sum(1 for d in arrived if d.signed)
    out.print(
        f"\nalerts: the refresh queued {counts['alerts_queued']} alert(s) with its snapshot; "
        f"the webhook on 127.0.0.1:{hook.port} received {len(arrived)} "
        f"({verified} signature(s) verified, {totals['retry'] + totals['failed']} not delivered)"
    )
    if arrived:
        first = arrived[0].json
        out.print(f"first alert, id {first['id']} (the webhook JSON has {len(first)} fields):")
        out.print(first["text"], highlight=False, markup=False)
