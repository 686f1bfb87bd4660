"""Alerts over a store without a chain: a config with one market and its rules and channels,
and blocks of positions written with their alerts in the snapshot's transaction."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from onchain.alerts.outbox import BlockAlerts, record_block
from onchain.jobs.assess import assess
from onchain.store import crud
from onchain.store.db import Store
from tests.helpers.store_rows import MARKET, block, market_snapshot, position


def hf(x: float) -> int:
    return round(x * 10_000) * 10**14


def alerts_config(tmp_path: Path, channels: str, rules: str = "") -> Path:
    path = tmp_path / "alerts.toml"
    path.write_text(
        '[chains.devnet]\nchain_id = 31337\nrpc_url = "http://127.0.0.1:1"\n\n'
        f'[[markets]]\nname = "m"\nprotocol = "aave-v3"\nchain = "devnet"\naddress = "{MARKET}"\n\n'
        f'[store]\npath = "alerts.sqlite"\n\n{rules or DEFAULT_RULES}\n{channels}'
    )
    return path


DEFAULT_RULES = '[[alerts.rules]]\nname = "any"\nfrom_tier = "HIGH"\ncooldown_s = 0\n'


def webhook(name: str, url: str, secret_env: str = "ONCHAIN_TEST_SECRET") -> str:
    return f'[[alerts.channels]]\nname = "{name}"\nurl = "{url}"\nsecret_env = "{secret_env}"\n'


def write_block(store: Store, cfg: Any, n: int, hfs: list[float | None]) -> int:
    """One block of positions with these health factors, alerts in its transaction."""
    market = crud.sync_markets(store, cfg)[0]
    blk = block(n)
    positions = [position(i, blk, None if h is None else hf(h)) for i, h in enumerate(hfs)]
    assessed = assess(positions, cfg.tiers)
    queued = []
    hook = BlockAlerts(cfg.alerts, cfg.path, market, blk, positions, assessed)
    crud.write_snapshot(store, market, blk, positions, assessed, market_snapshot(), None,
                        lambda conn: queued.append(record_block(conn, hook)))  # fmt: skip
    return queued[0]
