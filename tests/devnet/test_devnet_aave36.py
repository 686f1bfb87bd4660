"""The devnet's Aave V3.6.0 market: compiled from the npm sources, deployed beside 3.0.2 on the
same anvil, and every scenario borrower shaped as the Pool itself reports it."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable, Iterator
from fractions import Fraction
from pathlib import Path

import pytest
from eth_abi import decode
from eth_utils import keccak, to_checksum_address

from onchain.config import load_config
from onchain.devnet.aave36 import LIBRARIES, POOL_REVISION, RESERVE_DATA, Aave36Deployment
from onchain.devnet.aave36_build import compile_aave36
from onchain.devnet.aave36_seed import SCENARIO_GROUPS
from onchain.devnet.anvil import PROJECT_ROOT
from onchain.devnet.build import DevnetInfo, running_devnet
from onchain.devnet.chain import DevChain, calldata
from onchain.devnet.config_file import devnet_config_text, write_devnet_config
from onchain.devnet.control import set_prices
from onchain.errors import DevnetError

BASE_2000 = 2000 * 10**8
ONCHAIN = str(Path(sys.executable).with_name("onchain"))
CHECKED_IN = PROJECT_ROOT / "config" / "devnet.toml"


@pytest.fixture(scope="module")
def chain(devnet: DevnetInfo) -> DevChain:
    return DevChain(devnet.rpc_url)


@pytest.fixture(scope="module")
def d(devnet: DevnetInfo) -> Aave36Deployment:
    assert devnet.aave36 is not None, "the devnet has no Aave V3.6 market"
    return devnet.aave36


def _account(chain: DevChain, d: Aave36Deployment, user: str) -> tuple[int, ...]:
    return tuple(chain.view(d.pool, "getUserAccountData(address)", ["uint256"] * 6, user))


def _balances_base(chain: DevChain, d: Aave36Deployment, user: str) -> tuple[dict, dict]:
    """Per-reserve collateral and debt of `user` in base units (USD, 8 decimals)."""
    coll, debt = {}, {}
    for s, asset in d.tokens.items():
        price = chain.view(d.oracle, "getAssetPrice(address)", ["uint256"], asset)
        unit = 10 ** d.decimals[s]
        a = chain.view(d.atokens[s], "balanceOf(address)", ["uint256"], user)
        v = chain.view(d.variable_debt_tokens[s], "balanceOf(address)", ["uint256"], user)
        if a:
            coll[s] = a * price // unit
        if v:
            debt[s] = v * price // unit
    return coll, debt


def test_pool_is_revision_10_built_from_the_npm_sources(
    devnet: DevnetInfo, chain: DevChain, d: Aave36Deployment
) -> None:
    assert chain.view(d.pool, "POOL_REVISION()", ["uint256"]) == POOL_REVISION == 10
    assert (d.version, d.pool_revision) == ("3.6.0", 10)
    assert d.addresses_provider != devnet.aave.addresses_provider
    assert to_checksum_address(chain.view(d.addresses_provider, "getPool()", ["address"])) == d.pool
    compiled = compile_aave36()
    for name, address in d.libraries.items():
        runtime = bytes.fromhex(chain.rpc("eth_getCode", [address, "latest"])[2:])
        # a library's runtime code starts with PUSH20 <its own address> (call protection)
        assert runtime[1:21] == bytes.fromhex(address[2:]), name
        if compiled[name].link_references:  # FlashLoanLogic calls BorrowLogic, linked in
            assert bytes.fromhex(d.libraries["BorrowLogic"][2:]) in runtime
            continue
        assert runtime[:1] + bytes(20) + runtime[21:] == compiled[name].deployed_bytecode, name
    assert set(d.libraries) == set(LIBRARIES) and len(LIBRARIES) == 6
    # no stable debt token since 3.2: the legacy getter returns the zero address
    for s, asset in d.tokens.items():
        data = chain.view(d.pool, "getReserveData(address)", [RESERVE_DATA], asset)
        assert int(data[9], 16) == 0 and data[7] == d.reserve_ids[s]
    # the same tokens and feeds as the 3.0.2 market
    assert d.tokens == {s: devnet.aave.tokens[s] for s in d.tokens}
    assert d.price_feeds == {s: devnet.aave.price_feeds[s] for s in d.price_feeds}


def test_emode_categories_use_the_32_bitmaps(chain: DevChain, d: Aave36Deployment) -> None:
    def bitmap(symbols: list[str]) -> int:
        return sum(1 << d.reserve_ids[s] for s in symbols)

    for e in d.emodes:
        ltv, lt, bonus = chain.view(
            d.pool,
            "getEModeCategoryCollateralConfig(uint8)",
            ["(uint16,uint16,uint16)"],
            e["id"],
        )
        assert (ltv, lt, bonus) == (e["ltv"], e["liquidation_threshold"], e["liquidation_bonus"])
        for getter, members in (
            ("getEModeCategoryCollateralBitmap", e["collateral"]),
            ("getEModeCategoryBorrowableBitmap", e["borrowable"]),
            ("getEModeCategoryLtvzeroBitmap", e["ltvzero"]),
        ):
            assert chain.view(d.pool, f"{getter}(uint8)", ["uint128"], e["id"]) == bitmap(members)
    members = [s for e in d.emodes for s in e["collateral"]]
    assert members.count("WETH") == 2  # an asset in two categories
    assert any(e["ltvzero"] for e in d.emodes)
    dai = chain.view(d.pool, "getConfiguration(address)", ["uint256"], d.tokens["DAI"])
    assert dai & 0xFFFF == 0 and (dai >> 16) & 0xFFFF == 0  # DAI: LTV 0 and LT 0 outside eMode
    assert "DAI" in d.emode(1)["collateral"]


def test_every_borrower_exists_with_debt(chain: DevChain, d: Aave36Deployment) -> None:
    assert len(d.borrowers) == 300
    assert set(SCENARIO_GROUPS) == set(d.scenarios)
    users = d.all_borrowers
    assert len(users) == 300 + len(d.scenario_plans)
    replies = chain.rpc_batch(
        [
            (
                "eth_call",
                [{"to": d.pool, "data": "0xbf92857c" + "0" * 24 + u[2:].lower()}, "latest"],
            )
            for u in users
        ]
    )
    debts = [int(r[2 + 64 : 2 + 128], 16) for r in replies]
    assert all(debt > 0 for debt in debts)


def test_scenario_borrowers_have_the_intended_shape(chain: DevChain, d: Aave36Deployment) -> None:
    groups = {p["address"]: p["group"] for p in d.scenario_plans}
    for plan in d.scenario_plans:
        user, group = plan["address"], plan["group"]
        assert chain.view(d.pool, "getUserEMode(address)", ["uint256"], user) == plan["emode"]
        coll_base, debt_base, _avail, _lt, _ltv, hf = _account(chain, d, user)
        health = Fraction(hf, 10**18)
        assert abs(health - Fraction(str(plan["target_health"]))) < Fraction(1, 1000), plan
        coll, debt = _balances_base(chain, d, user)
        assert set(debt) == set(plan["debt"])
        if group in ("multi_collateral_near_hf1",):
            assert len(coll) >= 2 and 0.96 < health < 1.045
        elif group == "small_under_2000":
            assert coll_base < BASE_2000 and health < 1
        elif group == "dust_line":
            # a reserve debt, or what half the position leaves, is within $100 of the $1,000 line
            assert health < 1 and min(*debt.values(), debt_base // 2) < 1100 * 10**8
        elif group == "bad_debt":
            bonus = d.reserves[next(iter(coll))]["liquidation_bonus"]
            assert coll_base * 10_000 < debt_base * bonus  # liquidation takes all collateral
        elif group == "half_close_factor":
            assert 0.95 < health < 1
            assert min(coll.values()) >= BASE_2000 and max(debt.values()) >= BASE_2000
        elif group == "two_debt_reserves":
            assert len(debt) == 2 and health < 1
        elif group == "below_095":
            assert health < 0.95 and min(coll.values()) >= BASE_2000
        elif group == "emode_lt0_collateral":
            assert plan["emode"] == 1 and "DAI" in coll
            config = chain.view(d.pool, "getUserConfiguration(address)", ["uint256"], user)
            assert config >> (2 * d.reserve_ids["DAI"] + 1) & 1  # DAI enabled as collateral
            # DAI counts at the category's LT: the Pool's HF exceeds what the USDC part alone gives
            assert health > Fraction(coll.get("USDC", 0) * 9500, debt_base * 10_000)
        elif group.startswith("emode_"):
            assert plan["emode"] in (1, 2, 3)
    # random eMode borrowers are listed too, each in its own category
    for group, category in (("emode_stablecoins", 1), ("emode_majors", 2), ("emode_eth", 3)):
        assert len(d.scenarios[group]) >= 3
        for user in d.scenarios[group]:
            assert groups.get(user, group) == group
            assert chain.view(d.pool, "getUserEMode(address)", ["uint256"], user) == category


def test_ltvzero_member_adds_no_borrowing_power(chain: DevChain, d: Aave36Deployment) -> None:
    """A WBTC-only user of category 2 (WBTC ltvzero there): LTV 0, still the category's LT."""
    plan = next(
        p
        for p in d.scenario_plans
        if p["group"] == "emode_majors" and set(p["collateral"]) == {"WBTC"}
    )
    _coll, _debt, available, lt, ltv, _hf = _account(chain, d, plan["address"])
    assert (ltv, available) == (0, 0)
    assert lt == d.emode(2)["liquidation_threshold"]


