"""The whole-book exact recompute (`MarketRefresher.health`) against the real contracts: on the
devnet's Aave 3.0.2 and 3.6 markets and Morpho Blue, at the first block, after a price crash
that makes positions liquidatable, after accounts borrowed more (their rows replaced), and with
a 3.6 liquidation grace period running, every row equals the Position a full read builds and,
for Aave, `Pool.getUserAccountData`."""

from __future__ import annotations

from typing import Any

import pytest

from onchain.app.incremental import MarketRefresher
from onchain.app.pipeline import scan
from onchain.devnet.build import DevnetInfo
from onchain.devnet.chain import DEPLOYER, DevChain, calldata
from onchain.devnet.control import _in_one_block as in_one_block
from onchain.devnet.morpho import set_prices_everywhere
from onchain.protocols.base import MarketRef
from onchain.rpc.client import RpcClient
from tests.helpers.aave_oracle import pool_account_data
from tests.helpers.book_health import book_rows, position_figures

UINT256_MAX = 2**256 - 1


def _compare(client: RpcClient, refresher: MarketRefresher, pool: str | None, url: str) -> Any:
    assert refresher.block is not None
    number = refresher.block.number
    health = refresher.health()
    full = scan(client, refresher.market, block_number=number).positions
    assert book_rows(health) == [position_figures(p) for p in full]
    assert book_rows(health) == [position_figures(p) for p in refresher.positions()]
    flagged, rows = refresher.liquidatable_now()
    assert flagged == sorted({p.account for p in full if p.liquidatable}) and rows == len(full)
    if pool is not None:
        truth = pool_account_data(DevChain(url), pool, list(health.accounts), number)
        ours = [
            (c, d, UINT256_MAX if hf is None else hf)
            for hf, c, d in zip(
                health.health_factor,
                health.total_collateral_base,
                health.total_debt_base,
                strict=True,
            )
        ]
        assert ours == [(t[0], t[1], t[5]) for t in truth]
    return health


@pytest.fixture(scope="module")
def steps(devnet: DevnetInfo) -> list[dict[str, Any]]:
    assert devnet.aave36 is not None and devnet.morpho is not None
    client = RpcClient(devnet.rpc_url, expected_chain_id=devnet.chain_id)
    markets = [
        (MarketRef("aave-v3", devnet.aave.addresses_provider), devnet.aave.pool),
        (MarketRef("aave-v3", devnet.aave36.addresses_provider), devnet.aave36.pool),
        (MarketRef("morpho-blue", devnet.morpho.morpho), None),
    ]
    refreshers = [MarketRefresher(client, m) for m, _pool in markets]
    block = client.pin_block()
    for r in refreshers:
        r.start(block)
    out = []

    def check(label: str) -> None:
        healths = [
            _compare(client, r, pool, devnet.rpc_url)
            for r, (_m, pool) in zip(refreshers, markets, strict=True)
        ]
        out.append({"label": label, "healths": healths, "read": [r.last for r in refreshers]})

    check("start")
    # a crash: WETH and WBTC down 30% on the Aave feeds and the Morpho oracles
    weth = 3000 * 0.7
    number = set_prices_everywhere(
        devnet.rpc_url, devnet.aave, devnet.morpho, {"WETH": weth, "WBTC": 60_000 * 0.7}
    )
    block = client.pin_block(number)
    for r in refreshers:
        r.advance_to(block)
    check("crash")
    # 3.0.2 borrowers still healthy borrow 1 USDC more: their rows are read again and replaced
    chain = DevChain(devnet.rpc_url)
    usdc, pool = devnet.aave.tokens["USDC"], devnet.aave.pool
    healthy = [
        a
        for a, hf in zip(
            out[-1]["healths"][0].accounts, out[-1]["healths"][0].health_factor, strict=True
        )
        if hf is not None and hf > 2 * 10**18
    ][:10]
    args = "borrow(address,uint256,uint256,uint16,address)"
    number = in_one_block(
        chain, [(a, pool, calldata(args, usdc, 10**6, 2, 0, a), 900_000) for a in healthy]
    )
    block = client.pin_block(number)
    for r in refreshers:
        r.advance_to(block)
    check("borrowed")
    out[-1]["borrowers"] = healthy
    # 3.6: a debt reserve of a liquidatable account resumed with a grace period (the
    # PoolConfigurator's setReservePause): those below 1 holding it are held, not liquidatable
    held = next(
        p
        for p in refreshers[1].positions()
        if p.liquidatable and len([a for a in p.assets if a.debt_raw]) == 1
    )
    debt_asset = next(a.asset for a in held.assets if a.debt_raw)
    grace = calldata("setReservePause(address,bool,uint40)", debt_asset, False, 3600)
    chain.send(DEPLOYER, devnet.aave36.pool_configurator, grace, gas=300_000)
    block = client.pin_block()
    for r in refreshers:
        r.advance_to(block)
    check("grace")
    out[-1]["held"] = held.account
    return out


def test_every_row_equals_the_contracts_at_every_step(steps: list[dict[str, Any]]) -> None:
    """(Compared inside the fixture, step by step.) The steps exercised both verdicts."""
    assert [s["label"] for s in steps] == ["start", "crash", "borrowed", "grace"]
    for step in steps:
        assert all(len(h) > 0 for h in step["healths"])
    crash = steps[1]["healths"]
    assert sum(int(h.liquidatable.sum()) for h in crash) > 0
    assert int(crash[0].liquidatable.sum()) > 0 and int(crash[1].liquidatable.sum()) > 0


def test_a_grace_period_holds_rows_below_one(steps: list[dict[str, Any]]) -> None:
    """Held: below 1 and not liquidatable now, as the Position says (compared in the
    fixture); the account picked was liquidatable the block before."""
    grace = steps[3]["healths"][1]
    row = grace.accounts.index(steps[3]["held"])
    hf = grace.health_factor[row]
    assert hf is not None and hf < 10**18 and not grace.liquidatable[row]


def test_borrowers_rows_were_replaced_not_the_whole_book(steps: list[dict[str, Any]]) -> None:
    last = steps[2]
    assert len(last["borrowers"]) >= 5
    assert last["read"][0].accounts_read < len(last["healths"][0]) // 2
