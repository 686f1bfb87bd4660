"""Scan cost of the devnet's Aave V3.6 market against its 3.0.2 market, in the same run.

Both markets list the same tokens with the same feeds and as many random borrowers (the 3.6
market adds its scenario borrowers). Each is scanned our way (Multicall3 + the release's exact
math, as bench_scan.py) and checked against one `getUserAccountData` per account at the same
block; the figures are best of N."""

from __future__ import annotations

import argparse

from bench_scan import UINT256_MAX, naive, ours

from onchain.app.pipeline import discover_accounts, load_market
from onchain.devnet.build import running_devnet
from onchain.protocols.base import MarketRef
from onchain.rpc.client import RpcClient


def _mismatches(positions: list, truth: list[tuple[int, ...]]) -> int:
    count = 0
    for p, expected in zip(positions, truth, strict=True):
        hf = UINT256_MAX if p.health_factor is None else p.health_factor
        mine = (
            p.total_collateral_base,
            p.total_debt_base,
            p.available_borrows_base,
            p.liquidation_threshold_bps,
            p.ltv_bps,
            hf,
        )
        count += mine != expected
    return count


def run(n: int, repeats: int) -> None:
    with running_devnet(n, 7) as info:
        assert info.aave36 is not None, "the devnet has no Aave V3.6 market"
        how = "reloaded" if info.loaded_from_cache else "built cold"
        print(f"\n{n} random borrowers a market: devnet {how} in {info.build_seconds:.2f}s")
        client = RpcClient(info.rpc_url)
        block = client.pin_block()
        markets = (
            ("3.0.2", info.aave.addresses_provider, info.aave.pool),
            ("3.6", info.aave36.addresses_provider, info.aave36.pool),
        )
        print(f"  {'market':<8}{'accounts':>9}{'ours s':>9}{'requests':>10}{'naive s':>9}"
              f"{'requests':>10}{'mismatches':>12}")  # fmt: skip
        for version, provider, pool in markets:
            state = load_market(client, MarketRef("aave-v3", provider), block)
            assert state.version == version, (state.version, version)
            accounts = discover_accounts(client, "aave-v3", state, block)
            best_ours = best_naive = None
            for _ in range(repeats):
                o = ours(info.rpc_url, provider, accounts, block.number)
                nv = naive(info.rpc_url, pool, accounts, block.number)
                best_ours = o if best_ours is None or o[0] < best_ours[0] else best_ours
                best_naive = nv if best_naive is None or nv[0] < best_naive[0] else best_naive
            assert best_ours and best_naive
            wrong = _mismatches(best_ours[2], best_naive[2])
            print(
                f"  {version:<8}{len(accounts):>9}{best_ours[0]:>9.3f}{best_ours[1]:>10}"
                f"{best_naive[0]:>9.3f}{best_naive[1]:>10}{wrong:>12}"
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sizes", default="3000")
    parser.add_argument("--repeats", type=int, default=3, help="best of N")
    args = parser.parse_args()
    for n in (int(s) for s in args.sizes.split(",")):
        run(n, args.repeats)


if __name__ == "__main__":
    main()
