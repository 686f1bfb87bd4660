"""The rows a lean block writes whole for readers (`refresh.riskiest`): the first rows of the
API's risk sort among the positions at risk, whatever order the book is in."""

from __future__ import annotations

import random

from onchain.jobs.refresh import riskiest
from onchain.store.models import TIERS

WAD = 10**18


def _api_order(tiers: list[str], hfs: list[int | None]) -> list[int]:
    """The risk sort (`api_queries._segments`): worst tier first, then the lowest health
    factor, no debt last within a tier."""

    def key(i: int) -> tuple[int, bool, float]:
        hf = hfs[i]
        return (TIERS.index(tiers[i]), hf is None, 0.0 if hf is None else hf / WAD)

    return sorted(range(len(tiers)), key=key)


def test_the_riskiest_rows_are_the_first_of_the_risk_sort_among_those_at_risk() -> None:
    rng = random.Random(5)
    n = 2_000
    tiers = [rng.choice([*TIERS, "SAFE", "SAFE", "SAFE"]) for _ in range(n)]
    hfs: list[int | None] = [
        None if rng.random() < 0.05 else rng.randint(WAD // 2, 3 * WAD) + i for i in range(n)
    ]
    ranked = [i for i in _api_order(tiers, hfs) if tiers[i] != "SAFE"]
    for k in (1, 7, 200, n):
        got = riskiest(tiers, hfs, k)
        assert got == sorted(ranked[:k]), k
        assert all(tiers[i] != "SAFE" for i in got)
    assert riskiest(tiers, hfs, 0) == []
    assert riskiest(["SAFE"] * 5, [WAD] * 5, 3) == []  # nothing at risk: nothing for readers
