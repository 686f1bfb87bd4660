"""Bit-exact Python mirror of the Aave V3.0.2 math that decides health factors and liquidations.

Source of truth: npm ``@aave/core-v3`` 1.19.3 (= Aave V3.0.2), files under
``contracts/protocol/libraries``:

* ``math/WadRayMath.sol``, ``math/PercentageMath.sol``: half-up rounding, assembly overflow
  guards (``wad_mul`` ... ``percent_div``).
* ``math/MathUtils.sol``: linear interest and the 3-term binomial approximation of compounded
  interest (``calculate_linear_interest``, ``calculate_compounded_interest``).
* ``logic/ReserveLogic.sol``: ``get_normalized_income`` / ``get_normalized_debt`` (same early
  return when the reserve was updated in the current block).
* ``configuration/ReserveConfiguration.sol`` and ``configuration/UserConfiguration.sol``: the
  bit layouts (``decode_reserve_configuration``, ``is_using_as_collateral`` ...).
* ``logic/GenericLogic.sol`` + ``logic/PoolLogic.sol`` (``executeGetUserAccountData``):
  ``calculate_user_account_data``, whose six first fields are ``Pool.getUserAccountData``.
* ``logic/LiquidationLogic.sol``: the 50%/100% close factor (``max_debt_to_cover``), the eMode
  bonus / price-source choice (``liquidation_configuration``) and
  ``calculate_available_collateral_to_liquidate``.

Everything works on Python ints, in the same order as the contracts, so that every integer
division truncates at the same place. Where the contract reverts, this module raises:

* ``OverflowError`` for checked-arithmetic overflow/underflow (Solidity 0.8 ``Panic(0x11)``) and
  for the ``revert(0, 0)`` overflow guards of the WadRayMath/PercentageMath assembly;
* ``ZeroDivisionError`` for a division by zero (``Panic(0x12)`` or the assembly guards);
* ``ValueError`` for inputs that could not be passed to the contract at all (negative, wider than
  the Solidity type) or for a ``require`` such as ``INVALID_RESERVE_INDEX``.

Both ``OverflowError`` and ``ZeroDivisionError`` are subclasses of ``ArithmeticError``.

Later releases (3.1 ... 3.6)
---------------------------
Each rule that changed is mirrored beside the 3.0.2 one, in a function named after the contract
function (suffix = the release that introduced it), and chosen by an
:class:`~onchain.protocols.aave_v3.rules.AaveRules` (from the Pool's revision, see ``rules.py``
for the list of changes). Sources: npm ``@aave-dao/aave-v3-origin`` 3.6.0 and the tagged
releases v3.1.0 ... v3.5.0 of aave-dao/aave-v3-origin. Not mirrored: GHO's discounted debt under
3.3 (``GenericLogic`` then reads the GHO debt token's ``balanceOf``), the L2
``PriceOracleSentinel``.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from onchain.protocols.aave_v3.rules import V3_0_2, AaveRules

AAVE_VERSION = "3.0.2"  # the release the functions without a suffix mirror

UINT256_MAX = 2**256 - 1
UINT40_MAX = 2**40 - 1
ZERO_ADDRESS = "0x0000000000000000000000000000000000000000"

# WadRayMath
WAD = 10**18
HALF_WAD = 5 * 10**17
RAY = 10**27
HALF_RAY = 5 * 10**26
WAD_RAY_RATIO = 10**9

# PercentageMath (basis points, 1e4 = 100.00%)
PERCENTAGE_FACTOR = 10**4
HALF_PERCENTAGE_FACTOR = 5 * 10**3

# MathUtils (365 days, leap years ignored)
SECONDS_PER_YEAR = 365 * 24 * 3600

# LiquidationLogic / ValidationLogic
DEFAULT_LIQUIDATION_CLOSE_FACTOR = 5 * 10**3
MAX_LIQUIDATION_CLOSE_FACTOR = 10**4
CLOSE_FACTOR_HF_THRESHOLD = 95 * 10**16
HEALTH_FACTOR_LIQUIDATION_THRESHOLD = 10**18
MINIMUM_HEALTH_FACTOR_LIQUIDATION_THRESHOLD = 95 * 10**16

# LiquidationLogic 3.3+
MIN_BASE_MAX_CLOSE_FACTOR_THRESHOLD = 2000 * 10**8
MIN_LEFTOVER_BASE = MIN_BASE_MAX_CLOSE_FACTOR_THRESHOLD // 2

# ReserveConfiguration / UserConfiguration
MAX_RESERVES_COUNT = 128
DEBT_CEILING_DECIMALS = 2


# --------------------------------------------------------------------------------------------
# uint256 helpers: they make the Solidity 0.8 checked arithmetic explicit.
# --------------------------------------------------------------------------------------------


def _uint(value: int, name: str, bits: int = 256) -> int:
    """Reject what the ABI could not encode, so a wrong input never looks like a revert."""
    if type(value) is int and value >= 0 and not value >> bits:  # the common case, first
        return value
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{name} must be an int, got {type(value).__name__}")
    if value < 0 or value >> bits:
        raise ValueError(f"{name}={value} does not fit in uint{bits}")
    return value


def _checked(value: int) -> int:
    """Solidity 0.8 checked result: Panic(0x11) when outside uint256."""
    if value < 0 or value > UINT256_MAX:
        raise OverflowError("arithmetic overflow/underflow (Panic 0x11)")
    return value


def _mul(a: int, b: int) -> int:
    return _checked(a * b)


def _add(a: int, b: int) -> int:
    return _checked(a + b)


def _sub(a: int, b: int) -> int:
    return _checked(a - b)


def _div(a: int, b: int) -> int:
    """Solidity division (checked or not): truncates, Panic(0x12) on zero."""
    if b == 0:
        raise ZeroDivisionError("division by zero (Panic 0x12)")
    return a // b


def _unit(decimals: int) -> int:
    """``10 ** decimals`` computed inside ``unchecked``: wraps modulo 2**256 like the EVM."""
    return pow(10, decimals, 2**256)


# --------------------------------------------------------------------------------------------
# WadRayMath / PercentageMath
# --------------------------------------------------------------------------------------------


def _half_up_mul(a: int, b: int, unit: int, half: int) -> int:
    # Assembly guard: revert if b != 0 and a > (MAX - half) / b.
    if b != 0 and a > (UINT256_MAX - half) // b:
        raise OverflowError("multiplication overflow (assembly revert)")
    return (a * b + half) // unit


def _half_up_div(a: int, b: int, unit: int) -> int:
    # Assembly guard: revert if b == 0 or a > (MAX - b / 2) / unit.
    if b == 0:
        raise ZeroDivisionError("division by zero (assembly revert)")
    if a > (UINT256_MAX - b // 2) // unit:
        raise OverflowError("division overflow (assembly revert)")
    return (a * unit + b // 2) // b


def wad_mul(a: int, b: int) -> int:
    """WadRayMath.wadMul: ``(a * b + HALF_WAD) / WAD``, i.e. half-up rounding."""
    return _half_up_mul(_uint(a, "a"), _uint(b, "b"), WAD, HALF_WAD)


def wad_div(a: int, b: int) -> int:
    """WadRayMath.wadDiv: ``(a * WAD + b / 2) / b``, i.e. half-up rounding."""
    return _half_up_div(_uint(a, "a"), _uint(b, "b"), WAD)


def ray_mul(a: int, b: int) -> int:
    """WadRayMath.rayMul: ``(a * b + HALF_RAY) / RAY``; used for every index application."""
    return _half_up_mul(_uint(a, "a"), _uint(b, "b"), RAY, HALF_RAY)


def ray_div(a: int, b: int) -> int:
    """WadRayMath.rayDiv: ``(a * RAY + b / 2) / b``; used to scale amounts down by an index."""
    return _half_up_div(_uint(a, "a"), _uint(b, "b"), RAY)


def ray_to_wad(a: int) -> int:
    """WadRayMath.rayToWad: divide by 1e9, rounding up when the remainder is >= 0.5e9."""
    _uint(a, "a")
    b, remainder = divmod(a, WAD_RAY_RATIO)
    if remainder >= WAD_RAY_RATIO // 2:
        b += 1
    return b


def wad_to_ray(a: int) -> int:
    """WadRayMath.wadToRay: ``a * 1e9``, reverting when the product does not fit in uint256."""
    _uint(a, "a")
    if a * WAD_RAY_RATIO > UINT256_MAX:
        raise OverflowError("wadToRay overflow (assembly revert)")
    return a * WAD_RAY_RATIO


def percent_mul(value: int, percentage: int) -> int:
    """PercentageMath.percentMul: ``(value * pct + 0.5e4) / 1e4`` (half-up, pct in bps)."""
    return _half_up_mul(
        _uint(value, "value"),
        _uint(percentage, "percentage"),
        PERCENTAGE_FACTOR,
        HALF_PERCENTAGE_FACTOR,
    )


def percent_div(value: int, percentage: int) -> int:
    """PercentageMath.percentDiv: ``(value * 1e4 + pct / 2) / pct`` (half-up, pct in bps)."""
    return _half_up_div(_uint(value, "value"), _uint(percentage, "percentage"), PERCENTAGE_FACTOR)


def _floor_ceil_mul_guard(a: int, b: int) -> None:
    # Assembly guard of the Floor/Ceil variants (3.5): revert if b != 0 and a > MAX / b.
    if b != 0 and a > UINT256_MAX // b:
        raise OverflowError("multiplication overflow (assembly revert)")


def ray_mul_floor(a: int, b: int) -> int:
    """WadRayMath.rayMulFloor (3.5): ``a * b / RAY`` truncated (aToken balances)."""
    _floor_ceil_mul_guard(_uint(a, "a"), _uint(b, "b"))
    return a * b // RAY


def ray_mul_ceil(a: int, b: int) -> int:
    """WadRayMath.rayMulCeil (3.5): ``a * b / RAY`` rounded up (debt-token balances)."""
    _floor_ceil_mul_guard(_uint(a, "a"), _uint(b, "b"))
    return -(-(a * b) // RAY)


def _floor_ceil_div_guard(a: int, b: int, unit: int) -> None:
    if b == 0:
        raise ZeroDivisionError("division by zero (assembly revert)")
    if a > UINT256_MAX // unit:
        raise OverflowError("division overflow (assembly revert)")


def ray_div_floor(a: int, b: int) -> int:
    """WadRayMath.rayDivFloor (3.5): ``a * RAY / b`` truncated (aToken mint, debt burn)."""
    _floor_ceil_div_guard(_uint(a, "a"), _uint(b, "b"), RAY)
    return a * RAY // b


def ray_div_ceil(a: int, b: int) -> int:
    """WadRayMath.rayDivCeil (3.5): ``a * RAY / b`` rounded up (aToken burn, debt mint)."""
    _floor_ceil_div_guard(_uint(a, "a"), _uint(b, "b"), RAY)
    return -(-(a * RAY) // b)


def percent_mul_floor(value: int, percentage: int) -> int:
    """PercentageMath.percentMulFloor (3.5): ``value * pct / 1e4`` truncated."""
    _floor_ceil_mul_guard(_uint(value, "value"), _uint(percentage, "percentage"))
    return value * percentage // PERCENTAGE_FACTOR


def percent_mul_ceil(value: int, percentage: int) -> int:
    """PercentageMath.percentMulCeil (3.5): ``value * pct / 1e4`` rounded up."""
    _floor_ceil_mul_guard(_uint(value, "value"), _uint(percentage, "percentage"))
    return -(-(value * percentage) // PERCENTAGE_FACTOR)


def percent_div_ceil(value: int, percentage: int) -> int:
    """PercentageMath.percentDivCeil (3.5): ``value * 1e4 / pct`` rounded up."""
    _floor_ceil_div_guard(_uint(value, "value"), _uint(percentage, "percentage"), PERCENTAGE_FACTOR)
    return -(-(value * PERCENTAGE_FACTOR) // percentage)


def mul_div_ceil(a: int, b: int, c: int) -> int:
    """MathUtils.mulDivCeil (3.5): ``a * b / c`` rounded up; debt in base currency."""
    _uint(a, "a")
    _uint(b, "b")
    if _uint(c, "c") == 0:
        raise ZeroDivisionError("division by zero (assembly revert)")
    _floor_ceil_mul_guard(a, b)
    return -(-(a * b) // c)


def get_atoken_balance(scaled_amount: int, liquidity_index: int) -> int:
    """TokenMath.getATokenBalance (3.5): ``scaled.rayMulFloor(index)``."""
    return ray_mul_floor(scaled_amount, liquidity_index)


def get_vtoken_balance(scaled_amount: int, variable_borrow_index: int) -> int:
    """TokenMath.getVTokenBalance (3.5): ``scaled.rayMulCeil(index)``."""
    return ray_mul_ceil(scaled_amount, variable_borrow_index)


def collateral_balance(scaled_amount: int, liquidity_index: int, rules: AaveRules) -> int:
    """The aToken balance the release's GenericLogic/LiquidationLogic use."""
    if rules.directional_rounding:
        return get_atoken_balance(scaled_amount, liquidity_index)
    return ray_mul(scaled_amount, liquidity_index)


