"""Protocol adapters by name: the generic pipeline never names a protocol."""

from __future__ import annotations

from importlib import import_module

from onchain.errors import InputError
from onchain.protocols.base import ProtocolAdapter
from onchain.protocols.catalog import ADAPTER_CLASSES


def _adapter_class(path: str) -> type:
    module, _, name = path.partition(":")
    cls: type = getattr(import_module(module), name)
    return cls


ADAPTERS: dict[str, type] = {name: _adapter_class(path) for name, path in ADAPTER_CLASSES.items()}


def get_adapter(name: str) -> ProtocolAdapter:
    try:
        return ADAPTERS[name]()
    except KeyError:
        known = ", ".join(sorted(ADAPTERS))
        raise InputError(f"unknown protocol {name!r} (known: {known})") from None
