"""The vectorised exact recompute of a whole Aave book equals the Position objects the adapter
builds for the same kept states, field for field, for every release's rules: random books and
edge rows (zero and dust balances, collateral flag off, LT 0, eMode with and without the
category's price or bitmap, stable debt, paused / inactive reserves and grace periods, values at
the contracts' overflow guards), rows replaced one by one, and a market moving under the book."""

from __future__ import annotations

import random
from dataclasses import replace

import pytest

from onchain.protocols.aave_v3 import exact_book
from onchain.protocols.aave_v3 import math as am
from onchain.protocols.aave_v3.adapter import (
    AaveAccountState,
    AaveMarketState,
    AaveReserve,
    AaveV3Adapter,
)
from onchain.protocols.aave_v3.incremental import AaveV3Incremental
from onchain.protocols.aave_v3.rules import REVISIONS, AaveRules
from onchain.protocols.base import BookHealth, ExactHealth
from onchain.rpc.client import BlockRef
from tests.helpers.book_health import Figures, book_rows, position_figures

MAX = 2**256 - 1
RAY = 10**27
NOW = 1_700_000_000
BLOCK = BlockRef(100, "0x" + "ab" * 32, NOW)
SOURCE = "0x00000000000000000000000000000000000000e1"
DECIMALS = [6, 8, 18, 18, 0, 27]
RULES = sorted(REVISIONS.values(), key=lambda r: r.revision)


def _config(rng: random.Random, rules: AaveRules, decimals: int) -> am.ReserveConfiguration:
    lt = rng.choice([0, 0, 7_500, 8_250, 9_500, 65_535])
    ltv = 0 if not lt else rng.choice([0, lt - 500, lt - 50])
    emode = 0 if rules.emode_bitmaps else rng.choice([0, 1, 2])
    active, paused = rng.random() > 0.08, rng.random() < 0.08
    bits = ltv | lt << 16 | 10_500 << 32 | decimals << 48 | active << 56 | paused << 60
    return am.decode_reserve_configuration(bits | 1_000 << 152 | emode << 168)


def market(rng: random.Random, rules: AaveRules) -> AaveMarketState:
    """Six reserves (ids 0-5; the bitmaps may also name 6 and 7, no reserve), random terms."""
    reserves = []
    for rid, decimals in enumerate(DECIMALS):
        reserves.append(
            AaveReserve(
                asset=f"0x{rid + 1:040x}",
                symbol=f"T{rid}",
                reserve_id=rid,
                config=_config(rng, rules, decimals),
                atoken=f"0x{rid + 0x100:040x}",
                stable_debt_token=f"0x{rid + 0x200:040x}",
                variable_debt_token=f"0x{rid + 0x300:040x}",
                price_base=rng.choice([10**8, 3_000 * 10**8, 60_000 * 10**8, 1, 0, 99_999_999]),
                normalized_income_ray=RAY + rng.randrange(RAY),
                normalized_debt_ray=RAY + rng.randrange(2 * RAY),
                has_stable_debt=rules.stable_debt and rng.random() < 0.5,
                liquidation_grace_until=rng.choice([0, 0, NOW - 1, NOW, NOW + 100]),
            )
        )
    categories = {
        1: am.EModeCategory(
            1,
            9_000,
            9_300,
            10_100,
            price_source=SOURCE if not rules.emode_bitmaps else am.ZERO_ADDRESS,
            collateral_bitmap=0b101011 if rules.emode_bitmaps else 0,
            borrowable_bitmap=0b111111 if rules.emode_bitmaps else 0,
            ltvzero_bitmap=0b000010 if rules.ltvzero_bitmap else 0,
        ),
        2: am.EModeCategory(
            2,
            0,
            9_700,
            10_100,
            collateral_bitmap=0b110100 if rules.emode_bitmaps else 0,
            borrowable_bitmap=0b111111 if rules.emode_bitmaps else 0,
        ),
    }
    prices = {1: rng.choice([10**8, 0, 2_999 * 10**8])} if not rules.emode_bitmaps else {}
    return AaveMarketState(
        addresses_provider="0x" + "0a" * 20,
        pool="0x" + "0b" * 20,
        oracle="0x" + "0c" * 20,
        market_id="test",
        pool_revision=rules.revision,
        version=rules.version,
        base_currency_unit=10**8,
        block=BLOCK,
        reserves=tuple(reserves),
        emode_categories=categories,
        emode_prices=prices,
        rules=rules,
    )


