"""`positions_from_states` (the book path: per-block constants hoisted, GenericLogic's loop
inlined within bounds) gives the same Positions, every field, as `position` (the checked
per-account mirror of the Pool) for each account, on random books and edge rows for every
release; and every liquidation price it reports is the flip of the reference verdict."""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import replace

import pytest

from onchain.protocols.aave_v3.adapter import AaveAccountState, AaveMarketState, AaveV3Adapter
from onchain.protocols.aave_v3.liquidation_price import (
    MAX_PRICE,
    PricedAsset,
    _liquidatable,
    liquidation_price,
)
from onchain.protocols.aave_v3.rules import V3_0_2, V3_6, AaveRules
from onchain.protocols.base import Position
from tests.unit.test_aave_exact_book import BLOCK, RULES, _edge_states, account, market


def _one_by_one(
    market_state: AaveMarketState, states: list[AaveAccountState]
) -> list[Position | type]:
    """`position` per account, with the balances the Pool reads (the reference path)."""
    adapter = AaveV3Adapter()
    out: list[Position | type] = []
    for s in states:
        counted = {
            r.reserve_id: r.config.liquidation_threshold != 0
            or market_state.rules.lt_zero_collateral
            for r in market_state.reserves
        }
        values = {}
        for r in market_state.reserves:
            bits = (s.user_configuration >> (2 * r.reserve_id)) & 3
            if counted[r.reserve_id] and bits & 2:
                values[(r.reserve_id, "a")] = s.balances.get((r.reserve_id, "a"), 0)
            if bits & 1:
                values[(r.reserve_id, "v")] = s.balances.get((r.reserve_id, "v"), 0)
                if r.has_stable_debt:
                    values[(r.reserve_id, "s")] = s.balances.get((r.reserve_id, "s"), 0)
        try:
            out.append(
                adapter.position(
                    market_state, s.account, s.user_configuration, s.emode, values, BLOCK
                )
            )
        except (ArithmeticError, ValueError) as exc:
            out.append(type(exc))
    return out


def _book(market_state: AaveMarketState, states: list[AaveAccountState]) -> list[Position | type]:
    """The book path per account (one state at a time where one raises, as the Pool reverts)."""
    adapter = AaveV3Adapter()
    out: list[Position | type] = []
    for s in states:
        try:
            (p,) = adapter.positions_from_states(market_state, [s], BLOCK)
            out.append(p)
        except (ArithmeticError, ValueError) as exc:
            out.append(type(exc))
    return out


def _check_flips(market_state: AaveMarketState, positions: Sequence[Position | type]) -> int:
    """Each reported flip price is where the reference verdict (`_liquidatable`) changes."""
    checked = 0
    for p in positions:
        if not isinstance(p, Position) or not p.has_debt:
            continue
        parts = [
            PricedAsset(
                a.collateral_raw,
                a.debt_raw,
                a.liquidation_threshold_bps,
                10**a.decimals,
                a.price_base,
            )
            for a in p.assets
        ]
        for i, a in enumerate(p.assets):
            flip = a.liquidation_price_base
            if flip is None:
                continue
            try:
                low_bad = _liquidatable(parts, i, 0, market_state.rules)
                at, past = (flip, flip + 1) if low_bad else (flip, flip - 1)
                assert _liquidatable(parts, i, at, market_state.rules)
                if 0 <= past <= MAX_PRICE:
                    assert not _liquidatable(parts, i, past, market_state.rules)
            except (ArithmeticError, ValueError):
                continue  # the reference cannot evaluate there (uint256 bounds)
            checked += 1
    return checked


@pytest.mark.parametrize("rules", RULES, ids=[r.version for r in RULES])
def test_book_positions_equal_the_per_account_positions(rules: AaveRules) -> None:
    rng = random.Random(rules.revision + 40)
    flips = positions = 0
    for _trial in range(3):
        market_state = market(rng, rules)
        states = [account(rng, i) for i in range(300)] + _edge_states(rules, market_state)
        want = _one_by_one(market_state, states)
        got = _book(market_state, states)
        for w, g, s in zip(want, got, states, strict=True):
            assert g == w, s
        whole = [p for p in want if isinstance(p, Position)]
        ok = [s for s, p in zip(states, want, strict=True) if isinstance(p, Position)]
        assert AaveV3Adapter().positions_from_states(market_state, ok, BLOCK) == whole
        flips += _check_flips(market_state, whole)
        positions += len(whole)
    assert positions > 500 and flips > 100


