"""Per-block refresh cost, incremental vs a full re-read, measured in the same run on the devnet.

Incremental (`onchain.app.incremental.MarketRefresher`): pin the block, the range's logs once,
the market once, the accounts the logs touched, every position recomputed from kept state.
Full: pin the block, read the market and every account again (what `scan` does per block).
Both read the same block; the bench checks they agree (whole Position objects) before printing.

Scenarios: only prices moved (Aave feeds and Morpho oracles), and 1% of the Aave accounts
touched (each borrows a little, all in one block). Sizes above 3,000 borrowers use the
Aave-only devnet (`running_devnet(..., aave_only=True)`: seeded once, then reloaded from
.cache/devnet; Morpho and Aave 3.6 at that size would only add seeding time; it keeps no old
logs, so its borrowers are given rather than discovered). Per step the incremental way is
timed three ways after the same reads: every Position rebuilt, the exact health of every row
(`MarketRefresher.health`: health factor, totals, liquidatable, arrays kept across blocks),
and the verdicts alone. Then the exact recompute of 100,000 synthetic kept Aave states (the
devnet's states, scaled at random; `exact_book.exact_health`) against building every exact
Position object for them (the naive way), in the same run, every field compared."""

from __future__ import annotations

import argparse
import random
import time
from dataclasses import replace
from typing import Any

from onchain.app.incremental import MarketRefresher
from onchain.app.pipeline import load_market, read_positions
from onchain.devnet.build import DevnetInfo, running_devnet
from onchain.devnet.chain import DevChain, calldata
from onchain.devnet.control import _in_one_block as in_one_block
from onchain.devnet.control import set_prices
from onchain.devnet.morpho import set_prices_everywhere
from onchain.protocols.aave_v3 import exact_book
from onchain.protocols.aave_v3.adapter import AaveAccountState, AaveV3Adapter
from onchain.protocols.base import MarketRef, checksummed
from onchain.rpc.client import RpcClient

UINT256_MAX = 2**256 - 1
AAVE_ONLY_ABOVE = 3_000  # larger devnets hold the Aave market alone


def full_read(
    url: str, market: MarketRef, accounts: list[str], number: int
) -> tuple[float, int, Any]:
    client = RpcClient(url)
    started = time.perf_counter()
    block = client.pin_block(number)
    state = load_market(client, market, block)
    positions = read_positions(client, market.protocol, state, accounts, block)
    return time.perf_counter() - started, client.requests_sent, positions


def incremental(refresher: MarketRefresher, number: int) -> dict[str, Any]:
    """One step to `number`: the reads (pin, logs, market, touched accounts), then every
    position recomputed, then the exact health of every row, then the verdicts alone."""
    client = refresher.client
    before = client.requests_sent
    t0 = time.perf_counter()
    refresher.advance(client.pin_block(number), refresher.accounts)
    reads = time.perf_counter() - t0
    requests = client.requests_sent - before
    t0 = time.perf_counter()
    positions = refresher.positions()
    recompute = time.perf_counter() - t0
    t0 = time.perf_counter()
    health = refresher.health()
    exact = time.perf_counter() - t0
    t0 = time.perf_counter()
    flagged, exact_rows = refresher.liquidatable_now()
    verdicts = time.perf_counter() - t0
    assert flagged == sorted({p.account for p in positions if p.liquidatable})
    assert _figures(health) == [_position_figures(p) for p in positions]
    return {
        "exact": exact,
        "reads": reads,
        "requests": requests,
        "recompute": recompute,
        "verdicts": verdicts,
        "exact_rows": exact_rows,
        "positions": positions,
    }


