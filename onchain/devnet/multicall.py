"""Put Multicall3 at its canonical address on a devnet, so readers run unchanged on mainnet."""

from __future__ import annotations

from onchain.devnet.solc import CONTRACTS_DIR, compile_file
from onchain.errors import DevnetError
from onchain.rpc.client import RpcClient
from onchain.rpc.multicall import MULTICALL3_ADDRESS

__all__ = ["MULTICALL3_ADDRESS", "install_multicall3", "multicall3_runtime_code"]


def multicall3_runtime_code() -> bytes:
    """Runtime bytecode of our from-scratch Multicall3 (compiled once, then cached on disk)."""
    return compile_file(CONTRACTS_DIR / "Multicall3.sol")["Multicall3"].deployed_bytecode


def install_multicall3(rpc_url: str) -> str:
    """anvil_setCode Multicall3 at MULTICALL3_ADDRESS; returns the address.

    anvil applies setCode to the current head state, so blocks pinned from now on see it
    (and, on anvil, so does the current head block itself).
    """
    code = multicall3_runtime_code()
    with RpcClient(rpc_url) as client:
        client.request("anvil_setCode", [MULTICALL3_ADDRESS, "0x" + code.hex()])
        installed = client.request("eth_getCode", [MULTICALL3_ADDRESS, "latest"])
    if installed != "0x" + code.hex():
        raise DevnetError(f"Multicall3 code did not land at {MULTICALL3_ADDRESS}")
    return MULTICALL3_ADDRESS
