"""Morpho Blue 1.0 math in Python ints, mirroring the contract so our verdict is the contract's.

Same names as the Solidity (snake_case), same rounding:
- `MathLib` (wMulDown, wDivDown, wDivUp, mulDivDown, mulDivUp, wTaylorCompounded),
- `SharesMathLib` (virtual shares 1e6, virtual assets 1),
- `UtilsLib` (min, zeroFloorSub),
- `MarketParamsLib.id`,
and the parts of `Morpho.sol` that decide a position's fate: `_accrueInterest`, `_isHealthy`
and `liquidate` (incentive factor, seized/repaid amounts, bad debt).

Source of truth: `@morpho-org/morpho-blue` 1.0.0 (`src/Morpho.sol`, `src/libraries/*`); Morpho
Blue is immutable, so one version covers every deployment. Checked arithmetic that would revert
on-chain (uint128 casts, overflows in absurd markets) is not re-raised here: such a market cannot
accrue or liquidate on-chain either."""

from __future__ import annotations

from dataclasses import dataclass, replace

from eth_abi import encode
from eth_utils import keccak

MORPHO_BLUE_VERSION = "1.0"  # immutable core: every deployment runs these rules
WAD = 10**18
ORACLE_PRICE_SCALE = 10**36
LIQUIDATION_CURSOR = 3 * 10**17  # 0.3
MAX_LIQUIDATION_INCENTIVE_FACTOR = 115 * 10**16  # 1.15
MAX_FEE = 25 * 10**16
VIRTUAL_SHARES = 10**6
VIRTUAL_ASSETS = 1


# -- MathLib --------------------------------------------------------------------------------------


def mul_div_down(x: int, y: int, d: int) -> int:
    return (x * y) // d


def mul_div_up(x: int, y: int, d: int) -> int:
    return (x * y + (d - 1)) // d


def w_mul_down(x: int, y: int) -> int:
    return mul_div_down(x, y, WAD)


def w_div_down(x: int, y: int) -> int:
    return mul_div_down(x, WAD, y)


def w_div_up(x: int, y: int) -> int:
    return mul_div_up(x, WAD, y)


def w_taylor_compounded(x: int, n: int) -> int:
    """First three non-zero terms of e^(nx) - 1: the contract's continuous compounding."""
    first_term = x * n
    second_term = mul_div_down(first_term, first_term, 2 * WAD)
    third_term = mul_div_down(second_term, first_term, 3 * WAD)
    return first_term + second_term + third_term


# -- UtilsLib -------------------------------------------------------------------------------------


def zero_floor_sub(x: int, y: int) -> int:
    return x - y if x > y else 0


# -- SharesMathLib --------------------------------------------------------------------------------


def to_shares_down(assets: int, total_assets: int, total_shares: int) -> int:
    return mul_div_down(assets, total_shares + VIRTUAL_SHARES, total_assets + VIRTUAL_ASSETS)


def to_assets_down(shares: int, total_assets: int, total_shares: int) -> int:
    return mul_div_down(shares, total_assets + VIRTUAL_ASSETS, total_shares + VIRTUAL_SHARES)


def to_shares_up(assets: int, total_assets: int, total_shares: int) -> int:
    return mul_div_up(assets, total_shares + VIRTUAL_SHARES, total_assets + VIRTUAL_ASSETS)


def to_assets_up(shares: int, total_assets: int, total_shares: int) -> int:
    return mul_div_up(shares, total_assets + VIRTUAL_ASSETS, total_shares + VIRTUAL_SHARES)


# -- MarketParamsLib ------------------------------------------------------------------------------


def market_id(loan_token: str, collateral_token: str, oracle: str, irm: str, lltv: int) -> str:
    """keccak256(abi.encode(MarketParams)): the id the contract keys every market by."""
    packed = encode(
        ["address", "address", "address", "address", "uint256"],
        [loan_token, collateral_token, oracle, irm, lltv],
    )
    return "0x" + keccak(packed).hex()


# -- Morpho.sol -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Market:
    """The contract's `Market` struct (all uint128 on-chain)."""

    total_supply_assets: int
    total_supply_shares: int
    total_borrow_assets: int
    total_borrow_shares: int
    last_update: int
    fee: int

    def as_tuple(self) -> tuple[int, int, int, int, int, int]:
        return (
            self.total_supply_assets,
            self.total_supply_shares,
            self.total_borrow_assets,
            self.total_borrow_shares,
            self.last_update,
            self.fee,
        )


@dataclass(frozen=True)
class Accrual:
    """What `_accrueInterest` did: the market after, the interest and the fee shares minted."""

    market: Market
    interest: int
    fee_shares: int


def accrue_interest(market: Market, borrow_rate: int | None, timestamp: int) -> Accrual:
    """`_accrueInterest` at `timestamp` with the IRM's rate for the stored market
    (`borrow_rate` None: the market has no IRM, address(0), and only `last_update` moves).

    Interest depends on the timestamp alone, so this equals the contract's accrual in any block
    with that timestamp (the IRM's `borrowRateView` on the stored market gives the rate its
    `borrowRate` would)."""
    elapsed = timestamp - market.last_update
    if elapsed <= 0:
        return Accrual(market, 0, 0)
    if borrow_rate is None:
        return Accrual(replace(market, last_update=timestamp), 0, 0)
    interest = w_mul_down(market.total_borrow_assets, w_taylor_compounded(borrow_rate, elapsed))
    total_borrow_assets = market.total_borrow_assets + interest
    total_supply_assets = market.total_supply_assets + interest
    total_supply_shares = market.total_supply_shares
    fee_shares = 0
    if market.fee != 0:
        fee_amount = w_mul_down(interest, market.fee)
        # the supply already includes the fee amount: subtract it as the contract does
        fee_shares = to_shares_down(
            fee_amount, total_supply_assets - fee_amount, total_supply_shares
        )
        total_supply_shares += fee_shares
    return Accrual(
        Market(
            total_supply_assets,
            total_supply_shares,
            total_borrow_assets,
            market.total_borrow_shares,
            timestamp,
            market.fee,
        ),
        interest,
        fee_shares,
    )


