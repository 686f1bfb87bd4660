"""Scan cost, our way vs the naive way, measured in the same run on the devnet.

Ours: pin a block, read market state once, then every account's configuration and scaled
balances through Multicall3 (raw eth_abi), health computed locally and exactly.
Naive: one `Pool.getUserAccountData` eth_call (one HTTP request) per account.
Both read the same block; the bench checks they agree before printing figures."""

from __future__ import annotations

import argparse
import time

from eth_abi import decode

from onchain.app.pipeline import discover_accounts, load_market, read_positions
from onchain.devnet.build import running_devnet
from onchain.devnet.chain import calldata
from onchain.protocols.base import MarketRef
from onchain.rpc.client import RpcClient

UINT256_MAX = 2**256 - 1


def naive(
    url: str, pool: str, accounts: list[str], block_number: int
) -> tuple[float, int, list[tuple[int, ...]]]:
    client = RpcClient(url)
    block = client.pin_block(block_number)
    before = client.requests_sent
    started = time.perf_counter()
    out = [
        tuple(
            decode(
                ["uint256"] * 6,
                client.eth_call(pool, calldata("getUserAccountData(address)", a), block),
            )
        )
        for a in accounts
    ]
    return time.perf_counter() - started, client.requests_sent - before, out


def ours(
    url: str, provider: str, accounts: list[str], block_number: int
) -> tuple[float, int, list]:
    client = RpcClient(url)
    block = client.pin_block(block_number)
    before = client.requests_sent
    started = time.perf_counter()
    state = load_market(client, MarketRef("aave-v3", provider), block)
    positions = read_positions(client, "aave-v3", state, accounts, block)
    return time.perf_counter() - started, client.requests_sent - before, positions


def run(n: int, repeats: int) -> None:
    with running_devnet(n, 7) as info:
        how = "reloaded" if info.loaded_from_cache else "built cold"
        print(f"\n{n} borrowers: devnet {how} in {info.build_seconds:.2f}s")
        client = RpcClient(info.rpc_url)
        block = client.pin_block()
        t0 = time.perf_counter()
        state = load_market(client, MarketRef("aave-v3", info.aave.addresses_provider), block)
        accounts = discover_accounts(client, "aave-v3", state, block)
        print(
            f"  discovery: {len(accounts)} accounts from logs in {time.perf_counter() - t0:.3f}s, {client.requests_sent} requests"
        )
        best_ours = best_naive = None
        for _ in range(repeats):
            o = ours(info.rpc_url, info.aave.addresses_provider, accounts, block.number)
            nv = naive(info.rpc_url, info.aave.pool, accounts, block.number)
            best_ours = o if best_ours is None or o[0] < best_ours[0] else best_ours
            best_naive = nv if best_naive is None or nv[0] < best_naive[0] else best_naive
        assert best_ours and best_naive
        mismatches = 0
        for p, truth in zip(best_ours[2], best_naive[2], strict=True):
            hf = UINT256_MAX if p.health_factor is None else p.health_factor
            mine = (
                p.total_collateral_base,
                p.total_debt_base,
                p.available_borrows_base,
                p.liquidation_threshold_bps,
                p.ltv_bps,
                hf,
            )
            mismatches += mine != truth
        print(f"  {'way':<28}{'time s':>9}{'requests':>10}")
        print(f"  {'ours (Multicall3 + math)':<28}{best_ours[0]:>9.3f}{best_ours[1]:>10}")
        print(f"  {'naive (getUserAccountData)':<28}{best_naive[0]:>9.3f}{best_naive[1]:>10}")
        print(
            f"  ratio naive/ours: time {best_naive[0] / best_ours[0]:.1f}x, requests {best_naive[1] / best_ours[1]:.0f}x;"
            f" results differ for {mismatches} of {len(accounts)} accounts"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sizes", default="300,3000")
    parser.add_argument("--repeats", type=int, default=3, help="best of N")
    args = parser.parse_args()
    for n in (int(s) for s in args.sizes.split(",")):
        run(n, args.repeats)


if __name__ == "__main__":
    main()
