"""Build the devnet once (deploy + seed), cache anvil's state, and reload it in well under a second.

The cache key covers everything that changes the chain: the number of borrowers, the seed, the
npm lockfile and this package's devnet sources. Same key, same chain: addresses, health factors
and block hashes are deterministic."""

from __future__ import annotations

import fcntl
import gzip
import json
import os
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from onchain.devnet.aave import AaveDeployment, deploy_aave_market
from onchain.devnet.aave36 import Aave36Deployment
from onchain.devnet.aave36_seed import deploy_and_seed_aave36
from onchain.devnet.anvil import DEVNET_CHAIN_ID, Anvil
from onchain.devnet.cache import CACHE_DIR, cache_key
from onchain.devnet.chain import DevChain
from onchain.devnet.morpho import MorphoDeployment, deploy_and_seed_morpho
from onchain.devnet.multicall import install_multicall3
from onchain.devnet.seed import (
    plan_borrowers,
    seed_borrowers,
    seeded_address,
    supply_whale_liquidity,
)
from onchain.devnet.uniswap import UniswapDeployment, deploy_uniswap

BLOCK_INTERVAL_S = 12
# The large Aave-only devnet keeps no past states and only recent blocks' transactions: at
# 30,000 borrowers anvil would otherwise hold every block's state and every transaction's
# trace (10 GB, too much to dump). Its readers give the borrowers (no discovery from old logs).
LEAN_ANVIL = ["--prune-history", "--transaction-block-keeper", "16"]


@dataclass
class DevnetInfo:
    """What other programs need to use a running devnet."""

    rpc_url: str
    chain_id: int
    aave: AaveDeployment
    borrowers: list[str]
    whale: str
    build_seconds: float = 0.0
    loaded_from_cache: bool = False
    uniswap: UniswapDeployment | None = None
    morpho: MorphoDeployment | None = None
    aave36: Aave36Deployment | None = None  # the Aave V3.6.0 market (Pool revision 10)

    def to_json(self) -> dict[str, Any]:
        return {
            "rpc_url": self.rpc_url,
            "chain_id": self.chain_id,
            "aave_v3": self.aave.to_json(),
            "uniswap_v3": self.uniswap.to_json() if self.uniswap else None,
            "morpho_blue": self.morpho.to_json() if self.morpho else None,
            "aave_v3_6": self.aave36.to_json() if self.aave36 else None,
            "borrowers": self.borrowers,
            "whale": self.whale,
        }

    @classmethod
    def from_meta(cls, rpc_url: str, meta: dict[str, Any]) -> DevnetInfo:
        """Rebuild the addresses written at build time (they are deterministic)."""
        return cls(
            rpc_url=rpc_url,
            chain_id=DEVNET_CHAIN_ID,
            aave=AaveDeployment(**meta["aave_v3"]),
            borrowers=meta["borrowers"],
            whale=meta["whale"],
            uniswap=UniswapDeployment(**meta["uniswap_v3"]) if meta.get("uniswap_v3") else None,
            morpho=MorphoDeployment.from_json(meta["morpho_blue"])
            if meta.get("morpho_blue")
            else None,
            aave36=Aave36Deployment.from_json(meta["aave_v3_6"]) if meta.get("aave_v3_6") else None,
        )


