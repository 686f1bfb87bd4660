"""Confirmation latency: how long a top-up or repay sent now needs to be included on chain.

    horizon_s = reaction_s + blocks_to_inclusion × block_time_s

``reaction_s`` is the human/keeper time to notice and sign (config); the rest is estimated from
recent blocks (:func:`estimate_chain_latency`) or set per chain in config.

The inclusion model (documented, deliberately simple)
------------------------------------------------------
EIP-1559 chains: a transaction whose fee cap covers the base fee and whose tip is competitive is
included in the next block unless that block is full of better-paying transactions. We estimate
the chance that a block has no room as the share of recent blocks at or above ``full_ratio``
(95% by default) of their gas limit: ``p_full``. Blocks are treated as independent, so the
number of blocks until inclusion is geometric:

    expected blocks      = 1 / (1 - p_full)
    blocks at confidence = ceil(ln(1 - confidence) / ln(p_full))   (>= 1)

The quantile (default confidence 95%) is what the horizon uses: a borrower must plan for the bad
case, not the average. The base fee moves by at most 1/8 per block (EIP-1559), up when blocks are
above target (half the limit). A transaction signed with ``max_fee = fee_cap_multiple × base
fee`` stays includable for ln(fee_cap_multiple)/ln(1.125) consecutive full blocks; when the
recent base-fee trend (least squares on ln base fee per block) would price it out before the
inclusion quantile, ``fee_cap_at_risk`` says so (the sender must bump the fee: advise a higher
cap or add a block of margin). Chains
without EIP-1559 data (base fee 0) use fullness only.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

EIP1559_MAX_CHANGE = 0.125


def confirmation_horizon_s(
    reaction_s: npt.ArrayLike, blocks_to_inclusion: npt.ArrayLike, block_time_s: npt.ArrayLike
) -> npt.NDArray[np.float64]:
    """reaction_s + blocks_to_inclusion × block_time_s (broadcasts)."""
    return np.asarray(reaction_s, dtype=np.float64) + np.asarray(
        blocks_to_inclusion, dtype=np.float64
    ) * np.asarray(block_time_s, dtype=np.float64)


@dataclass(frozen=True)
class ChainLatency:
    """What recent blocks say about inclusion time."""

    block_time_s: float  # median spacing of block timestamps
    fullness: float  # mean gas_used / gas_limit
    p_full: float  # share of blocks at or above full_ratio
    base_fee_trend_per_block: float  # mean relative change of the base fee per block
    expected_blocks: float
    blocks_at_confidence: int
    fee_cap_at_risk: bool  # the base-fee trend would price out a fee_cap_multiple cap first

    def horizon_s(self, reaction_s: float) -> float:
        """The confirmation-latency horizon at the estimator's confidence."""
        return float(
            confirmation_horizon_s(reaction_s, self.blocks_at_confidence, self.block_time_s)
        )


def estimate_chain_latency(
    timestamps_s: npt.ArrayLike,
    gas_used: npt.ArrayLike,
    gas_limit: npt.ArrayLike,
    base_fee_wei: npt.ArrayLike | None = None,
    *,
    full_ratio: float = 0.95,
    confidence: float = 0.95,
    fee_cap_multiple: float = 2.0,
    default_block_time_s: float = 12.0,
) -> ChainLatency:
    """Estimate block time, fullness, base-fee trend and blocks to inclusion (see module doc).

    Arrays are per recent block, oldest first (k >= 2 for a block time).
    """
    ts = np.asarray(timestamps_s, dtype=np.float64)
    used = np.asarray(gas_used, dtype=np.float64)
    limit = np.asarray(gas_limit, dtype=np.float64)
    if ts.size >= 2:
        gaps = np.diff(ts)
        gaps = gaps[gaps > 0]
        block_time = float(np.median(gaps)) if gaps.size else default_block_time_s
    else:
        block_time = default_block_time_s
    ratio = np.divide(used, limit, out=np.zeros_like(used), where=limit > 0)
    fullness = float(ratio.mean()) if ratio.size else 0.0
    p_full = float(np.mean(ratio >= full_ratio)) if ratio.size else 0.0
    p_full = min(p_full, 0.999)  # never "never included"
    expected = 1.0 / (1.0 - p_full)
    quantile = (
        1 if p_full <= 0.0 else max(1, math.ceil(math.log(1.0 - confidence) / math.log(p_full)))
    )
    trend = 0.0
    at_risk = False
    if base_fee_wei is not None:
        fee = np.asarray(base_fee_wei, dtype=np.float64)
        ok = fee > 0
        if ok.sum() >= 2:
            x = np.flatnonzero(ok).astype(np.float64)
            slope = float(np.polyfit(x, np.log(fee[ok]), 1)[0])
            trend = math.expm1(slope)
            if slope > 0.0:
                blocks_until_priced_out = math.log(fee_cap_multiple) / slope
                if blocks_until_priced_out < quantile:
                    at_risk = True
    return ChainLatency(
        block_time_s=block_time,
        fullness=fullness,
        p_full=p_full,
        base_fee_trend_per_block=trend,
        expected_blocks=expected,
        blocks_at_confidence=quantile,
        fee_cap_at_risk=at_risk,
    )


def next_base_fee(
    base_fee_wei: npt.ArrayLike,
    gas_used: npt.ArrayLike,
    gas_limit: npt.ArrayLike,
    elasticity: float = 2.0,
) -> npt.NDArray[np.float64]:
    """EIP-1559 base fee of the next block (float): fee·(1 + 1/8·(used - target)/target)."""
    fee = np.asarray(base_fee_wei, dtype=np.float64)
    target = np.asarray(gas_limit, dtype=np.float64) / elasticity
    used = np.asarray(gas_used, dtype=np.float64)
    return fee * (1.0 + EIP1559_MAX_CHANGE * (used - target) / target)
