"""A thin JSON-RPC driver for building the devnet: send transactions from unlocked or impersonated
accounts, deploy contracts, mine. Devnet tooling only; readers use `onchain.rpc`."""

from __future__ import annotations

import itertools
import time
from collections.abc import Sequence
from typing import Any

import requests
from eth_abi import decode, encode
from eth_utils import function_signature_to_4byte_selector, to_checksum_address

from onchain.errors import DevnetError

DEPLOYER = "0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266"  # anvil's first unlocked dev account


def selector(signature: str) -> bytes:
    return function_signature_to_4byte_selector(signature)


def calldata(signature: str, *args: Any) -> bytes:
    """ABI calldata for `name(type,...)` and its arguments."""
    types = signature[signature.index("(") + 1 : signature.rindex(")")]
    arg_types = _split_types(types)
    return selector(signature) + (encode(arg_types, list(args)) if arg_types else b"")


def _split_types(types: str) -> list[str]:
    out: list[str] = []
    depth = 0
    current = ""
    for ch in types:
        if ch == "," and depth == 0:
            out.append(current)
            current = ""
            continue
        depth += ch == "("
        depth -= ch == ")"
        current += ch
    if current:
        out.append(current)
    return out


class DevChain:
    """Sends transactions to a local anvil; every failure is a DevnetError with the reason."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.session = requests.Session()
        self._ids = itertools.count(1)

    def rpc(self, method: str, params: Sequence[Any] = ()) -> Any:
        body: dict[str, Any] = {
            "jsonrpc": "2.0",
            "id": next(self._ids),
            "method": method,
            "params": list(params),
        }
        reply = self.session.post(self.url, json=body, timeout=120).json()
        if "error" in reply:
            raise DevnetError(f"{method} failed: {reply['error'].get('message')}")
        return reply["result"]

    def rpc_batch(self, calls: Sequence[tuple[str, Sequence[Any]]]) -> list[Any]:
        if not calls:
            return []
        body: list[dict[str, Any]] = [
            {"jsonrpc": "2.0", "id": i, "method": m, "params": list(p)}
            for i, (m, p) in enumerate(calls)
        ]
        replies = sorted(
            self.session.post(self.url, json=body, timeout=600).json(), key=lambda r: r["id"]
        )
        for reply in replies:
            if "error" in reply:
                method = calls[reply["id"]][0]
                raise DevnetError(f"{method} failed: {reply['error'].get('message')}")
        return [r["result"] for r in replies]

    def tx_params(
        self, sender: str, to: str | None, data: bytes, gas: int | None, value: int = 0
    ) -> dict[str, Any]:
        tx: dict[str, Any] = {"from": sender, "data": "0x" + data.hex()}
        if to is not None:
            tx["to"] = to
        if gas is not None:
            tx["gas"] = hex(gas)
        if value:
            tx["value"] = hex(value)
        return tx

    def send(
        self, sender: str, to: str | None, data: bytes, *, gas: int | None = None, value: int = 0
    ) -> dict[str, Any]:
        """Send one transaction (automine on) and return its receipt; a revert is a DevnetError."""
        tx_hash = self.rpc("eth_sendTransaction", [self.tx_params(sender, to, data, gas, value)])
        receipt = self.wait_receipt(tx_hash)
        if receipt is None:
            raise DevnetError(f"transaction {tx_hash} was not mined (is automine off?)")
        if int(receipt["status"], 16) != 1:
            reason = self.revert_reason(sender, to, data, value)
            raise DevnetError(f"transaction to {to} reverted: {reason}")
        return receipt

    def wait_receipt(self, tx_hash: str, timeout_s: float = 30.0) -> dict[str, Any] | None:
        """anvil mines asynchronously after eth_sendTransaction even with automine on."""
        deadline = time.monotonic() + timeout_s
        while True:
            receipt = self.rpc("eth_getTransactionReceipt", [tx_hash])
            if receipt is not None or time.monotonic() > deadline:
                return receipt
            time.sleep(0.005)

    def send_many(self, txs: Sequence[tuple[str, str | None, bytes, int]]) -> list[str]:
        """Queue transactions (sender, to, data, gas) in one JSON-RPC batch; mining is up to the caller."""
        senders = sorted({tx[0] for tx in txs})
        counts = self.rpc_batch([("eth_getTransactionCount", [s, "pending"]) for s in senders])
        nonces = {s: int(c, 16) for s, c in zip(senders, counts, strict=True)}
        calls = []
        for sender, to, data, gas in txs:
            params = self.tx_params(sender, to, data, gas)
            params["nonce"] = hex(nonces[sender])  # anvil would reuse the mined nonce otherwise
            nonces[sender] += 1
            calls.append(("eth_sendTransaction", [params]))
        return self.rpc_batch(calls)

    def revert_reason(self, sender: str, to: str | None, data: bytes, value: int = 0) -> str:
        body: dict[str, Any] = {
            "jsonrpc": "2.0",
            "id": 0,
            "method": "eth_call",
            "params": [self.tx_params(sender, to, data, None, value), "latest"],
        }
        reply = self.session.post(self.url, json=body, timeout=60).json()
        err = reply.get("error")
        if not err:
            return "no revert when replayed"
        payload = err.get("data")
        if isinstance(payload, str) and payload.startswith("0x08c379a0"):
            return str(decode(["string"], bytes.fromhex(payload[10:]))[0])
        return str(err.get("message"))

    def deploy(
        self,
        sender: str,
        bytecode: bytes,
        ctor_types: Sequence[str] = (),
        ctor_args: Sequence[Any] = (),
    ) -> str:
        data = bytecode + (encode(list(ctor_types), list(ctor_args)) if ctor_types else b"")
        receipt = self.send(sender, None, data, gas=30_000_000)
        return to_checksum_address(receipt["contractAddress"])

    def call(self, to: str, data: bytes, block: str = "latest", sender: str | None = None) -> bytes:
        tx: dict[str, Any] = {"to": to, "data": "0x" + data.hex()}
        if sender:
            tx["from"] = sender
        return bytes.fromhex(self.rpc("eth_call", [tx, block])[2:])

    def view(self, to: str, signature: str, out_types: Sequence[str], *args: Any) -> Any:
        values = decode(list(out_types), self.call(to, calldata(signature, *args)))
        return values[0] if len(values) == 1 else values

    def mine(self, blocks: int = 1) -> None:
        self.rpc("anvil_mine", [hex(blocks)])

    def set_automine(self, enabled: bool) -> None:
        self.rpc("evm_setAutomine", [enabled])

    def block_number(self) -> int:
        return int(self.rpc("eth_blockNumber"), 16)

    def set_balance(self, addresses: Sequence[str], wei: int) -> None:
        for lo in range(0, len(addresses), 1000):  # anvil refuses much larger batches
            self.rpc_batch([("anvil_setBalance", [a, hex(wei)]) for a in addresses[lo : lo + 1000]])

    def increase_time(self, seconds: int) -> None:
        """The next block lands `seconds` after the head (evm_increaseTime is ignored while a
        block timestamp interval is set)."""
        head = self.rpc("eth_getBlockByNumber", ["latest", False])
        self.rpc("evm_setNextBlockTimestamp", [hex(int(head["timestamp"], 16) + seconds)])
