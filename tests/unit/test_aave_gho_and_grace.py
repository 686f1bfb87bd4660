"""GHO's variable-debt discount and the liquidation grace period, from the contracts' own
formulas: GhoVariableDebtToken.balanceOf (discount on the interest accrued since the user's last
action), which only 3.0.2-3.2 liquidations read (their quotes on GHO debt are flagged; the health
factor never reads it), and ValidationLogic's grace check (`until < block.timestamp` passes)."""

from __future__ import annotations

import pytest

from onchain.protocols.aave_v3 import math
from onchain.protocols.aave_v3.adapter import GHO_TOKENS, gho_discount_applies
from onchain.protocols.aave_v3.rules import REVISIONS, V3_0_2, V3_6

RAY = 10**27
GHO = next(iter(GHO_TOKENS))
USDC = "0xa0b86991c6218b36c1d19d4a2e9eb0ce3606eb48"


def test_gho_balance_discounts_only_the_interest_since_the_last_action() -> None:
    scaled = 1_000 * 10**18
    # 30% off the 100 GHO accrued between index 1.0 and 1.1: 1,100 - 30
    assert math.gho_variable_debt_balance(scaled, 11 * RAY // 10, RAY, 3_000) == 1_070 * 10**18
    plain = math.ray_mul(scaled, 11 * RAY // 10)
    assert math.gho_variable_debt_balance(scaled, 11 * RAY // 10, RAY, 0) == plain
    assert math.gho_variable_debt_balance(scaled, RAY, RAY, 3_000) == scaled
    assert math.gho_variable_debt_balance(0, 2 * RAY, RAY, 3_000) == 0
    # a full discount leaves the debt at the last action's value
    assert math.gho_variable_debt_balance(scaled, 2 * RAY, RAY, 10_000) == scaled


def test_only_liquidations_before_3_3_read_the_discounted_balance() -> None:
    reads = {r.version: r.liquidation_debt_balance_of for r in REVISIONS.values()}
    assert reads == {
        "3.0.2": True,
        "3.1": True,
        "3.2": True,
        "3.2.1": True,
        "3.3": False,
        "3.4": False,
        "3.5": False,
        "3.6": False,
    }
    assert gho_discount_applies(V3_0_2, GHO.upper().replace("0X", "0x"))
    assert not gho_discount_applies(V3_6, GHO)
    assert not gho_discount_applies(V3_0_2, USDC)


@pytest.mark.parametrize(("until", "now", "running"), [(0, 1, False), (100, 99, True),
                                                        (100, 100, True), (100, 101, False)])  # fmt: skip
def test_grace_period_runs_through_its_last_second(until: int, now: int, running: bool) -> None:
    assert math.liquidation_grace_running(until, now) is running
