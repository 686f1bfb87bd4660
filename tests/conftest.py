"""Shared fixtures: a real anvil node on 127.0.0.1 (fresh per test unless a module asks for more)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from onchain.devnet.anvil import Anvil
from onchain.devnet.build import DevnetInfo, running_devnet


@pytest.fixture
def anvil() -> Iterator[Anvil]:
    """A fresh, empty anvil chain; fails loudly when the npm-installed anvil is missing."""
    with Anvil() as node:
        yield node


@pytest.fixture(scope="module")
def devnet() -> Iterator[DevnetInfo]:
    """The seeded Aave V3 devnet (300 borrowers), loaded fresh from the build cache per module."""
    with running_devnet(300, 7) as info:
        yield info
