"""The risk book from adapter arrays (`RiskRows.risk_rows` + `book_from_rows`) equals the book from
the Positions the same kept states give (`positions_from_states` + `book_from_positions`), on
synthetic markets that reach what the devnet does not: Aave 3.1 with stable debt, an eMode whose
price source replaces a reserve's price, a paused reserve and a running grace period (the holds),
a reserve with LT 0, and each release's rounding; Morpho markets skipped or filtered."""

from __future__ import annotations

import random
from dataclasses import replace

import numpy as np
import pytest

from onchain.jobs.assess import exact_assessed
from onchain.model import Position
from onchain.position_rows import PositionRows
from onchain.protocols.aave_v3 import math
from onchain.protocols.aave_v3 import risk_rows as risk_rows_module
from onchain.protocols.aave_v3.adapter import (
    AaveAccountState,
    AaveMarketState,
    AaveReserve,
    AaveV3Adapter,
)
from onchain.protocols.aave_v3.risk_rows import risk_rows as aave_rows
from onchain.protocols.aave_v3.rules import REVISIONS
from onchain.protocols.morpho_blue import math as morpho_math
from onchain.protocols.morpho_blue.adapter import (
    MorphoBlueAdapter,
    MorphoMarket,
    MorphoPositionState,
    MorphoState,
)
from onchain.protocols.morpho_blue.risk_rows import risk_rows as morpho_rows
from onchain.risk.book import book_from_positions, book_from_rows
from onchain.risk.verdict import RiskVerdict
from onchain.rpc.client import BlockRef
from tests.helpers.books import assert_same_book

RAY = 10**27
BLOCK = BlockRef(100, "0x" + "11" * 32, 1_800_000_000)
ZERO = "0x" + "00" * 20


def address(i: int) -> str:
    return "0x" + f"{i:040x}"


def config(lt: int, decimals: int, **kw: object) -> math.ReserveConfiguration:
    return replace(
        math.decode_reserve_configuration(0),
        ltv=max(lt - 500, 0),
        liquidation_threshold=lt,
        liquidation_bonus=10_500 if lt else 0,
        decimals=decimals,
        active=True,
        borrowing_enabled=True,
        reserve_factor=1000,
        liquidation_protocol_fee=1000,
        **kw,  # type: ignore[arg-type]
    )


