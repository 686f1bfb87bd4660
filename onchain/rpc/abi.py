"""ABI JSON from `onchain/contracts_abi/` turned into fast encoders/decoders over eth_abi."""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from eth_abi import decode, encode
from eth_utils import function_signature_to_4byte_selector, keccak

ABI_DIR = Path(__file__).resolve().parents[1] / "contracts_abi"


def _type_string(param: dict[str, Any]) -> str:
    kind = param["type"]
    if kind.startswith("tuple"):
        inner = ",".join(_type_string(c) for c in param["components"])
        return f"({inner}){kind[5:]}"
    return kind


@dataclass(frozen=True)
class Function:
    name: str
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]

    @property
    def signature(self) -> str:
        return f"{self.name}({','.join(self.inputs)})"

    @property
    def selector(self) -> bytes:
        return function_signature_to_4byte_selector(self.signature)

    def encode(self, *args: Any) -> bytes:
        if self.inputs == ("address",):  # the hot path: one call per account and token
            return self.selector + b"\x00" * 12 + bytes.fromhex(args[0][2:])
        return self.selector + (encode(list(self.inputs), list(args)) if self.inputs else b"")

    def decode(self, data: bytes) -> Any:
        """One output returns the value itself; several return a tuple."""
        if self.outputs == ("uint256",) and len(data) == 32:  # the hot path: balances
            return int.from_bytes(data, "big")
        values = decode(list(self.outputs), data)
        return values[0] if len(values) == 1 else values


@dataclass(frozen=True)
class Event:
    name: str
    inputs: tuple[str, ...]
    indexed: tuple[bool, ...]

    @property
    def topic(self) -> bytes:
        return keccak(text=f"{self.name}({','.join(self.inputs)})")


@cache
def load_contract(protocol: str, name: str) -> tuple[dict[str, Function], dict[str, Event]]:
    entries = json.loads((ABI_DIR / protocol / f"{name}.json").read_text())
    functions: dict[str, Function] = {}
    events: dict[str, Event] = {}
    for entry in entries:
        if entry["type"] == "function":
            functions[entry["name"]] = Function(
                entry["name"],
                tuple(_type_string(p) for p in entry["inputs"]),
                tuple(_type_string(p) for p in entry["outputs"]),
            )
        elif entry["type"] == "event":
            events[entry["name"]] = Event(
                entry["name"],
                tuple(_type_string(p) for p in entry["inputs"]),
                tuple(bool(p.get("indexed")) for p in entry["inputs"]),
            )
    return functions, events


def function(protocol: str, contract: str, name: str) -> Function:
    return load_contract(protocol, contract)[0][name]


def event(protocol: str, contract: str, name: str) -> Event:
    return load_contract(protocol, contract)[1][name]
