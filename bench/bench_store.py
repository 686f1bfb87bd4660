"""Store and daemon costs, measured (not timed tests).

1. Snapshot writes, rows per second, on SQLite and PostgreSQL: the bulk path the daemon uses
   (executemany on SQLite; COPY on PostgreSQL) and, for comparison, plain executemany INSERTs
   on PostgreSQL. A row is a position, an asset row or a reserve row; each block is one
   transaction, as in the daemon.
2. One full refresh cycle on the devnet for 300 and 3,000 accounts: pin the head, check for a
   reorg, load the market, read every position, read reserves, tier, write one block. Wall time
   split into chain reads and the store write, with the RPC requests it took
   (`RpcClient.requests_sent`).

    .venv/bin/python bench/bench_store.py [--accounts 300 3000] [--blocks 10] [--no-postgres]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psycopg
from eth_utils import to_checksum_address

from onchain.config import TierThresholds, load_config
from onchain.devnet.build import running_devnet
from onchain.devnet.chain import DevChain
from onchain.devnet.control import set_prices
from onchain.jobs.assess import assess
from onchain.jobs.context import JobContext
from onchain.jobs.discover import discover_job
from onchain.jobs.refresh import refresh_job
from onchain.protocols.base import AssetPosition, MarketSnapshot, Position, ReserveSnapshot
from onchain.rpc.client import BlockRef
from onchain.store import crud
from onchain.store.db import make_engine, open_store, parse_db_url, upgrade

PG_SERVER = os.environ.get("ONCHAIN_BENCH_PG", "postgresql://postgres@127.0.0.1:5432")
WAD = 10**18
ASSETS = [to_checksum_address(f"0x{0xA55E7 + i:040x}") for i in range(4)]


@contextmanager
def database(kind: str) -> Iterator[str]:
    """A fresh, migrated database: a temporary SQLite file or a throwaway PostgreSQL DB."""
    if kind == "sqlite":
        with tempfile.TemporaryDirectory() as folder:
            url = f"sqlite:///{Path(folder) / 'bench.sqlite'}"
            _migrate(url)
            yield url
        return
    name = f"onchain_bench_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(f"{PG_SERVER}/postgres", autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    try:
        url = f"postgresql+psycopg://{PG_SERVER.split('://', 1)[1]}/{name}"
        _migrate(url)
        yield url
    finally:
        with psycopg.connect(f"{PG_SERVER}/postgres", autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _migrate(url: str) -> None:
    engine = make_engine(parse_db_url(url), create_sqlite_dir=True)
    upgrade(engine)
    engine.dispose()


def _config(folder: Path, rpc_url: str, provider: str, chain_id: int = 31337) -> Path:
    path = folder / "bench.toml"
    path.write_text(
        f'[chains.devnet]\nchain_id = {chain_id}\nrpc_url = "{rpc_url}"\n\n'
        f'[[markets]]\nname = "aave-v3-devnet"\nprotocol = "aave-v3"\nchain = "devnet"\n'
        f'address = "{provider}"\n\n[jobs.refresh]\nat = "latest"\n'
    )
    return path


def synthetic_block(number: int, accounts: int) -> tuple[BlockRef, list[Position], MarketSnapshot]:
    """A block like a real one: two or three assets per account, large exact integers."""
    block = BlockRef(number, f"0x{number:064x}", 1_700_000_000 + 12 * number)
    positions = []
    for i in range(accounts):
        held = ASSETS[: 2 + i % 2]
        assets = tuple(
            AssetPosition(a, f"T{k}", 18, 3000 * 10**8 + number, 10**21 + i, 10**20 * k,
                          3 * 10**11 + i, 10**10 * k, k == 0, 8250, 1234.5 + i)
            for k, a in enumerate(held)
        )  # fmt: skip
        positions.append(
            Position(
                protocol="aave-v3",
                market=ASSETS[0],
                account=to_checksum_address(f"0x{i + 1:040x}"),
                block=block,
                health_factor=WAD + 10**15 * (i % 500) + number,
                liquidatable=False,
                total_collateral_base=3 * 10**11 + i,
                total_debt_base=2 * 10**11,
                available_borrows_base=10**10,
                liquidation_threshold_bps=8250,
                ltv_bps=8000,
                base_currency_decimals=8,
                assets=assets,
                extra={"emode_category": 0, "user_configuration": 2**200 + i},
            )
        )
    reserves = tuple(
        ReserveSnapshot(a, f"T{k}", 18, 10**8, 10**27, 10**27, 10**22, 10**21, 0.1)
        for k, a in enumerate(ASSETS)
    )
    return block, positions, MarketSnapshot("3.0.2", 8, {}, reserves)


def bench_writes(kind: str, accounts: int, blocks: int, copy: bool = True) -> None:
    saved = crud.COPY_MIN_ROWS
    crud.COPY_MIN_ROWS = saved if copy else 10**12
    try:
        with database(kind) as url, tempfile.TemporaryDirectory() as folder:
            store = open_store(url)
            cfg = load_config(_config(Path(folder), "http://127.0.0.1:1", ASSETS[0]))
            market = crud.sync_markets(store, cfg)[0]
            data = [synthetic_block(100 + b, accounts) for b in range(blocks + 1)]
            tiers = [assess(p, TierThresholds()) for _, p, _ in data]
            block, positions, snapshot = data[0]  # warm up: accounts and assets registered
            crud.write_snapshot(store, market, block, positions, tiers[0], snapshot)
            rows = 0
            started = time.perf_counter()
            for (block, positions, snapshot), assessed in zip(data[1:], tiers[1:], strict=True):
                result = crud.write_snapshot(store, market, block, positions, assessed, snapshot)
                rows += result.positions + result.asset_rows + len(snapshot.reserves) + 1
            elapsed = time.perf_counter() - started
            store.close()
    finally:
        crud.COPY_MIN_ROWS = saved
    path = "COPY" if kind == "postgresql" and copy else "executemany"
    print(
        f"  {kind:<10} {path:<11} {accounts:>5} positions/block x {blocks} blocks: "
        f"{rows:>7} rows in {elapsed:6.2f}s = {rows / elapsed:>9,.0f} rows/s "
        f"({elapsed / blocks * 1000:6.1f} ms per block)"
    )


def bench_refresh(accounts: int, kinds: list[str], cycles: int) -> None:
    with running_devnet(accounts, 7) as info:
        how = "reloaded" if info.loaded_from_cache else "built cold"
        print(f"\n{accounts} borrowers: devnet {how} in {info.build_seconds:.1f}s")
        for kind in kinds:
            with database(kind) as url, tempfile.TemporaryDirectory() as folder:
                store = open_store(url)
                cfg = load_config(_config(Path(folder), info.rpc_url, info.aave.addresses_provider))
                ctx = JobContext(cfg, store, crud.sync_markets(store, cfg))
                counts: Counter[str] = Counter()
                started = time.perf_counter()
                assert discover_job(ctx, counts) == []
                first = time.perf_counter() - started
                print(
                    f"  {kind}: first discovery {first:.2f}s, {counts['accounts_new']} accounts, "
                    f"{counts['rpc_requests']} requests"
                )
                for cycle in range(cycles):
                    set_prices(info.rpc_url, info.aave, {"WETH": 3000.0 - 20 * (cycle + 1)})
                    DevChain(info.rpc_url).mine(1)
                    write_s = _timed_writes()
                    counts = Counter()
                    started = time.perf_counter()
                    assert refresh_job(ctx, counts) == []
                    elapsed = time.perf_counter() - started
                    print(
                        f"  {kind}: refresh cycle {elapsed:5.2f}s ({elapsed - write_s[0]:5.2f}s "
                        f"chain reads + {write_s[0]:5.2f}s store write) for "
                        f"{counts['positions']} positions, {counts['asset_rows']} asset rows, "
                        f"{counts['rpc_requests']} RPC requests"
                    )
                store.close()


_WRITE_S = [0.0]
_real_write = crud.write_snapshot


def _timed_writes() -> list[float]:
    """Reset and return the accumulator the wrapped write_snapshot adds its time to."""
    _WRITE_S[0] = 0.0
    return _WRITE_S


def _write_snapshot_timed(*args: object, **kwargs: object) -> crud.WriteResult:
    started = time.perf_counter()
    try:
        return _real_write(*args, **kwargs)  # type: ignore[arg-type]
    finally:
        _WRITE_S[0] += time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--accounts", type=int, nargs="+", default=[300, 3000])
    parser.add_argument("--blocks", type=int, default=10, help="blocks written per write bench")
    parser.add_argument("--cycles", type=int, default=2, help="refresh cycles per database")
    parser.add_argument("--no-postgres", action="store_true")
    args = parser.parse_args()
    kinds = ["sqlite"] if args.no_postgres else ["sqlite", "postgresql"]

    print("snapshot writes (one transaction per block)")
    for accounts in args.accounts:
        for kind in kinds:
            bench_writes(kind, accounts, args.blocks)
        if "postgresql" in kinds:
            bench_writes("postgresql", accounts, args.blocks, copy=False)

    import onchain.jobs.refresh as refresh_module

    refresh_module.crud.write_snapshot = _write_snapshot_timed  # type: ignore[assignment]
    print("\nrefresh cycle on the devnet (at = latest: one block per cycle)")
    for accounts in args.accounts:
        bench_refresh(accounts, kinds, args.cycles)


if __name__ == "__main__":
    main()
