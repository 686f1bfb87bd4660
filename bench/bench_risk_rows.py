"""The block's risk book at 30,000 positions: from the incremental adapters' arrays
(`RiskRows.risk_rows` + `book_from_rows`) vs every exact Position built from the kept states
(`positions_from_states`) + `book_from_positions`, what the daemon did per block. Then the whole
block's tiers both ways (`risk_tiers_rows` with the Positions' exact health factors vs
`risk_tiers`), which adds the same risk model and its few requests to each side.

The kept states are the devnet's (Aave 3.0.2, Aave 3.6, Morpho Blue), copied with balances scaled
at random up to the size asked for (`bench_incremental.synthetic_book` for Aave);
`--devnet-borrowers 30000` adds the Aave-only devnet of that many real borrowers as they are.
Both books are checked equal (every array, to the bit) and both tier lists equal before anything
is printed."""

from __future__ import annotations

import argparse
import random
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
from bench_incremental import synthetic_book

from onchain.app.incremental import MarketRefresher
from onchain.app.pipeline import market_snapshot
from onchain.app.risk_context import RiskSettings
from onchain.config import load_config
from onchain.devnet.build import running_devnet
from onchain.devnet.config_file import devnet_config_text
from onchain.devnet.control import set_prices
from onchain.jobs.assess import exact_inputs, risk_tiers, risk_tiers_rows
from onchain.protocols.base import MarketRef, RiskRows, checksummed
from onchain.risk.book import Book, book_from_positions, book_from_rows
from onchain.rpc.client import RpcClient
from onchain.symbols import STABLE_SYMBOLS

STABLE = sorted(STABLE_SYMBOLS)
HEADER = f"  {'market':<12}{'positions':>10}{'Positions+book':>16}{'rows+book':>12}{'ratio':>9}"
ARRAYS = ("collateral", "debt", "liquidation_threshold", "liquidation_bonus", "price_base")


def morpho_states(states: list[Any], n: int, rng: random.Random) -> list[Any]:
    """Kept Morpho states copied to `n`, new accounts, shares and collateral scaled."""
    out = []
    for i in range(n):
        s = states[i % len(states)]
        out.append(
            replace(
                s,
                account=checksummed(f"0x{i + 1:040x}"),
                borrow_shares=int(s.borrow_shares * rng.uniform(0.8, 1.2)),
                collateral=int(s.collateral * rng.uniform(0.6, 1.4)),
            )
        )
    return out


def same(a: Book, b: Book) -> None:
    assert a.assets == b.assets and a.accounts == b.accounts
    for name in ARRAYS:
        assert np.array_equal(getattr(a, name), getattr(b, name)), name


def best_of(runs: int, fn: Any) -> tuple[float, Any]:
    best, out = float("inf"), None
    for _ in range(runs):
        t0 = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t0)
    return best, out


