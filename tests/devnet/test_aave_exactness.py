"""Our Aave V3 health factors equal the real Pool's, bit for bit, at every step of a price path,
and `liquidationCall` succeeds exactly for the accounts we call liquidatable."""

from __future__ import annotations

import random

import pytest
from eth_abi import decode

from onchain.app.pipeline import scan
from onchain.devnet.build import DevnetInfo
from onchain.devnet.chain import DevChain, calldata
from onchain.devnet.control import set_prices
from onchain.protocols.base import MarketRef, Position
from onchain.rpc.client import RpcClient
from tests.helpers.aave_liquidator import LIQUIDATOR, UINT256_MAX, _fund_liquidator
from tests.helpers.aave_oracle import ours_as_pool_tuple, pool_account_data

HEALTH_FACTOR_NOT_BELOW_THRESHOLD = "45"

# Each step moves oracle prices (USD) and optionally time; the path ends with most positions
# below HF 1 so both verdicts are exercised many times.
PRICE_PATH: list[tuple[str, dict[str, float], int]] = [
    ("seeded", {}, 0),
    ("ETH -4%", {"WETH": 2880.0}, 0),
    ("ETH -8%, BTC -5%", {"WETH": 2760.0, "WBTC": 57000.0}, 3600),
    ("DAI +4% (debt rises), USDC 0.995", {"DAI": 1.04, "USDC": 0.995}, 0),
    ("ETH -15%, BTC -12%, 30 days of interest", {"WETH": 2550.0, "WBTC": 52800.0}, 30 * 86400),
    (
        "ETH -30%, BTC -25%, DAI 1.03",
        {"WETH": 2100.0, "WBTC": 45000.0, "DAI": 1.03, "USDC": 1.0},
        0,
    ),
]


def _liquidation_args(position: Position) -> tuple[str, str]:
    """The largest collateral and the largest debt: a pair a liquidator would pick."""
    collateral = max(
        (a for a in position.assets if a.collateral_enabled), key=lambda a: a.collateral_base
    )
    debt = max((a for a in position.assets if a.debt_raw), key=lambda a: a.debt_base)
    return collateral.asset, debt.asset


def _try_liquidation(chain: DevChain, pool: str, position: Position, block: int) -> str | None:
    """Simulate liquidationCall from the funded liquidator at `block`; None on success, else the reason."""
    collateral, debt = _liquidation_args(position)
    data = calldata(
        "liquidationCall(address,address,address,uint256,bool)",
        collateral,
        debt,
        position.account,
        UINT256_MAX,
        False,
    )
    body = {"from": LIQUIDATOR, "to": pool, "data": "0x" + data.hex(), "gas": hex(5_000_000)}
    reply = chain.session.post(
        chain.url,
        json={"jsonrpc": "2.0", "id": 1, "method": "eth_call", "params": [body, hex(block)]},
        timeout=60,
    ).json()
    if "error" not in reply:
        return None
    payload = reply["error"].get("data") or ""
    if isinstance(payload, str) and payload.startswith("0x08c379a0"):
        return str(decode(["string"], bytes.fromhex(payload[10:]))[0])
    return str(reply["error"].get("message"))


@pytest.fixture(scope="module")
def price_path_scans(
    devnet: DevnetInfo,
) -> list[tuple[str, int, list[Position], list[tuple[int, ...]]]]:
    """Walk the price path once; at each step keep our positions and the Pool's answers."""
    chain = DevChain(devnet.rpc_url)
    _fund_liquidator(chain, devnet)
    client = RpcClient(devnet.rpc_url, expected_chain_id=devnet.chain_id)
    market = MarketRef("aave-v3", devnet.aave.addresses_provider)
    steps = []
    for label, prices, seconds in PRICE_PATH:
        if seconds:
            chain.increase_time(seconds)
        if prices:
            set_prices(devnet.rpc_url, devnet.aave, prices)
        else:
            chain.mine()
        result = scan(client, market)
        accounts = [p.account for p in result.positions]
        truth = pool_account_data(chain, devnet.aave.pool, accounts, result.block.number)
        steps.append((label, result.block.number, result.positions, truth))
    return steps


