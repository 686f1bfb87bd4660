"""What the daemon's incremental refresh asks the node per market per block when only prices
moved (counted with each run's client, `requests_sent`), and that a borrower appearing mid-run
is still discovered from the refresher's logs and stored as `scan` reads it."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from onchain.app.pipeline import scan
from onchain.config import load_config
from onchain.devnet.build import DevnetInfo
from onchain.devnet.chain import DevChain
from onchain.devnet.morpho import set_prices_everywhere
from onchain.devnet.seed import seeded_address
from onchain.jobs.context import JobContext
from onchain.jobs.refresh import refresh_job
from onchain.protocols.base import MarketRef
from onchain.rpc.client import RpcClient
from onchain.store import crud
from onchain.store.crud import MarketInfo
from onchain.store.db import Store
from tests.helpers.incremental_daemon import _config, _move, _scanned, _stored

# Per market per block when only prices moved. The refresh itself: the head (1), the range's
# logs, read once for the refresher and discovery (1), the market in one batch (1); the reorg
# check, the Multicall3 probe and the risk model's recent headers cost nothing more (the head
# names its parent, the probe is kept per endpoint set, the headers link to the pinned head).
# On Aave the new AnswerUpdated logs of its price feeds (the volatility model's) come in the
# refresher's one eth_getLogs too.
ENGINE = 3
BUDGET = {"aave": ENGINE, "morpho": ENGINE}


def _counted_run(ctx: JobContext) -> dict[str, float]:
    """One refresh run; the requests each market's client sent per block it wrote."""
    made: list[tuple[MarketInfo, RpcClient]] = []
    make = ctx.client

    def client(market: MarketInfo) -> RpcClient:
        made.append((market, make(market)))
        return made[-1][1]

    ctx.client = client  # type: ignore[method-assign]
    try:
        counts: Counter[str] = Counter()
        assert refresh_job(ctx, counts) == []
    finally:
        ctx.client = make  # type: ignore[method-assign]
    blocks = counts["blocks_written"] // len(made)  # a price move may take more than one block
    assert blocks >= 1 and counts["blocks_written"] == blocks * len(made)
    return {m.name: c.requests_sent / blocks for m, c in made}


def test_price_only_blocks_cost_the_budget_and_new_borrowers_are_still_found(
    devnet: DevnetInfo, store: Store, tmp_path: Path
) -> None:
    assert devnet.morpho is not None
    path = _config(tmp_path, devnet, store.engine.url.render_as_string(False))
    path.write_text(path.read_text().replace("reconcile_every_blocks = 2", ""))
    cfg = load_config(path)
    markets = crud.sync_markets(store, cfg)
    ctx = JobContext(cfg, store, markets)
    first = _counted_run(ctx)  # the full read
    per_block = []
    for step in range(4):
        set_prices_everywhere(devnet.rpc_url, devnet.aave, devnet.morpho, {"WETH": 2900.0 + step})
        per_block.append(_counted_run(ctx))
    print("requests per market per block:", first, per_block)
    for sent in per_block:
        assert sent["aave"] <= BUDGET["aave"] and sent["morpho"] <= BUDGET["morpho"], per_block
    assert all(first[m] > 3 * BUDGET[m] for m in first)  # the full read costs far more

    # a new Aave borrower (and a repay) mid-run: found in the refresher's logs, stored
    step = 10 + DevChain(devnet.rpc_url).block_number() % 100  # a newcomer per database run
    _move(devnet, step)
    moved = DevChain(devnet.rpc_url).block_number()
    _counted_run(ctx)
    newcomer = seeded_address(17, "incremental-daemon", step)
    aave = next(m for m in markets if m.name == "aave")
    tracked = crud.tracked_accounts(store, aave.id, moved)
    assert newcomer.lower() in {a.lower() for a in tracked}
    assert newcomer.lower() not in {
        a.lower() for a in crud.tracked_accounts(store, aave.id, moved - 1)
    }
    client = RpcClient(devnet.rpc_url, expected_chain_id=devnet.chain_id)
    for market in markets:
        cursor = crud.get_cursor(store, market.id, "discover")
        assert cursor is not None and cursor.block_number == moved
        ref = MarketRef(market.protocol, market.address)
        for number in range(moved - 4, moved + 1):
            full = scan(client, ref, block_number=number).positions
            assert _stored(store, number, market.id) == _scanned(full), (market.name, number)
    assert newcomer.lower() in {r[0] for r in _stored(store, moved, aave.id)}
