"""Shared fixtures: a real anvil node on 127.0.0.1 (fresh per test unless a module asks for more)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from onchain.devnet.anvil import Anvil


@pytest.fixture
def anvil() -> Iterator[Anvil]:
    """A fresh, empty anvil chain; fails loudly when the npm-installed anvil is missing."""
    with Anvil() as node:
        yield node
