"""Per-block daemon refresh in the change layout, three ways on the same devnet blocks in the
same run, one SQLite store each; the time is `refresh_block`'s (pin, reads, exact figures, risk
tiers, alert rules, the block's one store transaction), per block, summed over the markets:

- full re-read: every tracked account read again at every block (`incremental = false`);
- incremental: kept state, only the accounts the logs touched read again, then every Position
  built, tiered, and written whole into the latest view (`refresh.LEAN = False`);
- lean: the same reads, every position's exact figures and verdict without a Position, a
  Position only for the rows written whole, the other latest rows updated in place
  (`refresh.LEAN = True`, the daemon's path).

Scenarios: only oracle prices move; prices move and 1% of the Aave accounts borrow a little.
Sizes above 3,000 borrowers use the Aave-only devnet (`running_devnet(..., aave_only=True)`),
which keeps no old logs: its borrowers are registered as discovered before the first block.

    .venv/bin/python bench/bench_lean_refresh.py [--accounts 300 30000] [--blocks 3]
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_store_layout import _config as store_layout_config

import onchain.jobs.refresh as refresh_module
from onchain.config import load_config
from onchain.devnet.build import DevnetInfo, running_devnet
from onchain.devnet.chain import DevChain, calldata
from onchain.devnet.config_file import risk_section
from onchain.devnet.control import _in_one_block as in_one_block
from onchain.devnet.control import set_prices
from onchain.jobs.context import JobContext
from onchain.jobs.refresh import refresh_job
from onchain.rpc.client import RpcClient
from onchain.store import crud
from onchain.store.db import make_engine, open_store, parse_db_url, upgrade

AAVE_ONLY_ABOVE = 3_000
WAYS = (("full re-read", False, False), ("incremental", True, False), ("lean", True, True))

_SECONDS: list[float] = []
_CPU: list[float] = []  # this process's CPU seconds: the wall is noisy on a shared machine
_real_refresh_block = refresh_module.refresh_block


def _timed_refresh_block(*args: Any, **kwargs: Any) -> Any:
    started, cpu = time.perf_counter(), time.process_time()
    try:
        return _real_refresh_block(*args, **kwargs)
    finally:
        _SECONDS.append(time.perf_counter() - started)
        _CPU.append(time.process_time() - cpu)


def _config(folder: Path, info: DevnetInfo, url: str, incremental: bool) -> Path:
    """bench_store_layout's daemon config in the change layout, reading in full or not, with
    the devnet's risk references."""
    folder.mkdir()
    path = store_layout_config(folder, info, url, "changes")
    text = path.read_text() + risk_section(info)
    path.write_text(
        text if incremental else text.replace("incremental = true", "incremental = false")
    )
    return path


def _context(folder: Path, info: DevnetInfo, name: str, incremental: bool) -> JobContext:
    url = f"sqlite:///{folder / name.replace(' ', '-')}.sqlite"
    engine = make_engine(parse_db_url(url), create_sqlite_dir=True)
    upgrade(engine)
    engine.dispose()
    store = open_store(url)
    cfg = load_config(_config(folder / name.replace(" ", "-"), info, url, incremental))
    markets = crud.sync_markets(store, cfg)
    if len(info.borrowers) > AAVE_ONLY_ABOVE:  # no old logs to discover them from
        head = RpcClient(info.rpc_url).pin_block()
        aave = next(m for m in markets if m.name == "aave")
        crud.record_discovery(store, aave, dict.fromkeys(info.borrowers, 0), head)
    return JobContext(cfg, store, markets)


def _touch(info: DevnetInfo, rng: random.Random) -> None:
    """1% of the borrowers borrow 1 USDC each, in one block."""
    usdc, pool = info.aave.tokens["USDC"], info.aave.pool
    chosen = rng.sample(info.borrowers, max(1, len(info.borrowers) // 100))
    txs = [
        (
            a,
            pool,
            calldata("borrow(address,uint256,uint256,uint16,address)", usdc, 10**6, 2, 0, a),
            900_000,
        )
        for a in chosen
    ]
    for lo in range(0, len(txs), 200):
        in_one_block(DevChain(info.rpc_url), txs[lo : lo + 200])


def _refresh(ctx: JobContext, lean: bool) -> tuple[float, float, Counter[str]]:
    """One run of the refresh job; wall and CPU seconds per block (markets summed) and the
    run's counts."""
    refresh_module.LEAN = lean
    _SECONDS.clear()
    _CPU.clear()
    counts: Counter[str] = Counter()
    assert refresh_job(ctx, counts) == []
    per_market = max(1, counts["blocks_written"] // len(ctx.markets))
    return sum(_SECONDS) / per_market, sum(_CPU) / per_market, counts


def run(accounts: int, blocks: int) -> None:
    rng = random.Random(15)
    aave_only = accounts > AAVE_ONLY_ABOVE
    with (
        running_devnet(accounts, 7, aave_only=aave_only) as info,
        tempfile.TemporaryDirectory() as tmp,
    ):
        folder = Path(tmp)
        which = "Aave-only devnet" if aave_only else "devnet (Aave + Morpho)"
        print(f"\n{accounts:,} borrowers, {which}, SQLite stores, layout = changes")
        contexts = {name: (_context(folder, info, name, inc), lean) for name, inc, lean in WAYS}
        for name, (ctx, lean) in contexts.items():  # the first block: everything read, untimed
            seconds, _cpu, counts = _refresh(ctx, lean)
            print(f"  first block ({name}): {seconds:.2f}s, {counts['positions']} positions")
        print(
            f"  {'scenario':<26}{'way':<14}{'s/block':>9}{'CPU s':>8}{'whole rows':>12}"
            f"{'vs full':>9}{'vs incr.':>9}{'CPU vs full':>13}"
        )
        for scenario in ("only prices moved", "prices + 1% touched"):
            per_way: dict[str, list[float]] = {name: [] for name in contexts}
            cpu_way: dict[str, list[float]] = {name: [] for name in contexts}
            whole: dict[str, int] = dict.fromkeys(contexts, 0)
            for _ in range(blocks):
                set_prices(info.rpc_url, info.aave, {"WETH": 3000 * rng.uniform(0.97, 1.03)})
                if scenario != "only prices moved":
                    _touch(info, rng)
                for name, (ctx, lean) in contexts.items():
                    seconds, cpu, counts = _refresh(ctx, lean)
                    per_way[name].append(seconds)
                    cpu_way[name].append(cpu)
                    whole[name] = counts["positions_whole"] if lean else counts["positions"]
            medians = {name: statistics.median(v) for name, v in per_way.items()}
            cpus = {name: statistics.median(v) for name, v in cpu_way.items()}
            for i, (name, seconds) in enumerate(medians.items()):
                vs_full = medians["full re-read"] / seconds
                vs_incr = medians["incremental"] / seconds
                print(
                    f"  {scenario if i == 0 else '':<26}{name:<14}{seconds:>9.3f}{cpus[name]:>8.3f}"
                    f"{whole[name]:>12}{vs_full:>8.1f}x{vs_incr:>8.1f}x"
                    f"{cpus['full re-read'] / cpus[name]:>12.1f}x"
                )
        for ctx, _lean in contexts.values():
            ctx.store.close()
    refresh_module.LEAN = True


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--accounts", type=int, nargs="+", default=[300])
    parser.add_argument("--blocks", type=int, default=3)
    args = parser.parse_args()
    refresh_module.refresh_block = _timed_refresh_block  # type: ignore[assignment]
    for accounts in args.accounts:
        run(accounts, args.blocks)


if __name__ == "__main__":
    main()
