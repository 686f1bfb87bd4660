"""Risk tiers for stored snapshots, with a reason for every verdict.

Where the chain is at hand (refresh), the risk module tiers a block's positions
(`risk_tiers`): probability of liquidation within the horizon, one-oracle-update-away
(PENDING), reason codes. The exact verdict still wins: a position the adapter's integer math
calls liquidatable is LIQUIDATABLE whatever the float screen says, and one it calls healthy is
never stored LIQUIDATABLE (CRITICAL then), as `onchain.output.tier_text` shows it.

The health-factor rule (`tier_of`, thresholds from config) is the fallback when the risk
assessment cannot run, and what the assess job applies to rows the risk module did not tier."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from functools import lru_cache
from typing import Protocol, overload

from onchain.app.risk_context import (
    PriceSeries,
    RiskReport,
    RiskSettings,
    assess_positions,
)
from onchain.config import TierThresholds
from onchain.model import LiquidationHold
from onchain.numbers import format_wad as format_wad
from onchain.numbers import format_wads, truncated
from onchain.position_rows import PositionRows
from onchain.protocols.base import MarketSnapshot, Position
from onchain.risk.verdict import RiskVerdict
from onchain.rpc.client import BlockRef, RpcClient
from onchain.store.changes import columns_of
from onchain.store.crud import Assessed, StoredHealth
from onchain.store.models import TIERS

WAD = 10**18


class HasHealth(Protocol):
    """A position as `assess` needs it: a Position, or a stored snapshot row."""

    @property
    def health_factor(self) -> int | None: ...

    @property
    def liquidatable(self) -> bool: ...


def tier_of(health_factor: int | None, liquidatable: bool, tiers: TierThresholds) -> Assessed:
    """LIQUIDATABLE is the protocol's own verdict; the other tiers compare the exact wad."""
    if liquidatable:
        shown = "unknown" if health_factor is None else format_wad(health_factor)
        return Assessed("LIQUIDATABLE", f"liquidatable now: health factor {shown} < 1")
    if health_factor is None:
        return Assessed("SAFE", "no debt")
    shown = format_wad(health_factor)
    below = _health_tier(health_factor, tiers)
    if below is not None:
        name, bound = below
        return Assessed(name, f"health factor {shown} < {format_wad(bound)}")
    return Assessed("SAFE", f"health factor {shown} >= {format_wad(tiers.watch_wad)}")


def _health_tier(health_factor: int, tiers: TierThresholds) -> tuple[str, int] | None:
    """The highest tier whose threshold the exact health factor is below, with the threshold."""
    for name, bound in (
        ("CRITICAL", tiers.critical_wad),
        ("HIGH", tiers.high_wad),
        ("WATCH", tiers.watch_wad),
    ):
        if health_factor < bound:
            return name, bound
    return None


def floored(
    tier: str,
    reasons: list[str],
    health_factor: int | None,
    liquidatable: bool,
    floors: TierThresholds | None,
) -> tuple[str, list[str]]:
    """[risk.tiers] as a floor under the risk module's tier: a position whose exact health
    factor is below a threshold is at least that tier, whatever its probability within a short
    horizon says (a position 1% from liquidation is not SAFE). Adds the reason HF_BELOW_<TIER>."""
    if floors is None or liquidatable or health_factor is None:
        return tier, reasons
    below = _health_tier(health_factor, floors)  # no text: one call per row of a block
    if below is not None and TIERS.index(below[0]) < TIERS.index(tier):
        return below[0], [f"HF_BELOW_{below[0]}", *reasons]
    return tier, reasons


def assess(positions: Iterable[HasHealth], tiers: TierThresholds) -> list[Assessed]:
    """One (tier, reason) per position, in order."""
    return [tier_of(p.health_factor, p.liquidatable, tiers) for p in positions]


def assess_stored(stored: Iterable[StoredHealth], tiers: TierThresholds) -> list[Assessed]:
    """The assess job's rule for a stored snapshot: rows the risk module tiered keep their tier
    (re-tiering them needs the chain at that block); the others get the health-factor rule, so
    a change of [risk.tiers] still reaches them."""
    return [
        Assessed(s.risk_tier, s.risk_reason)
        if s.liquidation_probability is not None
        else tier_of(s.health_factor, s.liquidatable, tiers)
        for s in stored
    ]


@lru_cache(maxsize=256)
def _seconds(value: float) -> str:
    """A horizon as the reason text shows it (one horizon per block: formatted once)."""
    return f"{value / 3600:.1f} h" if value >= 7200 else f"{value:.0f} s"