def _amount(rng: random.Random) -> int:
    roll = rng.random()
    if roll < 0.08:
        return 0
    if roll < 0.18:
        return rng.randrange(1, 20)  # dust
    if roll < 0.21:
        return rng.randrange(2**150, 2**160)  # huge, below the guards
    if roll < 0.26:
        return rng.randrange(10**30, 10**36)  # large
    return rng.randrange(10**4, 10**24)


def account(rng: random.Random, i: int, emodes: tuple[int, ...] = (0, 0, 1, 2)) -> AaveAccountState:
    config = 0
    balances: dict[tuple[int, str], int] = {}
    for rid in range(8):
        collateral, borrowing = rng.random() < 0.35, rng.random() < 0.25
        config |= (int(borrowing) | int(collateral) << 1) << (2 * rid)
        if collateral and rng.random() < 0.95:
            balances[(rid, "a")] = _amount(rng)
        if borrowing:
            if rng.random() < 0.95:
                balances[(rid, "v")] = _amount(rng) // rng.choice([1, 3, 10])
            if rng.random() < 0.3:
                balances[(rid, "s")] = _amount(rng) // 5
        elif rng.random() < 0.1:  # a balance the bitmap does not mark: not counted
            balances[(rid, "v")] = _amount(rng)
    return AaveAccountState(f"0x{rng.getrandbits(160):040x}", config, rng.choice(emodes), balances)


def _naive(market_state: AaveMarketState, state: AaveAccountState) -> Figures | Exception:
    """The Position's fields, or the error `account_data` raises (the Pool reverts). Built as
    `positions_from_states` builds it, without the liquidation-price search (which rows with
    balances near 2**256 make raise, outside what the book computes)."""
    values: dict[tuple[int, str], int] = {}
    for r in market_state.reserves:
        rid, bits = r.reserve_id, am.reserve_bits(state.user_configuration, r.reserve_id)
        lt_counts = r.config.liquidation_threshold != 0 or market_state.rules.lt_zero_collateral
        if bits & 2 and lt_counts:
            values[(rid, "a")] = state.balances.get((rid, "a"), 0)
        if bits & 1:
            values[(rid, "v")] = state.balances.get((rid, "v"), 0)
            if r.has_stable_debt:
                values[(rid, "s")] = state.balances.get((rid, "s"), 0)
    adapter = AaveV3Adapter()
    try:
        p = adapter.position(
            market_state,
            state.account,
            state.user_configuration,
            state.emode,
            values,
            BLOCK,
            flip_prices=False,
        )
    except ArithmeticError as error:
        return error
    try:
        (whole,) = adapter.positions_from_states(market_state, [state], BLOCK)
        assert whole == replace(p, assets=whole.assets)
    except (ArithmeticError, ValueError):
        pass
    return position_figures(p)


def assert_book_equals_positions(
    market_state: AaveMarketState, states: list[AaveAccountState], book: object = None
) -> BookHealth:
    """Every row equal to the Position's; states whose Position raises (the contract reverts)
    make the book raise the same error."""
    naive = [_naive(market_state, s) for s in states]
    good = [s for s, n in zip(states, naive, strict=True) if not isinstance(n, Exception)]
    for s, n in zip(states, naive, strict=True):
        if isinstance(n, Exception):
            with pytest.raises(type(n)):
                exact_book.exact_health(market_state, exact_book.book(market_state, [s]), BLOCK)
    if book is None:
        book = exact_book.book(market_state, good)
    health = exact_book.exact_health(market_state, book, BLOCK)  # type: ignore[arg-type]
    want = [n for n in naive if not isinstance(n, Exception)]
    differ = [i for i, (a, b) in enumerate(zip(book_rows(health), want, strict=True)) if a != b]
    assert not differ, f"{len(differ)} rows differ, first {differ[0]}"
    return health