def _build(node: Anvil, n_borrowers: int, seed: int) -> DevnetInfo:
    """Deploy every protocol and seed it; each step adds its deployment to the info."""
    info = _build_aave_only(node, n_borrowers, seed)
    chain, market = DevChain(node.url), info.aave
    info.uniswap = deploy_uniswap(chain, market, seeded_address(seed, "uniswap-lp", 0))
    # Morpho Blue on the same chain: two borrowers for every three Aave ones, half shared
    info.morpho = deploy_and_seed_morpho(chain, seed, max(8, 2 * n_borrowers // 3), info.borrowers)
    # Aave V3.6.0 last, so every address above stays where it was: as many borrowers, plus scenarios
    info.aave36 = deploy_and_seed_aave36(chain, market, seed, n_borrowers)
    return info


def _build_aave_only(node: Anvil, n_borrowers: int, seed: int) -> DevnetInfo:
    """Only the Aave V3 market and its borrowers: the bench's large devnet (30,000 borrowers),
    where Morpho and Aave 3.6 would only add hours of seeding nothing reads."""
    chain = DevChain(node.url)
    chain.rpc("anvil_setBlockTimestampInterval", [BLOCK_INTERVAL_S])
    install_multicall3(node.url)
    market = deploy_aave_market(chain)
    whale = supply_whale_liquidity(chain, market, seed, n_borrowers)
    plans = plan_borrowers(n_borrowers, seed)
    seed_borrowers(chain, market, plans)
    return DevnetInfo(node.url, DEVNET_CHAIN_ID, market, [p.address for p in plans], whale)


def _dump_state(chain: DevChain) -> str:
    """Anvil's state as JSON without per-transaction traces (smaller, loads faster)."""
    raw = chain.rpc("anvil_dumpState")
    state = json.loads(gzip.decompress(bytes.fromhex(raw[2:])))
    for block in state.get("blocks", []) or []:
        for tx in block.get("transactions", []) or []:
            if isinstance(tx, dict):
                tx.pop("trace", None)
    for tx in state.get("transactions", []) or []:
        if isinstance(tx, dict):
            info = tx.get("info")
            if isinstance(info, dict):
                info["traces"] = []
    return json.dumps(state)


@contextmanager
def _build_lock(folder: Path) -> Iterator[None]:
    """One builder per cache key across processes (parallel test workers, two `onchain devnet`):
    the others wait, then load what it stored."""
    folder.parent.mkdir(parents=True, exist_ok=True)
    with open(folder.parent / f"{folder.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _write_atomically(path: Path, text: str) -> None:
    """A reader sees the whole file or none (the state first, then the meta that says it's done)."""
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text)
    tmp.replace(path)


@contextmanager
def running_devnet(
    n_borrowers: int = 300, seed: int = 7, *, rebuild: bool = False, aave_only: bool = False
) -> Iterator[DevnetInfo]:
    """A running anvil with the market and borrowers; built on first use, then loaded from cache.
    `aave_only`: the Aave V3 market alone (no Uniswap, Morpho, Aave 3.6), cached apart."""
    key = cache_key(n_borrowers, seed, "aave-only" if aave_only else "")
    folder = CACHE_DIR / key
    state_path, meta_path = folder / "state.json", folder / "meta.json"
    started = time.monotonic()

    def cached() -> bool:
        return not rebuild and state_path.exists() and meta_path.exists()

    with ExitStack() as stack:
        info: DevnetInfo | None = None
        if not cached():
            with _build_lock(folder):
                if not cached():  # nobody built it while we waited
                    node = stack.enter_context(Anvil(extra_args=LEAN_ANVIL if aave_only else []))
                    info = (_build_aave_only if aave_only else _build)(node, n_borrowers, seed)
                    folder.mkdir(parents=True, exist_ok=True)
                    _write_atomically(state_path, _dump_state(DevChain(node.url)))
                    _write_atomically(meta_path, json.dumps(info.to_json(), indent=1))
                    info.build_seconds = time.monotonic() - started
        if info is None:
            meta = json.loads(meta_path.read_text())
            node = stack.enter_context(Anvil(load_state=state_path))
            chain = DevChain(node.url)
            # anvil restarts its clock from the genesis time after a reload: continue from the head
            head = chain.rpc("eth_getBlockByNumber", ["latest", False])
            chain.rpc(
                "evm_setNextBlockTimestamp", [hex(int(head["timestamp"], 16) + BLOCK_INTERVAL_S)]
            )
            chain.rpc("anvil_setBlockTimestampInterval", [BLOCK_INTERVAL_S])
            info = DevnetInfo.from_meta(node.url, meta)
            info.build_seconds, info.loaded_from_cache = time.monotonic() - started, True
        yield info


def cached_deployment(n_borrowers: int = 300, seed: int = 7) -> AaveDeployment:
    """The addresses of a devnet built before with these parameters (they are deterministic)."""
    meta_path = CACHE_DIR / cache_key(n_borrowers, seed) / "meta.json"
    if not meta_path.exists():
        from onchain.errors import InputError

        raise InputError(
            f"no devnet built for {n_borrowers} borrowers / seed {seed}: run `onchain devnet` first"
        )
    return AaveDeployment(**json.loads(meta_path.read_text())["aave_v3"])
