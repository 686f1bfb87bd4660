"""Compile the project's own devnet contracts (Multicall3-compatible reader, settable price feed)."""

from __future__ import annotations

from pathlib import Path

from onchain.devnet.solc import CompiledContract, compile_sources

CONTRACTS_DIR = Path(__file__).resolve().parent / "contracts"


def devnet_contract(name: str) -> CompiledContract:
    """Compiled on first use and cached on disk by the solc wrapper."""
    sources = {path.name: path.read_text() for path in sorted(CONTRACTS_DIR.glob("*.sol"))}
    return compile_sources(sources)[name]