def test_set_price_moves_both_markets(
    devnet: DevnetInfo, chain: DevChain, d: Aave36Deployment
) -> None:
    weth = d.tokens["WETH"]
    set_prices(devnet.rpc_url, devnet.aave, {"WETH": 2841.0})
    try:
        for oracle in (devnet.aave.oracle, d.oracle):
            assert (
                chain.view(oracle, "getAssetPrice(address)", ["uint256"], weth) == 284_100_000_000
            )
    finally:
        set_prices(devnet.rpc_url, devnet.aave, {"WETH": 3000.0})


@pytest.fixture
def second_devnet() -> Iterator[DevnetInfo]:
    with running_devnet(300, 7) as info:
        yield info


def test_build_is_cached(second_devnet: DevnetInfo, d: Aave36Deployment) -> None:
    assert second_devnet.loaded_from_cache
    assert second_devnet.aave36 is not None
    assert second_devnet.aave36.to_json() == d.to_json()


def test_write_config_names_both_aave_markets_with_versions(
    devnet: DevnetInfo, d: Aave36Deployment, tmp_path: Path
) -> None:
    path = tmp_path / "devnet.toml"
    write_devnet_config(path, devnet, with_aave36=True)
    markets = {m.name: m for m in load_config(path).markets.values()}
    assert (markets["aave-v3-devnet"].version, markets["aave-v3.6-devnet"].version) == (
        "3.0.2",
        "3.6.0",
    )
    assert markets["aave-v3.6-devnet"].address == d.addresses_provider
    assert markets["aave-v3.6-devnet"].protocol == "aave-v3"
    # the checked-in config names the same deterministic addresses
    checked_in = {m.name: m.address for m in load_config(CHECKED_IN).markets.values()}
    assert checked_in == {
        "aave-v3-devnet": devnet.aave.addresses_provider,
        "aave-v3.6-devnet": d.addresses_provider,
    }
    # without the flag (the default while the Aave reader follows 3.0.2 only): 3.0.2 alone
    assert d.addresses_provider not in devnet_config_text(devnet)


