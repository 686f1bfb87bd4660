"""The catalog names every adapter the registry loads, under the adapter's own name."""

from onchain.protocols.catalog import ADAPTER_CLASSES, ADAPTER_NAMES, DEFAULT_ADAPTER
from onchain.protocols.registry import ADAPTERS


def test_the_catalog_and_the_registry_name_the_same_adapters() -> None:
    assert set(ADAPTERS) == set(ADAPTER_CLASSES) == set(ADAPTER_NAMES)
    for name, cls in ADAPTERS.items():
        assert cls.name == name
    assert DEFAULT_ADAPTER in ADAPTERS