def risk_assessed(
    position: Position, verdict: RiskVerdict, floors: TierThresholds | None = None
) -> Assessed:
    """One position's stored verdict from the risk module's, under the exact rule and the
    [risk.tiers] health-factor floors (`floored`)."""
    return exact_assessed(
        position.health_factor,
        position.liquidatable,
        position.liquidation_hold,
        verdict,
        floors,
    )


def exact_assessed(
    hf: int | None,
    liquidatable: bool,
    hold: LiquidationHold | None,
    verdict: RiskVerdict,
    floors: TierThresholds | None = None,
) -> Assessed:
    """`risk_assessed` from the exact facts alone: the health factor (wad, None without debt),
    the protocol's "liquidatable now" and the hold that keeps a position below 1 from it."""
    pending = verdict.pending_health_factor
    probability = verdict.liquidation_probability
    horizon = verdict.horizon_s
    tier, text, codes = _exact_verdict(
        hf, liquidatable, hold, verdict.tier, verdict.reasons, pending, probability, horizon, floors
    )
    return Assessed(
        tier,
        text,
        reasons=codes,
        probability=probability,
        pending_health_factor=pending,
        horizon_s=horizon,
        verdict=verdict,
    )


def _exact_verdict(
    hf: int | None,
    liquidatable: bool,
    hold: LiquidationHold | None,
    screened: str,
    reasons: Sequence[str],
    pending: float | None,
    probability: float,
    horizon: float,
    floors: TierThresholds | None,
) -> tuple[str, str, list[str]]:
    """(tier, reason text, reason codes) of `exact_assessed`, from the verdict's fields alone
    (`screened`: the risk module's tier), so a whole book's columns need no verdict per row."""
    tier = "LIQUIDATABLE" if liquidatable else screened
    codes = list(reasons)
    if tier != "LIQUIDATABLE":
        tier, codes = floored(tier, codes, hf, liquidatable, floors)
    shown = "unknown" if hf is None else format_wad(hf)
    if liquidatable:
        if "HF_BELOW_1" not in codes:
            codes.insert(0, "HF_BELOW_1")
        text = f"liquidatable now: health factor {shown} < 1"
    elif hold is not None:  # below 1, but the protocol refuses for now
        codes = ["HF_BELOW_1", "LIQUIDATION_HELD", *(c for c in codes if c != "HF_BELOW_1")]
        tier = "CRITICAL"
        text = f"health factor {shown} < 1, not liquidatable now: {hold.describe()}"
    else:
        screened_below_1 = "HF_BELOW_1" in codes or tier == "LIQUIDATABLE"
        if screened_below_1:
            codes = [c for c in codes if c != "HF_BELOW_1"]  # the exact math says healthy
        if tier == "LIQUIDATABLE":
            tier = "CRITICAL"
        if hf is None:
            text = "no debt"
        else:
            text = f"health factor {shown}"
            if screened_below_1:
                text += " (the float screen put it below 1; the exact math does not)"
    if hf is not None and not liquidatable:
        if tier == "PENDING" and pending is not None:
            text += f", {truncated(pending)} at the next oracle price"
        text += f", P(liquidation within {_seconds(horizon)}) {probability:.2%}"
    if codes and tier != "SAFE":
        text += f" [{', '.join(codes)}]"
    return tier, text, codes


class TierColumns(Sequence[Assessed]):
    """A block's stored verdicts as columns, row by row (`tier`, `reason`, `reasons`,
    `probability`, `pending_health_factor`, `horizon_s`: what the store writes of each row),
    with the row's whole `Assessed` (and its typed `RiskVerdict`, which the alerts read) built
    only when asked for (`self[i]`): a block's book is tens of thousands of rows, of which
    few are written whole."""

    def __init__(
        self,
        tier: Sequence[str],
        reason: Sequence[str],
        reasons: Sequence[list[str] | None],
        probability: Sequence[float | None],
        pending_health_factor: Sequence[float | None],
        horizon_s: Sequence[float | None],
        row: Callable[[int], Assessed],
    ) -> None:
        self.tier = tier
        self.reason = reason
        self.reasons = reasons
        self.probability = probability
        self.pending_health_factor = pending_health_factor
        self.horizon_s = horizon_s
        self._row = row

    @classmethod
    def of(cls, assessed: Sequence[Assessed]) -> TierColumns:
        """Columns read off whole assessments (the health-factor rule's, a test's)."""
        rows = list(assessed)
        c = columns_of(rows)
        return cls(
            c.tier,
            c.reason,
            c.reasons,
            c.probability,
            c.pending_health_factor,
            c.horizon_s,
            rows.__getitem__,
        )

    def __len__(self) -> int:
        return len(self.tier)

    @overload
    def __getitem__(self, i: int) -> Assessed: ...

    @overload
    def __getitem__(self, i: slice) -> list[Assessed]: ...

    def __getitem__(self, i: int | slice) -> Assessed | list[Assessed]:
        if isinstance(i, slice):
            return [self._row(j) for j in range(len(self))[i]]
        if not -len(self) <= i < len(self):
            raise IndexError(i)
        return self._row(i % len(self))

    def at_risk(self) -> int:
        """Rows not SAFE."""
        return len(self.tier) - self.tier.count("SAFE")


