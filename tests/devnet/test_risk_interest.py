"""The interest drift reaches the product: `scan`'s assessment (Positions) and the daemon's tiers
(the adapters' arrays) take each reserve's supply and borrow rates from the adapters, equal to
what the contracts return at the block (Aave: getReserveData's currentLiquidityRate and
currentVariableBorrowRate; Morpho: the IRM's borrowRateView), and a position with debt gets a
higher probability with them than with the rates left out, everything else equal."""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
import pytest
from eth_abi import decode

from onchain.app.incremental import MarketRefresher
from onchain.app.pipeline import market_snapshot, read_markets
from onchain.app.risk_context import RiskSettings, assess_positions
from onchain.devnet.build import DevnetInfo
from onchain.devnet.chain import DevChain, calldata
from onchain.devnet.control import set_prices
from onchain.jobs.assess import exact_inputs, risk_tiers_rows
from onchain.protocols.base import RiskRows
from onchain.rpc.client import RpcClient
from tests.helpers.books import risk_markets

RAY_YEAR = 10**27 * 365 * 24 * 3600
RESERVE_DATA = (
    "((uint256),uint128,uint128,uint128,uint128,uint128,uint40,uint16,address,address,address,"
    "address,uint128,uint128,uint128)"
)
MARKET = "(uint128,uint128,uint128,uint128,uint128,uint128)"
HORIZON_S = 6 * 3600.0  # a long horizon: the drift is interest over it


@pytest.fixture(scope="module")
def read(devnet: DevnetInfo) -> dict[str, Any]:
    """The three markets after ETH fell 12% on Aave's feeds, read as `scan` reads them and as
    the daemon's refresher keeps them, at one block."""
    assert devnet.morpho is not None and devnet.aave36 is not None
    number = set_prices(devnet.rpc_url, devnet.aave, {"WETH": 2640.0})
    client = RpcClient(devnet.rpc_url, expected_chain_id=devnet.chain_id)
    block = client.pin_block(number)
    refs = risk_markets(devnet)
    out: dict[str, Any] = {"client": client, "block": block, "chain": DevChain(devnet.rpc_url)}
    for name, ref in refs.items():
        reading = read_markets(client, [ref], block_number=number)
        refresher = MarketRefresher(client, ref)
        started = refresher.start(block)
        incremental = refresher.incremental
        assert isinstance(incremental, RiskRows)
        kept = [s for a in refresher.accounts for s in refresher.kept.get(a, ())]
        rows = incremental.risk_rows(refresher.state, kept)
        out[name] = (reading, rows, refresher.state)
        out[name + " daemon"] = (started, rows)
    return out


def _contract_rates(
    chain: DevChain, name: str, state: Any, block: int
) -> dict[str, tuple[float, float]]:
    """Book column ("market:asset") -> (supply, borrow) per second from the contracts' views: Aave's
    getReserveData rates (ray per year); Morpho's borrowRateView on the stored market, the
    supply rate from it as the adapter documents (borrowed share, less the fee)."""
    out: dict[str, tuple[float, float]] = {}
    at = hex(block)
    if name == "morpho":
        for m in state.markets:
            if not int(m.irm, 16):  # a market without an IRM charges no interest
                out[f"{m.id}:{m.loan_token.lower()}"] = (0.0, 0.0)
                continue
            market = _decode(MARKET, chain.call(state.morpho, _market_call(m.id), at))
            call = calldata(
                f"borrowRateView((address,address,address,address,uint256),{MARKET})",
                m.params,
                market,
            )
            borrow = _decode("uint256", chain.call(m.irm, call, at)) / 1e18
            used = market[2] / market[0] if market[0] else 0.0
            out[f"{m.id}:{m.loan_token.lower()}"] = (borrow * used * (1 - market[5] / 1e18), borrow)
        return out
    for r in state.reserves:
        call = calldata("getReserveData(address)", r.asset)
        data = _decode(RESERVE_DATA, chain.call(state.pool, call, at))
        out[f"{state.addresses_provider.lower()}:{r.asset.lower()}"] = (
            data[2] / RAY_YEAR,
            data[4] / RAY_YEAR,
        )
    return out