def test_every_seeded_borrower_is_discovered(devnet: DevnetInfo, price_path_scans) -> None:
    _label, _block, positions, _truth = price_path_scans[0]
    assert sorted(p.account for p in positions) == sorted(devnet.borrowers)
    assert len(positions) >= 300


def test_all_six_fields_of_getUserAccountData_match_exactly_at_every_step(price_path_scans) -> None:
    compared = 0
    mismatches = []
    for label, block, positions, truth in price_path_scans:
        for position, expected in zip(positions, truth, strict=True):
            compared += 1
            if ours_as_pool_tuple(position) != expected:
                mismatches.append(
                    (label, block, position.account, ours_as_pool_tuple(position), expected)
                )
    assert compared >= 300 * len(PRICE_PATH)
    assert mismatches == []
    print(f"\nexactness: {compared} account-steps compared, {len(mismatches)} mismatches")


def test_the_path_pushes_many_positions_below_one(price_path_scans) -> None:
    liquidatable = [
        sum(p.liquidatable for p in positions) for _l, _b, positions, _t in price_path_scans
    ]
    assert liquidatable[0] == 0
    assert liquidatable[-1] >= 100
    assert liquidatable == sorted(liquidatable) or max(liquidatable) >= 100
    healthy_near_one = [
        p
        for p in price_path_scans[0][2]
        if p.health_factor is not None and p.health_factor < 15 * 10**17
    ]
    assert len(healthy_near_one) >= 100  # many seeded borrowers start between HF 1.0 and 1.5


def test_liquidation_call_succeeds_exactly_when_we_say_liquidatable(
    devnet: DevnetInfo, price_path_scans
) -> None:
    chain = DevChain(devnet.rpc_url)
    rng = random.Random(11)
    checked_yes = checked_no = 0
    for label, block, positions, _truth in price_path_scans:
        ranked = sorted((p for p in positions if p.has_debt), key=lambda p: p.health_factor or 0)
        yes = [p for p in ranked if p.liquidatable]
        no = [p for p in ranked if not p.liquidatable]
        # the nearest to the threshold on both sides, plus a random sample of each
        sample_yes = yes[-3:] + rng.sample(yes, min(5, len(yes)))
        sample_no = no[:3] + rng.sample(no, min(5, len(no)))
        for position in sample_yes:
            outcome = _try_liquidation(chain, devnet.aave.pool, position, block)
            assert outcome is None, (
                f"{label}: {position.account} HF {position.health_factor} refused: {outcome}"
            )
            checked_yes += 1
        for position in sample_no:
            outcome = _try_liquidation(chain, devnet.aave.pool, position, block)
            assert outcome == HEALTH_FACTOR_NOT_BELOW_THRESHOLD, (
                f"{label}: {position.account}: {outcome}"
            )
            checked_no += 1
    assert checked_yes >= 20 and checked_no >= 30


def test_real_liquidations_land_for_accounts_we_call_liquidatable(
    devnet: DevnetInfo, price_path_scans
) -> None:
    chain = DevChain(devnet.rpc_url)
    _label, _block, positions, _truth = price_path_scans[-1]
    targets = [p for p in positions if p.liquidatable][:5]
    assert targets
    for position in targets:
        collateral, debt = _liquidation_args(position)
        data = calldata(
            "liquidationCall(address,address,address,uint256,bool)",
            collateral,
            debt,
            position.account,
            UINT256_MAX,
            False,
        )
        receipt = chain.send(LIQUIDATOR, devnet.aave.pool, data, gas=5_000_000)
        assert int(receipt["status"], 16) == 1
        after = pool_account_data(
            chain, devnet.aave.pool, [position.account], int(receipt["blockNumber"], 16)
        )[0]
        assert after[1] < position.total_debt_base  # debt was repaid