def touch_one_percent(info: DevnetInfo, accounts: list[str], rng: random.Random) -> int:
    """1% of the accounts borrow 1 USDC each, in one block."""
    chain = DevChain(info.rpc_url)
    usdc, pool = info.aave.tokens["USDC"], info.aave.pool
    chosen = rng.sample(accounts, max(1, len(accounts) // 100))
    txs = [
        (
            a,
            pool,
            calldata("borrow(address,uint256,uint256,uint16,address)", usdc, 10**6, 2, 0, a),
            900_000,
        )
        for a in chosen
    ]
    return in_one_block(chain, txs)


def step_table(
    info: DevnetInfo, refreshers: dict[str, MarketRefresher], rng: random.Random
) -> None:
    print(f"  {'scenario':<21}{'market':<8}{'way':<34}{'time s':>8}{'requests':>9}{'vs full':>9}")

    def move_prices() -> int:
        weth = {"WETH": 3000 * rng.uniform(0.98, 1.02)}
        if info.morpho is None:
            return set_prices(info.rpc_url, info.aave, weth)
        return set_prices_everywhere(info.rpc_url, info.aave, info.morpho, weth)

    scenarios = [
        ("only prices moved", move_prices),
        ("1% accounts touched", lambda: touch_one_percent(info, refreshers["aave"].accounts, rng)),
    ]  # fmt: skip
    for label, move in scenarios:
        number = move()
        for name, refresher in refreshers.items():
            step = incremental(refresher, number)
            f_wall, f_requests, full = full_read(
                info.rpc_url, refresher.market, refresher.accounts, number
            )
            assert step["positions"] == full, f"{name} at {number}: differs from the full read"
            reread = refresher.last.accounts_read if refresher.last else 0
            rows = [
                ("full re-read (every Position)", f_wall),
                ("incremental, every Position", step["reads"] + step["recompute"]),
                ("incremental, exact health (all)", step["reads"] + step["exact"]),
                (f"incremental, verdicts ({step['exact_rows']} exact)", step["reads"] + step["verdicts"]),
            ]  # fmt: skip
            for i, (way, wall) in enumerate(rows):
                requests = f_requests if i == 0 else step["requests"]
                ratio = "" if i == 0 else f"{f_wall / wall:.1f}x"
                print(
                    f"  {label if i == 0 else '':<21}{name if i == 0 else '':<8}{way:<34}"
                    f"{wall:>8.3f}{requests:>9}{ratio:>9}"
                )
            print(
                f"  {'':<29}({len(full)} positions, {reread} accounts re-read; equal to the full read;"
                f" recompute alone: every Position {step['recompute']:.3f}s, exact health"
                f" {step['exact']:.3f}s)"
            )


def synthetic_book(
    states: list[AaveAccountState], n: int, rng: random.Random
) -> list[AaveAccountState]:
    out = []
    for i in range(n):
        s = states[i % len(states)]
        factor = rng.uniform(0.6, 1.4)
        balances = {
            k: int(v * (factor if k[1] == "a" else rng.uniform(0.8, 1.2)))
            for k, v in s.balances.items()
        }
        out.append(replace(s, account=f"0x{i:040x}", balances=balances))
    return out


def _position_figures(p: Any) -> tuple[Any, ...]:
    return (p.account, p.market, p.health_factor, p.total_collateral_base, p.total_debt_base,
            p.liquidatable)  # fmt: skip


def _figures(health: Any) -> list[tuple[Any, ...]]:
    columns = (health.accounts, health.markets, health.health_factor,
               health.total_collateral_base, health.total_debt_base)  # fmt: skip
    return list(zip(*columns, [bool(v) for v in health.liquidatable], strict=True))


def exact_bench(refresher: MarketRefresher, n: int, rng: random.Random) -> None:
    """The exact recompute of `n` kept positions vs every exact Position built for them."""
    state = refresher.state
    kept = [s for a in refresher.accounts for s in refresher.kept[a]]
    book_states = synthetic_book(kept, n, rng)
    for s in book_states:  # from the second block on, every account's checksum is known
        checksummed(s.account)
    t0 = time.perf_counter()
    book = exact_book.book(state, book_states)
    build = time.perf_counter() - t0
    best = cpu = None
    for _ in range(3):
        t0, c0 = time.perf_counter(), time.process_time()
        health = exact_book.exact_health(state, book, state.block)
        took, used = time.perf_counter() - t0, time.process_time() - c0
        best = took if best is None or took < best else best
        cpu = used if cpu is None or used < cpu else cpu
    assert best is not None and cpu is not None
    t0 = time.perf_counter()
    positions = AaveV3Adapter().positions_from_states(state, book_states, state.block)
    every_position = time.perf_counter() - t0
    want = [_position_figures(p) for p in positions]
    differ = sum(a != b for a, b in zip(_figures(health), want, strict=True))
    assert differ == 0, f"{differ} rows differ"
    liquidatable = int(health.liquidatable.sum())
    print(f"\n  exact recompute of {n:,} kept positions ({liquidatable:,} liquidatable):")
    print(f"    arrays built once (then per touched row): {build:.3f}s")
    print(f"    exact health of every row (HF, totals, liquidatable; {health.scalar_rows} rows"
          f" by the scalar math): {best:.3f}s wall, {cpu:.3f}s CPU (goal < 0.5s)")  # fmt: skip
    print(f"    every exact Position object (the naive way): {every_position:.2f}s"
          f" ({every_position / n * 1e6:.0f} us each) -> exact book {every_position / best:.0f}x faster")  # fmt: skip
    print(f"    every field of every row compared with the Position objects: {n:,} rows, 0 differ")


def run(n: int, book: int) -> None:
    rng = random.Random(15)
    aave_only = n > AAVE_ONLY_ABOVE
    with running_devnet(n, 7, aave_only=aave_only) as info:
        how = "reloaded" if info.loaded_from_cache else "built cold (deploy + seed)"
        which = "Aave-only devnet" if aave_only else "devnet"
        print(f"\n{n:,} borrowers: {which} {how} in {info.build_seconds:.2f}s")
        markets = [("aave", MarketRef("aave-v3", info.aave.addresses_provider))]
        if info.morpho is not None:
            markets.append(("morpho", MarketRef("morpho-blue", info.morpho.morpho)))
        refreshers = {}
        for name, ref in markets:
            client = RpcClient(info.rpc_url)
            refresher = MarketRefresher(client, ref)
            t0 = time.perf_counter()
            # the Aave-only devnet keeps no old logs to discover from: its borrowers are given
            refresher.start(client.pin_block(), info.borrowers if aave_only else None)
            print(
                f"  {name}: first full read of {len(refresher.accounts)} accounts in {time.perf_counter() - t0:.2f}s"
            )
            t0 = time.perf_counter()
            refresher.health()  # the exact-health arrays, built once and kept across blocks
            print(f"  {name}: exact-health arrays built in {time.perf_counter() - t0:.2f}s (once)")
            refreshers[name] = refresher
        step_table(info, refreshers, rng)
        if book:
            exact_bench(refreshers["aave"], book, rng)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sizes", default="300", help="devnet borrowers, comma-separated")
    parser.add_argument(
        "--book",
        type=int,
        default=100_000,
        help="synthetic positions to recompute exactly (0: none)",
    )
    args = parser.parse_args()
    for n in (int(s) for s in args.sizes.split(",")):
        run(n, args.book)


if __name__ == "__main__":
    main()
