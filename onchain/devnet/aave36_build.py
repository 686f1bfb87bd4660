"""Compile Aave V3.6.0 from the Solidity sources of npm `@aave-dao/aave-v3-origin` 3.6.0 with
solc-js 0.8.27 (an npm alias beside the 0.8.19 Morpho uses), with upstream's settings: optimizer
200 runs, evm shanghai, no metadata hash, no viaIR. Imports resolve from node_modules through
upstream's three remappings (OpenZeppelin 5.1.0 and `@bgd-labs/solidity-utils` 1.1.2). The output
is cached under .cache/solc keyed by the sources and the npm lockfile, so a warm build reads it."""

from __future__ import annotations

import hashlib
from functools import cache

from onchain.devnet.anvil import PROJECT_ROOT
from onchain.devnet.solc import CompiledContract, compile_sources

COMPILER = "solc-0.8.27"
PACKAGE = "@aave-dao/aave-v3-origin/src/contracts"
REMAPPINGS = [
    "openzeppelin-contracts/contracts/=@openzeppelin/contracts/",
    "openzeppelin-contracts-upgradeable/contracts/=@openzeppelin/contracts-upgradeable/",
    "solidity-utils/=@bgd-labs/solidity-utils/src/",
]
# What a market needs (no L2 pool, no mocks: the devnet's tokens and price feeds are reused)
CORE_SOURCES = (
    "instances/PoolInstance.sol",
    "instances/PoolConfiguratorInstance.sol",
    "instances/ATokenInstance.sol",
    "instances/VariableDebtTokenInstance.sol",
    "misc/AaveOracle.sol",
    "misc/DefaultReserveInterestRateStrategyV2.sol",
    "protocol/configuration/ACLManager.sol",
    "protocol/configuration/PoolAddressesProvider.sol",
    "helpers/AaveProtocolDataProvider.sol",
)


def _unit() -> str:
    imports = "".join(f'import "{PACKAGE}/{path}";\n' for path in CORE_SOURCES)
    return f"// SPDX-License-Identifier: BUSL-1.1\npragma solidity ^0.8.0;\n\n{imports}"


@cache
def compile_aave36() -> dict[str, CompiledContract]:
    """Every contract of the core set (libraries included), by name; ~30 s cold, cached after."""
    lock = PROJECT_ROOT / "package-lock.json"
    lock_digest = hashlib.sha256(lock.read_bytes()).hexdigest() if lock.exists() else ""
    return compile_sources(
        {"AaveV36Devnet.sol": _unit()},
        optimizer_runs=200,
        evm_version="shanghai",
        compiler=COMPILER,
        remappings=REMAPPINGS,
        bytecode_hash="none",
        link_libraries=True,
        extra_key=lock_digest,
    )