def debt_balance(scaled_amount: int, variable_borrow_index: int, rules: AaveRules) -> int:
    """The variable-debt balance the release's GenericLogic/LiquidationLogic use."""
    if rules.directional_rounding:
        return get_vtoken_balance(scaled_amount, variable_borrow_index)
    return ray_mul(scaled_amount, variable_borrow_index) if scaled_amount else 0


# --------------------------------------------------------------------------------------------
# MathUtils / ReserveLogic
# --------------------------------------------------------------------------------------------


def calculate_linear_interest(rate_ray: int, last_update_ts: int, current_ts: int) -> int:
    """MathUtils.calculateLinearInterest: ``RAY + rate * dt / SECONDS_PER_YEAR`` (supply side).

    The contract reads ``block.timestamp``; here it is ``current_ts``. ``dt < 0`` underflows.
    """
    _uint(rate_ray, "rate_ray")
    _uint(last_update_ts, "last_update_ts", 40)
    _uint(current_ts, "current_ts")
    result = _mul(rate_ray, _sub(current_ts, last_update_ts))
    result = result // SECONDS_PER_YEAR  # unchecked, constant non-zero divisor
    return _add(RAY, result)


def calculate_compounded_interest(rate_ray: int, last_update_ts: int, current_ts: int) -> int:
    """MathUtils.calculateCompoundedInterest: 3-term binomial expansion of (1 + r/T)^n.

    Mirrors the 3.0.2 rounding exactly: ``rate^2`` and ``rate^3`` are taken with ``rayMul`` and
    truncated per second before being multiplied by ``n(n-1)/2`` and ``n(n-1)(n-2)/6``.
    """
    _uint(rate_ray, "rate_ray")
    _uint(last_update_ts, "last_update_ts", 40)
    _uint(current_ts, "current_ts")
    exp = _sub(current_ts, last_update_ts)
    if exp == 0:
        return RAY

    # unchecked block (rayMul still reverts on overflow on its own)
    exp_minus_one = exp - 1
    exp_minus_two = exp - 2 if exp > 2 else 0
    base_power_two = ray_mul(rate_ray, rate_ray) // (SECONDS_PER_YEAR * SECONDS_PER_YEAR)
    base_power_three = ray_mul(base_power_two, rate_ray) // SECONDS_PER_YEAR

    # checked, evaluated left to right like Solidity
    second_term = _mul(_mul(exp, exp_minus_one), base_power_two) // 2
    third_term = _mul(_mul(_mul(exp, exp_minus_one), exp_minus_two), base_power_three) // 6

    linear = _mul(rate_ray, exp) // SECONDS_PER_YEAR
    return _add(_add(_add(RAY, linear), second_term), third_term)


