"""On the devnet's real Aave V3.6.0 market (Pool revision 10): our health factors equal the
Pool's, all six fields, at every step of a price/time path crossing HF 1 for multi-collateral
and eMode users; liquidationCall succeeds exactly where we say liquidatable (with the amount we
quote) and the Pool refuses the others; one oracle unit either side of our liquidation price
flips the Pool's verdict, eMode users included."""

from __future__ import annotations

import random
from typing import Any

import pytest

from onchain.app.pipeline import scan
from onchain.devnet.build import DevnetInfo
from onchain.devnet.chain import DevChain
from onchain.devnet.control import set_prices, set_raw_price
from onchain.protocols.aave_v3.adapter import AaveV3Adapter
from onchain.protocols.base import MarketRef, Position
from onchain.rpc.client import RpcClient
from tests.helpers.aave36_support import (
    UINT256_MAX,
    fund_liquidator,
    largest_pair,
    liquidation_call_data,
    quotes,
    simulate,
)
from tests.helpers.aave_oracle import ours_as_pool_tuple, pool_account_data

WAD = 10**18
# (label, USD prices, seconds first): stablecoins move both ways so eMode-1 users cross too
PRICE_PATH: list[tuple[str, dict[str, float], int]] = [
    ("seeded", {}, 0),
    ("ETH -2%", {"WETH": 2940.0}, 0),
    ("ETH -4%, BTC -3%, 1 hour", {"WETH": 2880.0, "WBTC": 58200.0}, 3600),
    ("DAI 1.03, USDC 0.99, 1 day", {"DAI": 1.03, "USDC": 0.99}, 86400),
    ("DAI 0.97, USDC 1.03", {"DAI": 0.97, "USDC": 1.03}, 0),
    ("ETH -12%, BTC -10%, 30 days", {"WETH": 2640.0, "WBTC": 54000.0, "DAI": 1.0}, 30 * 86400),
    ("ETH -30%, BTC -25%, USDC 1.0", {"WETH": 2100.0, "WBTC": 45000.0, "USDC": 1.0}, 0),
]

Step = tuple[str, int, Any, list[Position], list[tuple[int, ...]]]


@pytest.fixture(scope="module")
def path(devnet: DevnetInfo) -> list[Step]:
    """Walk the path once on the 3.6 market; keep our positions and the Pool's answers."""
    assert devnet.aave36 is not None
    chain = DevChain(devnet.rpc_url)
    fund_liquidator(chain, devnet)
    client = RpcClient(devnet.rpc_url, expected_chain_id=devnet.chain_id)
    market = MarketRef("aave-v3", devnet.aave36.addresses_provider)
    steps = []
    for label, prices, seconds in PRICE_PATH:
        if seconds:
            chain.increase_time(seconds)
        if prices:
            set_prices(devnet.rpc_url, devnet.aave, prices)  # the feeds both markets read
        else:
            chain.mine()
        result = scan(client, market)
        accounts = [p.account for p in result.positions]
        truth = pool_account_data(chain, devnet.aave36.pool, accounts, result.block.number)
        steps.append((label, result.block.number, result.market_state, result.positions, truth))
    return steps


def test_the_market_is_read_as_36_with_every_borrower(devnet: DevnetInfo, path) -> None:
    assert devnet.aave36 is not None
    _label, _block, state, positions, _truth = path[0]
    assert (state.pool_revision, state.version, state.rules.version) == (10, "3.6", "3.6")
    assert sorted(p.account for p in positions) == sorted(devnet.aave36.all_borrowers)
    emode_users = [p for p in positions if p.extra["emode_category"]]
    assert {p.extra["emode_category"] for p in emode_users} == {1, 2, 3}
    assert set(state.emode_categories) == {1, 2, 3}  # read because users are in them


def test_all_six_fields_of_getUserAccountData_match_exactly_at_every_step(path) -> None:
    compared = 0
    mismatches = []
    for label, block, _state, positions, truth in path:
        for position, expected in zip(positions, truth, strict=True):
            compared += 1
            if ours_as_pool_tuple(position) != expected:
                mismatches.append((label, block, position.account, ours_as_pool_tuple(position)))
    assert compared >= 350 * len(PRICE_PATH)
    assert mismatches == []
    print(f"\n3.6 exactness: {compared} account-steps compared, {len(mismatches)} mismatches")


def test_the_path_crosses_hf_1_for_multi_collateral_and_emode_users(
    devnet: DevnetInfo, path
) -> None:
    assert devnet.aave36 is not None
    verdicts: dict[str, set[bool]] = {}
    for _label, _block, _state, positions, _truth in path:
        for p in positions:
            if p.has_debt:
                verdicts.setdefault(p.account, set()).add(p.liquidatable)
    crossed = {a for a, seen in verdicts.items() if seen == {True, False}}
    by_group = {g: len(crossed & set(users)) for g, users in devnet.aave36.scenarios.items()}
    multi = [
        p
        for p in path[0][3]
        if p.account in crossed and sum(1 for a in p.assets if a.collateral_base) >= 2
    ]
    emode = [p for p in path[0][3] if p.account in crossed and p.extra["emode_category"]]
    assert len(multi) >= 20, by_group
    # category 3 is WETH against WETH: prices do not move its users (they are compared above)
    assert {p.extra["emode_category"] for p in emode} >= {1, 2}, by_group
    assert by_group["emode_lt0_collateral"] >= 1, by_group
    assert len(crossed) >= 100


