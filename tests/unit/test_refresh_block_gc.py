"""A refreshed block runs with the cyclic collector paused (its passes over a large kept book
cost as much as the block), and the collector runs again after it, whatever the block did."""

from __future__ import annotations

import gc
from collections import Counter
from types import SimpleNamespace
from typing import Any

import pytest

from onchain.jobs import refresh
from onchain.rpc.client import BlockRef

BLOCK = BlockRef(7, "0x" + "ab" * 32, 1_700_000_000)


def _run(monkeypatch: pytest.MonkeyPatch, stored: Any) -> list[bool]:
    seen: list[bool] = []

    def snapshot_hash(_store: Any, _market_id: int, _number: int) -> str:
        seen.append(gc.isenabled())
        if isinstance(stored, Exception):
            raise stored
        return str(stored)

    monkeypatch.setattr(refresh.crud, "snapshot_hash", snapshot_hash)
    ctx, market = SimpleNamespace(store=None), SimpleNamespace(id=1)
    refresh.refresh_block(ctx, None, market, BLOCK, Counter())  # type: ignore[arg-type]
    return seen


def test_a_block_runs_with_the_collector_paused_and_restarts_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert gc.isenabled()
    assert _run(monkeypatch, BLOCK.hash) == [False]  # stored already: returns at once
    assert gc.isenabled()
    with pytest.raises(RuntimeError, match="store down"):
        _run(monkeypatch, RuntimeError("store down"))
    assert gc.isenabled()