@pytest.mark.parametrize("rules", RULES, ids=[r.version for r in RULES])
def test_realistic_books_take_the_book_path_and_agree(rules: AaveRules) -> None:
    """Usual amounts and prices (all within the bounds): every account on the inlined path."""
    rng = random.Random(rules.revision)
    market_state = market(rng, rules)
    reserves = tuple(
        replace(
            r,
            price_base=rng.randint(10**6, 10**12),
            config=replace(
                r.config, liquidation_threshold=8_000, ltv=7_500, active=True, paused=False
            ),
        )
        for r in market_state.reserves
    )
    market_state = replace(market_state, reserves=reserves, emode_prices={1: 10**8})
    states = []
    for i in range(400):
        s = account(rng, i, emodes=(0, 0, 1, 2))
        states.append(replace(s, balances={k: v % 10**22 for k, v in s.balances.items()}))
    want = _one_by_one(market_state, states)
    assert _book(market_state, states) == want  # the search past 2**128 may overflow: equally
    whole = [p for p in want if isinstance(p, Position)]
    ok = [s for s, p in zip(states, want, strict=True) if isinstance(p, Position)]
    assert len(whole) > 300
    assert AaveV3Adapter().positions_from_states(market_state, ok, BLOCK) == whole
    assert sum(p.liquidatable for p in whole) > 10
    assert _check_flips(market_state, whole) > 200


def test_flip_price_is_exact_from_any_start() -> None:
    """The search's answer does not depend on where it starts: checked on random positions
    against the reference verdict around it."""
    rng = random.Random(9)
    checked = 0
    for rules in (V3_0_2, V3_6):
        for _ in range(300):
            parts = [
                PricedAsset(
                    rng.choice([0, rng.randint(1, 10**24)]),
                    rng.choice([0, rng.randint(1, 10**22)]),
                    rng.choice([0, rng.randint(5_000, 9_700)]),
                    10 ** rng.choice([6, 8, 18]),
                    rng.randint(1, 10**12),
                )
                for _ in range(rng.randint(1, 4))
            ]
            i = rng.randrange(len(parts))
            try:
                flip = liquidation_price(parts, i, rules)
            except ArithmeticError:  # a trial past uint256, as the contracts revert
                continue
            if flip is None:
                continue
            low_bad = _liquidatable(parts, i, 0, rules)
            assert _liquidatable(parts, i, flip, rules)
            past = flip + 1 if low_bad else flip - 1
            if 0 <= past <= MAX_PRICE:
                assert not _liquidatable(parts, i, past, rules)
            checked += 1
    assert checked > 100


@pytest.mark.parametrize("rules", [r for r in RULES if r.emode_bitmaps], ids=lambda r: r.version)
def test_an_unusable_category_leaves_its_accounts_to_the_checked_path(rules: AaveRules) -> None:
    """A category bitmap past uint128: accounts using no reserve of the market still get a
    Position, the others raise, exactly as `position` does."""
    rng = random.Random(5)
    market_state = market(rng, rules)
    bad = replace(market_state.emode_categories[1], collateral_bitmap=2**130)
    market_state = replace(market_state, emode_categories={1: bad})
    states = [
        AaveAccountState("0x" + "21" * 20, 0, 1, {}),
        AaveAccountState("0x" + "22" * 20, 0b11, 1, {(0, "a"): 10**6, (0, "v"): 10}),
        AaveAccountState("0x" + "23" * 20, 0b11 << 14, 1, {(7, "a"): 5}),  # reserve 7: none
    ] + [account(rng, i, emodes=(0, 1)) for i in range(60)]
    want = _one_by_one(market_state, states)
    assert isinstance(want[0], Position) and want[1] is ValueError
    assert isinstance(want[2], Position)
    assert _book(market_state, states) == want


def test_a_configuration_past_uint256_raises_as_the_checked_path() -> None:
    """A user configuration no uint256 holds is refused by `position` (the Pool could not read
    it); the book path must not compute a Position for it."""
    rng = random.Random(11)
    market_state = market(rng, V3_0_2)
    state = AaveAccountState("0x" + "31" * 20, 2**256 | 0b11, 0, {(0, "a"): 10**6, (0, "v"): 10})
    assert _one_by_one(market_state, [state]) == [ValueError]
    assert _book(market_state, [state]) == [ValueError]


def test_overlapping_builds_leave_the_collector_as_they_found_it() -> None:
    """Two threads' builds overlapping (the daemon's jobs, the API's pages): the collector runs
    again once the last one ends, whatever the order they end in."""
    import gc
    import threading

    from onchain.protocols.aave_v3.adapter import _without_cycle_collection

    assert gc.isenabled()
    a_in, b_in, a_out = threading.Event(), threading.Event(), threading.Event()
    seen: list[bool] = []

    def first() -> None:
        with _without_cycle_collection():
            a_in.set()
            b_in.wait(5)
        a_out.set()

    def second() -> None:
        a_in.wait(5)
        with _without_cycle_collection():
            b_in.set()
            a_out.wait(5)
            seen.append(gc.isenabled())  # the other build ended; this one still runs paused

    threads = [threading.Thread(target=first), threading.Thread(target=second)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert seen == [False]
    assert gc.isenabled()
