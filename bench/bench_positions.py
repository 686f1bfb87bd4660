"""Aave Positions from kept states (`AaveV3Adapter.positions_from_states`): this checkout's
book path against the function as it is on a git ref (default `main`), in the same run, on the
devnet's book (default: the 30,000-borrower Aave-only devnet, states read once by
`MarketRefresher`). The old function is git's own text of adapter.py and liquidation_price.py at
the ref, loaded as a throw-away module (the rest of the package is this checkout's). Both must
give equal Positions (every field) before a time is printed. Times: best of `--repeat`, wall
and CPU, per position; then the book built 50 states at a time (an API page's rebuild)."""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
import types
from typing import Any

from onchain.app.incremental import MarketRefresher
from onchain.devnet.build import running_devnet
from onchain.protocols.aave_v3.adapter import AaveV3Adapter
from onchain.protocols.base import MarketRef, checksummed
from onchain.rpc.client import RpcClient

PACKAGE = "onchain.protocols.aave_v3"
PAGE = 50  # rows of an API page whose older details are rebuilt


def module_at(ref: str, name: str, rename: dict[str, str]) -> types.ModuleType:
    """`PACKAGE.name` as git has it at `ref`, its imports of `rename`'s keys pointed at theirs."""
    path = f"onchain/protocols/aave_v3/{name}.py"
    text = subprocess.run(
        ["git", "show", f"{ref}:{path}"], capture_output=True, text=True, check=True
    ).stdout
    for old, new in rename.items():
        text = text.replace(f"from {PACKAGE}.{old} import", f"from {new} import")
    module = types.ModuleType(f"_at_{ref}_{name}")
    sys.modules[module.__name__] = module
    exec(compile(text, f"{ref}:{path}", "exec"), module.__dict__)
    return module


def timed(build: Any, repeat: int) -> tuple[float, float, list[Any]]:
    best_wall = best_cpu = float("inf")
    out: list[Any] = []
    for _ in range(repeat):
        t0, c0 = time.perf_counter(), time.process_time()
        out = build()
        best_wall = min(best_wall, time.perf_counter() - t0)
        best_cpu = min(best_cpu, time.process_time() - c0)
    return best_wall, best_cpu, out


def run(n: int, ref: str, repeat: int) -> None:
    old_flips = module_at(ref, "liquidation_price", {})
    old = module_at(ref, "adapter", {"liquidation_price": old_flips.__name__}).AaveV3Adapter()
    new = AaveV3Adapter()
    with running_devnet(n, 7, aave_only=n > 3_000) as info:
        client = RpcClient(info.rpc_url)
        refresher = MarketRefresher(client, MarketRef("aave-v3", info.aave.addresses_provider))
        refresher.start(client.pin_block(), info.borrowers if n > 3_000 else None)
        state, block = refresher.state, refresher.block
        assert block is not None
        states = [s for a in refresher.accounts for s in refresher.kept[a]]
    for s in states:  # from the second block on, every account's checksum is known
        checksummed(s.account)
    print(f"\n{len(states):,} kept Aave states ({state.version}), block {block.number}")
    for flips in (True, False):
        o_wall, o_cpu, o_out = timed(
            lambda f=flips: old.positions_from_states(state, states, block, flip_prices=f), repeat
        )
        n_wall, n_cpu, n_out = timed(
            lambda f=flips: new.positions_from_states(state, states, block, flip_prices=f), repeat
        )
        label = "with liquidation prices" if flips else "flip_prices=False"
        per = 1e6 / len(states)
        print(
            f"  {label:<24} {ref}: {o_wall * per:6.1f} us wall {o_cpu * per:6.1f} us CPU"
            f" | this: {n_wall * per:6.1f} us wall {n_cpu * per:6.1f} us CPU"
            f" | {o_cpu / n_cpu:.2f}x CPU, {o_wall / n_wall:.2f}x wall ({_same(o_out, n_out)})"
        )
    pages = [states[i : i + PAGE] for i in range(0, len(states), PAGE)][:200]

    def by_page(adapter: Any) -> list[Any]:
        return [p for page in pages for p in adapter.positions_from_states(state, page, block)]

    o_wall, o_cpu, o_out = timed(lambda: by_page(old), repeat)
    n_wall, n_cpu, n_out = timed(lambda: by_page(new), repeat)
    print(
        f"  {f'{PAGE}-row pages (API)':<24} {ref}: {o_cpu / len(pages) * 1e3:.2f} ms CPU a page"
        f" | this: {n_cpu / len(pages) * 1e3:.2f} ms CPU a page | {o_cpu / n_cpu:.2f}x CPU"
        f" ({_same(o_out, n_out)})"
    )


def _same(old: list[Any], new: list[Any]) -> str:
    """Whether both built the same Positions; where a ref's answers differ on purpose (a
    liquidation price search made exact since), how many."""
    assert len(old) == len(new), "not the same book"
    differ = sum(a != b for a, b in zip(old, new, strict=True))
    return "equal Positions" if not differ else f"{differ:,} of {len(new):,} Positions differ"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--size", type=int, default=30_000, help="devnet borrowers")
    parser.add_argument("--ref", default="main", help="git ref of the old function")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    run(args.size, args.ref, args.repeat)


if __name__ == "__main__":
    main()
