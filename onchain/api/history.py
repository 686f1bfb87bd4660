"""A stored history to look at: the daemon's own jobs (discover, refresh, assess) run over a
devnet whose prices move block by block. `onchain serve --demo` and the API tests use it, so the
dashboard always shows what the real daemon wrote."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from onchain.config import load_config
from onchain.devnet.config_file import write_devnet_config
from onchain.jobs.context import JobContext
from onchain.jobs.daemon import run_recorded
from onchain.store import crud
from onchain.store.db import Store

# WETH and WBTC in USD per step: a slide, a crash, a partial recovery
DEFAULT_PATH: tuple[tuple[float, float], ...] = (
    (3000.0, 60000.0),
    (2900.0, 58500.0),
    (2780.0, 57000.0),
    (2650.0, 55000.0),
    (2500.0, 52500.0),
    (2380.0, 50500.0),
    (2450.0, 51500.0),
    (2600.0, 54000.0),
)


def devnet_config(info: Any, folder: Path, db_url: str, layout: str = "snapshots") -> Path:
    """The devnet's own config (both protocols, reference pools) pointed at `db_url`, storing
    blocks in `layout` ([store] layout)."""
    path = folder / "devnet.toml"
    write_devnet_config(path, info)
    text = path.read_text()
    start = text.index("[store]")
    end = text.index("\n[", start + 1)
    store = f'[store]\nurl = "{db_url}"\nlayout = "{layout}"\n'
    path.write_text(text[:start] + store + text[end:])
    return path


def move_prices(info: Any, weth: float, wbtc: float) -> None:
    """WETH and WBTC to these USD prices in every market of the devnet (one step of a path)."""
    from onchain.devnet.control import set_prices
    from onchain.devnet.morpho import set_prices_everywhere

    prices = {"WETH": weth, "WBTC": wbtc}
    if info.morpho is not None:
        set_prices_everywhere(info.rpc_url, info.aave, info.morpho, prices)
    else:
        set_prices(info.rpc_url, info.aave, prices)


def record_history(
    info: Any,
    store: Store,
    config: Path,
    path: Sequence[tuple[float, float]] = DEFAULT_PATH,
) -> dict[str, int]:
    """One block per step of `path`, each refreshed, tiered and assessed by the daemon's jobs
    (recorded in job_runs like `onchain run` records them). Returns the outcomes counted."""
    cfg = load_config(config)
    ctx = JobContext(cfg, store, crud.sync_markets(store, cfg))
    outcomes: Counter[str] = Counter()
    outcomes[run_recorded(ctx, "discover")] += 1
    for weth, wbtc in path:
        move_prices(info, weth, wbtc)
        outcomes[run_recorded(ctx, "refresh")] += 1
        outcomes[run_recorded(ctx, "assess")] += 1
    return dict(outcomes)
