"""One discovery: the daemon's Morpho refresh plans the same position calls as `scan`.

Morpho keys positions by (market, account); discovery notes which markets each account used so
reads ask only for those pairs. The daemon loads a fresh market state per block and must carry
the notes (and rebuild them after a restart), or it asks for every market times every account.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from onchain.app.pipeline import scan
from onchain.config import load_config
from onchain.devnet.build import DevnetInfo
from onchain.devnet.chain import DevChain
from onchain.jobs.context import JobContext
from onchain.jobs.refresh import refresh_job
from onchain.protocols.base import MarketRef
from onchain.protocols.morpho_blue.adapter import MorphoBlueAdapter
from onchain.rpc.client import RpcClient
from onchain.store import crud
from onchain.store.db import make_engine, open_store, parse_db_url, upgrade

pytestmark = pytest.mark.devnet


@pytest.fixture
def planned(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The size of every batch of position calls the Morpho adapter plans."""
    sizes: list[int] = []
    original = MorphoBlueAdapter.plan_positions

    def counting(self: Any, state: Any, accounts: list[str], block: Any) -> Iterator[Any]:
        plan = original(self, state, accounts, block)
        batch = next(plan)
        try:
            while True:
                sizes.append(len(batch))
                batch = plan.send((yield batch))
        except StopIteration as stop:
            return stop.value

    monkeypatch.setattr(MorphoBlueAdapter, "plan_positions", counting)
    return sizes


def _config(tmp_path: Path, info: DevnetInfo) -> Path:
    assert info.morpho is not None
    path = tmp_path / "morpho.toml"
    path.write_text(
        f'[chains.devnet]\nchain_id = {info.chain_id}\nrpc_url = "{info.rpc_url}"\n\n'
        f'[[markets]]\nname = "morpho-blue-devnet"\nprotocol = "morpho-blue"\nchain = "devnet"\n'
        f'address = "{info.morpho.morpho}"\nstart_block = {info.morpho.deploy_block}\n\n'
        f'[store]\nurl = "sqlite:///{tmp_path / "daemon.sqlite"}"\n\n'
        '[jobs.refresh]\nat = "latest"\n'
    )
    return path


def test_daemon_refresh_plans_the_same_morpho_calls_as_scan(
    devnet: DevnetInfo, tmp_path: Path, planned: list[int]
) -> None:
    assert devnet.morpho is not None
    ref = MarketRef("morpho-blue", devnet.morpho.morpho, devnet.morpho.deploy_block)
    result = scan(RpcClient(devnet.rpc_url), ref)
    by_scan = sum(planned)
    assert result.positions and by_scan > 0
    accounts, markets = len(result.accounts), len(result.market_state.priced_markets)
    assert by_scan < accounts * markets  # the hook narrowed the pairs

    cfg = load_config(_config(tmp_path, devnet))
    url = parse_db_url(f"sqlite:///{tmp_path / 'daemon.sqlite'}")
    upgrade(make_engine(url, create_sqlite_dir=True))
    store = open_store(url)
    try:
        ctx = JobContext(cfg, store, crud.sync_markets(store, cfg))
        planned.clear()
        assert refresh_job(ctx, Counter()) == []
        assert sum(planned) == by_scan  # first run: discovery from the start block

        DevChain(devnet.rpc_url).mine(1)
        planned.clear()
        assert refresh_job(ctx, Counter()) == []
        assert sum(planned) == by_scan  # next block: a fresh state, the notes carried over

        DevChain(devnet.rpc_url).mine(1)
        restarted = JobContext(cfg, store, crud.sync_markets(store, cfg))
        planned.clear()
        assert refresh_job(restarted, Counter()) == []
        assert sum(planned) == by_scan  # after a restart: rebuilt from the logs to the cursor
    finally:
        store.close()
