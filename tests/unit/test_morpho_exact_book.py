"""The vectorised exact recompute of a Morpho Blue book equals the Position objects the adapter
builds for the same kept states: the same rows (priced markets the discovery notes name, with
collateral or debt), in the same order, and every figure bit for bit, as rows are replaced."""

from __future__ import annotations

import random
from dataclasses import replace

from onchain.protocols.base import ExactHealth
from onchain.protocols.morpho_blue import math
from onchain.protocols.morpho_blue.adapter import (
    MorphoBlueAdapter,
    MorphoMarket,
    MorphoPositionState,
    MorphoState,
)
from onchain.protocols.morpho_blue.incremental import MorphoBlueIncremental
from onchain.rpc.client import BlockRef
from tests.helpers.book_health import book_rows, position_figures

BLOCK = BlockRef(50, "0x" + "cd" * 32, 1_700_000_000)


def _market(rng: random.Random, i: int) -> MorphoMarket:
    tba = rng.choice([0, 1, rng.randrange(10**6, 10**24)])
    tbs = tba * rng.randrange(10**5, 10**7) if tba else rng.choice([0, 5])
    accrued = math.Market(tba * 2 + 7, tbs * 2, tba, tbs, BLOCK.timestamp, 0)
    price = rng.choice([None, 0, 1, 10**36, rng.randrange(10**20, 10**48)]) if i else 10**36
    return MorphoMarket(
        id=f"0x{i:064x}",
        loan_token=f"0x{i + 1:040x}",
        collateral_token=f"0x{i + 100:040x}",
        oracle=f"0x{i + 200:040x}",
        irm=f"0x{i + 300:040x}",
        lltv=rng.choice([1, 86 * 10**16, 945 * 10**15, 10**18]),
        loan_symbol="L",
        loan_decimals=rng.choice([6, 18]),
        collateral_symbol="C",
        collateral_decimals=18,
        stored=accrued,
        borrow_rate=0,
        accrued=accrued,
        price=price,
        problem="oracle reverts" if price is None else None,
    )


def _state(
    rng: random.Random, markets: list[MorphoMarket], accounts: list[str]
) -> MorphoPositionState:
    def amount() -> int:
        return rng.choice([0, 0, 1, rng.randrange(10**3, 10**30), rng.randrange(2**120, 2**128)])

    m = rng.choice(markets)  # borrow shares are a part of the market's, as on chain
    shares = min(amount(), m.accrued.total_borrow_shares)
    return MorphoPositionState(m.id, rng.choice(accounts), amount(), shares, amount())


def test_random_books_equal_the_positions_as_rows_are_replaced() -> None:
    rng = random.Random(15)
    incremental = MorphoBlueIncremental()
    assert isinstance(incremental, ExactHealth)
    adapter = MorphoBlueAdapter()
    markets = [_market(rng, i) for i in range(12)]
    accounts = [f"0x{rng.getrandbits(160):040X}" for _ in range(300)]
    state = MorphoState("0x" + "bb" * 20, BLOCK, tuple(markets))
    # some accounts' discovery notes name only some markets: the others are left out
    for a in accounts[:100]:
        state.account_markets[a] = {m.id for m in rng.sample(markets, 3)}
    states = [_state(rng, markets, accounts) for _ in range(3000)]
    book = incremental.health_book(state, states)
    liquidatable = 0
    for _block in range(4):
        health = incremental.exact_health(state, book, BLOCK)
        want = [position_figures(p) for p in adapter.positions_from_states(state, states, BLOCK)]
        assert book_rows(health) == want
        liquidatable += int(health.liquidatable.sum())
        for row in rng.sample(range(len(states)), 200):
            states[row] = _state(rng, markets, accounts)
            incremental.health_update(state, book, row, states[row])
        # interest accrued and prices moved
        moved = tuple(
            replace(
                m,
                accrued=replace(
                    m.accrued, total_borrow_assets=m.accrued.total_borrow_assets * 101 // 100
                ),
                price=None if m.price is None else m.price * rng.randrange(95, 106) // 100,
            )
            for m in state.markets
        )
        state = replace(state, markets=moved, account_markets=state.account_markets)
    assert liquidatable > 0
