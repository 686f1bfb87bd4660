"""Shared by several test modules (moved out of test_aave_math.py)."""

from __future__ import annotations

from dataclasses import replace

from onchain.protocols.aave_v3.math import (
    RAY,
    ReserveConfiguration,
    UserReserveInput,
    decode_reserve_configuration,
)

BASE_CONFIG = decode_reserve_configuration(0)


def make_config(
    ltv: int, lt: int, decimals: int = 18, emode: int = 0, bonus: int = 10_500
) -> ReserveConfiguration:
    return replace(
        BASE_CONFIG,
        ltv=ltv,
        liquidation_threshold=lt,
        liquidation_bonus=bonus,
        decimals=decimals,
        emode_category=emode,
        active=True,
        borrowing_enabled=True,
    )


def reserve(
    asset: str,
    reserve_id: int,
    config: ReserveConfiguration,
    price: int,
    *,
    supplied: int = 0,
    borrowed: int = 0,
    stable: int = 0,
    collateral: bool | None = None,
    income: int = RAY,
    debt_index: int = RAY,
) -> UserReserveInput:
    """A reserve where ``supplied`` / ``borrowed`` are scaled balances."""
    return UserReserveInput(
        asset=asset,
        reserve_id=reserve_id,
        config=config,
        price_base=price,
        normalized_income_ray=income,
        normalized_debt_ray=debt_index,
        scaled_atoken_balance=supplied,
        scaled_variable_debt=borrowed,
        stable_debt=stable,
        using_as_collateral=supplied > 0 if collateral is None else collateral,
        borrowing=borrowed > 0 or stable > 0,
    )


WETH_CFG = make_config(8_000, 8_250)
USDC_CFG = make_config(7_700, 8_000, decimals=6)
