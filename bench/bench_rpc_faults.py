"""What transient RPC errors cost: one scan of every account of the devnet's Aave market through
the fault-injecting proxy (tests/fault_proxy.py), with no faults and with 30% of requests and
30% of batch items answered by overload error objects, in the same run. Prints HTTP requests,
JSON-RPC calls and seconds for each, and checks that both scans read the same positions."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from onchain.app.pipeline import scan
from onchain.devnet.build import running_devnet
from onchain.protocols.base import MarketRef
from onchain.rpc.client import RpcClient
from tests.helpers.fault_proxy import FaultProxy, Faults


def one_scan(upstream: str, provider: str, block: int, rate: float, seed: int) -> tuple:
    faults = Faults(error_rate=rate, item_error_rate=rate, seed=seed)
    with FaultProxy(upstream, faults) as proxy, RpcClient(proxy.url, seed=seed) as client:
        started = time.perf_counter()
        result = scan(client, MarketRef("aave-v3", provider), block_number=block)
        seconds = time.perf_counter() - started
        return seconds, client.requests_sent, client.calls_sent, proxy.injected, result.positions


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--borrowers", type=int, default=3000)
    parser.add_argument("--rate", type=float, default=0.3)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    with running_devnet(args.borrowers, 7) as info:
        how = "reloaded" if info.loaded_from_cache else "built cold"
        print(f"{args.borrowers} borrowers: devnet {how} in {info.build_seconds:.2f}s")
        with RpcClient(info.rpc_url) as direct:
            head = direct.block_number()
        rows = []
        for rate in (0.0, args.rate):
            seconds, requests, calls, injected, positions = one_scan(
                info.rpc_url, info.aave.addresses_provider, head, rate, args.seed
            )
            rows.append(positions)
            print(
                f"  {rate:4.0%} transient errors: {len(positions)} accounts in {seconds:6.2f}s, "
                f"{requests} HTTP requests, {calls} JSON-RPC calls, {injected} faults injected"
            )
        assert rows[0] == rows[1], "the faulty scan read different positions"
        print("  both scans read identical positions")


if __name__ == "__main__":
    main()
