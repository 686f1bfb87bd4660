"""The protocol adapters by name, without loading them: the CLI lists the names in its help and
picks the default without paying for eth_abi and every adapter (`registry` loads them)."""

from __future__ import annotations

# name -> "module:class" of its adapter; one entry per protocol family
ADAPTER_CLASSES: dict[str, str] = {
    "aave-v3": "onchain.protocols.aave_v3.adapter:AaveV3Adapter",
    "morpho-blue": "onchain.protocols.morpho_blue.adapter:MorphoBlueAdapter",
}
ADAPTER_NAMES: tuple[str, ...] = tuple(sorted(ADAPTER_CLASSES))
DEFAULT_ADAPTER = "aave-v3"  # what a bare deployment address means without --protocol
