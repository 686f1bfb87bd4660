"""Does partitioning the change layout's per-block tables by block range pay on PostgreSQL?

`account_states` is the one that grows (a row per account whose state changed, per block);
`market_states` and `position_verdicts` are smaller and keyed the same way. Two copies of
`account_states`' shape, one plain and one partitioned by range of `block_number`, are filled
with the same synthetic history (every account's state at block 0, then `--changed` accounts
per block), and timed:

- retention dropping the oldest partition's blocks (`keep_days`): the states standing at the
  cut carried to the first kept block (as `changes.carry_forward` does; the same in both),
  then DELETE + VACUUM on the plain table, DROP of the partition on the partitioned one;
- downsampling the oldest partition's range (keep one block in `--keep-every`): DELETE of the
  rest after carrying, against rewriting the partition (the kept rows into a new table that is
  attached in its place);
- the reads the change layout makes: every account's state at a block (DISTINCT ON, the write
  path's and `book_at`'s), one account's rows (history), one block's rows; and a block's write.

    .venv/bin/python bench/bench_pg_partitions.py [--accounts 30000] [--blocks 20000]
        [--changed 300] [--partition 5000] [--keep-every 300]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_store import PG_SERVER

STATE = "decode(repeat(md5(({a})::text || '/' || ({b})::text), 3), 'hex')"  # 48 bytes


@contextmanager
def scratch_database() -> Iterator[psycopg.Connection[Any]]:
    name = f"onchain_bench_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(f"{PG_SERVER}/postgres", autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    try:
        with psycopg.connect(f"{PG_SERVER}/{name}", autocommit=True) as conn:
            yield conn
    finally:
        with psycopg.connect(f"{PG_SERVER}/postgres", autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def create(conn: psycopg.Connection[Any], name: str, blocks: int, partition: int) -> None:
    columns = (
        "market_id integer NOT NULL, account_id integer NOT NULL, block_number bigint NOT NULL, "
        "state bytea, PRIMARY KEY (market_id, account_id, block_number)"
    )
    if not partition:
        conn.execute(f"CREATE TABLE {name} ({columns})")
    else:
        conn.execute(f"CREATE TABLE {name} ({columns}) PARTITION BY RANGE (block_number)")
        for lo in range(0, blocks + partition, partition):
            conn.execute(
                f"CREATE TABLE {name}_{lo} PARTITION OF {name} FOR VALUES FROM ({lo}) "
                f"TO ({lo + partition})"
            )
    conn.execute(f"CREATE INDEX ON {name} (market_id, block_number)")


def fill(
    conn: psycopg.Connection[Any], name: str, accounts: int, blocks: int, changed: int
) -> None:
    conn.execute(
        f"INSERT INTO {name} SELECT 1, a, 0, {STATE.format(a='a', b=0)} "
        f"FROM generate_series(1, {accounts}) a"
    )
    # block b: `changed` accounts, spread over the book (a different set each block)
    conn.execute(
        f"INSERT INTO {name} SELECT 1, 1 + ((b::bigint * {changed} + i) * 7919) % {accounts}, b, "
        f"{STATE.format(a='i', b='b')} "
        f"FROM generate_series(1, {blocks}) b, generate_series(0, {changed - 1}) i "
        "ON CONFLICT DO NOTHING"
    )
    conn.execute(f"VACUUM ANALYZE {name}")


def size(conn: psycopg.Connection[Any], name: str) -> int:
    row = conn.execute(
        "SELECT coalesce(sum(pg_total_relation_size(c.oid)), 0) FROM pg_class c "
        "WHERE c.relname = %s OR c.relname LIKE %s",
        (name, f"{name}\\_%"),
    ).fetchone()
    assert row is not None
    return int(row[0])


def timed(conn: psycopg.Connection[Any], *sql: str) -> float:
    started = time.perf_counter()
    for statement in sql:
        conn.execute(statement)
    return time.perf_counter() - started


def median(run: Callable[[], Any], repeat: int = 7) -> float:
    run()
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        run()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def carry(name: str, cut: int) -> str:
    """Every account's state standing just below `cut`, as a row at `cut` (where none is)."""
    return (
        f"INSERT INTO {name} SELECT DISTINCT ON (account_id) market_id, account_id, {cut}, state "
        f"FROM {name} WHERE market_id = 1 AND block_number < {cut} "
        "ORDER BY account_id, block_number DESC ON CONFLICT DO NOTHING"
    )


def reads(conn: psycopg.Connection[Any], name: str, blocks: int) -> dict[str, float]:
    at = blocks - 1

    def states_at() -> Any:
        return conn.execute(
            f"SELECT DISTINCT ON (account_id) account_id, state FROM {name} "
            f"WHERE market_id = 1 AND block_number <= {at} "
            "ORDER BY account_id, block_number DESC"
        ).fetchall()

    def states_probed() -> Any:  # the accounts by a skip scan, then one probe each
        return conn.execute(
            f"WITH RECURSIVE ids(a) AS (SELECT min(account_id) FROM {name} WHERE market_id = 1 "
            f"UNION ALL SELECT (SELECT min(s.account_id) FROM {name} s WHERE s.market_id = 1 "
            "AND s.account_id > ids.a) FROM ids WHERE ids.a IS NOT NULL) "
            f"SELECT ids.a, s.state FROM ids JOIN LATERAL (SELECT state FROM {name} s "
            f"WHERE s.market_id = 1 AND s.account_id = ids.a AND s.block_number <= {at} "
            "ORDER BY s.block_number DESC LIMIT 1) s ON true WHERE ids.a IS NOT NULL"
        ).fetchall()

    assert sorted(states_at()) == sorted(states_probed())

    def one_account() -> Any:
        return conn.execute(
            f"SELECT block_number, state FROM {name} WHERE market_id = 1 AND account_id = 4242 "
            "ORDER BY block_number"
        ).fetchall()

    def one_block() -> Any:
        return conn.execute(
            f"SELECT account_id, state FROM {name} WHERE market_id = 1 AND block_number = {at}"
        ).fetchall()

    return {
        "states at the newest block": median(states_at, 3),
        "  the same, probed per account": median(states_probed, 3),
        "one account's rows": median(one_account),
        "one block's rows": median(one_block),
    }