def borrowed_assets(borrow_shares: int, market: Market) -> int:
    """A borrower's debt as `_isHealthy` counts it: shares to assets, rounding UP."""
    return to_assets_up(borrow_shares, market.total_borrow_assets, market.total_borrow_shares)


def collateral_value(collateral: int, collateral_price: int) -> int:
    """Collateral quoted in loan-token units, rounding DOWN (price scaled by 1e36)."""
    return mul_div_down(collateral, collateral_price, ORACLE_PRICE_SCALE)


def max_borrow(collateral: int, collateral_price: int, lltv: int) -> int:
    """`collateral.mulDivDown(price, ORACLE_PRICE_SCALE).wMulDown(lltv)`."""
    return w_mul_down(collateral_value(collateral, collateral_price), lltv)


def is_healthy(
    collateral: int, borrow_shares: int, market: Market, collateral_price: int, lltv: int
) -> bool:
    """`_isHealthy`: no borrow shares is healthy; else maxBorrow >= borrowed."""
    if borrow_shares == 0:
        return True
    return max_borrow(collateral, collateral_price, lltv) >= borrowed_assets(borrow_shares, market)


def health_factor(
    collateral: int, borrow_shares: int, market: Market, collateral_price: int, lltv: int
) -> int | None:
    """Our wad health factor for Morpho: maxBorrow * 1e18 / borrowed, rounding down (None
    without debt). It is below 1e18 exactly when `_isHealthy` is false, since
    floor(m * 1e18 / b) < 1e18 <=> m < b."""
    if borrow_shares == 0:
        return None
    borrowed = borrowed_assets(borrow_shares, market)
    return max_borrow(collateral, collateral_price, lltv) * WAD // borrowed


def liquidation_incentive_factor(lltv: int) -> int:
    """min(1.15, 1 / (1 - 0.3 * (1 - lltv))) in wad, with the contract's roundings."""
    return min(
        MAX_LIQUIDATION_INCENTIVE_FACTOR,
        w_div_down(WAD, WAD - w_mul_down(LIQUIDATION_CURSOR, WAD - lltv)),
    )


def liquidation_price(collateral: int, borrowed: int, lltv: int) -> int | None:
    """The HIGHEST oracle price (1e36 scale) at which the position is unhealthy: one unit above
    it `_isHealthy` holds, at it and below it does not. None when the price cannot flip the
    verdict (no debt: never liquidatable; no collateral or zero LLTV: always).

    maxBorrow(p) >= b  <=>  floor(c * p / 1e36) >= ceil(b * 1e18 / lltv) = x
                       <=>  p >= ceil(x * 1e36 / c)   (both floors are of integers)."""
    if borrowed == 0 or collateral == 0 or lltv == 0:
        return None
    least_healthy_value = mul_div_up(borrowed, WAD, lltv)
    least_healthy_price = mul_div_up(least_healthy_value, ORACLE_PRICE_SCALE, collateral)
    return least_healthy_price - 1


@dataclass(frozen=True)
class FullLiquidation:
    """`liquidate` seizing all collateral (or repaying all shares when the collateral is worth
    more than the debt plus incentive): what it repays, seizes and leaves as bad debt."""

    seized_assets: int
    repaid_shares: int
    repaid_assets: int
    bad_debt_assets: int
    bad_debt_shares: int


def full_liquidation(
    collateral: int, borrow_shares: int, market: Market, collateral_price: int, lltv: int
) -> FullLiquidation:
    """Mirror `liquidate` on an accrued market at the given price (the health gate aside)."""
    tba, tbs = market.total_borrow_assets, market.total_borrow_shares
    if borrow_shares == 0:
        return FullLiquidation(0, 0, 0, 0, 0)
    if collateral == 0:  # nothing to seize: the whole debt is unbacked
        return FullLiquidation(
            0, 0, 0, min(tba, to_assets_up(borrow_shares, tba, tbs)), borrow_shares
        )
    lif = liquidation_incentive_factor(lltv)
    seized_quoted = mul_div_up(collateral, collateral_price, ORACLE_PRICE_SCALE)
    shares_for_all = to_shares_up(w_div_up(seized_quoted, lif), tba, tbs)
    if shares_for_all < borrow_shares:
        seized, repaid_shares = collateral, shares_for_all
    else:  # repaying every share seizes less than all: no bad debt is left
        repaid_shares = borrow_shares
        seized = mul_div_down(
            w_mul_down(to_assets_down(borrow_shares, tba, tbs), lif),
            ORACLE_PRICE_SCALE,
            collateral_price,
        )
    repaid_assets = to_assets_up(repaid_shares, tba, tbs)
    tbs_after = tbs - repaid_shares
    tba_after = zero_floor_sub(tba, repaid_assets)
    bad_shares = bad_assets = 0
    if collateral - seized == 0:
        bad_shares = borrow_shares - repaid_shares
        bad_assets = min(tba_after, to_assets_up(bad_shares, tba_after, tbs_after))
    return FullLiquidation(seized, repaid_shares, repaid_assets, bad_assets, bad_shares)