def aave_market(revision: int, *, paused: bool = False, grace: bool = False) -> AaveMarketState:
    """Five reserves (ids out of order in the tuple): WETH in eMode 1 by its bits before 3.2
    (with a price source there, at WETH's own price), WETH and wstETH by the category's bitmap
    from 3.2; USDC, DAI with stable debt, and LINK with LT 0."""
    rules = REVISIONS[revision]
    rng = random.Random(revision)
    specs = [  # id, symbol, decimals, LT, price (8 decimals), eMode
        (2, "USDC", 6, 8_000, 100_000_000, 0),
        (0, "WETH", 18, 8_250, 300_000_000_000, 1),
        (1, "wstETH", 18, 8_000, 330_000_000_000, 0),
        (3, "DAI", 18, 7_700, 99_990_000, 0),
        (4, "LINK", 18, 0, 1_500_000_000, 0),
    ]
    reserves = []
    for rid, symbol, decimals, lt, price, emode in specs:
        extra: dict[str, object] = {"emode_category": emode}
        if symbol == "USDC" and paused:
            extra["paused"] = True
        reserves.append(
            AaveReserve(
                asset=address(0xA000 + rid),
                symbol=symbol,
                reserve_id=rid,
                config=config(lt, decimals, **extra),
                atoken=address(0xB000 + rid),
                stable_debt_token=address(0xC000 + rid) if rules.stable_debt else ZERO,
                variable_debt_token=address(0xD000 + rid),
                price_base=price,
                normalized_income_ray=RAY + rng.randrange(RAY // 7),
                normalized_debt_ray=RAY + rng.randrange(RAY // 5),
                has_stable_debt=rules.stable_debt and symbol == "DAI",
                liquidation_grace_until=BLOCK.timestamp + 60 if grace and symbol == "WETH" else 0,
            )
        )
    source = address(0xE001) if not rules.emode_bitmaps else ZERO
    category = math.EModeCategory(
        1, 9_000, 9_300, 10_100, price_source=source, label="ETH", collateral_bitmap=0b11
    )
    return AaveMarketState(
        addresses_provider=address(0xF000),
        pool=address(0xF001),
        oracle=address(0xF002),
        market_id="synthetic",
        pool_revision=revision,
        version=rules.version,
        base_currency_unit=10**8,
        block=BLOCK,
        reserves=tuple(reserves),
        emode_categories={1: category},
        emode_prices={1: 300_000_000_000} if not rules.emode_bitmaps else {},
        rules=rules,
    )


def aave_states(market: AaveMarketState, n: int, seed: int) -> list[AaveAccountState]:
    """Accounts with random bits (collateral and borrowing, some bits with no balance), random
    scaled balances from 1 unit to millions, eMode 1 for some."""
    rng = random.Random(seed)
    out = []
    for i in range(n):
        emode = 1 if rng.random() < 0.3 else 0
        flags = []
        balances: dict[tuple[int, str], int] = {}
        for r in market.reserves:
            collateral, borrowing = rng.random() < 0.5, rng.random() < 0.35
            if not (collateral or borrowing):
                continue
            flags.append((r.reserve_id, collateral, borrowing))
            unit = 10**r.config.decimals
            if collateral and rng.random() < 0.9:
                balances[(r.reserve_id, "a")] = rng.randrange(1, 10**7) * unit // 1000 + 1
            if borrowing and rng.random() < 0.9:
                balances[(r.reserve_id, "v")] = rng.randrange(1, 10**6) * unit // 1000 + 1
            if borrowing and r.has_stable_debt and rng.random() < 0.5:
                balances[(r.reserve_id, "s")] = rng.randrange(1, 10**6) * unit // 1000
        if rng.random() < 0.05:  # a kept balance whose bit is off counts for nothing
            balances[(2, "a")] = 10**9
        out.append(
            AaveAccountState(address(i + 1), math.encode_user_configuration(flags), emode, balances)
        )
    return out


def check_assets(rows: PositionRows, positions: list[Position]) -> None:
    """Each row's held columns are its Position's assets, in order, with their facts."""
    keys = rows.column_keys
    for i, p in enumerate(positions):
        held = np.flatnonzero(rows.held[i])
        assert [keys[j] for j in held] == [f"{p.market}:{a.asset}".lower() for a in p.assets]
        assert [
            (rows.symbols[j], int(rows.decimals[j]), bool(rows.collateral_enabled[i, j]))
            for j in held
        ] == [(a.symbol, a.decimals, a.collateral_enabled) for a in p.assets], p.account
        assert [rows.debt[i, j] > 0 for j in held] == [a.debt_raw > 0 for a in p.assets]


def check_holds(rows: PositionRows, positions: list[Position]) -> None:
    """A row's hold given its exact health factor is the Position's; and the verdict from the
    exact facts alone is the Position's verdict."""
    verdict = RiskVerdict("SAFE", (), 0.0, 30.0)
    for i, p in enumerate(positions):
        assert rows.hold(i, p.health_factor) == p.liquidation_hold, p.account
        held = rows.hold(i, p.health_factor)
        assert exact_assessed(p.health_factor, p.liquidatable, held, verdict) == exact_assessed(
            p.health_factor, p.liquidatable, p.liquidation_hold, verdict
        )


@pytest.mark.parametrize("revision", [1, 4, 5, 9, 10])
@pytest.mark.parametrize(("paused", "grace"), [(False, False), (True, False), (False, True)])
def test_aave_rows_give_the_positions_book(revision: int, paused: bool, grace: bool) -> None:
    market = aave_market(revision, paused=paused, grace=grace)
    states = aave_states(market, 400, revision)
    positions = AaveV3Adapter().positions_from_states(market, states, BLOCK)
    rows = aave_rows(market, states)
    assert rows.accounts == tuple(p.account for p in positions)
    assert_same_book(book_from_rows(rows, per_market_columns=False), book_from_positions(positions))
    stable = ["usdc", "DAI"]
    assert_same_book(
        book_from_rows(rows, stable_assets=stable, default_bonus=0.07),
        book_from_positions(
            positions, per_market_columns=True, stable_assets=stable, default_bonus=0.07
        ),
    )
    config_terms = {"LINK": 0.11, "usdc": 0.02}
    assert_same_book(
        book_from_rows(
            rows, per_market_columns=False, bonus_by_asset=config_terms,
            protocol_fee_by_asset=config_terms,
        ),
        book_from_positions(
            positions, bonus_by_asset=config_terms, protocol_fee_by_asset=config_terms
        ),
    )  # fmt: skip
    check_assets(rows, positions)
    check_holds(rows, positions)
    below = [p for p in positions if p.health_factor is not None and p.health_factor < 10**18]
    assert below and any(p.liquidatable for p in below)
    if paused or (grace and market.rules.grace_period):
        assert any(p.liquidation_hold is not None for p in positions)
        assert rows.holds


def test_two_prices_for_one_column_are_refused_both_ways() -> None:
    """Before 3.2 an eMode price source prices its reserves for the accounts in it: a book of
    such accounts and others holding the same reserve has two prices for one column."""
    market = aave_market(1)
    in_emode = AaveAccountState(
        address(1), math.encode_user_configuration([(0, True, False)]), 1, {(0, "a"): 10**18}
    )
    plain = AaveAccountState(address(2), math.encode_user_configuration([(0, True, False)]), 0, {(0, "a"): 10**18})  # fmt: skip
    market = replace(market, emode_prices={1: 310_000_000_000})
    positions = AaveV3Adapter().positions_from_states(market, [in_emode, plain], BLOCK)
    with pytest.raises(ValueError, match="two prices"):
        book_from_positions(positions)
    with pytest.raises(ValueError, match="two prices"):
        aave_rows(market, [in_emode, plain])
    alone = aave_rows(market, [in_emode])  # one price: the source's
    assert_same_book(
        book_from_rows(alone, per_market_columns=False), book_from_positions(positions[:1])
    )


def test_no_states_no_rows() -> None:
    market = aave_market(10)
    rows = aave_rows(market, [])
    assert len(rows) == 0 and book_from_rows(rows).n_positions == 0


def morpho_market(i: int, *, problem: str | None = None) -> MorphoMarket:
    rng = random.Random(i)
    stored = morpho_math.Market(
        total_supply_assets=10**24,
        total_supply_shares=10**30,
        total_borrow_assets=6 * 10**23 + rng.randrange(10**20),
        total_borrow_shares=6 * 10**29,
        last_update=BLOCK.timestamp - 100,
        fee=0,
    )
    return MorphoMarket(
        id="0x" + f"{i:064x}",
        loan_token=address(0x100 + i % 2),
        collateral_token=address(0x200 + i),
        oracle=address(0x300 + i),
        irm=address(0x400),
        lltv=[860, 915, 770][i % 3] * 10**15,
        loan_symbol=["USDC", "WETH"][i % 2],
        loan_decimals=[6, 18][i % 2],
        collateral_symbol=f"C{i}",
        collateral_decimals=[18, 8, 6][i % 3],
        stored=stored,
        borrow_rate=10**9,
        accrued=morpho_math.accrue_interest(stored, 10**9, BLOCK.timestamp).market,
        price=None if problem else rng.randrange(10**35, 10**39),
        problem=problem,
    )


def test_morpho_rows_give_the_positions_book() -> None:
    markets = (morpho_market(1), morpho_market(2), morpho_market(3, problem="oracle reverts"),
               morpho_market(4))  # fmt: skip
    state = MorphoState(morpho=address(0x999), block=BLOCK, markets=markets)
    rng = random.Random(7)
    states = []
    for a in range(300):
        account = address(0x5000 + a)
        for m in rng.sample(markets, 2):
            borrow = rng.choice([0, rng.randrange(1, 10**24)])
            collateral = rng.choice([0, rng.randrange(1, 10**22)])
            states.append(MorphoPositionState(m.id, account, 0, borrow, collateral))
    # an account whose discovery logs name one market only: its others are not positions
    state.account_markets[address(0x5000)] = {markets[0].id}
    positions = MorphoBlueAdapter().positions_from_states(state, states, BLOCK)
    rows = morpho_rows(state, states)
    assert rows.accounts == tuple(p.account for p in positions)
    assert [rows.market_of(i) for i in range(len(rows))] == [p.market for p in positions]
    stable = ["USDC"]
    assert_same_book(
        book_from_rows(rows, stable_assets=stable),
        book_from_positions(positions, per_market_columns=True, stable_assets=stable),
    )
    assert [rows.base_currencies[int(i)] for i in rows.row_market] == [
        p.base_currency for p in positions
    ]
    check_assets(rows, positions)
    check_holds(rows, positions)
    with pytest.raises(ValueError, match="per_market_columns"):
        book_from_rows(rows, per_market_columns=False)  # USDC is the loan of two markets
    empty = morpho_rows(state, [])
    assert len(empty) == 0 and book_from_rows(empty).n_positions == 0
    assert len(morpho_rows(replace(state, markets=()), states)) == 0


def test_rows_from_states_seen_before_are_the_rows_from_new_ones() -> None:
    """The arrays a book takes from its states alone are kept for those state objects: the
    same states give the same rows, and a book where one account's state was replaced gives
    what a first computation gives (nothing of the replaced state is reused)."""
    market = aave_market(9)
    states = aave_states(market, 300, 21)
    first = aave_rows(market, states)
    assert aave_rows(market, list(states)).accounts == first.accounts  # the kept arrays
    changed = list(states)
    old = changed[7]
    changed[7] = AaveAccountState(
        old.account,
        old.user_configuration,
        1 - old.emode,
        {k: v * 3 for k, v in old.balances.items()},
    )
    changed[8] = states[9]  # another account in its place: the order is part of the key too
    changed[9] = states[8]
    kept = aave_rows(market, changed)
    risk_rows_module._KEPT.clear()
    fresh = aave_rows(market, changed)
    assert kept.accounts == fresh.accounts != first.accounts
    assert_same_book(
        book_from_rows(kept, per_market_columns=False),
        book_from_rows(fresh, per_market_columns=False),
    )
    positions = AaveV3Adapter().positions_from_states(market, changed, BLOCK)
    assert_same_book(book_from_rows(kept, per_market_columns=False), book_from_positions(positions))
    check_assets(kept, positions)


def test_state_arrays_patched_for_a_few_replaced_states_equal_new_ones() -> None:
    """A block where a few accounts changed takes the last book's arrays with those rows
    computed again: every array equals a first computation's, in the same order."""
    market = aave_market(9)
    states = aave_states(market, 400, 22)
    rids = sorted(r.reserve_id for r in market.reserves)
    risk_rows_module._KEPT.clear()
    risk_rows_module._of_states(states, rids)
    changed = list(states)
    for i in (0, 5, 6, 133, 399):
        old = changed[i]
        balances = {k: v * 2 + 1 for k, v in old.balances.items()}
        if i == 5:  # a balance more, listed first
            balances = {(rids[-1], "v"): 7, **balances}
        if i == 6:  # no balance left
            balances = {}
        changed[i] = AaveAccountState(old.account, old.user_configuration ^ 3, old.emode, balances)
    changed[10], changed[11] = states[11], states[10]  # two accounts swap rows
    patched = risk_rows_module._of_states(changed, rids)
    assert len(risk_rows_module._KEPT) == 2
    fresh = risk_rows_module._computed(changed, rids)
    assert patched.accounts == fresh.accounts
    assert np.array_equal(patched.bits, fresh.bits)
    assert np.array_equal(patched.emode, fresh.emode)
    for ours, theirs in zip(patched.entries, fresh.entries, strict=True):
        assert ours.dtype == theirs.dtype and ours.tolist() == theirs.tolist()
    assert not patched.bits.flags.writeable
