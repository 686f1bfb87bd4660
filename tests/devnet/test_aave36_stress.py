"""`onchain stress` on the devnet's Aave V3.6 market, reconciled with the Pool: the positions the
report calls liquidatable after a drop are those `getUserAccountData` calls liquidatable once the
shocked prices are published (same timestamp, on a reverted snapshot), and their collateral and
debt match to 1e-9; eMode and LT-0 eMode collateral users included."""

from __future__ import annotations

import json
from fractions import Fraction
from pathlib import Path

from onchain.devnet.build import DevnetInfo
from onchain.devnet.chain import DevChain
from onchain.devnet.control import set_prices
from tests.helpers.aave_oracle import pool_account_data
from tests.helpers.cli_support import run

WAD = 10**18
REL = 1e-9


def test_a_drop_on_the_36_market_reconciles_with_the_pool(
    devnet: DevnetInfo, tmp_path: Path
) -> None:
    assert devnet.aave36 is not None
    d = devnet.aave36
    config = tmp_path / "aave36.toml"
    config.write_text(
        f'[chains.devnet]\nchain_id = {devnet.chain_id}\nrpc_url = "{devnet.rpc_url}"\n\n'
        f'[[markets]]\nname = "aave36"\nprotocol = "aave-v3"\nchain = "devnet"\n'
        f'address = "{d.addresses_provider}"\n'
    )
    result = run(
        "stress", "--config", str(config), "--json", "--drop", "ETH=-12%", "--drop", "BTC=-10%"
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    (scenario,) = report["scenarios"]
    (ours,) = scenario["by_market"]
    chain = DevChain(devnet.rpc_url)
    usd = {
        s: Fraction(int(chain.view(feed, "latestAnswer()", ["int256"])), 10**8)
        for s, feed in d.price_feeds.items()
    }
    factors = scenario["price_factors"]
    moved = {s: float(p * Fraction(factors[s])) for s, p in usd.items() if factors.get(s, 1) != 1}
    checkpoint = chain.rpc("evm_snapshot")
    try:
        head = chain.rpc("eth_getBlockByNumber", ["latest", False])
        chain.rpc("evm_setNextBlockTimestamp", [head["timestamp"]])
        block = set_prices(devnet.rpc_url, devnet.aave, moved)
        accounts = list(d.all_borrowers)
        truth = dict(zip(accounts, pool_account_data(chain, d.pool, accounts, block), strict=True))
    finally:
        assert chain.rpc("evm_revert", [checkpoint]) is True
    chain_set = {a for a, t in truth.items() if t[1] and t[5] < WAD}
    our_set = set(ours["liquidatable_accounts"])
    assert our_set == chain_set
    emode_users = {a for g, users in d.scenarios.items() if g.startswith("emode") for a in users}
    assert our_set & emode_users and len(our_set) > 50
    coll = sum(truth[a][0] for a in our_set) / 1e8
    debt = sum(truth[a][1] for a in our_set) / 1e8
    assert abs(ours["collateral_at_risk_base"] - coll) <= REL * coll
    assert abs(ours["debt_at_risk_base"] - debt) <= REL * debt
    print(f"\n3.6 stress: {len(our_set)} liquidatable, collateral {coll:,.2f}, debt {debt:,.2f}")
