"""Bytes and time the store spends per block: the snapshot layout (every position and asset row
again at every block) against the change layout (market state per block, account states and
verdicts only when they changed, the latest view in place), in the same run on the same chain.

Two daemons refresh the same devnet block by block (both read incrementally; only the layout
differs), one store each. Per block and layout:

- bytes written: on SQLite, the write-ahead log the block's transactions left (checkpointed
  before, no automatic checkpoint meanwhile), i.e. every page the block wrote, in-place
  updates included;
- store growth: the database's size after a checkpoint, minus before (SQLite: pages in use;
  PostgreSQL: the relations of this database);
- write time: `write_snapshot`, the block's one transaction.

Two scenarios: only oracle prices move; prices move and 1% of the accounts supply (their state
changes). Prints the change layout's figures as a ratio of the snapshot layout's.

Then the reads of the newest block the HTTP API serves (`onchain.store.api_queries`: the riskiest
page of positions, one account's positions, every position for stress and targets, the newest
tier counts for /metrics) and `report`'s, over each store: the snapshot rows against the
change layout's latest view, median of repeated runs; and the history over every stored block,
where the change layout rebuilds each older block through the adapter.

Then `--after-blocks` more blocks (3; only prices move), each read timed first after each
block: what a server's reader meets, the cache holding what the block before's reads left (the
change layout's rebuilt positions are a function of the block's prices, so a new block
rebuilds the rows a read shows; the account states decoded before are kept); and the pages
again as `onchain serve` serves them, read ahead when the block lands (`onchain.api.ahead`),
with the CPU that reading ahead took.

    .venv/bin/python bench/bench_store_layout.py [--accounts 3000] [--blocks 10]
        [--no-postgres | --no-sqlite] [--aave-only] [--repeat 15] [--history-repeat 15]
        [--after-blocks 3]

At 30,000 accounts: `--accounts 30000 --aave-only` (the large devnet is cached Aave-only).
`--keep DIR` copies the two SQLite stores there; `--reads-only DIR` then times the reads alone
over them (copies: reading may leave a write-ahead log beside them), the change layout also
cold (`stored_book.BOOKS`, the rebuilt positions kept between reads, emptied before each run):

    .venv/bin/python bench/bench_store_layout.py --reads-only DIR [--repeat 9] --history-repeat 0

Each read prints its wall time and, below it, the CPU time of this process (the database is
in-process: SQLite reads count; a load from other processes does not).
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
import time
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import event, text

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_store import database

import onchain.jobs.refresh as refresh_module
from onchain.config import load_config
from onchain.devnet.build import DevnetInfo, running_devnet
from onchain.devnet.chain import DevChain, calldata
from onchain.devnet.control import _in_one_block as in_one_block
from onchain.devnet.control import set_prices
from onchain.jobs.context import JobContext
from onchain.jobs.refresh import refresh_job
from onchain.store import crud
from onchain.store.db import Store, open_store

UINT256_MAX = 2**256 - 1
LAYOUTS = ("snapshots", "changes")


@dataclass
class Figures:
    """One layout's measurements, per block."""

    written: list[int] = field(default_factory=list)
    growth: list[int] = field(default_factory=list)
    write_s: list[float] = field(default_factory=list)


def _config(folder: Path, info: DevnetInfo, url: str, layout: str) -> Path:
    path = folder / f"{layout}.toml"
    markets = (
        f'[[markets]]\nname = "aave"\nprotocol = "aave-v3"\nchain = "devnet"\n'
        f'address = "{info.aave.addresses_provider}"\n\n'
    )
    if info.morpho is not None:
        markets += (
            f'[[markets]]\nname = "morpho"\nprotocol = "morpho-blue"\nchain = "devnet"\n'
            f'address = "{info.morpho.morpho}"\n\n'
        )
    path.write_text(
        f'[chains.devnet]\nchain_id = {info.chain_id}\nrpc_url = "{info.rpc_url}"\n\n{markets}'
        f'[store]\nurl = "{url}"\nlayout = "{layout}"\n\n'
        '[jobs.refresh]\nat = "each-block"\nmax_blocks_per_run = 50\nincremental = true\n'
        "reconcile_every_blocks = 0\n"
    )
    return path


