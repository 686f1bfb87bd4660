"""Spec tests for the Aave V3.0.2 math mirror (`onchain.protocols.aave_v3.math`).

Vectors are worked out by hand in the comments; the WadRayMath and ReserveConfiguration parts are
also checked against the package's own compiled contracts on a real anvil.
"""

from __future__ import annotations

import json
import random
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import fields, replace
from pathlib import Path
from typing import Any

import pytest
import requests
from eth_abi import decode, encode
from eth_utils import function_signature_to_4byte_selector

from onchain.devnet.anvil import NODE_MODULES, Anvil
from onchain.protocols.aave_v3 import math as am
from onchain.protocols.aave_v3.math import (
    HALF_PERCENTAGE_FACTOR,
    HALF_RAY,
    HALF_WAD,
    PERCENTAGE_FACTOR,
    RAY,
    SECONDS_PER_YEAR,
    UINT256_MAX,
    WAD,
    WAD_RAY_RATIO,
    EModeCategory,
    ReserveConfiguration,
    UserReserveInput,
    calculate_available_collateral_to_liquidate,
    calculate_compounded_interest,
    calculate_linear_interest,
    calculate_user_account_data,
    decode_reserve_configuration,
    get_normalized_debt,
    get_normalized_income,
    max_debt_to_cover,
    percent_div,
    percent_mul,
    ray_div,
    ray_mul,
    ray_to_wad,
    wad_div,
    wad_mul,
    wad_to_ray,
)
from tests.helpers.aave_configs import USDC_CFG, WETH_CFG, make_config, reserve

AAVE_CORE = NODE_MODULES / "@aave" / "core-v3"
ARTIFACTS = AAVE_CORE / "artifacts" / "contracts"
DEPLOYER = "0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266"
E8 = 10**8


# ============================================================================================
# WadRayMath / PercentageMath: half-up rounding and reverts
# ============================================================================================


def test_constants_match_the_contracts() -> None:
    assert (WAD, HALF_WAD, RAY, HALF_RAY, WAD_RAY_RATIO) == (
        10**18,
        5 * 10**17,
        10**27,
        5 * 10**26,
        10**9,
    )
    assert (PERCENTAGE_FACTOR, HALF_PERCENTAGE_FACTOR) == (10_000, 5_000)
    assert SECONDS_PER_YEAR == 31_536_000
    assert UINT256_MAX == 2**256 - 1
    assert am.AAVE_VERSION == "3.0.2"


@pytest.mark.parametrize(
    ("a", "b", "expected"),
    [
        (WAD, WAD, WAD),
        (2 * WAD, 3 * WAD, 6 * WAD),
        (1, HALF_WAD, 1),  # exactly 0.5 unit -> rounds up
        (1, HALF_WAD - 1, 0),  # just below 0.5 -> down
        (1, HALF_WAD + 1, 1),  # just above 0.5 -> up
        (3, HALF_WAD, 2),  # 1.5 -> 2
        (5, HALF_WAD, 3),  # 2.5 -> 3 (half-up, not banker's)
        (0, UINT256_MAX, 0),
        (UINT256_MAX, 0, 0),  # b == 0 short-circuits the overflow guard
    ],
)
def test_wad_mul_rounds_half_up(a: int, b: int, expected: int) -> None:
    assert wad_mul(a, b) == expected


