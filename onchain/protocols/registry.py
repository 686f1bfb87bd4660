"""Protocol adapters by name: the generic pipeline never names a protocol."""

from __future__ import annotations

from importlib import import_module

from onchain.errors import InputError
from onchain.model import DetailColumn
from onchain.protocols.aave_v3.incremental import AaveV3Incremental
from onchain.protocols.base import IncrementalAdapter, ProtocolAdapter
from onchain.protocols.catalog import ADAPTER_CLASSES, DEFAULT_ADAPTER
from onchain.protocols.morpho_blue.incremental import MorphoBlueIncremental


def _adapter_class(path: str) -> type:
    module, _, name = path.partition(":")
    cls: type = getattr(import_module(module), name)
    return cls


ADAPTERS: dict[str, type] = {name: _adapter_class(path) for name, path in ADAPTER_CLASSES.items()}
# what --protocol means when neither it nor a config names one
DEFAULT_PROTOCOL: str = DEFAULT_ADAPTER
# every adapter's detail columns, in registry order: the JSON has each one on every position
DETAIL_COLUMNS: tuple[DetailColumn, ...] = tuple(
    column for cls in ADAPTERS.values() for column in getattr(cls, "detail_columns", ())
)

INCREMENTAL: dict[str, type] = {
    "aave-v3": AaveV3Incremental,
    "morpho-blue": MorphoBlueIncremental,
}


def get_adapter(name: str) -> ProtocolAdapter:
    try:
        return ADAPTERS[name]()
    except KeyError:
        known = ", ".join(sorted(ADAPTERS))
        raise InputError(f"unknown protocol {name!r} (known: {known})") from None


def get_incremental(name: str) -> IncrementalAdapter | None:
    """The adapter's incremental side (None: the protocol is refreshed by full reads only)."""
    kind = INCREMENTAL.get(name)
    return kind() if kind is not None else None
