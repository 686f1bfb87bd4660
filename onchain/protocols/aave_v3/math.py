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

What differs in later versions
------------------------------
Checked against github.com/aave-dao/aave-v3-origin tags v3.1.0 ... v3.5.0; this module does NOT
implement any of it.

* 3.1: ``GenericLogic`` and the math libraries are unchanged; ``LiquidationLogic`` only switches
  to ``updateInterestRatesAndVirtualBalance``. New: a liquidation grace period per reserve
  (checked in ``ValidationLogic.validateLiquidationCall``), LTV set to 0 on freeze, and a
  virtual-accounting flag at bit 252 of the reserve configuration.
* 3.2: stable debt removed (debt = variable debt only); eMode becomes "liquid": per-category
  collateral/borrowable bitmaps replace the reserve's single ``eModeCategory`` field (now
  deprecated), and the eMode price source (oracle) is removed, so every asset is priced by its
  own oracle. The eMode LT/LTV/bonus apply only to reserves enabled in the category's collateral
  bitmap. ``calculateAvailableBorrows`` compares with ``<=`` (same numbers).
* 3.3: close factor is decided on the whole position: 100% by default; 50% of the *total* debt
  (in base currency) only when the reserve's collateral and debt are both
  ``>= MIN_BASE_MAX_CLOSE_FACTOR_THRESHOLD = 2000e8`` and HF > 0.95. A liquidation must either
  clear the debt or the collateral of the reserve, or leave ``>= MIN_LEFTOVER_BASE = 1000e8`` of
  both (else ``MUST_NOT_LEAVE_DUST``). Bad-debt cleanup (debt burned into a reserve deficit when
  no collateral is left). ``GenericLogic`` prices GHO debt (no virtual accounting) with the
  debt token's ``balanceOf``. Reserve-configuration masks are inverted; the remaining fields
  keep their bit positions, bit 59 (stable borrowing) and bits 168-175 (eMode category) no
  longer have getters.
* 3.4: ``MathUtils.calculateCompoundedInterest`` uses a different (unchecked) approximation,
  ``RAY + x + x.rayMul(x / 2 + x.rayMul(x / 6))`` with ``x = rate * exp / SECONDS_PER_YEAR``, so
  variable borrow indexes can differ from 3.0.2 (size of the difference not checked). The
  user-configuration loop walks the bitmap instead of ``reservesCount`` (same result).
* 3.5: directional rounding: aToken balances round down (``rayMulFloor``), debt-token balances
  round up (``rayMulCeil``), and debt in base currency is rounded up
  (``MathUtils.mulDivCeil``) in ``GenericLogic``, so HFs can be lower than with 3.0.2 rules.
  (Debt rounding up is 3.5, not 3.3: 3.3's ``GenericLogic`` still truncates it.)
* Not checked: 3.6 and later, L2 ``PriceOracleSentinel`` behaviour, GHO discount details.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

AAVE_VERSION = "3.0.2"

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

# ReserveConfiguration / UserConfiguration
MAX_RESERVES_COUNT = 128
DEBT_CEILING_DECIMALS = 2


# --------------------------------------------------------------------------------------------
# uint256 helpers: they make the Solidity 0.8 checked arithmetic explicit.
# --------------------------------------------------------------------------------------------


def _uint(value: int, name: str, bits: int = 256) -> int:
    """Reject what the ABI could not encode, so a wrong input never looks like a revert."""
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
) -> int:
    """ReserveLogic.getNormalizedDebt: the variable debt index at ``block_ts`` (compounded).

    Returns the stored index unchanged when the reserve was updated in that very block.
    """
    _uint(variable_borrow_index, "variable_borrow_index")
    _uint(last_update_ts, "last_update_ts", 40)
    _uint(block_ts, "block_ts")
    if last_update_ts == block_ts:
        return variable_borrow_index
    return ray_mul(
        calculate_compounded_interest(current_variable_borrow_rate, last_update_ts, block_ts),
        variable_borrow_index,
    )


# --------------------------------------------------------------------------------------------
# ReserveConfiguration (3.0.2 layout)
# --------------------------------------------------------------------------------------------

# field name -> (start bit, width in bits); taken from the *_MASK / *_START_BIT_POSITION
# constants of ReserveConfiguration.sol 3.0.2. Bits 252..255 are unused in 3.0.2.
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


def decode_reserve_configuration(bitmap: int) -> ReserveConfiguration:
    """Unpack ``getConfiguration(asset).data`` exactly like the ReserveConfiguration getters."""
    _uint(bitmap, "bitmap")
    values: dict[str, int | bool] = {}
    for name, (start, width) in RESERVE_CONFIGURATION_LAYOUT.items():
        raw = (bitmap >> start) & ((1 << width) - 1)
        values[name] = raw != 0 if name in _BOOL_FIELDS else raw
    return ReserveConfiguration(**values)  # type: ignore[arg-type]


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
    """``Pool.getEModeCategoryData(id)`` of 3.0.2; ``price_source`` zero address = no override."""

    id: int
    ltv: int
    liquidation_threshold: int
    liquidation_bonus: int
    price_source: str = ZERO_ADDRESS
    label: str = ""

    @property
    def has_price_source(self) -> bool:
        """True when the category overrides asset prices with one oracle source."""
        return int(self.price_source, 16) != 0