def test_liquidation_call_succeeds_exactly_when_we_say_liquidatable(
    devnet: DevnetInfo, path
) -> None:
    """Every liquidatable position: our best quote's call succeeds; every other position with
    debt: the Pool refuses it (HealthFactorNotBelowThreshold)."""
    assert devnet.aave36 is not None
    chain = DevChain(devnet.rpc_url)
    adapter = AaveV3Adapter()
    yes = no = 0
    for label, block, state, positions, _truth in path:
        calls, expected = [], []
        for p in (p for p in positions if p.has_debt):
            if p.liquidatable:
                found = quotes(adapter, state, p)
                assert found, f"{label}: {p.account} is liquidatable but has no quote"
                q = max(found, key=lambda q: q.debt_to_cover_raw)
                args = (q.collateral_asset, q.debt_asset, p.account, q.call_args["debt_to_cover"])
                calls.append(liquidation_call_data(*args))
                expected.append((p.account, None))
                yes += 1
            else:
                assert quotes(adapter, state, p) == []
                calls.append(liquidation_call_data(*largest_pair(p), p.account, UINT256_MAX))
                expected.append((p.account, "HealthFactorNotBelowThreshold"))
                no += 1
        outcomes = simulate(chain, devnet.aave36.pool, calls, block)
        wrong = [
            (account, want, got)
            for (account, want), got in zip(expected, outcomes, strict=True)
            if want != got
        ]
        assert wrong == [], label
    assert yes >= 200 and no >= 300
    print(f"\n3.6 liquidationCall: {yes} accepted as quoted, {no} refused as healthy")


def test_our_3_0_2_style_amount_would_revert_where_the_quote_does_not(
    devnet: DevnetInfo, path
) -> None:
    """Where 3.3's dust rule shrinks our quote below the cap, the cap itself reverts
    MustNotLeaveDust on the Pool: the refusal is real, not caution."""
    assert devnet.aave36 is not None
    chain = DevChain(devnet.rpc_url)
    adapter = AaveV3Adapter()
    _label, block, state, positions, _truth = path[0]
    shrunk = []
    for p in (p for p in positions if p.liquidatable):
        shrunk += [(p, q) for q in quotes(adapter, state, p) if q.limited_by == "dust"]
    assert shrunk, "no seeded position where the dust rule limits the call"
    calls = [
        liquidation_call_data(q.collateral_asset, q.debt_asset, p.account, UINT256_MAX)
        for p, q in shrunk
    ] + [
        liquidation_call_data(
            q.collateral_asset, q.debt_asset, p.account, q.call_args["debt_to_cover"]
        )
        for p, q in shrunk
    ]
    outcomes = simulate(chain, devnet.aave36.pool, calls, block)
    assert outcomes == ["MustNotLeaveDust"] * len(shrunk) + [None] * len(shrunk)


def test_one_oracle_unit_either_side_of_the_liquidation_price_flips_the_pool_verdict(
    devnet: DevnetInfo, path
) -> None:
    """Runs last: it moves prices at the end of the path and puts them back."""
    assert devnet.aave36 is not None
    chain = DevChain(devnet.rpc_url)
    client = RpcClient(devnet.rpc_url)
    symbol_of = {address: symbol for symbol, address in devnet.aave36.tokens.items()}
    result = scan(client, MarketRef("aave-v3", devnet.aave36.addresses_provider))
    rng = random.Random(36)
    with_debt = [p for p in result.positions if p.has_debt]
    emode = [p for p in with_debt if p.extra["emode_category"]]
    multi = [p for p in with_debt if sum(1 for a in p.assets if a.collateral_base) >= 2]
    sample = rng.sample(emode, 10) + rng.sample(multi, 6)
    checked = checked_emode = 0
    for position in sample:
        for asset in position.assets:
            flip = asset.liquidation_price_base
            if flip is None:
                continue
            symbol = symbol_of[asset.asset]
            falling = asset.collateral_base * asset.liquidation_threshold_bps >= (
                asset.debt_base * 10_000
            )
            safe_side = flip + 1 if falling else flip - 1
            block = set_raw_price(devnet.rpc_url, devnet.aave, symbol, flip, same_timestamp=True)
            at_flip = pool_account_data(chain, devnet.aave36.pool, [position.account], block)[0]
            block = set_raw_price(
                devnet.rpc_url, devnet.aave, symbol, safe_side, same_timestamp=True
            )
            beside = pool_account_data(chain, devnet.aave36.pool, [position.account], block)[0]
            set_raw_price(
                devnet.rpc_url, devnet.aave, symbol, asset.price_base, same_timestamp=True
            )
            assert at_flip[5] < WAD <= beside[5], (position.account, symbol, flip)
            checked += 1
            checked_emode += bool(position.extra["emode_category"])
    assert checked >= 20 and checked_emode >= 8