def risk_tiers(
    client: RpcClient,
    block: BlockRef,
    positions: Sequence[Position],
    settings: RiskSettings,
    market_snapshot: MarketSnapshot | None = None,
    floors: TierThresholds | None = None,
    stored_prices: Sequence[PriceSeries] = (),
) -> tuple[list[Assessed], RiskReport | None]:
    """One risk assessment for all of a block's positions (one book, one call), then the exact
    verdict applied per position; `stored_prices` (the oracle prices the store kept for the
    market) are a volatility source. Raises when the assessment cannot run: the caller falls back
    to `assess` and records why."""
    health, liquidatable = exact_inputs(positions)
    holds = [p.liquidation_hold for p in positions]
    return _tiers(
        client,
        block,
        positions,
        health,
        liquidatable,
        holds.__getitem__,
        settings,
        market_snapshot,
        floors,
        stored_prices,
    )


def risk_tiers_rows(
    client: RpcClient,
    block: BlockRef,
    rows: PositionRows,
    health_factors: Sequence[int | None],
    liquidatable: Sequence[bool],
    settings: RiskSettings,
    market_snapshot: MarketSnapshot | None = None,
    floors: TierThresholds | None = None,
    stored_prices: Sequence[PriceSeries] = (),
    accounts: Sequence[str] | None = None,
    markets: Sequence[str] | None = None,
) -> tuple[list[Assessed], RiskReport | None]:
    """`risk_tiers` without Position objects: one assessment of the market's book built from
    the adapter's arrays (`RiskRows.risk_rows`), then the exact verdict of each row applied.
    The result equals `risk_tiers` on that block's Positions, row for row.

    Per row of `rows`, in its order, from the exact integer computation: `health_factors`
    (wad, None without debt) and `liquidatable` (HF below 1; a row the protocol holds from
    liquidation, `rows.hold`, is not liquidatable now whether or not the caller applied the
    hold, as `Position.liquidatable`). `accounts` and `markets` (`Position.market`): the
    positions those lists were computed for, checked against the rows' (a misaligned list must
    not tier the wrong position)."""
    columns, report = risk_tier_columns(
        client, block, rows, health_factors, liquidatable, settings, market_snapshot, floors,
        stored_prices, accounts, markets,
    )  # fmt: skip
    return list(columns), report


def risk_tier_columns(
    client: RpcClient,
    block: BlockRef,
    rows: PositionRows,
    health_factors: Sequence[int | None],
    liquidatable: Sequence[bool],
    settings: RiskSettings,
    market_snapshot: MarketSnapshot | None = None,
    floors: TierThresholds | None = None,
    stored_prices: Sequence[PriceSeries] = (),
    accounts: Sequence[str] | None = None,
    markets: Sequence[str] | None = None,
) -> tuple[TierColumns, RiskReport | None]:
    """`risk_tiers_rows` as columns (`TierColumns`): every row's stored verdict without a
    `RiskVerdict` or `Assessed` per row; `columns[i]` is `risk_tiers_rows`' i-th, field for
    field."""
    n = len(rows)
    if len(health_factors) != n or len(liquidatable) != n:
        raise ValueError(
            f"{n} rows but {len(health_factors)} health factors and "
            f"{len(liquidatable)} liquidatable verdicts"
        )
    if accounts is not None and tuple(accounts) != rows.accounts:
        raise ValueError("the exact verdicts are not in the rows' account order")
    if markets is not None and list(markets) != [rows.market_of(i) for i in range(n)]:
        raise ValueError("the exact verdicts are not in the rows' market order")
    holds = {
        i: held
        for i in rows.holds
        if i < n and (held := rows.hold(i, health_factors[i])) is not None
    }
    now = [bool(x) for x in liquidatable]
    for i in holds:
        now[i] = False
    if not n:
        return TierColumns.of([]), None
    report = _report(client, block, rows, settings, market_snapshot, stored_prices)
    return _columns(report, health_factors, now, holds, floors), report


