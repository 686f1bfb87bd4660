"""Protocol adapters by name: the generic pipeline never names a protocol."""

from __future__ import annotations

from onchain.errors import InputError
from onchain.model import DetailColumn
from onchain.protocols.aave_v3.adapter import AaveV3Adapter
from onchain.protocols.aave_v3.incremental import AaveV3Incremental
from onchain.protocols.base import IncrementalAdapter, ProtocolAdapter
from onchain.protocols.morpho_blue.adapter import MorphoBlueAdapter
from onchain.protocols.morpho_blue.incremental import MorphoBlueIncremental

ADAPTERS: dict[str, type] = {
    AaveV3Adapter.name: AaveV3Adapter,
    MorphoBlueAdapter.name: MorphoBlueAdapter,
}
# what --protocol means when neither it nor a config names one
DEFAULT_PROTOCOL: str = AaveV3Adapter.name
# every adapter's detail columns, in registry order: the JSON has each one on every position
DETAIL_COLUMNS: tuple[DetailColumn, ...] = (
    *AaveV3Adapter.detail_columns,
    *MorphoBlueAdapter.detail_columns,
)

INCREMENTAL: dict[str, type] = {
    AaveV3Adapter.name: AaveV3Incremental,
    MorphoBlueAdapter.name: MorphoBlueIncremental,
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