def calculate_compounded_interest_3_4(rate_ray: int, last_update_ts: int, current_ts: int) -> int:
    """MathUtils.calculateCompoundedInterest of 3.4+: ``x = rate * dt / year``,
    ``RAY + x + x.rayMul(x / 2 + x.rayMul(x / 6))`` (an unchecked block, rayMul still guarded)."""
    _uint(rate_ray, "rate_ray")
    _uint(last_update_ts, "last_update_ts", 40)
    _uint(current_ts, "current_ts")
    exp = _sub(current_ts, last_update_ts)
    if exp == 0:
        return RAY
    x = (rate_ray * exp % 2**256) // SECONDS_PER_YEAR
    return (RAY + x + ray_mul(x, (x // 2 + ray_mul(x, x // 6)) % 2**256)) % 2**256


def get_normalized_income(
    liquidity_index: int, current_liquidity_rate: int, last_update_ts: int, block_ts: int
) -> int:
    """ReserveLogic.getNormalizedIncome: the aToken index at ``block_ts`` (linear accrual).

    Returns the stored index unchanged when the reserve was updated in that very block.
    """
    _uint(liquidity_index, "liquidity_index")
    _uint(last_update_ts, "last_update_ts", 40)
    _uint(block_ts, "block_ts")
    if last_update_ts == block_ts:
        return liquidity_index
    return ray_mul(
        calculate_linear_interest(current_liquidity_rate, last_update_ts, block_ts),
        liquidity_index,
    )


def get_normalized_debt(
    variable_borrow_index: int,
    current_variable_borrow_rate: int,
    last_update_ts: int,
    block_ts: int,
    rules: AaveRules = V3_0_2,
) -> int:
    """ReserveLogic.getNormalizedDebt: the variable debt index at ``block_ts`` (compounded with
    the release's ``calculateCompoundedInterest``).

    Returns the stored index unchanged when the reserve was updated in that very block.
    """
    _uint(variable_borrow_index, "variable_borrow_index")
    _uint(last_update_ts, "last_update_ts", 40)
    _uint(block_ts, "block_ts")
    if last_update_ts == block_ts:
        return variable_borrow_index
    compound = (
        calculate_compounded_interest_3_4
        if rules.compounded_interest_34
        else calculate_compounded_interest
    )
    return ray_mul(
        compound(current_variable_borrow_rate, last_update_ts, block_ts), variable_borrow_index
    )


# --------------------------------------------------------------------------------------------
# ReserveConfiguration (3.0.2 layout)
# --------------------------------------------------------------------------------------------

# field name -> (start bit, width in bits); taken from the *_MASK / *_START_BIT_POSITION
# constants of ReserveConfiguration.sol 3.0.2; bit 252 (virtual accounting) is 3.1+. Since 3.2 bits
# 59 (stable) and 168-175 (eMode category) are deprecated and no longer maintained.
RESERVE_CONFIGURATION_LAYOUT: dict[str, tuple[int, int]] = {
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
    "virtual_accounting": (252, 1),  # 3.1+; always 0 before
}

_BOOL_FIELDS = frozenset(
    name for name, (_start, width) in RESERVE_CONFIGURATION_LAYOUT.items() if width == 1
)


@dataclass(frozen=True, slots=True)
class ReserveConfiguration:
    """Decoded ``ReserveConfigurationMap.data``; bps fields are in 1e4 = 100.00%.

    Caps are in whole tokens (0 = no cap); ``debt_ceiling`` has DEBT_CEILING_DECIMALS (2).
    """

    ltv: int
    liquidation_threshold: int
    liquidation_bonus: int
    decimals: int
    active: bool
    frozen: bool
    borrowing_enabled: bool
    stable_borrowing_enabled: bool
    paused: bool
    borrowable_in_isolation: bool
    siloed_borrowing: bool
    flash_loan_enabled: bool
    reserve_factor: int
    borrow_cap: int
    supply_cap: int
    liquidation_protocol_fee: int
    emode_category: int
    unbacked_mint_cap: int
    debt_ceiling: int
    virtual_accounting: bool = False


def decode_reserve_configuration(bitmap: int) -> ReserveConfiguration:
    """Unpack ``getConfiguration(asset).data`` exactly like the ReserveConfiguration getters."""
    _uint(bitmap, "bitmap")
    values: dict[str, Any] = {}  # int or bool per field, as the dataclass declares
    for name, (start, width) in RESERVE_CONFIGURATION_LAYOUT.items():
        raw = (bitmap >> start) & ((1 << width) - 1)
        values[name] = raw != 0 if name in _BOOL_FIELDS else raw
    return ReserveConfiguration(**values)


# --------------------------------------------------------------------------------------------
# UserConfiguration: two bits per reserve id, bit 2*id = borrowing, bit 2*id+1 = collateral.
# --------------------------------------------------------------------------------------------

BORROWING_MASK = int("55" * 32, 16)
COLLATERAL_MASK = int("AA" * 32, 16)


def _reserve_index(reserve_id: int) -> int:
    _uint(reserve_id, "reserve_id")
    if reserve_id >= MAX_RESERVES_COUNT:
        raise ValueError(f"reserve_id={reserve_id} >= {MAX_RESERVES_COUNT} (INVALID_RESERVE_INDEX)")
    return reserve_id


def is_using_as_collateral(user_config: int, reserve_id: int) -> bool:
    """UserConfiguration.isUsingAsCollateral: bit ``2 * id + 1``."""
    _uint(user_config, "user_config")
    return (user_config >> ((_reserve_index(reserve_id) << 1) + 1)) & 1 != 0


def is_borrowing(user_config: int, reserve_id: int) -> bool:
    """UserConfiguration.isBorrowing: bit ``2 * id``."""
    _uint(user_config, "user_config")
    return (user_config >> (_reserve_index(reserve_id) << 1)) & 1 != 0


def reserve_bits(user_config: int, reserve_id: int) -> int:
    """Both bits of a reserve in one look (1: borrowing, 2: collateral), checked as the three
    tests above check them: for loops over every reserve of every account."""
    _uint(user_config, "user_config")
    return (user_config >> (_reserve_index(reserve_id) << 1)) & 3


def is_using_as_collateral_or_borrowing(user_config: int, reserve_id: int) -> bool:
    """UserConfiguration.isUsingAsCollateralOrBorrowing: either of the two bits."""
    _uint(user_config, "user_config")
    return (user_config >> (_reserve_index(reserve_id) << 1)) & 3 != 0


def is_borrowing_any(user_config: int) -> bool:
    """UserConfiguration.isBorrowingAny."""
    return _uint(user_config, "user_config") & BORROWING_MASK != 0


def is_using_as_collateral_any(user_config: int) -> bool:
    """UserConfiguration.isUsingAsCollateralAny."""
    return _uint(user_config, "user_config") & COLLATERAL_MASK != 0


def reserve_ids_in_use(user_config: int) -> tuple[int, ...]:
    """Reserve ids with the collateral or the borrowing bit set, ascending (the loop order).

    These are the only reserves ``calculateUserAccountData`` reads, so they are the only
    balances/prices a caller needs to fetch.
    """
    _uint(user_config, "user_config")
    return tuple(i for i in range(MAX_RESERVES_COUNT) if (user_config >> (i << 1)) & 3)


def encode_user_configuration(flags: Iterable[tuple[int, bool, bool]]) -> int:
    """Build a user bitmap from ``(reserve_id, using_as_collateral, borrowing)`` triples."""
    data = 0
    for reserve_id, collateral, borrowing in flags:
        index = _reserve_index(reserve_id) << 1
        if borrowing:
            data |= 1 << index
        if collateral:
            data |= 1 << (index + 1)
    return data


# --------------------------------------------------------------------------------------------
# Account data: GenericLogic.calculateUserAccountData + PoolLogic.executeGetUserAccountData
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class UserReserveInput:
    """Everything ``calculateUserAccountData`` reads for one reserve, at one block.

    ``price_base`` is ``oracle.getAssetPrice(asset)`` (base currency units, 1e8 for USD markets).
    ``normalized_income_ray`` / ``normalized_debt_ray`` are ``getReserveNormalizedIncome`` /
    ``getReserveNormalizedVariableDebt`` at the block (or ``get_normalized_*``).
    ``stable_debt`` is the stable debt token's ``balanceOf`` (already accrued).
    The two flags are the user's configuration bits for ``reserve_id``.
    """

    asset: str
    reserve_id: int
    config: ReserveConfiguration
    price_base: int
    normalized_income_ray: int
    normalized_debt_ray: int
    scaled_atoken_balance: int
    scaled_variable_debt: int
    stable_debt: int
    using_as_collateral: bool
    borrowing: bool


@dataclass(frozen=True, slots=True)
class EModeCategory:
    """An eMode category: ``getEModeCategoryData(id)`` of 3.0.2/3.1 (``price_source`` zero
    address = no override), or ``getEModeCategoryCollateralConfig`` + the bitmaps of 3.2+
    (bit ``i`` = reserve id ``i``; ``ltvzero_bitmap`` exists from 3.6)."""

    id: int
    ltv: int
    liquidation_threshold: int
    liquidation_bonus: int
    price_source: str = ZERO_ADDRESS
    label: str = ""
    collateral_bitmap: int = 0
    borrowable_bitmap: int = 0
    ltvzero_bitmap: int = 0

    @property
    def has_price_source(self) -> bool:
        """True when the category overrides asset prices with one oracle source."""
        return int(self.price_source, 16) != 0


@dataclass(frozen=True, slots=True)
class AssetBreakdown:
    """One reserve's contribution, to explain a health factor.

    ``collateral_*`` are 0 unless the reserve counts as collateral (collateral bit set and
    liquidation threshold != 0; from 3.6 the bit alone), exactly when the contract adds it.
    ``collateral_amount_raw`` is ``scaled.rayMul(normalizedIncome)`` (= ``aToken.balanceOf``;
    ``rayMulFloor`` from 3.5), ``debt_amount_raw`` is ``scaled.rayMul(normalizedDebt) +
    stableDebt`` (``rayMulCeil`` from 3.5). ``ltv_used`` is the LTV the contract averaged (0
    for zero-LTV collateral). ``price_base`` is the price the contract used (the eMode price
    when it overrides the asset's, 3.0.2/3.1).
    """

    asset: str
    collateral_base: int
    debt_base: int
    collateral_amount_raw: int
    debt_amount_raw: int
    ltv_used: int
    liquidation_threshold_used: int
    in_emode: bool
    price_base: int
    reserve_id: int = -1
    counts_as_collateral: bool = False


@dataclass(frozen=True, slots=True)
class UserAccountData:
    """``Pool.getUserAccountData`` (first six fields) plus the zero-LTV flag and the breakdown."""

    total_collateral_base: int
    total_debt_base: int
    available_borrows_base: int
    current_liquidation_threshold: int
    ltv: int
    health_factor: int
    assets: tuple[AssetBreakdown, ...] = ()
    has_zero_ltv_collateral: bool = False

    def as_pool_tuple(self) -> tuple[int, int, int, int, int, int]:
        """The six values in ``getUserAccountData`` return order, for direct comparison."""
        return (
            self.total_collateral_base,
            self.total_debt_base,
            self.available_borrows_base,
            self.current_liquidation_threshold,
            self.ltv,
            self.health_factor,
        )


def is_in_emode_category(user_emode_category: int, asset_emode_category: int) -> bool:
    """EModeLogic.isInEModeCategory (3.0.2, 3.1): the user is in an eMode and the asset's
    reserve configuration names that category."""
    return user_emode_category != 0 and asset_emode_category == user_emode_category


def is_reserve_enabled_on_bitmap(bitmap: int, reserve_index: int) -> bool:
    """EModeConfiguration.isReserveEnabledOnBitmap (3.2+): bit ``reserve_index`` of an eMode
    bitmap (uint128)."""
    _uint(bitmap, "bitmap", 128)
    return (bitmap >> _reserve_index(reserve_index)) & 1 != 0


def in_emode_collateral(
    user_emode_category: int,
    emode: EModeCategory | None,
    config: ReserveConfiguration,
    reserve_id: int,
    rules: AaveRules = V3_0_2,
) -> bool:
    """Whether the user's eMode LT/LTV/bonus apply to this collateral: by the category's
    collateral bitmap from 3.2 on, by the reserve's eMode bits before."""
    if user_emode_category == 0:
        return False
    if not rules.emode_bitmaps:
        return is_in_emode_category(user_emode_category, config.emode_category)
    if emode is None or emode.id != user_emode_category:
        raise ValueError(f"user is in eMode {user_emode_category}: pass its EModeCategory")
    return is_reserve_enabled_on_bitmap(emode.collateral_bitmap, reserve_id)


def get_user_reserve_ltv(
    reserve_ltv: int, emode: EModeCategory | None, user_emode_category: int, reserve_id: int
) -> int:
    """ValidationLogic.getUserReserveLtv (3.6): in the category's collateral bitmap, 0 if in
    its ltvzero bitmap, else the category LTV (even when the reserve LTV is 0); otherwise the
    reserve LTV."""
    if (
        user_emode_category != 0
        and emode is not None
        and is_reserve_enabled_on_bitmap(emode.collateral_bitmap, reserve_id)
    ):
        if is_reserve_enabled_on_bitmap(emode.ltvzero_bitmap, reserve_id):
            return 0
        return emode.ltv
    return reserve_ltv


def calculate_available_borrows(
    total_collateral_base: int, total_debt_base: int, ltv: int, rules: AaveRules = V3_0_2
) -> int:
    """GenericLogic.calculateAvailableBorrows: ``collateral.percentMul(ltv) - debt``, floor 0;
    ``percentMulFloor`` from 3.5."""
    if rules.directional_rounding:
        available = percent_mul_floor(total_collateral_base, ltv)
    else:
        available = percent_mul(total_collateral_base, ltv)
    if available <= total_debt_base:
        return 0
    return available - total_debt_base


def calculate_health_factor(
    total_collateral_base: int, total_debt_base: int, avg_liquidation_threshold: int
) -> int:
    """GenericLogic HF: ``collateral.percentMul(avgLT).wadDiv(debt)``, uint256 max if no debt."""
    if total_debt_base == 0:
        return UINT256_MAX
    return wad_div(percent_mul(total_collateral_base, avg_liquidation_threshold), total_debt_base)


def calculate_health_factor_3_5(weighted_liquidation_threshold: int, total_debt_base: int) -> int:
    """GenericLogic HF of 3.5+: ``Σ(collateral_i · LT_i).wadDiv(debt) / 1e4`` (no truncated
    average LT), uint256 max if no debt."""
    if total_debt_base == 0:
        return UINT256_MAX
    return wad_div(weighted_liquidation_threshold, total_debt_base) // PERCENTAGE_FACTOR


def calculate_user_account_data(
    reserves: Sequence[UserReserveInput],
    user_emode_category: int = 0,
    emode: EModeCategory | None = None,
    emode_asset_price: int | None = None,
    rules: AaveRules = V3_0_2,
) -> UserAccountData:
    """Mirror of ``Pool.getUserAccountData`` (PoolLogic + GenericLogic of ``rules``'s release),
    bit for bit.

    ``reserves``: the reserves with a collateral or borrowing bit set (others are ignored, as in
    the contract); they are visited by ascending ``reserve_id``. ``emode``: the user's category
    data, required when ``user_emode_category != 0``. 3.0.2/3.1 only: ``emode_asset_price`` is
    the oracle price of ``emode.price_source``, required when that source is not the zero
    address; when it is non-zero it replaces the price of every reserve whose eMode category is
    the user's (for collateral *and* debt).

    By release: eMode membership by the category's collateral bitmap and no price source (3.2);
    directional rounding and HF = ``Σ collateral·LT`` wad-divided by debt / 1e4 (3.5); LTV from
    ``getUserReserveLtv`` and collateral with reserve LT 0 counted (3.6).
    """
    _uint(user_emode_category, "user_emode_category", 8)
    ordered = sorted(reserves, key=lambda r: r.reserve_id)
    ids = [r.reserve_id for r in ordered]
    if len(set(ids)) != len(ids):
        raise ValueError(f"duplicate reserve ids in {ids}")
    for r in ordered:
        _reserve_index(r.reserve_id)

    # params.userConfig.isEmpty(): early return
    if not any(r.using_as_collateral or r.borrowing for r in ordered):
        return UserAccountData(0, 0, 0, 0, 0, UINT256_MAX, (), False)

    emode_ltv = emode_lt = emode_price = 0
    if user_emode_category != 0:
        if emode is None:
            raise ValueError(f"user is in eMode {user_emode_category}: pass its EModeCategory")
        if emode.id != user_emode_category:
            raise ValueError(
                f"eMode data is for category {emode.id}, user is in {user_emode_category}"
            )
        emode_ltv, emode_lt = emode.ltv, emode.liquidation_threshold
        if emode.has_price_source and not rules.emode_bitmaps:
            if emode_asset_price is None:
                raise ValueError("eMode has a price source: pass emode_asset_price")
            emode_price = _uint(emode_asset_price, "emode_asset_price")

    total_collateral = total_debt = avg_ltv = avg_lt = 0
    has_zero_ltv_collateral = False
    breakdown: list[AssetBreakdown] = []

    for r in ordered:
        if not (r.using_as_collateral or r.borrowing):
            continue
        cfg = r.config
        asset_unit = _unit(cfg.decimals)
        asset_price = (
            emode_price
            if emode_price != 0 and user_emode_category == cfg.emode_category
            else _uint(r.price_base, "price_base")
        )
        in_emode = in_emode_collateral(user_emode_category, emode, cfg, r.reserve_id, rules)

        collateral_base = collateral_amount = ltv_used = lt_used = 0
        counts_as_collateral = r.using_as_collateral and (
            rules.lt_zero_collateral or cfg.liquidation_threshold != 0
        )
        if counts_as_collateral:
            collateral_amount = collateral_balance(
                _uint(r.scaled_atoken_balance, "scaled_atoken_balance"),
                r.normalized_income_ray,
                rules,
            )
            collateral_base = _div(_mul(collateral_amount, asset_price), asset_unit)
            total_collateral = _add(total_collateral, collateral_base)
            if rules.ltvzero_bitmap:
                ltv_used = get_user_reserve_ltv(cfg.ltv, emode, user_emode_category, r.reserve_id)
            elif cfg.ltv != 0:
                ltv_used = emode_ltv if in_emode else cfg.ltv
            if ltv_used != 0:
                avg_ltv = _add(avg_ltv, _mul(collateral_base, ltv_used))
            else:
                has_zero_ltv_collateral = True
            lt_used = emode_lt if in_emode else cfg.liquidation_threshold
            avg_lt = _add(avg_lt, _mul(collateral_base, lt_used))

        debt_base = debt_amount = 0
        if r.borrowing:
            debt_amount = debt_balance(
                _uint(r.scaled_variable_debt, "scaled_variable_debt"), r.normalized_debt_ray, rules
            )
            debt_amount = _add(debt_amount, _uint(r.stable_debt, "stable_debt"))
            if rules.directional_rounding:
                debt_base = mul_div_ceil(debt_amount, asset_price, asset_unit)
            else:
                debt_base = _div(_mul(asset_price, debt_amount), asset_unit)
            total_debt = _add(total_debt, debt_base)

        breakdown.append(
            AssetBreakdown(
                asset=r.asset,
                collateral_base=collateral_base,
                debt_base=debt_base,
                collateral_amount_raw=collateral_amount,
                debt_amount_raw=debt_amount,
                ltv_used=ltv_used,
                liquidation_threshold_used=lt_used,
                in_emode=in_emode,
                price_base=asset_price,
                reserve_id=r.reserve_id,
                counts_as_collateral=counts_as_collateral,
            )
        )

    if rules.directional_rounding:  # from the sum, before the average is truncated
        health_factor = calculate_health_factor_3_5(avg_lt, total_debt)
    # unchecked divisions, guarded by the != 0 test
    avg_ltv = avg_ltv // total_collateral if total_collateral != 0 else 0
    avg_lt = avg_lt // total_collateral if total_collateral != 0 else 0
    if not rules.directional_rounding:
        health_factor = calculate_health_factor(total_collateral, total_debt, avg_lt)

    available = calculate_available_borrows(total_collateral, total_debt, avg_ltv, rules)
    return UserAccountData(
        total_collateral_base=total_collateral,
        total_debt_base=total_debt,
        available_borrows_base=available,
        current_liquidation_threshold=avg_lt,
        ltv=avg_ltv,
        health_factor=health_factor,
        assets=tuple(breakdown),
        has_zero_ltv_collateral=has_zero_ltv_collateral,
    )


# --------------------------------------------------------------------------------------------
# LiquidationLogic (3.0.2)
# --------------------------------------------------------------------------------------------


def close_factor(health_factor: int) -> int:
    """50% when HF > 0.95, else 100% (bps), per ``LiquidationLogic._calculateDebt``."""
    _uint(health_factor, "health_factor")
    if health_factor > CLOSE_FACTOR_HF_THRESHOLD:
        return DEFAULT_LIQUIDATION_CLOSE_FACTOR
    return MAX_LIQUIDATION_CLOSE_FACTOR


def max_debt_to_cover(total_user_debt_of_asset: int, health_factor: int) -> int:
    """Most debt of one asset a single liquidation may repay: ``debt.percentMul(closeFactor)``.

    ``total_user_debt_of_asset`` is stable + variable ``balanceOf`` of the debt reserve. This is
    per reserve in 3.0.2 (3.3 changed it to the whole position).
    """
    return percent_mul(total_user_debt_of_asset, close_factor(health_factor))


def actual_debt_to_liquidate(
    total_user_debt_of_asset: int, health_factor: int, debt_to_cover: int
) -> int:
    """``min(debtToCover, maxLiquidatableDebt)`` as ``_calculateDebt`` returns it."""
    _uint(debt_to_cover, "debt_to_cover")
    return min(debt_to_cover, max_debt_to_cover(total_user_debt_of_asset, health_factor))


def is_liquidatable(health_factor: int) -> bool:
    """ValidationLogic.validateLiquidationCall's HF rule: strictly below 1e18."""
    return _uint(health_factor, "health_factor") < HEALTH_FACTOR_LIQUIDATION_THRESHOLD


def gho_variable_debt_balance(
    scaled_balance: int, index: int, previous_index: int, discount_percent: int
) -> int:
    """GhoVariableDebtToken.balanceOf (GHO on Aave Ethereum, until the 3.4 upgrade made it a
    plain VariableDebtToken): the interest accrued since the user's last action
    (``previous_index``) is reduced by the stkAAVE discount (bps). The Pool's health factor
    never reads it (GenericLogic: ``scaledBalanceOf.rayMul(index)``); 3.0.2-3.2
    LiquidationLogic does (``Helpers.getUserCurrentDebt``), so there the debt a liquidation
    may repay is this smaller amount."""
    if scaled_balance == 0:
        return 0
    balance = ray_mul(scaled_balance, index)
    if index == previous_index or discount_percent == 0:
        return balance
    increase = balance - ray_mul(scaled_balance, previous_index)
    return balance - percent_mul(increase, discount_percent)


def liquidation_grace_running(grace_until: int, block_timestamp: int) -> bool:
    """ValidationLogic.validateLiquidationCall (3.1+): a call seizing or repaying this reserve
    reverts ``LiquidationGraceSentinelCheckFailed`` unless its ``liquidationGracePeriodUntil <
    block.timestamp`` (set by PoolConfigurator ``setReservePause(asset, false, gracePeriod)``)."""
    return _uint(grace_until, "grace_until") >= _uint(block_timestamp, "block_timestamp")


def liquidation_configuration(
    user_emode_category: int,
    emode: EModeCategory | None,
    collateral_config: ReserveConfiguration,
    collateral_asset: str,
    debt_asset: str,
    *,
    collateral_reserve_id: int = -1,
    rules: AaveRules = V3_0_2,
) -> tuple[str, str, int]:
    """LiquidationLogic._getConfigurationData: (collateral price source, debt price source, bonus).

    3.0.2/3.1: in eMode, a collateral of the user's category uses the category bonus (and its
    price source if set); the debt asset uses the category price source whenever one is set.
    3.2+: the category bonus when its collateral bitmap holds the collateral's reserve id; each
    asset is priced by its own oracle source.
    """
    liquidation_bonus = collateral_config.liquidation_bonus
    collateral_source, debt_source = collateral_asset, debt_asset
    if user_emode_category != 0:
        if emode is None or emode.id != user_emode_category:
            raise ValueError(f"user is in eMode {user_emode_category}: pass its EModeCategory")
        if rules.emode_bitmaps:
            if is_reserve_enabled_on_bitmap(emode.collateral_bitmap, collateral_reserve_id):
                liquidation_bonus = emode.liquidation_bonus
            return collateral_source, debt_source, liquidation_bonus
        if is_in_emode_category(user_emode_category, collateral_config.emode_category):
            liquidation_bonus = emode.liquidation_bonus
            if emode.has_price_source:
                collateral_source = emode.price_source
        if emode.has_price_source:
            debt_source = emode.price_source
    return collateral_source, debt_source, liquidation_bonus


def calculate_available_collateral_to_liquidate(
    collateral_price: int,
    debt_asset_price: int,
    collateral_decimals: int,
    debt_asset_decimals: int,
    liquidation_bonus: int,
    debt_to_cover: int,
    user_collateral_balance: int,
    liquidation_protocol_fee: int,
    rules: AaveRules = V3_0_2,
) -> tuple[int, int, int]:
    """LiquidationLogic._calculateAvailableCollateralToLiquidate (3.0.2; 3.5+ rounds the debt
    needed for the whole balance up with ``percentDivCeil``).

    Returns ``(collateral_amount, debt_amount_needed, liquidation_protocol_fee_amount)``:
    collateral sent to the liquidator (fee already deducted), debt actually repaid, and
    collateral sent to the treasury. Prices are those of the price sources chosen by
    ``liquidation_configuration``; ``debt_to_cover`` is already capped by the close factor;
    ``user_collateral_balance`` is ``aToken.balanceOf(user)``; bonus and fee are in bps
    (bonus 10500 = 5% bonus).
    """
    _uint(collateral_price, "collateral_price")
    _uint(debt_asset_price, "debt_asset_price")
    _uint(collateral_decimals, "collateral_decimals", 8)
    _uint(debt_asset_decimals, "debt_asset_decimals", 8)
    _uint(liquidation_bonus, "liquidation_bonus")
    _uint(debt_to_cover, "debt_to_cover")
    _uint(user_collateral_balance, "user_collateral_balance")
    _uint(liquidation_protocol_fee, "liquidation_protocol_fee")

    collateral_unit = _unit(collateral_decimals)
    debt_unit = _unit(debt_asset_decimals)

    base_collateral = _div(
        _mul(_mul(debt_asset_price, debt_to_cover), collateral_unit),
        _mul(collateral_price, debt_unit),
    )
    max_collateral_to_liquidate = percent_mul(base_collateral, liquidation_bonus)

    if max_collateral_to_liquidate > user_collateral_balance:
        collateral_amount = user_collateral_balance
        debt_amount_needed = (percent_div_ceil if rules.directional_rounding else percent_div)(
            _div(
                _mul(_mul(collateral_price, collateral_amount), debt_unit),
                _mul(debt_asset_price, collateral_unit),
            ),
            liquidation_bonus,
        )
    else:
        collateral_amount = max_collateral_to_liquidate
        debt_amount_needed = debt_to_cover

    if liquidation_protocol_fee != 0:
        bonus_collateral = _sub(
            collateral_amount, percent_div(collateral_amount, liquidation_bonus)
        )
        protocol_fee = percent_mul(bonus_collateral, liquidation_protocol_fee)
        return _sub(collateral_amount, protocol_fee), debt_amount_needed, protocol_fee
    return collateral_amount, debt_amount_needed, 0


# --------------------------------------------------------------------------------------------
# LiquidationLogic.executeLiquidationCall, every release: the amounts of one call, or its revert
# --------------------------------------------------------------------------------------------


class LiquidationReverted(Exception):
    """The Pool would revert this liquidationCall; ``reason`` is the contract's error name."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True, slots=True)
class LiquidationSide:
    """One reserve of the call as LiquidationLogic reads it: the borrower's balance (aToken for
    the collateral, variable + stable debt for the debt), the oracle price, decimals; and, for
    the protocol-fee cap, the scaled aToken balance and liquidity index (0 = not given)."""

    balance: int
    price: int
    decimals: int
    scaled_balance: int = 0
    index_ray: int = 0

    @property
    def unit(self) -> int:
        return _unit(self.decimals)


@dataclass(frozen=True, slots=True)
class LiquidationOutcome:
    """What one liquidationCall does: ``debt_repaid`` and ``collateral_to_liquidator`` are the
    ``LiquidationCall`` event's amounts; ``deficit`` maps debt asset -> ``DeficitCreated`` amount
    (3.3+, when the call seizes all the borrower's collateral)."""

    debt_repaid: int
    collateral_to_liquidator: int
    protocol_fee: int
    max_liquidatable_debt: int
    deficit: dict[str, int] = field(default_factory=dict)


def close_factor_max_debt_3_3(
    health_factor: int,
    total_debt_base: int,
    collateral: LiquidationSide,
    debt: LiquidationSide,
    rules: AaveRules,
) -> int:
    """``maxLiquidatableDebt`` of executeLiquidationCall 3.3+: the borrower's whole debt in the
    reserve, except when the collateral and the debt reserve are each worth at least
    ``MIN_BASE_MAX_CLOSE_FACTOR_THRESHOLD`` (2000e8 base) and HF > 0.95: then at most 50% of the
    whole position's debt (``totalDebt.percentMul(5000)`` converted back to the debt asset).
    The reserve debt in base rounds up from 3.5 (``mulDivCeil``)."""
    if rules.directional_rounding:
        debt_base = mul_div_ceil(debt.balance, debt.price, debt.unit)
    else:
        debt_base = _div(_mul(debt.balance, debt.price), debt.unit)
    collateral_base = _div(_mul(collateral.balance, collateral.price), collateral.unit)
    max_debt = debt.balance
    if (
        collateral_base >= MIN_BASE_MAX_CLOSE_FACTOR_THRESHOLD
        and debt_base >= MIN_BASE_MAX_CLOSE_FACTOR_THRESHOLD
        and health_factor > CLOSE_FACTOR_HF_THRESHOLD
    ):
        half_base = percent_mul(total_debt_base, DEFAULT_LIQUIDATION_CLOSE_FACTOR)
        if debt_base > half_base:
            max_debt = _div(_mul(half_base, debt.unit), debt.price)
    return max_debt


def leaves_dust_3_3(
    debt_repaid: int,
    collateral_out: int,
    collateral: LiquidationSide,
    debt: LiquidationSide,
    rules: AaveRules,
) -> bool:
    """The ``MustNotLeaveDust`` test of 3.3+: a call that neither clears the reserve debt nor
    the collateral must leave at least ``MIN_LEFTOVER_BASE`` (1000e8) of both (debt leftover
    rounded up from 3.5). ``collateral_out`` = to the liquidator + protocol fee."""
    if debt_repaid >= debt.balance or collateral_out >= collateral.balance:
        return False
    left_debt = _sub(debt.balance, debt_repaid)
    if rules.directional_rounding:
        left_debt_base = mul_div_ceil(left_debt, debt.price, debt.unit)
    else:
        left_debt_base = _div(_mul(left_debt, debt.price), debt.unit)
    left_collateral_base = _div(
        _mul(_sub(collateral.balance, collateral_out), collateral.price), collateral.unit
    )
    return left_debt_base < MIN_LEFTOVER_BASE or left_collateral_base < MIN_LEFTOVER_BASE


def _capped_protocol_fee(
    collateral_amount: int, fee: int, collateral: LiquidationSide, rules: AaveRules
) -> int:
    """The fee transfer is capped to what the borrower still holds after the collateral burn
    (receiveAToken = false), in scaled units: rayDiv/rayMul (3.0.2) or Ceil/Floor (3.5)."""
    if fee == 0 or collateral.scaled_balance == 0 or collateral.index_ray == 0:
        return fee
    to_scaled = ray_div_ceil if rules.directional_rounding else ray_div
    left = collateral.scaled_balance - to_scaled(collateral_amount, collateral.index_ray)
    if to_scaled(fee, collateral.index_ray) > left:
        left = max(left, 0)
        if rules.directional_rounding:
            return get_atoken_balance(left, collateral.index_ray)
        return ray_mul(left, collateral.index_ray)
    return fee


def execute_liquidation_call(
    *,
    health_factor: int,
    total_collateral_base: int,
    total_debt_base: int,
    collateral: LiquidationSide,
    debt: LiquidationSide,
    liquidation_bonus: int,
    liquidation_protocol_fee: int,
    debt_to_cover: int,
    debt_asset: str = "",
    other_debts: dict[str, int] | None = None,
    rules: AaveRules = V3_0_2,
) -> LiquidationOutcome:
    """LiquidationLogic.executeLiquidationCall's amounts for ``rules``'s release, or
    :class:`LiquidationReverted` where the Pool reverts on them (HF, no debt, dust).

    ``total_*_base`` and ``health_factor`` are the borrower's ``calculateUserAccountData`` at
    the call; ``other_debts`` (asset -> balance) are the borrower's other active debt reserves,
    burned into the deficit when the call seizes all collateral (3.3+). Reserve state checks
    (active, paused, grace period, self-liquidation) are the caller's.
    """
    _uint(debt_to_cover, "debt_to_cover")
    if not is_liquidatable(health_factor):
        raise LiquidationReverted("HealthFactorNotBelowThreshold")
    if debt.balance == 0:
        raise LiquidationReverted("SpecifiedCurrencyNotBorrowedByUser")
    if rules.liquidation_33:
        max_debt = close_factor_max_debt_3_3(
            health_factor, total_debt_base, collateral, debt, rules
        )
    else:
        max_debt = max_debt_to_cover(debt.balance, health_factor)
    actual = min(debt_to_cover, max_debt)
    seized, repaid, fee = calculate_available_collateral_to_liquidate(
        collateral.price,
        debt.price,
        collateral.decimals,
        debt.decimals,
        liquidation_bonus,
        actual,
        collateral.balance,
        liquidation_protocol_fee,
        rules,
    )
    deficit: dict[str, int] = {}
    if rules.liquidation_33:
        if leaves_dust_3_3(repaid, seized + fee, collateral, debt, rules):
            raise LiquidationReverted("MustNotLeaveDust")
        seized_base = _div(_mul(seized + fee, collateral.price), collateral.unit)
        if total_collateral_base == seized_base:  # hasNoCollateralLeft: bad debt is burned
            if debt.balance - repaid:
                deficit[debt_asset] = debt.balance - repaid
            for asset, amount in (other_debts or {}).items():
                if amount:
                    deficit[asset] = deficit.get(asset, 0) + amount
    fee = _capped_protocol_fee(seized, fee, collateral, rules)
    return LiquidationOutcome(repaid, seized, fee, max_debt, deficit)
