"""Incremental refresh is exact: on the devnet, a randomised run of real transactions (supplies,
borrows, repays, withdrawals, aToken transfers between tracked accounts, collateral toggles,
eMode switches, liquidations, new borrowers, price moves, time jumps; several per block) where
at every block the incrementally refreshed positions of Aave 3.0.2, Aave 3.6 and Morpho Blue
equal a full re-read (whole Position objects) and the Pool's getUserAccountData."""

from __future__ import annotations

import random
from collections import Counter
from dataclasses import dataclass
from typing import Any

import pytest

from onchain.app.incremental import MarketRefresher
from onchain.app.pipeline import scan
from onchain.devnet.build import DevnetInfo
from onchain.devnet.chain import DEPLOYER, DevChain, calldata
from onchain.devnet.seed import seeded_address
from onchain.protocols.base import MarketRef, Position
from onchain.rpc.client import RpcClient
from tests.helpers.aave_oracle import ours_as_pool_tuple, pool_account_data

UINT256_MAX = 2**256 - 1
LIQUIDATOR = "0x000000000000000000000000000000000000bEEF"
PARAMS = "(address,address,address,address,uint256)"
USD = {"WETH": 3000.0, "WBTC": 60000.0, "USDC": 1.0, "DAI": 1.0, "wstETH": 3300.0}
BLOCKS = 14
Tx = tuple[str, str, bytes, int]


@dataclass
class AaveSide:
    """One Aave market of the devnet and the accounts the run moves."""

    pool: str
    tokens: dict[str, str]
    atokens: dict[str, str]
    decimals: dict[str, int]
    accounts: list[str]
    emodes: list[int]

    def raw(self, symbol: str, usd: float) -> int:
        return int(usd / USD[symbol] * 10 ** self.decimals[symbol])


