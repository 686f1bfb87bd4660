"""A refresher taken up from kept states without reading its accounts (a restart from the store)
computes what a full read computes: on Aave 3.6, whose market read loads no eMode category
(per-category bitmaps), the categories the kept accounts are in are loaded when they are
adopted; without that, an account in eMode would be computed outside it."""

from __future__ import annotations

from onchain.app.incremental import MarketRefresher
from onchain.app.pipeline import load_market, run_plan
from onchain.devnet.build import DevnetInfo
from onchain.protocols.base import MarketRef
from onchain.protocols.registry import get_incremental
from onchain.rpc.client import RpcClient


def test_resumed_aave36_refresher_equals_a_full_read_for_accounts_in_emode(
    devnet: DevnetInfo,
) -> None:
    assert devnet.aave36 is not None
    client = RpcClient(devnet.rpc_url, expected_chain_id=devnet.chain_id)
    market = MarketRef("aave-v3", devnet.aave36.addresses_provider)
    block = client.pin_block()
    full = MarketRefresher(client, market)
    expected = full.start(block)
    in_emode = [a for a, states in full.kept.items() if any(s.emode for s in states)]
    assert len(in_emode) >= 3, "the 3.6 devnet seeds accounts in eMode categories"

    incremental = get_incremental("aave-v3")
    assert incremental is not None
    state = load_market(client, market, block)
    assert not state.emode_categories  # 3.6: the market read alone loads none
    kept = {a: list(s) for a, s in full.kept.items()}
    adopted = [s for states in kept.values() for s in states]
    state = run_plan(client, incremental.plan_adopt_states(state, adopted, block), block)
    resumed = MarketRefresher(client, market)
    resumed.resume(block, state, full.accounts, kept)
    assert resumed.positions() == expected