@dataclass(frozen=True, slots=True)
class AssetBreakdown:
    """One reserve's contribution, to explain a health factor.

    ``collateral_*`` are 0 unless the reserve counts as collateral (collateral bit set and
    liquidation threshold != 0), exactly when the contract adds it. ``collateral_amount_raw`` is
    ``scaled.rayMul(normalizedIncome)`` (= ``aToken.balanceOf``), ``debt_amount_raw`` is
    ``scaled.rayMul(normalizedDebt) + stableDebt``. ``ltv_used`` is 0 when the reserve LTV is
    0 (the eMode LTV is then ignored too). ``price_base`` is the price the contract used (the
    eMode price when it overrides the asset's).
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
    """EModeLogic.isInEModeCategory: the user is in an eMode and the asset belongs to it."""
    return user_emode_category != 0 and asset_emode_category == user_emode_category


def calculate_available_borrows(total_collateral_base: int, total_debt_base: int, ltv: int) -> int:
    """GenericLogic.calculateAvailableBorrows: ``collateral.percentMul(ltv) - debt``, floor 0."""
    available = percent_mul(total_collateral_base, ltv)
    if available < total_debt_base:
        return 0
    return available - total_debt_base


def calculate_health_factor(
    total_collateral_base: int, total_debt_base: int, avg_liquidation_threshold: int
) -> int:
    """GenericLogic HF: ``collateral.percentMul(avgLT).wadDiv(debt)``, uint256 max if no debt."""
    if total_debt_base == 0:
        return UINT256_MAX
    return wad_div(percent_mul(total_collateral_base, avg_liquidation_threshold), total_debt_base)


def calculate_user_account_data(
    reserves: Sequence[UserReserveInput],
    user_emode_category: int = 0,
    emode: EModeCategory | None = None,
    emode_asset_price: int | None = None,
) -> UserAccountData:
    """Mirror of ``Pool.getUserAccountData`` (PoolLogic + GenericLogic, 3.0.2), bit for bit.

    ``reserves``: the reserves with a collateral or borrowing bit set (others are ignored, as in
    the contract); they are visited by ascending ``reserve_id``. ``emode``: the user's category
    data, required when ``user_emode_category != 0``. ``emode_asset_price``: the oracle price of
    ``emode.price_source``, required when that source is not the zero address; when it is
    non-zero it replaces the price of every reserve whose eMode category is the user's (for
    collateral *and* debt).
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
        if emode.has_price_source:
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
        in_emode = is_in_emode_category(user_emode_category, cfg.emode_category)

        collateral_base = collateral_amount = ltv_used = lt_used = 0
        counts_as_collateral = cfg.liquidation_threshold != 0 and r.using_as_collateral
        if counts_as_collateral:
            collateral_amount = ray_mul(r.scaled_atoken_balance, r.normalized_income_ray)
            collateral_base = _div(_mul(collateral_amount, asset_price), asset_unit)
            total_collateral = _add(total_collateral, collateral_base)
            if cfg.ltv != 0:
                ltv_used = emode_ltv if in_emode else cfg.ltv
                avg_ltv = _add(avg_ltv, _mul(collateral_base, ltv_used))
            else:
                has_zero_ltv_collateral = True
            lt_used = emode_lt if in_emode else cfg.liquidation_threshold
            avg_lt = _add(avg_lt, _mul(collateral_base, lt_used))

        debt_base = debt_amount = 0
        if r.borrowing:
            debt_amount = _uint(r.scaled_variable_debt, "scaled_variable_debt")
            if debt_amount != 0:
                debt_amount = ray_mul(debt_amount, r.normalized_debt_ray)
            debt_amount = _add(debt_amount, _uint(r.stable_debt, "stable_debt"))
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

    # unchecked divisions, guarded by the != 0 test
    avg_ltv = avg_ltv // total_collateral if total_collateral != 0 else 0
    avg_lt = avg_lt // total_collateral if total_collateral != 0 else 0

    health_factor = calculate_health_factor(total_collateral, total_debt, avg_lt)
    available = calculate_available_borrows(total_collateral, total_debt, avg_ltv)
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


def liquidation_configuration(
    user_emode_category: int,
    emode: EModeCategory | None,
    collateral_config: ReserveConfiguration,
    collateral_asset: str,
    debt_asset: str,
) -> tuple[str, str, int]:
    """LiquidationLogic._getConfigurationData: (collateral price source, debt price source, bonus).

    In eMode, a collateral of the user's category uses the category bonus (and its price source
    if set); the debt asset uses the category price source whenever one is set.
    """
    liquidation_bonus = collateral_config.liquidation_bonus
    collateral_source, debt_source = collateral_asset, debt_asset
    if user_emode_category != 0:
        if emode is None or emode.id != user_emode_category:
            raise ValueError(f"user is in eMode {user_emode_category}: pass its EModeCategory")
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
) -> tuple[int, int, int]:
    """LiquidationLogic._calculateAvailableCollateralToLiquidate of 3.0.2.

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
        debt_amount_needed = percent_div(
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