def _size(store: Store) -> tuple[int, int]:
    """(bytes in use, write-ahead log bytes) of the store now."""
    with store.engine.connect() as conn:
        if conn.dialect.name == "sqlite":
            pages = conn.execute(text("PRAGMA page_count")).scalar_one()
            free = conn.execute(text("PRAGMA freelist_count")).scalar_one()
            size = conn.execute(text("PRAGMA page_size")).scalar_one()
            wal = Path(str(store.engine.url.database) + "-wal")
            return (pages - free) * size, wal.stat().st_size if wal.exists() else 0
        used = conn.execute(
            text(
                "SELECT coalesce(sum(pg_total_relation_size(c.oid)), 0) FROM pg_class c "
                "JOIN pg_namespace n ON n.oid = c.relnamespace "
                "WHERE n.nspname = 'public' AND c.relkind = 'r'"
            )
        ).scalar_one()
        return int(used), 0


def _no_autocheckpoint(dbapi_connection: Any, _record: Any) -> None:
    if type(dbapi_connection).__module__.startswith("sqlite3"):
        dbapi_connection.execute("PRAGMA wal_autocheckpoint=0")


def _checkpoint(store: Store) -> None:
    with store.engine.connect() as conn:
        if conn.dialect.name == "sqlite":
            conn.execute(text("PRAGMA wal_checkpoint(TRUNCATE)"))


_WRITE_S: dict[str, float] = defaultdict(float)
_real_write = crud.write_snapshot


def _timed_write(*args: Any, **kwargs: Any) -> crud.WriteResult:
    started = time.perf_counter()
    try:
        return _real_write(*args, **kwargs)
    finally:
        _WRITE_S[kwargs.get("layout", "snapshots")] += time.perf_counter() - started


def _changers(info: DevnetInfo, count: int) -> Callable[[], None]:
    """`count` borrowers ready to supply WETH (minted and approved now, outside the measured
    blocks); the returned step makes each of them supply a little in one block."""
    chain = DevChain(info.rpc_url)
    who = info.borrowers[:count]
    weth, pool = info.aave.tokens["WETH"], info.aave.pool
    chain.set_balance(who, 10**21)
    setup = [(a, weth, calldata("mint(uint256)", 10**20), 150_000) for a in who]
    setup += [
        (a, weth, calldata("approve(address,uint256)", pool, UINT256_MAX), 100_000) for a in who
    ]
    for lo in range(0, len(setup), 100):
        in_one_block(chain, setup[lo : lo + 100])

    def step() -> None:
        txs = [
            (
                a,
                pool,
                calldata("supply(address,uint256,address,uint16)", weth, 10**15, a, 0),
                400_000,
            )
            for a in who
        ]
        in_one_block(chain, txs)

    return step


def _track_borrowers(
    info: DevnetInfo, stores: dict[str, Store], contexts: dict[str, JobContext]
) -> None:
    """Every seeded borrower tracked from block 0, discovery moved to the head."""
    from eth_utils import to_checksum_address

    from onchain.rpc.client import RpcClient

    head = RpcClient(info.rpc_url, expected_chain_id=info.chain_id).pin_block()
    found = {str(to_checksum_address(b)): 0 for b in info.borrowers}
    for layout, ctx in contexts.items():
        for market in ctx.markets:
            crud.record_discovery(stores[layout], market, found, head)