@pytest.mark.parametrize(
    ("a", "b", "expected"),
    [
        (RAY, RAY, RAY),
        (1, HALF_RAY, 1),
        (1, HALF_RAY - 1, 0),
        (1, HALF_RAY + 1, 1),
        (3, HALF_RAY, 2),
        (10**18, RAY + RAY // 20, 105 * 10**16),  # 1e18 scaled * 1.05 index
        (10**18, RAY + RAY // 20 + 1, 105 * 10**16),  # + 1e18 / 1e27 = +0.000000001 -> down
    ],
)
def test_ray_mul_rounds_half_up(a: int, b: int, expected: int) -> None:
    assert ray_mul(a, b) == expected


@pytest.mark.parametrize(
    ("a", "b", "expected"),
    [
        (WAD, WAD, WAD),
        (6 * WAD, 3 * WAD, 2 * WAD),
        (1, 2 * WAD, 1),  # 1/2 wei exactly -> up
        (1, 2 * WAD + 1, 0),  # a hair below 0.5 -> down
        (1, 2 * WAD - 1, 1),  # a hair above 0.5 -> up
        (1, 3 * WAD, 0),  # 0.333 -> down
        (2, 3 * WAD, 1),  # 0.667 -> up
        (0, 1, 0),
    ],
)
def test_wad_div_rounds_half_up(a: int, b: int, expected: int) -> None:
    assert wad_div(a, b) == expected


@pytest.mark.parametrize(
    ("a", "b", "expected"),
    [
        (RAY, RAY, RAY),
        (1, 2 * RAY, 1),
        (1, 2 * RAY + 1, 0),
        (1, 2 * RAY - 1, 1),
        (105 * 10**16, RAY + RAY // 20, 10**18),  # scaling 1.05e18 down by index 1.05
    ],
)
def test_ray_div_rounds_half_up(a: int, b: int, expected: int) -> None:
    assert ray_div(a, b) == expected


@pytest.mark.parametrize(
    ("a", "expected"),
    [
        (0, 0),
        (499_999_999, 0),  # remainder 0.499999999 -> down
        (500_000_000, 1),  # remainder exactly 0.5 -> up
        (1_499_999_999, 1),
        (1_500_000_000, 2),
        (RAY, WAD),
        (UINT256_MAX, UINT256_MAX // 10**9),  # remainder 0.129639935 -> down
        (UINT256_MAX - 129_639_935 - 500_000_000, UINT256_MAX // 10**9),  # .5 -> up
    ],
)
def test_ray_to_wad(a: int, expected: int) -> None:
    assert ray_to_wad(a) == expected


def test_wad_to_ray_multiplies_and_reverts_on_overflow() -> None:
    assert wad_to_ray(1) == 10**9
    assert wad_to_ray(WAD) == RAY
    largest = UINT256_MAX // WAD_RAY_RATIO
    assert wad_to_ray(largest) == largest * WAD_RAY_RATIO
    with pytest.raises(OverflowError):
        wad_to_ray(largest + 1)


@pytest.mark.parametrize(
    ("value", "pct", "expected"),
    [
        (10_000, 5_000, 5_000),
        (1, 5_000, 1),  # 0.5 -> up
        (1, 4_999, 0),  # 0.4999 -> down
        (10_001, 5_000, 5_001),  # 5000.5 -> 5001
        (9_999, 5_000, 5_000),  # 4999.5 -> 5000
        (12_345, 0, 0),  # percentage 0 short-circuits
        (UINT256_MAX, 0, 0),
    ],
)
def test_percent_mul(value: int, pct: int, expected: int) -> None:
    assert percent_mul(value, pct) == expected


@pytest.mark.parametrize(
    ("value", "pct", "expected"),
    [
        (5_000, 5_000, 10_000),
        (10_500, 10_500, 10_000),
        (1, 20_000, 1),  # exactly 0.5 -> up
        (1, 20_001, 0),  # just below 0.5 -> down
        (1, 19_999, 1),
        (0, 1, 0),
    ],
)
def test_percent_div(value: int, pct: int, expected: int) -> None:
    assert percent_div(value, pct) == expected


MulFn = Callable[[int, int], int]


@pytest.mark.parametrize(
    ("fn", "half"),
    [(wad_mul, HALF_WAD), (ray_mul, HALF_RAY), (percent_mul, HALF_PERCENTAGE_FACTOR)],
)
def test_mul_overflow_guard_is_exact(fn: MulFn, half: int) -> None:
    """Largest a with a * b + half <= 2**256 - 1 passes, the next one reverts."""
    for b in (1, 2, 3, 10**4, 10**18, 10**27, 2**128 + 7):
        limit = (UINT256_MAX - half) // b
        fn(limit, b)
        with pytest.raises(OverflowError):
            fn(limit + 1, b)
    with pytest.raises(OverflowError):
        fn(UINT256_MAX, UINT256_MAX)


@pytest.mark.parametrize(
    ("fn", "unit"), [(wad_div, WAD), (ray_div, RAY), (percent_div, PERCENTAGE_FACTOR)]
)
def test_div_guards_zero_and_overflow(fn: MulFn, unit: int) -> None:
    for a in (0, 1, UINT256_MAX):
        with pytest.raises(ZeroDivisionError):
            fn(a, 0)
    for b in (1, 2, 3, 10**18, 10**27, UINT256_MAX):
        limit = (UINT256_MAX - b // 2) // unit
        fn(limit, b)
        with pytest.raises(OverflowError):
            fn(limit + 1, b)


def test_reverts_are_arithmetic_errors_and_bad_inputs_are_value_errors() -> None:
    with pytest.raises(ArithmeticError):
        wad_div(1, 0)
    with pytest.raises(ArithmeticError):
        ray_mul(UINT256_MAX, 2)
    with pytest.raises(ValueError):
        wad_mul(-1, 1)
    with pytest.raises(ValueError):
        ray_mul(2**256, 1)


# ============================================================================================
# MathUtils / ReserveLogic: interest accrual
# ============================================================================================

YEAR = SECONDS_PER_YEAR
T0 = 1_700_000_000


def test_linear_interest_is_rate_times_elapsed_over_a_year_truncated() -> None:
    rate = 5 * RAY // 100  # 5% APR
    assert calculate_linear_interest(rate, T0, T0) == RAY
    assert calculate_linear_interest(rate, T0, T0 + YEAR) == RAY + rate
    assert calculate_linear_interest(rate, T0, T0 + 1) == RAY + rate // YEAR
    with pytest.raises(OverflowError):  # block.timestamp - lastUpdate underflows
        calculate_linear_interest(rate, T0, T0 - 1)


def test_compounded_interest_three_term_binomial() -> None:
    rate = 7 * RAY // 100
    bp2 = ray_mul(rate, rate) // (YEAR * YEAR)
    bp3 = ray_mul(bp2, rate) // YEAR
    assert calculate_compounded_interest(rate, T0, T0) == RAY
    # n = 1: only the linear term
    assert calculate_compounded_interest(rate, T0, T0 + 1) == RAY + rate // YEAR
    # n = 2: n(n-1)/2 = 1 second-order term, expMinusTwo = 0 -> no third term
    assert calculate_compounded_interest(rate, T0, T0 + 2) == RAY + 2 * rate // YEAR + bp2
    # n = 3: 3 * bp2 and 3*2*1/6 = 1 * bp3
    assert calculate_compounded_interest(rate, T0, T0 + 3) == (
        RAY + 3 * rate // YEAR + 3 * bp2 + bp3
    )


def test_compounded_interest_one_year_at_100_percent() -> None:
    """1 + x + x^2/2 + x^3/6 at x = 1, with the per-second truncations of the contract."""
    bp2 = RAY // (YEAR * YEAR)  # rayMul(RAY, RAY) == RAY
    bp3 = bp2 // YEAR  # rayMul(bp2, RAY) == bp2
    expected = (
        RAY + RAY + (YEAR * (YEAR - 1) * bp2) // 2 + (YEAR * (YEAR - 1) * (YEAR - 2) * bp3) // 6
    )
    got = calculate_compounded_interest(RAY, 0, YEAR)
    assert got == expected == 2_666_663_803_286_306_996_604_104_000
    assert abs(got / RAY - (1 + 1 + 1 / 2 + 1 / 6)) < 1e-5


def test_compounded_interest_reverts_like_checked_math() -> None:
    with pytest.raises(OverflowError):
        calculate_compounded_interest(RAY, T0, T0 - 1)
    with pytest.raises(OverflowError):  # rate * exp overflows
        calculate_compounded_interest(2**200, 0, 2**60)
    with pytest.raises(ValueError):  # lastUpdateTimestamp is a uint40
        calculate_compounded_interest(RAY, 2**40, 2**41)


def test_normalized_income_and_debt_return_the_stored_index_in_the_update_block() -> None:
    index = RAY + 123_456_789
    huge_rate = 10**30  # would change the index if it were applied
    assert get_normalized_income(index, huge_rate, T0, T0) == index
    assert get_normalized_debt(index, huge_rate, T0, T0) == index


def test_normalized_income_and_debt_apply_interest_with_ray_mul() -> None:
    index = 1_020_000_000_000_000_000_000_000_001
    liq_rate, borrow_rate = 3 * RAY // 100, 5 * RAY // 100
    dt = 12 * 3600
    assert get_normalized_income(index, liq_rate, T0, T0 + dt) == ray_mul(
        calculate_linear_interest(liq_rate, T0, T0 + dt), index
    )
    assert get_normalized_debt(index, borrow_rate, T0, T0 + dt) == ray_mul(
        calculate_compounded_interest(borrow_rate, T0, T0 + dt), index
    )
    assert get_normalized_debt(index, borrow_rate, T0, T0 + dt) > get_normalized_income(
        index, borrow_rate, T0, T0 + dt
    )


# ============================================================================================
# ReserveConfiguration bitmap
# ============================================================================================

FIELD_NAMES = [f.name for f in fields(ReserveConfiguration)]
SOL_MASK_NAMES = {
    "LTV": "ltv",
    "LIQUIDATION_THRESHOLD": "liquidation_threshold",
    "LIQUIDATION_BONUS": "liquidation_bonus",
    "DECIMALS": "decimals",
    "ACTIVE": "active",
    "FROZEN": "frozen",
    "BORROWING": "borrowing_enabled",
    "STABLE_BORROWING": "stable_borrowing_enabled",
    "PAUSED": "paused",
    "BORROWABLE_IN_ISOLATION": "borrowable_in_isolation",
    "SILOED_BORROWING": "siloed_borrowing",
    "FLASHLOAN_ENABLED": "flash_loan_enabled",
    "RESERVE_FACTOR": "reserve_factor",
    "BORROW_CAP": "borrow_cap",
    "SUPPLY_CAP": "supply_cap",
    "LIQUIDATION_PROTOCOL_FEE": "liquidation_protocol_fee",
    "EMODE_CATEGORY": "emode_category",
    "UNBACKED_MINT_CAP": "unbacked_mint_cap",
    "DEBT_CEILING": "debt_ceiling",
}

# Independent hand-written layout (bit position, width) from the 3.0.2 struct comment.
HAND_LAYOUT: dict[str, tuple[int, int]] = {
    "ltv": (0, 16),
    "liquidation_threshold": (16, 16),
    "liquidation_bonus": (32, 16),
    "decimals": (48, 8),
    "active": (56, 1),
    "frozen": (57, 1),
    "borrowing_enabled": (58, 1),
    "stable_borrowing_enabled": (59, 1),
    "paused": (60, 1),
    "borrowable_in_isolation": (61, 1),
    "siloed_borrowing": (62, 1),
    "flash_loan_enabled": (63, 1),
    "reserve_factor": (64, 16),
    "borrow_cap": (80, 36),
    "supply_cap": (116, 36),
    "liquidation_protocol_fee": (152, 16),
    "emode_category": (168, 8),
    "unbacked_mint_cap": (176, 36),
    "debt_ceiling": (212, 40),
    "virtual_accounting": (252, 1),  # 3.1+ (VIRTUAL_ACC_START_BIT_POSITION); unused in 3.0.2
}


def encode_reserve_configuration(**values: int | bool) -> int:
    """Test-side encoder: field by field, like the ReserveConfiguration setters."""
    data = 0
    for name, value in values.items():
        start, width = HAND_LAYOUT[name]
        assert 0 <= int(value) < 2**width, name
        data |= int(value) << start
    return data


def random_config_values(rng: random.Random) -> dict[str, int | bool]:
    values: dict[str, int | bool] = {}
    for name, (_start, width) in HAND_LAYOUT.items():
        raw = rng.getrandbits(width)
        values[name] = bool(raw) if width == 1 else raw
    return values


def test_layout_matches_the_solidity_masks_and_start_bits() -> None:
    source = (
        AAVE_CORE / "contracts/protocol/libraries/configuration/ReserveConfiguration.sol"
    ).read_text()
    masks = dict(re.findall(r"constant (\w+)_MASK\s*=\s*(0x[0-9A-Fa-f]{64})", source))
    assert set(masks) == set(SOL_MASK_NAMES), "a field was added or renamed in the contract"
    assert set(HAND_LAYOUT) - set(SOL_MASK_NAMES.values()) == {"virtual_accounting"}
    starts = {
        k: int(v) for k, v in re.findall(r"constant (\w+)_START_BIT_POSITION = (\d+)", source)
    }
    for sol_name, field_name in SOL_MASK_NAMES.items():
        selected = ~int(masks[sol_name], 16) & UINT256_MAX
        start = (selected & -selected).bit_length() - 1
        width = selected.bit_length() - start
        assert selected == ((1 << width) - 1) << start, f"{sol_name} mask is not contiguous"
        assert (
            (start, width) == HAND_LAYOUT[field_name] == am.RESERVE_CONFIGURATION_LAYOUT[field_name]
        )
    assert starts["LIQUIDATION_THRESHOLD"] == 16 and starts["DEBT_CEILING"] == 212


def test_decode_round_trips_a_bitmap_built_field_by_field() -> None:
    rng = random.Random(3_0_2)
    for _ in range(200):
        values = random_config_values(rng)
        decoded = decode_reserve_configuration(encode_reserve_configuration(**values))
        assert {name: getattr(decoded, name) for name in FIELD_NAMES} == values


def test_decode_isolates_every_field_and_ignores_unused_top_bits() -> None:
    for name, (_start, width) in HAND_LAYOUT.items():
        all_ones = (1 << width) - 1
        decoded = decode_reserve_configuration(encode_reserve_configuration(**{name: all_ones}))
        for other in FIELD_NAMES:
            value = getattr(decoded, other)
            if other == name:
                assert value == (True if width == 1 else all_ones)
            else:
                assert not value, f"setting {name} leaked into {other}"
    top_bits = 0xE << 252  # 253..255 are unused in every release; 252 is 3.1's flag
    assert decode_reserve_configuration(top_bits) == decode_reserve_configuration(0)


def test_decode_real_looking_weth_bitmap() -> None:
    # LTV 80.50%, LT 83%, bonus 5%, 18 decimals, active, borrowable, flash loans,
    # RF 15%, caps 1.4M / 1.8M, protocol fee 10%, eMode 1
    cfg = decode_reserve_configuration(0x103E80001B7740000155CC005DC85122904206C1F72)
    assert cfg == ReserveConfiguration(
        ltv=8050,
        liquidation_threshold=8300,
        liquidation_bonus=10500,
        decimals=18,
        active=True,
        frozen=False,
        borrowing_enabled=True,
        stable_borrowing_enabled=False,
        paused=False,
        borrowable_in_isolation=False,
        siloed_borrowing=False,
        flash_loan_enabled=True,
        reserve_factor=1500,
        borrow_cap=1_400_000,
        supply_cap=1_800_000,
        liquidation_protocol_fee=1000,
        emode_category=1,
        unbacked_mint_cap=0,
        debt_ceiling=0,
    )


# ============================================================================================
# UserConfiguration bitmap
# ============================================================================================


def test_user_configuration_bits() -> None:
    # reserve 0: borrowing; reserve 1: collateral; reserve 3: both; reserve 127: collateral
    cfg = (1 << 0) | (1 << 3) | (0b11 << 6) | (1 << 255)
    assert (
        am.encode_user_configuration(
            [(0, False, True), (1, True, False), (3, True, True), (127, True, False)]
        )
        == cfg
    )
    assert [am.is_borrowing(cfg, i) for i in (0, 1, 2, 3, 127)] == [True, False, False, True, False]
    assert [am.is_using_as_collateral(cfg, i) for i in (0, 1, 2, 3, 127)] == [
        False,
        True,
        False,
        True,
        True,
    ]
    assert not am.is_using_as_collateral_or_borrowing(cfg, 2)
    assert am.is_using_as_collateral_or_borrowing(cfg, 1)
    assert am.reserve_ids_in_use(cfg) == (0, 1, 3, 127)
    assert am.is_borrowing_any(cfg) and am.is_using_as_collateral_any(cfg)
    assert not am.is_borrowing_any(1 << 1)
    with pytest.raises(ValueError):  # require(reserveIndex < MAX_RESERVES_COUNT)
        am.is_borrowing(cfg, 128)


# ============================================================================================
# Against the real contracts on anvil
# ============================================================================================


def _rpc(url: str, method: str, params: list[Any]) -> Any:
    resp = requests.post(
        url, json={"jsonrpc": "2.0", "id": 1, "method": method, "params": params}, timeout=30
    )
    resp.raise_for_status()
    body = resp.json()
    assert "error" not in body, body
    return body["result"]


def _rpc_batch(url: str, calls: Sequence[tuple[str, list[Any]]]) -> list[dict[str, Any]]:
    """One HTTP round trip for many calls; answers are returned in request order."""
    payload = [
        {"jsonrpc": "2.0", "id": i, "method": method, "params": params}
        for i, (method, params) in enumerate(calls)
    ]
    resp = requests.post(url, json=payload, timeout=120)
    resp.raise_for_status()
    answers = sorted(resp.json(), key=lambda r: r["id"])
    assert len(answers) == len(calls)
    return answers


def _deploy(url: str, artifact: Path) -> str:
    bytecode = json.loads(artifact.read_text())["bytecode"]
    tx_hash = _rpc(url, "eth_sendTransaction", [{"from": DEPLOYER, "data": bytecode}])
    receipt = None
    deadline = time.monotonic() + 10
    while receipt is None and time.monotonic() < deadline:  # automine may lag the send a bit
        receipt = _rpc(url, "eth_getTransactionReceipt", [tx_hash])
        if receipt is None:
            time.sleep(0.02)
    assert receipt is not None and int(receipt["status"], 16) == 1, receipt
    return receipt["contractAddress"]


def _calldata(signature: str, types: list[str], args: Sequence[Any]) -> str:
    return "0x" + (function_signature_to_4byte_selector(signature) + encode(types, args)).hex()


def _interesting_uints(rng: random.Random, count: int) -> list[int]:
    """Random values spread over all magnitudes, plus the unit/half-unit boundaries."""
    fixed = [0, 1, 2, 3]
    for unit in (WAD, RAY, WAD_RAY_RATIO):
        fixed += [unit // 2 - 1, unit // 2, unit // 2 + 1, unit - 1, unit, unit + 1, 2 * unit]
    fixed += [UINT256_MAX, UINT256_MAX - 1, 2**128, 2**128 - 1]
    randoms = [rng.getrandbits(rng.randint(1, 256)) for _ in range(count)]
    return fixed + randoms


def _binary_cases(rng: random.Random, unit: int, half: int, is_div: bool) -> list[tuple[int, int]]:
    values = _interesting_uints(rng, 60)
    cases = [(rng.choice(values), rng.choice(values)) for _ in range(250)]
    for b in (1, 2, 3, 7, WAD, RAY, 2**100 + 1, UINT256_MAX, *rng.sample(values, 10)):
        if b == 0:
            continue
        limit = (UINT256_MAX - b // 2) // unit if is_div else (UINT256_MAX - half) // b
        cases += [(limit, b), (limit + 1, b)] if limit + 1 <= UINT256_MAX else [(limit, b)]
    cases += [(0, 0), (1, 0), (UINT256_MAX, 0), (0, UINT256_MAX), (UINT256_MAX, 1)]
    # exact half-unit products: a * b == k * unit + half
    cases += [(1, half), (1, half - 1), (3, half), (2 * unit + 1, 2 * unit)]
    return cases


def _expected(fn: Callable[..., int], *args: int) -> int | None:
    try:
        return fn(*args)
    except ArithmeticError:
        return None


def test_wad_ray_math_matches_the_wrapper_contract(anvil: Anvil) -> None:
    artifact = ARTIFACTS / "mocks/tests/WadRayMathWrapper.sol/WadRayMathWrapper.json"
    address = _deploy(anvil.url, artifact)
    rng = random.Random(20240302)

    cases: list[tuple[str, Callable[..., int], tuple[int, ...]]] = []
    for name, fn, unit, half, is_div in (
        ("wadMul", wad_mul, WAD, HALF_WAD, False),
        ("wadDiv", wad_div, WAD, HALF_WAD, True),
        ("rayMul", ray_mul, RAY, HALF_RAY, False),
        ("rayDiv", ray_div, RAY, HALF_RAY, True),
    ):
        cases += [(name, fn, pair) for pair in _binary_cases(rng, unit, half, is_div)]
    unary = _interesting_uints(rng, 120)
    unary += [UINT256_MAX // WAD_RAY_RATIO, UINT256_MAX // WAD_RAY_RATIO + 1]
    unary += [k * WAD_RAY_RATIO + r for k in (0, 7) for r in (499_999_999, 500_000_000)]
    cases += [("rayToWad", ray_to_wad, (a,)) for a in unary]
    cases += [("wadToRay", wad_to_ray, (a,)) for a in unary]

    calls = []
    for name, _fn, args in cases:
        types = ["uint256"] * len(args)
        data = _calldata(f"{name}({','.join(types)})", types, args)
        calls.append(("eth_call", [{"to": address, "data": data}, "latest"]))
    answers = _rpc_batch(anvil.url, calls)

    reverts = successes = 0
    for (name, fn, args), answer in zip(cases, answers, strict=True):
        expected = _expected(fn, *args)
        if expected is None:
            assert "error" in answer, f"{name}{args}: contract returned {answer}, we revert"
            assert "revert" in answer["error"]["message"].lower(), answer
            reverts += 1
        else:
            assert "error" not in answer, f"{name}{args}: contract reverted, we gave {expected}"
            (onchain,) = decode(["uint256"], bytes.fromhex(answer["result"][2:]))
            assert onchain == expected, f"{name}{args}: contract {onchain} != python {expected}"
            successes += 1
    assert len(cases) >= 1_000
    assert reverts >= 50 and successes >= 800  # both paths really exercised


def test_reserve_configuration_decoding_matches_the_mock_contract(anvil: Anvil) -> None:
    artifact = (
        ARTIFACTS / "mocks/helpers/MockReserveConfiguration.sol/MockReserveConfiguration.json"
    )
    address = _deploy(anvil.url, artifact)
    rng = random.Random(7)
    bitmaps = [rng.getrandbits(256) for _ in range(25)]
    bitmaps += [encode_reserve_configuration(**random_config_values(rng)) for _ in range(10)]
    bitmaps += [0, UINT256_MAX, 0x103E80001B7740000155CC005DC85122904206C1F72]

    getters: list[tuple[str, list[str]]] = [
        ("getParams()", ["uint256"] * 6),
        ("getCaps()", ["uint256"] * 2),
        ("getFlags()", ["bool"] * 5),
        ("getLiquidationProtocolFee()", ["uint256"]),
        ("getUnbackedMintCap()", ["uint256"]),
        ("getFlashLoanEnabled()", ["bool"]),
        ("getEModeCategory()", ["uint256"]),
    ]
    for bitmap in bitmaps:
        # `configuration` is the mock's only state variable: storage slot 0
        _rpc(anvil.url, "anvil_setStorageAt", [address, "0x0", "0x" + f"{bitmap:064x}"])
        answers = _rpc_batch(
            anvil.url,
            [
                ("eth_call", [{"to": address, "data": _calldata(sig, [], [])}, "latest"])
                for sig, _types in getters
            ],
        )
        got = [
            decode(types, bytes.fromhex(answer["result"][2:]))
            for (_sig, types), answer in zip(getters, answers, strict=True)
        ]
        cfg = decode_reserve_configuration(bitmap)
        assert got == [
            (
                cfg.ltv,
                cfg.liquidation_threshold,
                cfg.liquidation_bonus,
                cfg.decimals,
                cfg.reserve_factor,
                cfg.emode_category,
            ),
            (cfg.borrow_cap, cfg.supply_cap),
            (
                cfg.active,
                cfg.frozen,
                cfg.borrowing_enabled,
                cfg.stable_borrowing_enabled,
                cfg.paused,
            ),
            (cfg.liquidation_protocol_fee,),
            (cfg.unbacked_mint_cap,),
            (cfg.flash_loan_enabled,),
            (cfg.emode_category,),
        ], hex(bitmap)


# ============================================================================================
# GenericLogic.calculateUserAccountData / PoolLogic.executeGetUserAccountData
# ============================================================================================


WBTC_CFG = make_config(7_000, 7_500, decimals=8)


def test_empty_user_config_returns_the_contract_defaults() -> None:
    data = calculate_user_account_data([])
    assert data.as_pool_tuple() == (0, 0, 0, 0, 0, UINT256_MAX)
    # a reserve without any flag is skipped exactly like the isEmpty() early return
    lonely = reserve("WETH", 0, WETH_CFG, 2_000 * E8, supplied=WAD, collateral=False)
    assert calculate_user_account_data([lonely]).as_pool_tuple() == (0, 0, 0, 0, 0, UINT256_MAX)


def test_no_debt_gives_max_health_factor() -> None:
    weth = reserve("WETH", 0, WETH_CFG, 2_000 * E8, supplied=10 * WAD)
    data = calculate_user_account_data([weth])
    # 10 WETH * 2000 = 20000 USD (8 decimals); borrowable = 80% of it
    assert data.as_pool_tuple() == (20_000 * E8, 0, 16_000 * E8, 8_250, 8_000, UINT256_MAX)


def test_single_collateral_single_debt() -> None:
    weth = reserve("WETH", 0, WETH_CFG, 2_000 * E8, supplied=10 * WAD)
    usdc = reserve("USDC", 1, USDC_CFG, 1 * E8, borrowed=10_000 * 10**6)
    data = calculate_user_account_data([usdc, weth])  # order of the input does not matter
    # HF = 20000 * 82.5% / 10000 = 1.65
    assert data.as_pool_tuple() == (
        20_000 * E8,
        10_000 * E8,
        6_000 * E8,
        8_250,
        8_000,
        165 * 10**16,
    )
    assert [a.asset for a in data.assets] == ["WETH", "USDC"]  # reserve-id order
    assert data.assets[0].collateral_amount_raw == 10 * WAD
    assert data.assets[1].debt_amount_raw == 10_000 * 10**6


def test_indexes_are_applied_with_ray_mul_and_stable_debt_is_added() -> None:
    weth = reserve("WETH", 0, WETH_CFG, 2_000 * E8, supplied=10 * WAD, income=RAY + RAY // 20)
    usdc = reserve(
        "USDC",
        1,
        USDC_CFG,
        E8,
        borrowed=5_000 * 10**6,
        stable=1_000 * 10**6,
        debt_index=RAY + RAY // 10,
    )
    data = calculate_user_account_data([weth, usdc])
    # 10 * 1.05 WETH = 21000 USD; debt 5000 * 1.1 + 1000 = 6500 USD
    assert data.total_collateral_base == 21_000 * E8
    assert data.total_debt_base == 6_500 * E8
    assert data.assets[0].collateral_amount_raw == 105 * 10**17
    assert data.assets[1].debt_amount_raw == 6_500 * 10**6
    assert data.health_factor == wad_div(percent_mul(21_000 * E8, 8_250), 6_500 * E8)


def test_weighted_averages_truncate_once_at_the_end() -> None:
    weth = reserve("WETH", 0, WETH_CFG, 2_000 * E8, supplied=WAD)  # 2000 USD
    wbtc = reserve("WBTC", 2, WBTC_CFG, 30_000 * E8, supplied=10**7)  # 0.1 BTC = 3000 USD
    usdc = reserve("USDC", 1, USDC_CFG, E8, borrowed=3_000 * 10**6)
    data = calculate_user_account_data([weth, usdc, wbtc])
    # avg LTV = (2000*8000 + 3000*7000) / 5000 = 7400; avg LT = (2000*8250 + 3000*7500)/5000 = 7800
    assert (data.ltv, data.current_liquidation_threshold) == (7_400, 7_800)
    # HF = 5000 * 78% / 3000 = 1.3; available = 5000 * 74% - 3000 = 700
    assert data.health_factor == 13 * 10**17
    assert data.available_borrows_base == 700 * E8

    wbtc_odd = reserve("WBTC", 2, WBTC_CFG, 30_000 * E8, supplied=10**7 + 1)  # + 1 sat = 0.0003 USD
    data = calculate_user_account_data([weth, usdc, wbtc_odd])
    # (2000e8*8000 + 3000.0003e8*7000) / 5000.0003e8 = 7399.99...; truncated to 7399
    assert data.total_collateral_base == 5_000 * E8 + 30_000
    assert data.ltv == 7_399 and data.current_liquidation_threshold == 7_799


def test_base_currency_values_truncate_per_asset() -> None:
    """Debt worth less than one base unit vanishes (3.0.2 rounds debt down, 3.5 rounds it up)."""
    weth = reserve("WETH", 0, WETH_CFG, 2_000 * E8, supplied=WAD)
    dust = reserve("WETH2", 1, WETH_CFG, 2_000 * E8, borrowed=4_999_999)  # 4.999999e-12 ETH
    data = calculate_user_account_data([weth, dust])
    # 4_999_999 * 2000e8 / 1e18 = 0.99999 -> 0
    assert data.total_debt_base == 0
    assert data.health_factor == UINT256_MAX
    assert data.assets[1].debt_amount_raw == 4_999_999


def test_collateral_with_zero_liquidation_threshold_is_skipped() -> None:
    weth = reserve("WETH", 0, WETH_CFG, 2_000 * E8, supplied=10 * WAD)
    not_collateral = make_config(0, 0, decimals=6)  # e.g. a stablecoin that is not collateral
    usdt = reserve("USDT", 1, not_collateral, E8, supplied=1_000_000 * 10**6, borrowed=10**9)
    data = calculate_user_account_data([weth, usdt])
    assert data.total_collateral_base == 20_000 * E8  # USDT supply not counted
    assert data.total_debt_base == 1_000 * E8  # but its debt is
    assert not data.has_zero_ltv_collateral  # LT 0 skips the LTV branch altogether
    usdt_row = data.assets[1]
    assert (usdt_row.collateral_base, usdt_row.collateral_amount_raw) == (0, 0)
    assert not usdt_row.counts_as_collateral


def test_collateral_flag_off_is_not_counted() -> None:
    weth = reserve("WETH", 0, WETH_CFG, 2_000 * E8, supplied=10 * WAD, collateral=False)
    usdc = reserve("USDC", 1, USDC_CFG, E8, supplied=1_000 * 10**6, borrowed=10**8)
    data = calculate_user_account_data([weth, usdc])
    assert data.total_collateral_base == 1_000 * E8
    assert [a.asset for a in data.assets] == ["USDC"]  # no flag at all on WETH -> skipped


def test_zero_ltv_collateral_counts_for_liquidation_but_dilutes_ltv() -> None:
    weth = reserve("WETH", 0, WETH_CFG, 2_000 * E8, supplied=WAD)  # 2000 USD
    frozen_cfg = make_config(0, 7_000)  # LTV 0, LT 70%
    frozen = reserve("FRZ", 1, frozen_cfg, 2_000 * E8, supplied=WAD)  # 2000 USD
    usdc = reserve("USDC", 2, USDC_CFG, E8, borrowed=1_000 * 10**6)
    data = calculate_user_account_data([weth, frozen, usdc])
    assert data.total_collateral_base == 4_000 * E8
    assert data.ltv == 4_000  # (2000*8000 + 0) / 4000
    assert data.current_liquidation_threshold == 7_625  # (2000*8250 + 2000*7000) / 4000
    assert data.has_zero_ltv_collateral
    assert data.available_borrows_base == 600 * E8  # 4000 * 40% - 1000
    assert data.assets[1].ltv_used == 0 and data.assets[1].liquidation_threshold_used == 7_000


EMODE_ETH = EModeCategory(id=1, ltv=9_000, liquidation_threshold=9_300, liquidation_bonus=10_100)


def emode_position() -> list[UserReserveInput]:
    wsteth = reserve("wstETH", 0, make_config(6_900, 7_900, emode=1), 2_300 * E8, supplied=10 * WAD)
    usdc = reserve("USDC", 1, USDC_CFG, E8, supplied=5_000 * 10**6)
    weth = reserve("WETH", 2, make_config(8_000, 8_250, emode=1), 2_000 * E8, borrowed=9 * WAD)
    return [wsteth, usdc, weth]


def test_emode_ltv_and_liquidation_threshold_apply_to_in_category_collateral_only() -> None:
    data = calculate_user_account_data(emode_position(), 1, EMODE_ETH)
    # collateral: wstETH 23000 (eMode 90% / 93%), USDC 5000 (77% / 80%); debt 18000
    assert data.total_collateral_base == 28_000 * E8
    assert data.total_debt_base == 18_000 * E8
    assert data.ltv == 8_767  # (23000*9000 + 5000*7700) / 28000 = 8767.86
    assert data.current_liquidation_threshold == 9_067  # (23000*9300 + 5000*8000) / 28000
    assert data.health_factor == 1_410_422_222_222_222_222  # 25387.6 / 18000, half-up wadDiv
    assert data.available_borrows_base == 654_760_000_000  # 28000 * 87.67% - 18000
    wsteth, usdc, _weth = data.assets
    assert (wsteth.in_emode, wsteth.ltv_used, wsteth.liquidation_threshold_used) == (
        True,
        9_000,
        9_300,
    )
    assert (usdc.in_emode, usdc.ltv_used, usdc.liquidation_threshold_used) == (False, 7_700, 8_000)

    # Same position outside eMode: the reserve parameters are used
    plain = calculate_user_account_data(emode_position())
    assert plain.current_liquidation_threshold == (23_000 * 7_900 + 5_000 * 8_000) // 28_000


def test_emode_price_source_overrides_the_price_of_category_assets() -> None:
    oracle = "0x00000000000000000000000000000000000000aa"
    category = replace(EMODE_ETH, price_source=oracle)
    data = calculate_user_account_data(emode_position(), 1, category, emode_asset_price=2_100 * E8)
    wsteth, usdc, weth = data.assets
    assert (wsteth.price_base, usdc.price_base, weth.price_base) == (2_100 * E8, E8, 2_100 * E8)
    assert data.total_collateral_base == 21_000 * E8 + 5_000 * E8
    assert data.total_debt_base == 18_900 * E8

    # The contract only overrides when the eMode price is non-zero
    fallback = calculate_user_account_data(emode_position(), 1, category, emode_asset_price=0)
    assert fallback == calculate_user_account_data(emode_position(), 1, EMODE_ETH)

    with pytest.raises(ValueError):  # a price source without its price is a caller bug
        calculate_user_account_data(emode_position(), 1, category)
    with pytest.raises(ValueError):
        calculate_user_account_data(emode_position(), 1, None)


def test_zero_ltv_collateral_in_emode_ignores_the_emode_ltv() -> None:
    wsteth_frozen = reserve("wstETH", 0, make_config(0, 7_900, emode=1), 2_000 * E8, supplied=WAD)
    weth = reserve("WETH", 2, make_config(8_000, 8_250, emode=1), 2_000 * E8, borrowed=WAD // 2)
    data = calculate_user_account_data([wsteth_frozen, weth], 1, EMODE_ETH)
    assert data.ltv == 0 and data.has_zero_ltv_collateral
    assert data.current_liquidation_threshold == 9_300  # the eMode LT still applies
    assert data.available_borrows_base == 0


def test_checked_overflow_reverts() -> None:
    huge = reserve("X", 0, WETH_CFG, UINT256_MAX, supplied=WAD)
    with pytest.raises(OverflowError):  # balance * price overflows uint256
        calculate_user_account_data([huge])


# ============================================================================================
# LiquidationLogic
# ============================================================================================


def test_close_factor_switches_to_100_percent_at_or_below_hf_095() -> None:
    threshold = am.CLOSE_FACTOR_HF_THRESHOLD
    assert threshold == 95 * 10**16
    assert (am.DEFAULT_LIQUIDATION_CLOSE_FACTOR, am.MAX_LIQUIDATION_CLOSE_FACTOR) == (5_000, 10_000)
    assert max_debt_to_cover(1_000, threshold + 1) == 500
    assert max_debt_to_cover(1_000, threshold) == 1_000  # "> threshold" is required for 50%
    assert max_debt_to_cover(1_000, threshold - 1) == 1_000
    assert max_debt_to_cover(1_001, 99 * 10**16) == 501  # 500.5 rounds half up
    assert max_debt_to_cover(999, 99 * 10**16) == 500  # 499.5 rounds half up
    assert am.actual_debt_to_liquidate(1_000, 99 * 10**16, 300) == 300
    assert am.actual_debt_to_liquidate(1_000, 99 * 10**16, UINT256_MAX) == 500
    assert am.is_liquidatable(10**18 - 1) and not am.is_liquidatable(10**18)


def test_collateral_to_liquidate_with_protocol_fee() -> None:
    # repay 1000 USDC (6 dec, $1) against WETH (18 dec, $2000), bonus 5%, protocol fee 10%
    got = calculate_available_collateral_to_liquidate(
        collateral_price=2_000 * E8,
        debt_asset_price=E8,
        collateral_decimals=18,
        debt_asset_decimals=6,
        liquidation_bonus=10_500,
        debt_to_cover=1_000 * 10**6,
        user_collateral_balance=10 * WAD,
        liquidation_protocol_fee=1_000,
    )
    # base 0.5 WETH, with bonus 0.525; bonus part 0.025, fee 10% of it = 0.0025
    assert got == (5_225 * 10**14, 1_000 * 10**6, 25 * 10**14)


def test_collateral_to_liquidate_capped_by_the_user_balance() -> None:
    got = calculate_available_collateral_to_liquidate(
        2_000 * E8, E8, 18, 6, 10_500, 1_000 * 10**6, 21 * 10**16, 1_000
    )
    # the whole 0.21 WETH (= 420 USDC) goes; debt needed = 420e6.percentDiv(10500)
    # = (4_200_000_000_000 + 5_250) // 10_500 = 400e6; bonus part 0.01 WETH, fee 0.001 WETH
    assert got == (209 * 10**15, 400 * 10**6, 10**15)


def test_collateral_to_liquidate_without_fee_and_with_truncation() -> None:
    got = calculate_available_collateral_to_liquidate(
        collateral_price=30_000 * E8,  # WBTC, 8 decimals
        debt_asset_price=1 * E8 + 1,  # a stablecoin a hair above $1
        collateral_decimals=8,
        debt_asset_decimals=18,
        liquidation_bonus=11_000,
        debt_to_cover=123_456_789 * 10**12,  # 123.456789 DAI
        user_collateral_balance=10**8,
        liquidation_protocol_fee=0,
    )
    base = ((E8 + 1) * 123_456_789 * 10**12 * 10**8) // (30_000 * E8 * 10**18)  # 411522 sat
    assert base == 411_522
    assert got == (percent_mul(base, 11_000), 123_456_789 * 10**12, 0)
    assert got[0] == 452_674  # 452674.2 -> down


def test_collateral_to_liquidate_reverts_like_the_contract() -> None:
    with pytest.raises(ZeroDivisionError):  # collateral price 0
        calculate_available_collateral_to_liquidate(0, E8, 18, 6, 10_500, 10**6, WAD, 0)
    with pytest.raises(ZeroDivisionError):  # balance cap path divides by the bonus
        calculate_available_collateral_to_liquidate(E8, E8, 18, 18, 0, WAD, 0, 1_000)


def test_liquidation_configuration_emode_rules() -> None:
    wsteth_cfg = make_config(6_900, 7_900, emode=1, bonus=10_600)
    usdc_cfg = make_config(7_700, 8_000, decimals=6, bonus=10_450)
    source = "0x00000000000000000000000000000000000000aa"
    with_source = replace(EMODE_ETH, price_source=source)
    assert am.liquidation_configuration(0, None, wsteth_cfg, "wstETH", "WETH") == (
        "wstETH",
        "WETH",
        10_600,
    )
    assert am.liquidation_configuration(1, EMODE_ETH, wsteth_cfg, "wstETH", "WETH") == (
        "wstETH",
        "WETH",
        10_100,
    )
    assert am.liquidation_configuration(1, with_source, wsteth_cfg, "wstETH", "WETH") == (
        source,
        source,
        10_100,
    )
    # collateral outside the category: own bonus and price, but the debt still uses the source
    assert am.liquidation_configuration(1, with_source, usdc_cfg, "USDC", "WETH") == (
        "USDC",
        source,
        10_450,
    )
