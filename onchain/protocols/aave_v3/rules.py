"""Which Aave V3 rules a Pool runs, chosen in one place from its ``POOL_REVISION``.

Each release's Pool implementation returns a constant revision (``instances/PoolInstance.sol``
of aave-dao/aave-v3-origin; ``protocol/pool/Pool.sol`` of ``@aave/core-v3`` 1.19.3 for 3.0.2).
A revision not in :data:`REVISIONS` is refused (:class:`UnknownProtocolVersion`): its math may
differ in ways nothing here mirrors, so it is never computed with another release's rules.

Rule changes, by the release that introduced them (sources: the tagged releases v3.1.0 ...
v3.6.0 of aave-v3-origin):

* 3.1 (revision 4): liquidation grace period per reserve; virtual accounting
  (``getVirtualUnderlyingBalance`` is the liquidity the Pool counts). Math as 3.0.2.
* 3.2 (5; 3.2.1 = 6): stable debt removed; eMode by per-category bitmaps
  (``getEModeCategoryCollateralConfig`` / ``...CollateralBitmap`` / ``...BorrowableBitmap``),
  no eMode price source; the reserve's eMode bits (168-175) are deprecated.
* 3.3 (7): liquidation: whole reserve debt, or 50% of the whole position's debt when both
  reserves are worth >= 2000e8 base and HF > 0.95; ``MustNotLeaveDust`` under 1000e8; seizing
  all collateral burns the remaining debt into the reserves' deficit. The debt a liquidation
  may repay is ``scaledBalanceOf.rayMul(index)``; before, ``balanceOf`` of the debt token, which
  for GHO on Ethereum is discounted (``math.gho_variable_debt_balance``; the discount itself is
  gone with 3.4). Health factors never read it: they are exact with GHO in every release.
* 3.4 (8): no self-liquidation; ``calculateCompoundedInterest`` becomes
  ``RAY + x + x.rayMul(x/2 + x.rayMul(x/6))``.
* 3.5 (9): directional rounding (``rayMulFloor`` collateral, ``rayMulCeil`` + ``mulDivCeil``
  debt, ``percentMulFloor`` available borrows, ``percentDivCeil`` in liquidations) and
  HF = ``Σ(collateral_i·LT_i).wadDiv(debt) / 1e4``.
* 3.6 (10): LTV from ``ValidationLogic.getUserReserveLtv`` (eMode ``ltvzeroBitmap``); a reserve
  with LT 0 that has the collateral flag counts as collateral (LT 0 unless its eMode gives one).
"""

from __future__ import annotations

from dataclasses import dataclass

from onchain.errors import UnknownProtocolVersion


@dataclass(frozen=True, slots=True)
class AaveRules:
    """The switches of every rule that changed between 3.0.2 and 3.6, for one release."""

    version: str
    revision: int
    stable_debt: bool  # 3.0.2-3.1: stable debt tokens exist and count
    virtual_balance: bool  # 3.1+: Pool.getVirtualUnderlyingBalance is the liquidity
    grace_period: bool  # 3.1+: Pool.getLiquidationGracePeriod blocks liquidations until then
    emode_bitmaps: bool  # 3.2+: eMode membership by the category's collateral bitmap
    ltvzero_bitmap: bool  # 3.6: getEModeCategoryLtvzeroBitmap, getUserReserveLtv
    liquidation_33: bool  # 3.3+: whole-debt / 50%-of-position close factor, dust, deficit
    no_self_liquidation: bool  # 3.4+
    compounded_interest_34: bool  # 3.4+: MathUtils.calculateCompoundedInterest rewritten
    directional_rounding: bool  # 3.5+: Floor/Ceil balances, HF from Σ collateral·LT
    lt_zero_collateral: bool  # 3.6: collateral with reserve LT 0 counts (eMode LT may apply)
    # 3.0.2-3.2: liquidations take the debt from the debt token's balanceOf (GHO's is discounted)
    liquidation_debt_balance_of: bool = False

    @property
    def close_factor_rule(self) -> str:
        """The risk module's name of this release's close-factor rule."""
        return "HALF_OF_POSITION_ABOVE_HF_0_95" if self.liquidation_33 else "HALF_ABOVE_HF_0_95"


_ORDER = ("3.0.2", "3.1", "3.2", "3.2.1", "3.3", "3.4", "3.5", "3.6")


def _rules(version: str, revision: int) -> AaveRules:
    def at_least(release: str) -> bool:
        return _ORDER.index(version) >= _ORDER.index(release)

    return AaveRules(
        version=version,
        revision=revision,
        stable_debt=not at_least("3.2"),
        virtual_balance=at_least("3.1"),
        grace_period=at_least("3.1"),
        emode_bitmaps=at_least("3.2"),
        ltvzero_bitmap=at_least("3.6"),
        liquidation_33=at_least("3.3"),
        no_self_liquidation=at_least("3.4"),
        compounded_interest_34=at_least("3.4"),
        directional_rounding=at_least("3.5"),
        lt_zero_collateral=at_least("3.6"),
        liquidation_debt_balance_of=not at_least("3.3"),
    )


# Pool.POOL_REVISION -> the release whose rules it runs. 3.0.2 is revision 1 as deployed by
# @aave/core-v3 1.19.3; 3.1 ... 3.6 from instances/PoolInstance.sol of each tagged release.
REVISIONS: dict[int, AaveRules] = {
    rev: _rules(version, rev)
    for rev, version in {
        1: "3.0.2",
        4: "3.1",
        5: "3.2",
        6: "3.2.1",
        7: "3.3",
        8: "3.4",
        9: "3.5",
        10: "3.6",
    }.items()
}
V3_0_2 = REVISIONS[1]
V3_6 = REVISIONS[10]
_BY_VERSION = {r.version: r for r in REVISIONS.values()}


def normalize_version(version: str) -> str | None:
    """``"3.6.0"`` and ``"3.6"`` name the same release; None when no release has that name."""
    text = version.strip().removeprefix("v")
    if text in _BY_VERSION:
        return text
    if text.endswith(".0") and text[:-2] in _BY_VERSION and text.count(".") == 2:
        return text[:-2]
    return None


def rules_for(revision: int | None, pinned: str | None = None, *, market: str = "") -> AaveRules:
    """The rules of this Pool. ``pinned`` is the config's ``version``: it names the release when
    the Pool does not say (no ``POOL_REVISION``), and must agree with it when it does."""
    where = f" at {market}" if market else ""
    pin = None
    if pinned is not None:
        name = normalize_version(pinned)
        if name is None:
            known = ", ".join(_BY_VERSION)
            raise UnknownProtocolVersion(
                f"Aave V3 version {pinned!r}{where} is not one onchain knows ({known})"
            )
        pin = _BY_VERSION[name]
    if revision is None:
        if pin is None:
            raise UnknownProtocolVersion(
                f"the Aave Pool{where} has no POOL_REVISION: pin its release with version = ..."
            )
        return pin
    rules = REVISIONS.get(revision)
    if rules is None:
        raise UnknownProtocolVersion(
            f"Aave Pool revision {revision}{where} is not one onchain knows "
            f"(known: {', '.join(f'{r} = {v.version}' for r, v in REVISIONS.items())})"
        )
    if pin is not None and pin.version != rules.version:
        raise UnknownProtocolVersion(
            f"config pins Aave V3 {pin.version}{where} but its Pool is revision {revision} "
            f"({rules.version})"
        )
    return rules