def test_demo_shows_both_aave_markets() -> None:
    proc = subprocess.run([ONCHAIN, "demo"], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "(rules 3.0.2)" in proc.stdout
    assert "aave-v3.6-devnet (version 3.6.0)" in proc.stdout


# --- the scenarios do what they are named for: liquidations on the 3.6 Pool itself ---

LIQUIDATOR = "0x00000000000000000000000000000000000A1fee"
UINT256_MAX = 2**256 - 1


@pytest.fixture
def snapshot(chain: DevChain) -> Iterator[None]:
    """Each liquidation test leaves the module's chain as it found it."""
    snap = chain.rpc("evm_snapshot")
    yield
    assert chain.rpc("evm_revert", [snap])


def _scenario(d: Aave36Deployment, group: str, index: int = 0) -> dict:
    return [p for p in d.scenario_plans if p["group"] == group][index]


def _fund(chain: DevChain, d: Aave36Deployment, debt: str, sender: str = LIQUIDATOR) -> None:
    token = d.tokens[debt]
    chain.set_balance([sender], 10**20)
    chain.send(sender, token, calldata("mint(uint256)", 10**30), gas=200_000)
    chain.send(sender, token, calldata("approve(address,uint256)", d.pool, UINT256_MAX))


def _liquidate(
    chain: DevChain,
    d: Aave36Deployment,
    user: str,
    collateral: str,
    debt: str,
    amount: int,
    sender: str = LIQUIDATOR,
) -> dict:
    """liquidationCall in a block with the head's timestamp: no interest accrues since the last
    read, so figures read before the call are the ones the Pool uses."""
    head = chain.rpc("eth_getBlockByNumber", ["latest", False])
    chain.rpc("evm_setNextBlockTimestamp", [head["timestamp"]])
    return chain.send(
        sender,
        d.pool,
        calldata(
            "liquidationCall(address,address,address,uint256,bool)",
            d.tokens[collateral],
            d.tokens[debt],
            user,
            amount,
            False,
        ),
        gas=3_000_000,
    )


def _liquidation_event(receipt: dict) -> tuple[int, int]:
    """(debtToCover, liquidatedCollateralAmount) of the receipt's LiquidationCall event."""
    topic = (
        "0x"
        + keccak(text="LiquidationCall(address,address,address,uint256,uint256,address,bool)").hex()
    )
    (log,) = [log for log in receipt["logs"] if log["topics"][0] == topic]
    repaid, seized, _liquidator, _receive = decode(
        ["uint256", "uint256", "address", "bool"], bytes.fromhex(log["data"][2:])
    )
    return repaid, seized


def _debt(chain: DevChain, d: Aave36Deployment, user: str, symbol: str) -> int:
    return chain.view(d.variable_debt_tokens[symbol], "balanceOf(address)", ["uint256"], user)


def _reverts_with(error: str, call: Callable[[], object]) -> None:
    selector = "0x" + keccak(text=f"{error}()")[:4].hex()
    with pytest.raises(DevnetError, match=selector[2:]):
        call()


def test_half_close_factor_caps_at_half_the_whole_position(
    chain: DevChain, d: Aave36Deployment, snapshot: None
) -> None:
    """Both reserves >= $2,000 and HF in (0.95, 1): at most 50% of the position's debt."""
    user = _scenario(d, "half_close_factor", 0)["address"]  # WETH 20,000 vs USDC 16,800
    _fund(chain, d, "USDC")
    total_debt_base = _account(chain, d, user)[1]
    price = chain.view(d.oracle, "getAssetPrice(address)", ["uint256"], d.tokens["USDC"])
    repaid, _seized = _liquidation_event(_liquidate(chain, d, user, "WETH", "USDC", UINT256_MAX))
    half = (total_debt_base * 5000 + 5000) // 10_000  # percentMul, half up
    assert repaid == half * 10**6 // price
    assert _debt(chain, d, user, "USDC") > 8_000 * 10**6


def test_half_of_the_position_can_leave_dust_in_the_reserve(
    chain: DevChain, d: Aave36Deployment, snapshot: None
) -> None:
    """WETH + WBTC vs USDC 9,000 + DAI 7,500: the 50% cap (8,250 USDC) would leave 750 USDC, under
    the $1,000 line, so the largest call reverts; a call leaving $1,000 succeeds."""
    user = _scenario(d, "half_close_factor", 1)["address"]
    _fund(chain, d, "USDC")
    _reverts_with(
        "MustNotLeaveDust", lambda: _liquidate(chain, d, user, "WETH", "USDC", UINT256_MAX)
    )
    amount = _debt(chain, d, user, "USDC") - 1_001 * 10**6
    repaid, _seized = _liquidation_event(_liquidate(chain, d, user, "WETH", "USDC", amount))
    assert repaid == amount


def test_two_small_debt_reserves_repay_the_whole_reserve(
    chain: DevChain, d: Aave36Deployment, snapshot: None
) -> None:
    """The measured case: WETH vs 1,300 USDC + 1,300 DAI, HF 0.99: all the USDC is repaid."""
    user = _scenario(d, "two_debt_reserves", 0)["address"]
    _fund(chain, d, "USDC")
    assert 0.95e18 < _account(chain, d, user)[5] < 1e18
    _liquidate(chain, d, user, "WETH", "USDC", UINT256_MAX)
    assert _debt(chain, d, user, "USDC") == 0 and _debt(chain, d, user, "DAI") > 0


def test_dust_line_refuses_a_partial_call(
    chain: DevChain, d: Aave36Deployment, snapshot: None
) -> None:
    user = _scenario(d, "dust_line", 0)["address"]  # WETH 1,250 vs USDC 1,060
    _fund(chain, d, "USDC")
    _reverts_with(
        "MustNotLeaveDust", lambda: _liquidate(chain, d, user, "WETH", "USDC", 500 * 10**6)
    )
    _liquidate(chain, d, user, "WETH", "USDC", UINT256_MAX)
    assert _debt(chain, d, user, "USDC") == 0


def test_bad_debt_seizes_all_collateral_and_creates_a_deficit(
    chain: DevChain, d: Aave36Deployment, snapshot: None
) -> None:
    user = _scenario(d, "bad_debt", 0)["address"]  # WETH 2,000 vs USDC 2,300
    _fund(chain, d, "USDC")
    usdc = d.tokens["USDC"]
    deficit_before = chain.view(d.pool, "getReserveDeficit(address)", ["uint256"], usdc)
    receipt = _liquidate(chain, d, user, "WETH", "USDC", UINT256_MAX)
    assert chain.view(d.atokens["WETH"], "balanceOf(address)", ["uint256"], user) == 0
    assert _debt(chain, d, user, "USDC") == 0  # the rest burned
    created = chain.view(d.pool, "getReserveDeficit(address)", ["uint256"], usdc) - deficit_before
    assert 200 * 10**6 < created < 400 * 10**6
    topic = "0x" + keccak(text="DeficitCreated(address,address,uint256)").hex()
    assert any(log["topics"][0] == topic for log in receipt["logs"])


def test_no_self_liquidation_and_no_liquidation_of_healthy_users(
    chain: DevChain, d: Aave36Deployment, snapshot: None
) -> None:
    user = _scenario(d, "below_095", 0)["address"]
    _fund(chain, d, "USDC", sender=user)
    _fund(chain, d, "USDC")
    _reverts_with(
        "SelfLiquidation",
        lambda: _liquidate(chain, d, user, "WETH", "USDC", UINT256_MAX, sender=user),
    )
    healthy = _scenario(d, "emode_lt0_collateral", 0)["address"]  # DAI in eMode 1, HF 1.0556
    _reverts_with(
        "HealthFactorNotBelowThreshold",
        lambda: _liquidate(chain, d, healthy, "DAI", "USDC", UINT256_MAX),
    )