@pytest.mark.parametrize("rules", RULES, ids=[r.version for r in RULES])
def test_random_books_equal_the_positions_for_every_release(rules: AaveRules) -> None:
    rng = random.Random(rules.revision)
    seen_liquidatable = seen_held = 0
    for _trial in range(4):
        market_state = market(rng, rules)
        states = [account(rng, i) for i in range(500)]
        health = assert_book_equals_positions(market_state, states)
        assert health.scalar_rows < len(health) // 2  # most rows computed by the arrays
        seen_liquidatable += int(health.liquidatable.sum())
        below = [hf is not None and hf < 10**18 for hf in health.health_factor]
        seen_held += sum(b and not v for b, v in zip(below, health.liquidatable, strict=True))
    assert seen_liquidatable > 0 and seen_held > 0  # both verdicts were exercised


def _edge_states(rules: AaveRules, market_state: AaveMarketState) -> list[AaveAccountState]:
    usd = market_state.reserves[3]  # 18 decimals
    idx = usd.normalized_income_ray
    didx = usd.normalized_debt_ray
    both = 0b11 << 6  # reserve 3: collateral and borrowing
    half = 0 if rules.directional_rounding else am.HALF_RAY
    most = (MAX - half) // idx  # the largest scaled balance rayMul accepts
    most_debt = (MAX - half) // didx
    plain = {(3, "a"): 10**18, (3, "v"): 10**17}
    return [
        AaveAccountState("0x" + "01" * 20, 0, 0, {}),  # nothing at all
        AaveAccountState("0x" + "02" * 20, 0, 1, {(3, "a"): 5}),  # eMode, empty bitmap
        AaveAccountState("0x" + "03" * 20, 0b10 << 6, 0, {}),  # collateral flag, no balance
        AaveAccountState("0x" + "04" * 20, both, 0, {(3, "a"): most, (3, "v"): 1}),
        AaveAccountState("0x" + "05" * 20, both, 0, {(3, "a"): most + 1, (3, "v"): 1}),
        AaveAccountState("0x" + "06" * 20, 0b01 << 6, 0, {(3, "v"): most_debt}),
        AaveAccountState("0x" + "07" * 20, 0b01 << 6, 0, {(3, "v"): most_debt + 1}),
        AaveAccountState("0x" + "08" * 20, both, 2, plain),
        AaveAccountState("0x" + "09" * 20, both, 0, {(3, "a"): 1, (3, "v"): 1}),
        AaveAccountState("0x" + "0a" * 20, both, 0, {(3, "a"): 0, (3, "v"): 0}),
        AaveAccountState("0x" + "0b" * 20, 0b10 << 6, 0, {(3, "a"): most}),  # no debt
        # huge collateral in a 0-decimals reserve, no debt: the scalar math decides
        AaveAccountState("0x" + "0c" * 20, 0b10 << 8, 0, {(4, "a"): 5 * 10**49}),
        AaveAccountState(
            "0x" + "0d" * 20, (0b10 << 8) | 1 << 6, 0, {(4, "a"): 10**30, (3, "v"): 10**20}
        ),
        AaveAccountState("0x" + "0e" * 20, both | 0b11 << 14, 1, {(7, "a"): 10**30, **plain}),
    ]


@pytest.mark.parametrize("rules", RULES, ids=[r.version for r in RULES])
def test_edge_rows_equal_the_positions(rules: AaveRules) -> None:
    rng = random.Random(7)
    for _trial in range(6):
        market_state = market(rng, rules)
        usd = replace(
            market_state.reserves[3],
            config=replace(market_state.reserves[3].config, liquidation_threshold=8_000, ltv=7_000),
            price_base=10**8,
        )
        big = replace(
            market_state.reserves[4],
            price_base=10**23,
            config=replace(market_state.reserves[4].config, liquidation_threshold=8_000, ltv=7_000),
        )
        reserves = list(market_state.reserves)
        reserves[3], reserves[4] = usd, big
        market_state = replace(market_state, reserves=tuple(reserves))
        states = _edge_states(rules, market_state)
        health = assert_book_equals_positions(market_state, states)
        assert health.scalar_rows >= 1