def _tiers(
    client: RpcClient,
    block: BlockRef,
    positions: Sequence[Position],
    health_factors: Sequence[int | None],
    liquidatable: Sequence[bool],
    hold: Callable[[int], LiquidationHold | None],
    settings: RiskSettings,
    market_snapshot: MarketSnapshot | None,
    floors: TierThresholds | None,
    stored_prices: Sequence[PriceSeries],
) -> tuple[list[Assessed], RiskReport | None]:
    if not health_factors:
        return [], None
    report = _report(client, block, positions, settings, market_snapshot, stored_prices)
    assessed = [
        exact_assessed(hf, bool(now), hold(i), report.verdict(i), floors)
        for i, (hf, now) in enumerate(zip(health_factors, liquidatable, strict=True))
    ]
    return assessed, report


def _report(
    client: RpcClient,
    block: BlockRef,
    positions: Sequence[Position] | PositionRows,
    settings: RiskSettings,
    market_snapshot: MarketSnapshot | None,
    stored_prices: Sequence[PriceSeries],
) -> RiskReport:
    """One risk assessment of the block's book."""
    return assess_positions(
        client,
        block,
        positions,
        settings,
        market_snapshots=(market_snapshot,) if market_snapshot is not None else (),
        stored_prices=stored_prices,
    )


def _safe_from(floors: TierThresholds | None) -> int:
    """The exact health factor from which `floored` leaves a SAFE tier SAFE (a position below
    any threshold is at least that tier)."""
    if floors is None:
        return 0
    return max(floors.critical_wad, floors.high_wad, floors.watch_wad)


_NO_CODES: list[str] = []  # shared: never changed in place


def _columns(
    report: RiskReport,
    health_factors: Sequence[int | None],
    liquidatable: list[bool],
    holds: dict[int, LiquidationHold],
    floors: TierThresholds | None,
) -> TierColumns:
    """Every row's `exact_assessed` as columns, from the report's columns (no verdict built);
    a row's whole `Assessed` is built from its `RiskVerdict` when asked for."""
    screened, reasons, probabilities, pendings = report.verdict_columns()
    horizon = report.horizon_s
    within = f", P(liquidation within {_seconds(horizon)}) "
    floor = _safe_from(floors)
    # most of a book: SAFE with no reason (`_exact_verdict`'s text for it, formatted at once)
    plain = bytearray(
        tier == "SAFE" and not why and not now and hf is not None and hf >= floor
        for hf, tier, why, now in zip(health_factors, screened, reasons, liquidatable, strict=True)
    )
    for i in holds:  # a held row is CRITICAL
        plain[i] = False
    rows = [i for i, yes in enumerate(plain) if yes]
    n = len(health_factors)
    tiers, texts = ["SAFE"] * n, [""] * n
    # one empty list for every plain row (nothing changes a row's codes): a new list per row
    # would leave tens of thousands of objects a block for the cyclic collector to walk
    codes: list[list[str]] = [_NO_CODES] * n
    for i, shown in zip(rows, format_wads([health_factors[i] or 0 for i in rows]), strict=True):
        texts[i] = f"health factor {shown}{within}{probabilities[i]:.2%}"
    for i in (i for i, yes in enumerate(plain) if not yes):
        tiers[i], texts[i], codes[i] = _exact_verdict(
            health_factors[i], liquidatable[i], holds.get(i), screened[i], reasons[i],
            pendings[i], probabilities[i], horizon, floors,
        )  # fmt: skip

    def row(i: int) -> Assessed:
        return exact_assessed(
            health_factors[i], liquidatable[i], holds.get(i), report.verdict(i), floors
        )

    return TierColumns(tiers, texts, codes, probabilities, pendings, [horizon] * len(tiers), row)


def exact_inputs(positions: Sequence[Position]) -> tuple[list[int | None], list[bool]]:
    """Health factors and "liquidatable now" per position, the Positions' own: what
    `risk_tiers_rows` takes when the caller has Positions at hand (tests, a full read)."""
    return [p.health_factor for p in positions], [p.liquidatable for p in positions]
