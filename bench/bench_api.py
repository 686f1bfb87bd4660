"""`onchain serve` over a large book, measured (not a timed test): one snapshot of 100,000
positions (two or three assets each) written by the daemon's own write path, then the API and
the dashboard asked for pages of it through uvicorn on 127.0.0.1, on SQLite and PostgreSQL.
Prints the median and worst wall time of each request over a few rounds.

    .venv/bin/python bench/bench_api.py [--positions 100000] [--rounds 5] [--no-postgres]
"""

from __future__ import annotations

import argparse
import socket
import statistics
import sys
import tempfile
import time
from pathlib import Path

import requests

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_store import ASSETS, WAD, _config, database, synthetic_block

from onchain.api.app import create_app
from onchain.api.server import open_read_only, serving_in_thread
from onchain.api.settings import ApiSettings
from onchain.config import TierThresholds, load_config
from onchain.jobs.assess import assess
from onchain.store import crud
from onchain.store.db import open_store, parse_db_url

REQUESTS = (
    "/api/positions?limit=50",
    "/api/positions?limit=50&sort=debt&order=desc",
    "/api/positions?limit=50&sort=health_factor&offset=50000",
    "/api/positions?limit=50&tier=CRITICAL",
    "/api/positions?limit=50&min_debt_base=200000000000&sort=collateral&order=desc",
    f"/api/positions?account={ASSETS[0][:2]}{'0' * 35}12345",
    "/api/markets",
    "/api/markets/aave-v3-devnet/history",
    "/positions?sort=debt&order=desc",
    "/metrics",
)


def spread(positions: list) -> list:  # type: ignore[type-arg]
    """Health factors from 0.9 to 1.4, so every tier has members."""
    from dataclasses import replace

    out = []
    for i, p in enumerate(positions):
        hf = WAD * 9 // 10 + (i * 7919 % 500) * 10**15
        out.append(replace(p, health_factor=hf, liquidatable=hf < WAD))
    return out


def bench(kind: str, n: int, rounds: int) -> None:
    with database(kind) as url, tempfile.TemporaryDirectory() as folder:
        writer = open_store(url)
        cfg = load_config(_config(Path(folder), "http://127.0.0.1:1", ASSETS[0]))
        market = crud.sync_markets(writer, cfg)[0]
        block, positions, snapshot = synthetic_block(100, n)
        positions = spread(positions)
        started = time.perf_counter()
        crud.write_snapshot(
            writer, market, block, positions, assess(positions, TierThresholds()), snapshot
        )
        print(f"{kind}: {n:,} positions written in {time.perf_counter() - started:.1f}s")
        if kind == "postgresql":  # what autovacuum does within a minute of such a load
            with writer.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
                conn.exec_driver_sql("ANALYZE")
        writer.close()
        store = open_read_only(parse_db_url(url))
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        settings = ApiSettings(port=port)
        try:
            with serving_in_thread(create_app(store, settings), settings) as base:
                for path in REQUESTS:
                    times = []
                    for _ in range(rounds):
                        t = time.perf_counter()
                        reply = requests.get(base + path, timeout=120)
                        times.append(time.perf_counter() - t)
                        assert reply.status_code == 200, (path, reply.status_code, reply.text)
                    print(
                        f"  {path:<80} median {statistics.median(times) * 1000:7.1f} ms, "
                        f"worst {max(times) * 1000:7.1f} ms"
                    )
        finally:
            store.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--positions", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--no-postgres", action="store_true")
    args = parser.parse_args()
    import logging

    logging.getLogger("uvicorn.access").setLevel(logging.WARNING)
    for kind in ["sqlite"] if args.no_postgres else ["sqlite", "postgresql"]:
        bench(kind, args.positions, args.rounds)


if __name__ == "__main__":
    main()