@pytest.mark.parametrize("rules", [REVISIONS[1], REVISIONS[10]], ids=["3.0.2", "3.6"])
def test_a_category_not_loaded_raises_as_the_position_does(rules: AaveRules) -> None:
    rng = random.Random(3)
    market_state = market(rng, rules)
    lone = AaveAccountState("0x" + "11" * 20, 0b11, 3, {(0, "a"): 10**6, (0, "v"): 10})
    empty = AaveAccountState("0x" + "12" * 20, 0, 3, {})
    with pytest.raises(ValueError):
        AaveV3Adapter().positions_from_states(market_state, [lone], BLOCK)
    with pytest.raises(ValueError):
        exact_book.exact_health(market_state, exact_book.book(market_state, [lone]), BLOCK)
    assert_book_equals_positions(market_state, [empty])  # no reserve used: no category needed


@pytest.mark.parametrize(
    "rules", [REVISIONS[1], REVISIONS[7], REVISIONS[10]], ids=["3.0.2", "3.3", "3.6"]
)
def test_rows_replaced_and_the_market_moving_keep_the_book_exact(rules: AaveRules) -> None:
    rng = random.Random(11)
    incremental = AaveV3Incremental()
    assert isinstance(incremental, ExactHealth)
    market_state = market(rng, rules)
    states = [account(rng, i, emodes=(0, 1, 2)) for i in range(400)]
    states = [s for s in states if not isinstance(_naive(market_state, s), Exception)]
    book = incremental.health_book(market_state, states)
    for _block in range(5):
        for row in rng.sample(range(len(states)), 40):
            fresh = account(rng, row, emodes=(0, 1, 2))
            if isinstance(_naive(market_state, fresh), Exception):
                continue
            states[row] = fresh
            incremental.health_update(market_state, book, row, fresh)
        # the next block: indexes up, prices moved, a reserve paused, a grace period over
        reserves = tuple(
            replace(
                r,
                normalized_income_ray=r.normalized_income_ray + rng.randrange(10**20),
                normalized_debt_ray=r.normalized_debt_ray + rng.randrange(10**21),
                price_base=max(1, r.price_base * rng.randrange(90, 111) // 100),
            )
            for r in market_state.reserves
        )
        market_state = replace(market_state, reserves=reserves)
        for row, s in enumerate(states):
            if isinstance(_naive(market_state, s), Exception):  # the move made it revert
                states[row] = AaveAccountState(s.account, 0, 0, {})
                incremental.health_update(market_state, book, row, states[row])
        assert_book_equals_positions(market_state, states, book)


@pytest.mark.parametrize("rules", [REVISIONS[1], REVISIONS[10]], ids=["3.0.2", "3.6"])
def test_empty_books_and_books_without_debt(rules: AaveRules) -> None:
    rng = random.Random(5)
    market_state = market(rng, rules)
    assert len(exact_book.exact_health(market_state, exact_book.book(market_state, []), BLOCK)) == 0
    lenders = [account(rng, i) for i in range(50)]
    lenders = [
        replace(s, user_configuration=s.user_configuration & am.COLLATERAL_MASK) for s in lenders
    ]
    health = assert_book_equals_positions(market_state, lenders)
    assert health.health_factor == [None] * len(health)


def test_figures_read_off_positions_match_the_book() -> None:
    """`BookHealth.of` (adapters without the arrays) gives the book's rows from Positions."""
    rng = random.Random(9)
    market_state = market(rng, REVISIONS[10])
    adapter = AaveV3Adapter()
    positions, states = [], []
    for i in range(200):
        state = account(rng, i)
        try:
            positions += adapter.positions_from_states(market_state, [state], BLOCK)
        except (ArithmeticError, ValueError):
            continue
        states.append(state)
    of = BookHealth.of(positions)
    health = exact_book.exact_health(market_state, exact_book.book(market_state, states), BLOCK)
    assert len(of) == len(states) > 100
    assert book_rows(of) == book_rows(health)