def _aave_action(
    rng: random.Random, side: AaveSide, unhealthy: list[Position]
) -> tuple[str, list[Tx]]:
    me = rng.choice(side.accounts)
    symbol = rng.choice(sorted(side.tokens))
    token, amount = side.tokens[symbol], side.raw(symbol, rng.uniform(20, 800))
    pool = side.pool
    approve = (me, token, calldata("approve(address,uint256)", pool, UINT256_MAX), 100_000)
    mint = (me, token, calldata("mint(uint256)", amount), 150_000)
    kind = rng.choice(
        ["supply", "borrow", "repay", "withdraw", "transfer", "toggle", "emode", "liquidate"]
    )
    if kind == "supply":
        args = ("supply(address,uint256,address,uint16)", token, amount, me, 0)
        return kind, [mint, approve, (me, pool, calldata(*args), 800_000)]
    if kind == "borrow":
        args = ("borrow(address,uint256,uint256,uint16,address)", token, amount // 4, 2, 0, me)
        return kind, [(me, pool, calldata(*args), 900_000)]
    if kind == "repay":
        args = ("repay(address,uint256,uint256,address)", token, amount // 4, 2, me)
        return kind, [mint, approve, (me, pool, calldata(*args), 800_000)]
    if kind == "withdraw":
        args = ("withdraw(address,uint256,address)", token, amount // 4, me)
        return kind, [(me, pool, calldata(*args), 900_000)]
    if kind == "transfer":
        to = rng.choice([a for a in side.accounts if a != me])
        args = ("transfer(address,uint256)", to, amount // 8)
        return kind, [(me, side.atokens[symbol], calldata(*args), 600_000)]
    if kind == "toggle":
        args = ("setUserUseReserveAsCollateral(address,bool)", token, rng.random() < 0.5)
        return kind, [(me, pool, calldata(*args), 600_000)]
    if kind == "emode":
        return kind, [(me, pool, calldata("setUserEMode(uint8)", rng.choice(side.emodes)), 600_000)]
    if not unhealthy:
        return "skip", []
    target = rng.choice(unhealthy)
    coll = max((a for a in target.assets if a.collateral_enabled), key=lambda a: a.collateral_base)
    debt = max((a for a in target.assets if a.debt_raw), key=lambda a: a.debt_base)
    args = (
        "liquidationCall(address,address,address,uint256,bool)",
        coll.asset,
        debt.asset,
        target.account,
        debt.debt_raw // 3,
        rng.random() < 0.5,  # receive aTokens: a BalanceTransfer to the liquidator
    )
    return kind, [(LIQUIDATOR, pool, calldata(*args), 2_000_000)]


def _morpho_action(
    rng: random.Random, info: DevnetInfo, accounts: list[str], book: list[Position]
) -> tuple[str, list[Tx]]:
    assert info.morpho is not None
    d = info.morpho
    m = rng.choice(d.markets)
    me = rng.choice(accounts)
    kind = rng.choice(
        ["supply_collateral", "borrow", "repay", "withdraw_collateral", "lend", "liquidate"]
    )
    held = [p for p in book if p.account in accounts]
    if kind in ("borrow", "repay", "withdraw_collateral") and held:
        mine = rng.choice(held)  # a position the account really has
        m, me = d.market(mine.market), mine.account
    coll, loan = d.tokens[m.collateral_symbol], d.tokens[m.loan_symbol]
    c_amount = int(
        rng.uniform(50, 1500) / USD[m.collateral_symbol] * 10 ** d.decimals[m.collateral_symbol]
    )
    l_amount = int(rng.uniform(20, 600) / USD[m.loan_symbol] * 10 ** d.decimals[m.loan_symbol])
    morpho = d.morpho

    def funded(token: str, who: str, amount: int) -> list[Tx]:
        return [
            (who, token, calldata("setBalance(address,uint256)", who, amount), 120_000),
            (who, token, calldata("approve(address,uint256)", morpho, UINT256_MAX), 100_000),
        ]

    if kind == "supply_collateral":
        args = (f"supplyCollateral({PARAMS},uint256,address,bytes)", m.params, c_amount, me, b"")
        return kind, [*funded(coll, me, c_amount), (me, morpho, calldata(*args), 400000)]
    if kind == "borrow":
        args = (f"borrow({PARAMS},uint256,uint256,address,address)", m.params, l_amount, 0, me, me)
        return kind, [(me, morpho, calldata(*args), 600_000)]
    if kind == "repay":
        args = (
            f"repay({PARAMS},uint256,uint256,address,bytes)",
            m.params,
            l_amount // 2,
            0,
            me,
            b"",
        )
        return kind, [*funded(loan, me, l_amount), (me, morpho, calldata(*args), 600000)]
    if kind == "withdraw_collateral":
        args = (
            f"withdrawCollateral({PARAMS},uint256,address,address)",
            m.params,
            c_amount // 40,
            me,
            me,
        )
        return kind, [(me, morpho, calldata(*args), 600_000)]
    if kind == "lend":
        args = (
            f"supply({PARAMS},uint256,uint256,address,bytes)",
            m.params,
            l_amount * 5,
            0,
            me,
            b"",
        )
        return kind, [*funded(loan, me, l_amount * 5), (me, morpho, calldata(*args), 600000)]
    targets = [p for p in book if p.liquidatable]
    if not targets:
        return "skip", []
    target = rng.choice(targets)
    info_m = d.market(target.market)
    shares = int(target.extra["borrow_shares"]) // 2
    args = (
        f"liquidate({PARAMS},address,uint256,uint256,bytes)",
        info_m.params,
        target.account,
        0,
        shares,
        b"",
    )
    funding = funded(d.tokens[info_m.loan_symbol], LIQUIDATOR, 10**30)
    return kind, [*funding, (LIQUIDATOR, morpho, calldata(*args), 1500000)]


def _price_moves(rng: random.Random, info: DevnetInfo) -> list[Tx]:
    """Aave feeds (shared by both Aave markets) and Morpho oracles, moved a few percent."""
    assert info.morpho is not None
    txs = []
    chain = DevChain(info.rpc_url)
    for symbol in rng.sample(sorted(info.aave.price_feeds), 2):
        feed = info.aave.price_feeds[symbol]
        now = int(chain.view(feed, "latestAnswer()", ["int256"]))
        answer = int(now * rng.uniform(0.9, 1.04))
        txs.append((DEPLOYER, feed, calldata("setAnswer(int256)", answer), 200_000))
    for m in rng.sample(info.morpho.markets, 2):
        now = int(chain.view(m.oracle, "price()", ["uint256"]))
        txs.append(
            (
                DEPLOYER,
                m.oracle,
                calldata("setPrice(uint256)", int(now * rng.uniform(0.9, 1.03))),
                100_000,
            )
        )
    return txs


def _new_borrower_txs(side: AaveSide, who: str) -> list[Tx]:
    """A brand new account supplies WETH and borrows USDC in one block (discovery finds it)."""
    weth, usdc = side.tokens["WETH"], side.tokens["USDC"]
    amount = side.raw("WETH", 3000)
    return [
        (who, weth, calldata("mint(uint256)", amount), 150_000),
        (who, weth, calldata("approve(address,uint256)", side.pool, UINT256_MAX), 100_000),
        (
            who,
            side.pool,
            calldata("supply(address,uint256,address,uint16)", weth, amount, who, 0),
            800_000,
        ),
        (
            who,
            side.pool,
            calldata(
                "borrow(address,uint256,uint256,uint16,address)",
                usdc,
                side.raw("USDC", 900),
                2,
                0,
                who,
            ),
            900_000,
        ),
    ]


def _mine(chain: DevChain, txs: list[tuple[str, Tx]], seconds: int) -> Counter[str]:
    """All transactions in one block (after `seconds`); count the kinds that succeeded."""
    if seconds:
        chain.increase_time(seconds)
    chain.set_automine(False)
    try:
        hashes = chain.send_many([tx for _kind, tx in txs]) if txs else []
        chain.mine()
    finally:
        chain.set_automine(True)
    receipts = chain.rpc_batch([("eth_getTransactionReceipt", [h]) for h in hashes])
    done: Counter[str] = Counter()
    for (kind, _tx), receipt in zip(txs, receipts, strict=True):
        if receipt is not None and int(receipt["status"], 16) == 1:
            done[kind] += 1
    return done


def _fund(chain: DevChain, info: DevnetInfo, sides: list[AaveSide], people: list[str]) -> None:
    chain.set_balance([*people, LIQUIDATOR], 10**22)
    txs: list[Tx] = []
    for side in sides:
        for symbol, token in side.tokens.items():
            txs.append(
                (
                    LIQUIDATOR,
                    token,
                    calldata("mint(uint256)", 10**12 * 10 ** side.decimals[symbol]),
                    200_000,
                )
            )
            txs.append(
                (
                    LIQUIDATOR,
                    token,
                    calldata("approve(address,uint256)", side.pool, UINT256_MAX),
                    100_000,
                )
            )
    _mine(chain, [("fund", tx) for tx in txs], 0)


def _check(
    client: RpcClient,
    chain: DevChain,
    refresher: MarketRefresher,
    market: MarketRef,
    positions: list[Position],
    pool: str | None,
) -> None:
    assert refresher.block is not None
    number = refresher.block.number
    full = scan(client, market, block_number=number).positions
    assert [p.account for p in positions] == [p.account for p in full]
    for ours, theirs in zip(positions, full, strict=True):
        assert ours == theirs, f"{market.protocol} block {number} {ours.account}"
    flagged, _exact = refresher.liquidatable_now()
    assert flagged == sorted({p.account for p in full if p.liquidatable})
    if pool is not None:
        truth = pool_account_data(chain, pool, [p.account for p in positions], number)
        assert [ours_as_pool_tuple(p) for p in positions] == truth


@pytest.fixture(scope="module")
def run(devnet: DevnetInfo) -> dict[str, Any]:
    """The randomised run; what happened and how much it cost, for the tests below."""
    assert devnet.morpho is not None and devnet.aave36 is not None
    rng = random.Random(15)
    chain = DevChain(devnet.rpc_url)
    client = RpcClient(devnet.rpc_url, expected_chain_id=devnet.chain_id)
    a = devnet.aave
    a36 = devnet.aave36
    sides = [
        AaveSide(a.pool, a.tokens, a.atokens, a.decimals, devnet.borrowers[:30], [0, 1]),
        AaveSide(a36.pool, a36.tokens, a36.atokens, a36.decimals, a36.borrowers[:30], [0, 1, 2, 3]),
    ]
    morpho_accounts = devnet.morpho.borrowers[:30]
    _fund(
        chain, devnet, sides, sorted({x for s in sides for x in s.accounts} | set(morpho_accounts))
    )
    markets: list[tuple[MarketRef, str | None]] = [
        (MarketRef("aave-v3", a.addresses_provider), a.pool),
        (MarketRef("aave-v3", a36.addresses_provider), a36.pool),
        (MarketRef("morpho-blue", devnet.morpho.morpho), None),
    ]
    start = client.pin_block()
    refreshers = [MarketRefresher(client, m) for m, _pool in markets]
    books = [r.start(start) for r in refreshers]
    done: Counter[str] = Counter()
    requests: list[int] = []
    new_people = [seeded_address(15, "incremental-new", i) for i in range(BLOCKS)]
    chain.set_balance(new_people, 10**22)
    for step in range(BLOCKS):
        unhealthy = [[p for p in book if p.liquidatable] for book in books]
        txs: list[tuple[str, Tx]] = []
        for _ in range(rng.randint(4, 8)):
            which = rng.randrange(3)
            if which < 2:
                kind, action = _aave_action(rng, sides[which], unhealthy[which])
            else:
                kind, action = _morpho_action(rng, devnet, morpho_accounts, books[2])
            # the last transaction is the action; those before it fund and approve
            txs += [("prep", tx) for tx in action[:-1]] + [(kind, tx) for tx in action[-1:]]
        if step % 3 == 1:
            joining = _new_borrower_txs(sides[step % 2], new_people[step])
            txs += [("prep", tx) for tx in joining[:-1]] + [("new_borrower", joining[-1])]
        if step % 2 == 0:
            txs += [("price", tx) for tx in _price_moves(rng, devnet)]
        if step == BLOCKS // 2:  # a crash: many positions turn liquidatable
            for feed in (a.price_feeds["WETH"], a.price_feeds["WBTC"]):
                now = int(chain.view(feed, "latestAnswer()", ["int256"]))
                txs.append(
                    (
                        "price",
                        (DEPLOYER, feed, calldata("setAnswer(int256)", now * 3 // 4), 200_000),
                    )
                )
        done += _mine(chain, txs, rng.choice([0, 0, 600, 86_400]))
        block = client.pin_block()
        books = []
        for refresher, (market, pool) in zip(refreshers, markets, strict=True):
            books.append(refresher.advance_to(block))
            assert refresher.last is not None
            requests.append(refresher.last.requests)
            _check(client, chain, refresher, market, books[-1], pool)
    repairs = [r.reconcile() for r in refreshers]
    return {"done": done, "requests": requests, "repairs": repairs, "books": books}


def test_every_block_equals_a_full_read_and_the_pool(run: dict[str, Any]) -> None:
    """(The comparisons are made inside the run, block by block; here: the run reached its end
    with every kind of change made for real.)"""
    done = run["done"]
    for kind in (
        "supply",
        "borrow",
        "repay",
        "withdraw",
        "transfer",
        "toggle",
        "emode",
        "liquidate",
        "supply_collateral",
        "withdraw_collateral",
        "lend",
        "new_borrower",
        "price",
    ):
        assert done[kind] > 0, f"no {kind} landed: {dict(done)}"
    print(f"\nincremental run: {dict(done)}")


def test_reconciliation_finds_nothing_to_repair(run: dict[str, Any]) -> None:
    assert run["repairs"] == [[], [], []]


def test_new_borrowers_join_the_tracked_set(run: dict[str, Any]) -> None:
    accounts = {p.account.lower() for book in run["books"][:2] for p in book}
    joined = [
        a
        for a in (seeded_address(15, "incremental-new", i) for i in range(BLOCKS))
        if a.lower() in accounts
    ]
    assert len(joined) >= 3


def test_a_step_costs_a_few_requests(run: dict[str, Any]) -> None:
    """Logs, market and the touched accounts: never more than a handful per market and block."""
    assert max(run["requests"]) <= 6, run["requests"]


def test_reconciliation_repairs_a_kept_state_that_drifted(devnet: DevnetInfo) -> None:
    """A kept state made wrong on purpose: the reconciliation names the account, repairs it,
    and the recomputed positions equal a full read again."""
    client = RpcClient(devnet.rpc_url, expected_chain_id=devnet.chain_id)
    market = MarketRef("aave-v3", devnet.aave.addresses_provider)
    refresher = MarketRefresher(client, market)
    refresher.start(client.pin_block())
    DevChain(devnet.rpc_url).mine()
    refresher.advance_to(client.pin_block())
    victim = refresher.accounts[7]
    (state,) = refresher.kept[victim]
    wrong = {key: value + 1 for key, value in state.balances.items()}
    refresher.kept[victim] = [type(state)(state.account, state.user_configuration, 0, wrong)]
    assert (
        refresher.positions() != scan(client, market, block_number=refresher.block.number).positions
    )
    repairs = refresher.reconcile()
    assert [r.account for r in repairs] == [victim] and repairs[0].chain == (state,)
    assert refresher.reconcile() == []
    full = scan(client, market, block_number=refresher.block.number).positions
    assert refresher.positions() == full


def test_the_fee_recipients_supply_shares_follow_accrued_interest(devnet: DevnetInfo) -> None:
    """AccrueInterest names no account, yet mints the fee recipient supply shares: kept state
    of a tracked fee recipient stays exact (the reconciliation finds nothing)."""
    assert devnet.morpho is not None
    d = devnet.morpho
    client = RpcClient(devnet.rpc_url, expected_chain_id=devnet.chain_id)
    refresher = MarketRefresher(client, MarketRef("morpho-blue", d.morpho))
    refresher.start(client.pin_block(), [d.fee_recipient, *d.borrowers[:5]])
    before = [s.supply_shares for s in refresher.kept[refresher.accounts[0]]]
    chain = DevChain(devnet.rpc_url)
    chain.increase_time(86_400)
    fee_market = next(m for m in d.markets if m.key == "WETH/USDC")  # the market with a fee
    chain.send(DEPLOYER, d.morpho, calldata(f"accrueInterest({PARAMS})", fee_market.params))
    refresher.advance_to(client.pin_block())
    after = [s.supply_shares for s in refresher.kept[refresher.accounts[0]]]
    assert after != before  # the fee was paid in supply shares
    assert refresher.reconcile() == []
