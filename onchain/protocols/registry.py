"""Protocol adapters by name: the generic pipeline never names a protocol."""

from __future__ import annotations

from onchain.errors import InputError
from onchain.protocols.aave_v3.adapter import AaveV3Adapter
from onchain.protocols.base import ProtocolAdapter
from onchain.protocols.morpho_blue.adapter import MorphoBlueAdapter

ADAPTERS: dict[str, type] = {
    AaveV3Adapter.name: AaveV3Adapter,
    MorphoBlueAdapter.name: MorphoBlueAdapter,
}


def get_adapter(name: str) -> ProtocolAdapter:
    try:
        return ADAPTERS[name]()
    except KeyError:
        known = ", ".join(sorted(ADAPTERS))
        raise InputError(f"unknown protocol {name!r} (known: {known})") from None
