"""A lean block whose rows are the last block's compares what stands for each row column by
column (`changes.BookRows`); it must pick the same rows as looking each one up by its key: the
verdicts stored again (a tier, the reason codes or a band changed, each alone), and the
latest-view rows whose indexed values moved, with the writer's memory brought up to date."""

from __future__ import annotations

import random

import numpy as np

from onchain.store import changes

TIERS = ("SAFE", "WATCH", "HIGH", "CRITICAL")
BANDS = (1.0, 1.1, 1.25, 1.5)
WAD = 10**18


def _book(rng: random.Random, n: int) -> tuple[list[str], list[list[str] | None], list[int]]:
    tiers = [rng.choice(TIERS) for _ in range(n)]
    reasons: list[list[str] | None] = [rng.choice([[], ["near_oracle"], None]) for _ in range(n)]
    hfs = [rng.randrange(9 * WAD // 10, 2 * WAD) for _ in range(n)]
    return tiers, reasons, hfs


def _moved(rng: random.Random, values: list, choices: tuple | list, share: float) -> list:
    return [rng.choice(choices) if rng.random() < share else v for v in values]


def test_verdicts_stored_again_by_column_are_those_found_by_key() -> None:
    rng = random.Random(17)
    n = 400
    for _ in range(20):
        keys = [(i, f"m{i % 3}") for i in range(n)]
        tiers, reasons, hfs = _book(rng, n)
        previous = {
            k: changes.StoredVerdict(1, hf, t, "", r, 0.1, None, 3600.0)
            for k, t, r, hf in zip(keys, tiers, reasons, hfs, strict=True)
        }
        was_bands = changes.bands_of(hfs, BANDS)
        known = dict(zip(keys, was_bands, strict=True))
        before = changes.BookRows(
            tuple(str(i) for i in range(n)), tuple(k[1] for k in keys), keys, tuple(tiers),
            tuple(reasons), np.asarray(was_bands),
        )  # fmt: skip
        # each column moved alone on some rows, all together on others
        new_tiers = _moved(rng, tiers, TIERS, 0.05)
        new_reasons = _moved(rng, reasons, [[], ["stale_price"], None], 0.05)
        new_hfs = [hf * rng.choice([1, 1, 1, 0.9, 1.1]) for hf in hfs]
        now_bands = changes.bands_of([int(h) for h in new_hfs], BANDS)
        args = (keys, new_tiers, new_reasons, now_bands, previous, known, BANDS)
        by_key = changes._verdicts_to_store(*args, None)
        by_column = changes._verdicts_to_store(*args, before)
        assert by_column == by_key
        assert {i for i in by_key if new_tiers[i] != tiers[i]}  # each kind of change occurs
        assert {i for i in by_key if new_reasons[i] != reasons[i]}
        assert {i for i in by_key if now_bands[i] != was_bands[i]}


def test_latest_rows_moved_by_column_are_those_found_by_key() -> None:
    rng = random.Random(18)
    n = 300
    for pg in (False, True):
        for _ in range(10):
            keys = [(i, "m") for i in range(n)]
            tiers = [rng.choice(TIERS) for _ in range(n)]
            hfb = [rng.choice([None, *range(5)]) for _ in range(n)]
            debt = [rng.randrange(40, 44) for _ in range(n)]
            was = (tiers, hfb, debt)
            now = (_moved(rng, tiers, TIERS, 0.1), _moved(rng, hfb, [None, 7], 0.1),
                   _moved(rng, debt, [50], 0.1))  # fmt: skip
            order = sorted(range(n), key=lambda i: (i * 7919) % n)
            whole = {keys[i]: ("SAFE", 1, 41) for i in rng.sample(range(n), 5)}
            stored = {k: (t, h, d) for k, t, h, d in zip(keys, *was, strict=True)}
            by_key_indexed, by_key_stored = dict(whole), dict(stored)
            same, moved, present = changes._moved_by_key(
                keys, by_key_indexed, by_key_stored, order, now, pg, [str(k) for k in keys]
            )
            by_column_stored = dict(stored)
            same_c, moved_c = changes._moved_by_column(
                keys, whole, by_column_stored, order, now, was, pg
            )
            assert (same_c, moved_c) == (same, moved) and present == n
            assert by_column_stored | whole == by_key_indexed  # the memory as by key
            assert moved and (same or pg)


def test_rows_whose_steady_values_stay_are_split_from_the_others() -> None:
    """Reason codes, liquidatable and horizon (`changes.STEADY`): a row leaves them out of its
    update only where all three stay, each change alone counting."""
    rng = random.Random(19)
    n = 500
    reasons = [rng.choice([[], ["near_oracle"], None]) for _ in range(n)]
    liquidatable = [rng.random() < 0.1 for _ in range(n)]
    horizons = [rng.choice([3600.0, None]) for _ in range(n)]
    now = (
        _moved(rng, reasons, [["stale_price"], []], 0.05),
        _moved(rng, liquidatable, [True, False], 0.05),
        _moved(rng, horizons, [7200.0], 0.05),
    )
    rows = sorted(rng.sample(range(n), 400), key=lambda i: (i * 31) % n)
    quiet, others = changes._split_steady(rows, now, (reasons, liquidatable, horizons))
    expected = [
        i
        for i in rows
        if (now[0][i], now[1][i], now[2][i]) == (reasons[i], liquidatable[i], horizons[i])
    ]
    assert quiet == expected and others == [i for i in rows if i not in set(expected)]
    for column in range(3):  # each column's change alone moves a row to the others
        assert any(now[column][i] != (reasons, liquidatable, horizons)[column][i] for i in others)
    assert set(changes.QUIET) | set(changes.STEADY) == set(changes.UNINDEXED)