def run(
    kind: str,
    accounts: int,
    blocks: int,
    aave_only: bool,
    repeat: int,
    history_repeat: int,
    keep: Path | None = None,
    after_blocks: int = 3,
) -> None:
    with (
        running_devnet(accounts, 7, aave_only=aave_only) as info,
        tempfile.TemporaryDirectory() as folder,
    ):
        how = "reloaded" if info.loaded_from_cache else "built cold"
        n_morpho = "with Morpho" if info.morpho is not None else "no Morpho"
        print(f"\n{kind}, {accounts} Aave borrowers ({n_morpho}), devnet {how}")
        with database(kind) as url_old, database(kind) as url_new:
            stores = {"snapshots": open_store(url_old), "changes": open_store(url_new)}
            for store in stores.values():  # the log then holds every page a block wrote
                store.engine.dispose()
                event.listen(store.engine, "connect", _no_autocheckpoint)
            contexts = {}
            for layout, store in stores.items():
                cfg = load_config(
                    _config(
                        Path(folder), info, url_old if layout == "snapshots" else url_new, layout
                    )
                )
                contexts[layout] = JobContext(cfg, store, crud.sync_markets(store, cfg))
            if aave_only:  # it keeps no old logs to discover from: its borrowers are given
                _track_borrowers(info, stores, contexts)
            changers = _changers(info, max(1, accounts // 100))
            for ctx in contexts.values():  # the first block: everything is new to both
                errors = refresh_job(ctx, Counter())
                assert errors == [], errors
            for scenario in ("prices only", "prices + 1% of accounts"):
                figures = {layout: Figures() for layout in LAYOUTS}
                positions = 0
                for b in range(blocks):
                    price = 3000.0 - 7 * (b + 1) if scenario == "prices only" else 2900.0 + 5 * b
                    set_prices(info.rpc_url, info.aave, {"WETH": price})
                    if scenario != "prices only":
                        changers()
                    for layout, ctx in contexts.items():
                        store = stores[layout]
                        _checkpoint(store)
                        before, _ = _size(store)
                        _WRITE_S[layout] = 0.0
                        counts: Counter[str] = Counter()
                        errors = refresh_job(ctx, counts)
                        assert errors == [], errors
                        _, wal = _size(store)
                        _checkpoint(store)
                        after, _ = _size(store)
                        f = figures[layout]
                        n = max(1, counts["blocks_written"])  # the 1% step is two blocks
                        f.written.append(wal // n)
                        f.growth.append((after - before) // n)
                        f.write_s.append(_WRITE_S[layout] / n)
                        if layout == "snapshots":
                            positions = max(positions, counts["positions"] // n)
                _report(kind, scenario, figures, positions)
            if keep is not None and kind == "sqlite":  # for timing reads again without a devnet
                for layout, store in stores.items():
                    _checkpoint(store)
                    keep.mkdir(parents=True, exist_ok=True)
                    shutil.copy(str(store.engine.url.database), keep / f"{layout}.sqlite")
            _reads(stores, info.borrowers[0], repeat, history_repeat)
            if after_blocks > 0:
                _after_blocks(info, contexts, stores, info.borrowers[0], after_blocks)
            for store in stores.values():
                store.close()


HISTORIES = ("market history", "account history")
# the pages of positions a server reads again when a block lands (`onchain.api.ahead`)
PAGES = (
    "riskiest page (50)",
    "dashboard riskiest(50)",
    "by health factor (50)",
    "by debt, page 3",
    "by debt, descending",
    "by probability (50)",
    "by collateral, desc.",
)


def _read_set(account: str) -> dict[str, Callable[[Store], Any]]:
    """The reads timed, by name: the API's pages (and the riskiest as the dashboard reads it,
    without liquidation prices), one account, every position (with the exact liquidation
    prices, and as stress and targets read it: without), /metrics' tier counts, `report`, and
    the two histories."""
    from eth_utils import to_checksum_address

    from onchain.app.stored_book import (
        rebuild_account,
        rebuild_book,
        rebuild_book_figures,
        rebuild_book_without_prices,
    )
    from onchain.store import api_queries as Q
    from onchain.store import queries

    who = to_checksum_address(account)
    return {
        "riskiest page (50)": lambda s: Q.positions_page(
            s, Q.PositionFilter(), limit=50, rebuild=rebuild_book
        ),
        # as the dashboard's market page reads it (its table shows no liquidation price)
        "dashboard riskiest(50)": lambda s: Q.positions_page(
            s, Q.PositionFilter(), limit=50, rebuild=rebuild_book_without_prices
        ),
        "by health factor (50)": lambda s: Q.positions_page(
            s, Q.PositionFilter(), sort="health_factor", limit=50, rebuild=rebuild_book
        ),
        "by debt, page 3": lambda s: Q.positions_page(
            s, Q.PositionFilter(), sort="debt", offset=100, rebuild=rebuild_book
        ),
        "by debt, descending": lambda s: Q.positions_page(
            s, Q.PositionFilter(), sort="debt", descending=True, rebuild=rebuild_book
        ),
        "by probability (50)": lambda s: Q.positions_page(
            s, Q.PositionFilter(), sort="probability", limit=50, rebuild=rebuild_book
        ),
        "by collateral, desc.": lambda s: Q.positions_page(
            s, Q.PositionFilter(), sort="collateral", descending=True, rebuild=rebuild_book
        ),
        "one account": lambda s: Q.positions_page(
            s, Q.PositionFilter(account=who), limit=1000, rebuild=rebuild_book
        ),
        "every position": lambda s: Q.latest_positions(s, rebuild=rebuild_book),
        "every position, risk": lambda s: Q.latest_positions(
            s, rebuild=rebuild_book_without_prices
        ),
        "tier counts (metrics)": lambda s: Q.tier_series(s, "aave", limit=1, exact=False),
        "report": lambda s: queries.at_risk_report(s),
        # every stored block: the change layout rebuilds each older one through the adapter
        "market history": lambda s: Q.tier_series(s, "aave", rebuild=rebuild_book_figures),
        "account history": lambda s: queries.account_history(s, who, rebuild=rebuild_account),
    }


def _reads(stores: dict[str, Store], account: str, repeat: int, history_repeat: int) -> None:
    """Median seconds of the newest block's reads per layout, as a ratio to the snapshot rows';
    the histories also per stored block (they read every one; `history_repeat` runs, as a
    whole book rebuilt per block takes seconds at tens of thousands of accounts)."""
    from onchain.app.stored_book import BOOKS

    reads = _read_set(account)
    histories = HISTORIES
    if history_repeat <= 0:
        reads = {k: v for k, v in reads.items() if k not in histories}
    print(
        f"  reads (median of {repeat}; histories of {history_repeat}; changes cold: the "
        "rebuilt positions' cache emptied before each run):"
    )
    for name, read in reads.items():
        blocks = {}
        layouts = [*stores.items(), ("cold", stores["changes"])]
        for layout, store in layouts:
            got = read(store)  # warm
            if name in histories:
                blocks[layout] = max((len(series.points) for series in got), default=0)
        runs: dict[str, list[float]] = {layout: [] for layout, _store in layouts}
        cpu: dict[str, list[float]] = {layout: [] for layout, _store in layouts}
        for _ in range(history_repeat if name in histories else repeat):
            for layout, store in layouts:  # in turn: a load that comes and goes hits them alike
                if layout == "cold":
                    BOOKS.clear()
                started, started_cpu = time.perf_counter(), time.process_time()
                read(store)
                runs[layout].append(time.perf_counter() - started)
                cpu[layout].append(time.process_time() - started_cpu)
        seconds = {layout: statistics.median(r) for layout, r in runs.items()}
        a, b, c = (seconds[k] * 1000 for k in ("snapshots", "changes", "cold"))
        ca, cb, cc = (statistics.median(cpu[k]) * 1000 for k in ("snapshots", "changes", "cold"))
        print(
            f"    {name:<22} snapshots {a:>9.2f} ms  changes {b:>9.2f} ms  = {b / a:7.2%} of "
            f"snapshots  (cold {c:>9.2f} ms = {c / a:7.2%})"
        )
        print(
            f"    {'  CPU':<22} snapshots {ca:>9.2f} ms  changes {cb:>9.2f} ms  "
            f"{'':<22}(cold {cc:>9.2f} ms)"
        )
        if blocks:
            pa, pb = (
                seconds[layout] * 1000 / max(1, blocks[layout])
                for layout in ("snapshots", "changes")
            )
            print(
                f"    {'  per block':<22} snapshots {pa:>9.2f} ms  changes {pb:>9.2f} ms  "
                f"({blocks['changes']} blocks)"
            )


def _after_blocks(
    info: DevnetInfo,
    contexts: dict[str, JobContext],
    stores: dict[str, Store],
    account: str,
    blocks: int,
) -> None:
    """The first read of each kind after a new block, as a server that read the block before
    holds its rebuilt positions: per block (only prices moved), every read starts from the
    cache the block before's reads left (`BOOKS` put back before each), the snapshot rows
    with no cache; medians over the blocks. Then every read again, for the next block."""
    from collections import OrderedDict

    from onchain.app.stored_book import BOOKS

    def kept() -> tuple[Any, ...]:  # the cache's three stores, as they are now
        return (OrderedDict(BOOKS._books), OrderedDict(BOOKS._whole), BOOKS._decoded)

    def put_back(state: tuple[Any, ...]) -> None:
        BOOKS._books, BOOKS._whole = OrderedDict(state[0]), OrderedDict(state[1])
        BOOKS._decoded = state[2]

    from onchain.api.ahead import ReadAhead

    reads = {k: v for k, v in _read_set(account).items() if k not in HISTORIES}
    changes = stores["changes"]
    ahead = ReadAhead(changes)  # the server's: the pages it served, read when a block lands
    for name in PAGES:
        ahead.note(name, None, lambda read=reads[name]: read(changes))
    ahead.tick()
    for read in reads.values():
        read(changes)
    kinds = (*LAYOUTS, "snapshots again", "ahead")
    runs: dict[str, dict[str, list[float]]] = {n: {k: [] for k in kinds} for n in reads}
    background: list[float] = []
    for b in range(blocks):
        set_prices(info.rpc_url, info.aave, {"WETH": 2950.0 - 3 * b})
        for ctx in contexts.values():  # each layout writes the new block (again if it saw none)
            for _ in range(5):
                counts: Counter[str] = Counter()
                errors = refresh_job(ctx, counts)
                assert errors == [], errors
                if counts["blocks_written"]:
                    break
                time.sleep(1)
            else:
                raise AssertionError("the refresh wrote no new block")
        state = kept()
        for name, read in reads.items():
            for layout, store in stores.items():
                if layout == "changes":
                    put_back(state)
                started = time.process_time()
                read(store)
                runs[name][layout].append(time.process_time() - started)
        put_back(state)
        started = time.process_time()
        ran = ahead.tick()
        if ran != len(PAGES):
            print(f"    (block {b + 1}: {ran} of the {len(PAGES)} pages read ahead)")
        background.append(time.process_time() - started)
        for name in PAGES:  # each beside the snapshot rows' read again: a load that comes and
            # goes between the two loops would tell in their ratio
            for kind, store in (("snapshots again", stores["snapshots"]), ("ahead", changes)):
                started = time.process_time()
                reads[name](store)
                runs[name][kind].append(time.process_time() - started)
            # served again, as `serve` notes each page it serves (else it is forgotten after
            # `keep_s`, as a page nobody reads)
            ahead.note(name, None, lambda read=reads[name]: read(changes))
        for read in reads.values():
            read(changes)
    print(
        f"  the first read after a block (median of {blocks} blocks, CPU; changes: the cache "
        "the block before's reads left; read ahead: the server read the pages again when the "
        f"block landed, {statistics.median(background) * 1000:.1f} ms CPU for the {len(PAGES)}):"
    )
    for name, by_layout in runs.items():
        a, b = (statistics.median(by_layout[k]) * 1000 for k in LAYOUTS)
        line = f"    {name:<22} snapshots {a:>9.2f} ms  changes {b:>9.2f} ms  = {b / a:7.2%}"
        if by_layout["ahead"]:
            again, c = (
                statistics.median(by_layout[k]) * 1000 for k in ("snapshots again", "ahead")
            )
            line += f"  (read ahead {c:>8.2f} ms = {c / again:7.2%} of {again:.2f} ms)"
        print(line)


def reads_only(folder: Path, repeat: int, history_repeat: int) -> None:
    """`_reads` over stores kept by `--keep` (no devnet): their newest blocks as written, the
    account read being the lowest-id account the snapshot store tracks."""
    from sqlalchemy import select

    stores = {layout: open_store(f"sqlite:///{folder / layout}.sqlite") for layout in LAYOUTS}
    try:
        with stores["snapshots"].read() as conn:
            account = conn.execute(
                select(crud.T_ACCOUNTS.c.address)
                .join(
                    crud.T_MARKET_ACCOUNTS,
                    crud.T_MARKET_ACCOUNTS.c.account_id == crud.T_ACCOUNTS.c.id,
                )
                .order_by(crud.T_ACCOUNTS.c.id)
                .limit(1)
            ).scalar_one()
        print(f"\nsqlite, kept stores in {folder}")
        _reads(stores, account, repeat, history_repeat)
    finally:
        for store in stores.values():
            store.close()


def _report(kind: str, scenario: str, figures: dict[str, Figures], positions: int) -> None:
    old, new = figures["snapshots"], figures["changes"]
    blocks = len(old.write_s)

    def per_block(values: list[Any]) -> float:
        return statistics.median(values) if values else 0.0

    print(f"  {scenario} ({blocks} blocks, ~{positions} positions/block; medians per block):")
    rows = [
        ("store growth", per_block(old.growth), per_block(new.growth), "B"),
        ("write time", per_block(old.write_s) * 1000, per_block(new.write_s) * 1000, "ms"),
    ]
    if kind == "sqlite":
        rows.insert(0, ("bytes written (WAL)", per_block(old.written), per_block(new.written), "B"))
    for name, a, b, unit in rows:
        ratio = f"{b / a:7.2%}" if a else "   n/a"
        print(
            f"    {name:<20} snapshots {a:>12,.0f} {unit:<2}  changes {b:>12,.0f} {unit:<2}  = {ratio} of snapshots"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--accounts", type=int, nargs="+", default=[3000])
    parser.add_argument("--blocks", type=int, default=10)
    parser.add_argument("--no-postgres", action="store_true")
    parser.add_argument("--no-sqlite", action="store_true")
    parser.add_argument(
        "--aave-only",
        action="store_true",
        help="the Aave-only devnet (how the 30,000-borrower one is cached)",
    )
    parser.add_argument("--repeat", type=int, default=15, help="runs per read (median)")
    parser.add_argument("--history-repeat", type=int, default=15, help="runs per history read")
    parser.add_argument(
        "--after-blocks",
        type=int,
        default=3,
        help="blocks after the reads, each read timed first after one (0: none)",
    )
    parser.add_argument(
        "--keep", type=Path, help="copy the SQLite stores here after the writes (SQLite only)"
    )
    parser.add_argument(
        "--reads-only",
        type=Path,
        metavar="STORE_DIR",
        help="only time the reads over stores kept by --keep (no devnet; --history-repeat 0: "
        "without the histories)",
    )
    args = parser.parse_args()
    if args.reads_only is not None:
        reads_only(args.reads_only, args.repeat, args.history_repeat)
        return
    refresh_module.crud.write_snapshot = _timed_write  # type: ignore[assignment]
    kinds = [
        k for k, off in (("sqlite", args.no_sqlite), ("postgresql", args.no_postgres)) if not off
    ]
    for accounts in args.accounts:
        for kind in kinds:
            run(
                kind,
                accounts,
                args.blocks,
                args.aave_only,
                args.repeat,
                args.history_repeat,
                args.keep,
                args.after_blocks,
            )


if __name__ == "__main__":
    main()
