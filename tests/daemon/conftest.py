"""Fixtures of the daemon tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from onchain.devnet.build import DevnetInfo
from onchain.devnet.chain import DevChain


@pytest.fixture
def devchain(devnet: DevnetInfo) -> Iterator[DevChain]:
    """The module's devnet, put back as it was after each test."""
    chain = DevChain(devnet.rpc_url)
    checkpoint = chain.rpc("evm_snapshot")
    yield chain
    assert chain.rpc("evm_revert", [checkpoint]) is True