def _market_call(market_id: str) -> bytes:
    return calldata("market(bytes32)", bytes.fromhex(market_id[2:]))


def _decode(types: str, data: bytes) -> Any:
    return decode([types], data)[0]


@pytest.mark.parametrize("name", ["aave-3.0.2", "aave-3.6", "morpho"])
def test_adapters_rates_are_the_contracts(read: dict[str, Any], name: str) -> None:
    reading, rows, state = read[name]
    block = read["block"].number
    theirs = _contract_rates(read["chain"], name, state, block)
    # the Positions' terms (scan) and the rows' columns (the daemon), per book column
    terms = {
        f"{p.market.lower()}:{asset}": rates
        for p in reading.positions
        if p.terms is not None
        for asset, rates in p.terms.interest.items()
    }
    columns = dict(
        zip(rows.column_keys, zip(rows.supply_rate, rows.borrow_rate, strict=True), strict=True)
    )
    borrowed = 0
    for key, (supply, borrow) in theirs.items():
        for ours in (terms.get(key), columns.get(key)):
            if ours is None:  # a reserve no position holds
                continue
            if name == "morpho":
                # the IRM's rate exactly; the lenders' share is the accrued market's (the
                # adapter's) against the stored one (the contract's view)
                assert ours[1] == borrow, key
                assert ours[0] == pytest.approx(supply, rel=1e-3), key
            else:
                assert tuple(ours) == (supply, borrow), key
        borrowed += borrow > 0 and key in columns
    assert borrowed >= 1, theirs  # the devnet's borrowers pay interest


@pytest.mark.parametrize("name", ["aave-3.0.2", "aave-3.6", "morpho"])
def test_the_rates_raise_the_probability_of_positions_with_debt(
    read: dict[str, Any], name: str
) -> None:
    """Scan (Positions) and the daemon's tiers (rows): with the rates every probability is at
    least the one without, higher for some positions with debt; equal between the two paths."""
    reading, _rows, state = read[name]
    client, block = read["client"], read["block"]
    settings = RiskSettings()
    positions = reading.positions
    with_rates = assess_positions(client, block, positions, settings, horizon_s=HORIZON_S)
    assert any("interest: supply and borrow rates" in s for s in with_rates.sources)
    bare = [
        dataclasses.replace(p, terms=dataclasses.replace(p.terms, interest={}))
        if p.terms is not None
        else p
        for p in positions
    ]
    without = assess_positions(client, block, bare, settings, horizon_s=HORIZON_S)
    assert any("for 0 of" in s for s in without.sources)
    p_with = np.asarray(with_rates.assessment.probability.probability)
    p_without = np.asarray(without.assessment.probability.probability)
    debt = np.array([p.has_debt for p in positions])
    assert np.all(p_with >= p_without)
    assert np.all(p_with[~debt] == 0.0)
    assert np.count_nonzero(p_with[debt] > p_without[debt]) >= 1
    # the daemon's tiers from the arrays: with the rates, not below the same rows without them
    daemon_positions, rows = read[name + " daemon"]
    health, liquidatable = exact_inputs(daemon_positions)
    snapshot = market_snapshot(client, reading.markets[0].ref.protocol, state, block)

    def tiers(r: Any) -> Any:
        _tiers, report = risk_tiers_rows(client, block, r, health, liquidatable, settings, snapshot)
        assert report is not None
        return report

    ours = tiers(rows)
    assert any("rates at the block for every reserve" in s for s in ours.sources), ours.sources
    bare_rows = tiers(dataclasses.replace(rows, supply_rate=None, borrow_rate=None))
    d_with = np.asarray(ours.assessment.probability.probability)
    d_without = np.asarray(bare_rows.assessment.probability.probability)
    assert np.all(d_with >= d_without)
    assert np.count_nonzero(d_with > d_without) >= 1