def write_block(conn: psycopg.Connection[Any], name: str, number: int, changed: int) -> float:
    rows = [(1, 1 + i * 13, number, bytes(48)) for i in range(changed)]
    started = time.perf_counter()
    with conn.transaction(), conn.cursor() as cur:
        cur.executemany(f"INSERT INTO {name} VALUES (%s, %s, %s, %s)", rows)
    return time.perf_counter() - started


def run(accounts: int, blocks: int, changed: int, partition: int, keep_every: int) -> None:
    print(
        f"account_states: {accounts:,} accounts, {blocks:,} blocks, {changed} changed per block, "
        f"partitions of {partition:,} blocks"
    )
    with scratch_database() as conn:
        tables = {"plain": ("states_plain", 0), "partitioned": ("states_part", partition)}
        for name, parts in tables.values():
            create(conn, name, blocks, parts)
            started = time.perf_counter()
            fill(conn, name, accounts, blocks, changed)
            print(
                f"  {name}: filled in {time.perf_counter() - started:.1f} s, {size(conn, name):,} B"
            )

        print("  reads (median):")
        got = {kind: reads(conn, name, blocks) for kind, (name, _p) in tables.items()}
        for what in got["plain"]:
            a, b = got["plain"][what] * 1000, got["partitioned"][what] * 1000
            print(f"    {what:<28} plain {a:>9.2f} ms  partitioned {b:>9.2f} ms")
        writes = {
            kind: statistics.median(
                write_block(conn, name, blocks + 1 + i, changed) for i in range(9)
            )
            for kind, (name, _p) in tables.items()
        }
        print(
            f"    {'a block written':<28} plain {writes['plain'] * 1000:>9.2f} ms  "
            f"partitioned {writes['partitioned'] * 1000:>9.2f} ms"
        )

        # downsampling the second partition's range: one block in `keep_every` kept
        lo, hi = partition, 2 * partition
        kept = f"(block_number - {lo}) % {keep_every} = 0"
        doomed = f"block_number >= {lo} AND block_number < {hi} AND NOT {kept}"
        plain, part = tables["plain"][0], tables["partitioned"][0]
        # carrying forward is the same work in both (changes._carry): left out, rows just go
        t_delete = timed(conn, f"DELETE FROM {plain} WHERE {doomed}")
        t_vacuum = timed(conn, f"VACUUM {plain}")
        new = f"{part}_{lo}_new"
        t_rewrite = timed(
            conn,
            f"CREATE TABLE {new} (LIKE {part} INCLUDING DEFAULTS)",
            f"INSERT INTO {new} SELECT * FROM {part}_{lo} WHERE {kept}",
            f"ALTER TABLE {new} ADD PRIMARY KEY (market_id, account_id, block_number)",
            f"CREATE INDEX ON {new} (market_id, block_number)",
            f"ALTER TABLE {part} DETACH PARTITION {part}_{lo}",
            f"ALTER TABLE {part} ATTACH PARTITION {new} FOR VALUES FROM ({lo}) TO ({hi})",
            f"DROP TABLE {part}_{lo}",
        )
        print(f"  downsampling blocks {lo:,}..{hi - 1:,} to one in {keep_every}:")
        print(
            f"    plain: DELETE {t_delete:.2f} s + VACUUM {t_vacuum:.2f} s; "
            f"partitioned: rewrite the partition {t_rewrite:.2f} s"
        )
        print(f"    sizes after: plain {size(conn, plain):,} B, partitioned {size(conn, part):,} B")

        # retention: every block below `partition` goes; the standing states carried to it
        t_carry = {k: timed(conn, carry(n, partition)) for k, (n, _p) in tables.items()}
        t_delete = timed(conn, f"DELETE FROM {plain} WHERE block_number < {partition}")
        t_vacuum = timed(conn, f"VACUUM {plain}")
        t_drop = timed(
            conn, f"ALTER TABLE {part} DETACH PARTITION {part}_0", f"DROP TABLE {part}_0"
        )
        print(f"  retention: blocks 0..{partition - 1:,} dropped (standing states carried):")
        print(
            f"    carry: plain {t_carry['plain']:.2f} s, partitioned {t_carry['partitioned']:.2f} s"
        )
        print(
            f"    plain: DELETE {t_delete:.2f} s + VACUUM {t_vacuum:.2f} s; "
            f"partitioned: DETACH + DROP {t_drop:.3f} s"
        )
        print(f"    sizes after: plain {size(conn, plain):,} B, partitioned {size(conn, part):,} B")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--accounts", type=int, default=30000)
    parser.add_argument("--blocks", type=int, default=20000)
    parser.add_argument("--changed", type=int, default=300)
    parser.add_argument("--partition", type=int, default=5000)
    parser.add_argument("--keep-every", type=int, default=300)
    args = parser.parse_args()
    run(args.accounts, args.blocks, args.changed, args.partition, args.keep_every)


if __name__ == "__main__":
    main()