def market_bench(
    client: RpcClient,
    block: Any,
    name: str,
    ref: MarketRef,
    n: int,
    settings: RiskSettings | None,
    rng: random.Random,
    accounts: list[str] | None = None,
) -> None:
    """One market: its kept states copied to `n` (0: as they are), the book both ways, the
    tiers both ways. `accounts`: the borrowers, where no logs are left to discover them."""
    refresher = MarketRefresher(client, ref)
    refresher.start(block, accounts)
    kept = [s for a in refresher.accounts for s in refresher.kept[a]]
    state, incremental = refresher.state, refresher.incremental
    assert isinstance(incremental, RiskRows)
    if not n:
        states = kept
    elif ref.protocol == "morpho-blue":
        states = morpho_states(kept, n, rng)
    else:
        states = synthetic_book(kept, n, rng)
    for s in states:  # from the second block on, every account's checksum is known
        checksummed(s.account)

    def by_positions() -> Any:
        positions = incremental.positions_from_states(state, states, block)
        book = book_from_positions(positions, per_market_columns=True, stable_assets=STABLE)
        return positions, book

    def by_rows() -> Any:
        rows = incremental.risk_rows(state, states)
        return rows, book_from_rows(rows, stable_assets=STABLE)

    slow, (positions, their_book) = best_of(1, by_positions)
    fast, (rows, our_book) = best_of(3, by_rows)
    same(our_book, their_book)
    print(f"  {name:<12}{len(positions):>10,}{slow:>15.3f}s{fast:>11.3f}s{slow / fast:>8.0f}x")
    if settings is None:
        return
    snapshot = market_snapshot(client, ref.protocol, state, block)
    t0 = time.perf_counter()
    theirs, _ = risk_tiers(client, block, positions, settings, snapshot)
    positions_path = slow + time.perf_counter() - t0
    health, liquidatable = exact_inputs(positions)
    t0 = time.perf_counter()
    rows = incremental.risk_rows(state, states)
    ours, _ = risk_tiers_rows(client, block, rows, health, liquidatable, settings, snapshot)
    rows_path = time.perf_counter() - t0
    assert [(a.tier, a.reason, a.probability) for a in ours] == [
        (b.tier, b.reason, b.probability) for b in theirs
    ]
    print(
        f"  {'':<12}{'tiers':>10}{positions_path:>15.3f}s{rows_path:>11.3f}s"
        f"{positions_path / rows_path:>8.1f}x  (with the risk model; equal tiers)"
    )


def real_book(borrowers: int, tiers: bool) -> None:
    """The Aave-only devnet of `borrowers` real positions (seeded once, then cached)."""
    with running_devnet(borrowers, 7, aave_only=True) as info, tempfile.TemporaryDirectory() as d:
        number = set_prices(info.rpc_url, info.aave, {"WETH": 2640.0})
        client = RpcClient(info.rpc_url)
        block = client.pin_block(number)
        config = Path(d) / "devnet.toml"
        config.write_text(devnet_config_text(info))
        settings = RiskSettings.from_config(load_config(config).risk) if tiers else None
        print(f"\nrisk book of the Aave-only devnet's {borrowers:,} borrowers (real kept states)")
        print(HEADER)
        ref = MarketRef("aave-v3", info.aave.addresses_provider)
        market_bench(
            client, block, "aave 3.0.2", ref, 0, settings, random.Random(15), info.borrowers
        )


def run(n: int, tiers: bool) -> None:
    rng = random.Random(15)
    with running_devnet(300, 7) as info, tempfile.TemporaryDirectory() as folder:
        assert info.morpho is not None and info.aave36 is not None
        number = set_prices(info.rpc_url, info.aave, {"WETH": 2640.0})
        client = RpcClient(info.rpc_url)
        block = client.pin_block(number)
        config = Path(folder) / "devnet.toml"
        config.write_text(devnet_config_text(info))
        settings = RiskSettings.from_config(load_config(config).risk) if tiers else None
        print(f"\nrisk book of {n:,} positions per market (devnet kept states, scaled at random)")
        print(HEADER)
        for name, ref in (
            ("aave 3.0.2", MarketRef("aave-v3", info.aave.addresses_provider)),
            ("aave 3.6", MarketRef("aave-v3", info.aave36.addresses_provider)),
            ("morpho", MarketRef("morpho-blue", info.morpho.morpho)),
        ):
            market_bench(client, block, name, ref, n, settings, rng)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--positions", type=int, default=30_000)
    parser.add_argument("--no-tiers", action="store_true", help="books only")
    parser.add_argument(
        "--devnet-borrowers",
        type=int,
        default=0,
        help="also the Aave-only devnet of this many real borrowers (e.g. 30000; cached)",
    )
    args = parser.parse_args()
    run(args.positions, not args.no_tiers)
    if args.devnet_borrowers:
        real_book(args.devnet_borrowers, not args.no_tiers)


if __name__ == "__main__":
    main()
