"""Replay an hourly price history on the devnet's real oracles and record every position's health
as the contracts compute it, hour by hour.

The book is the devnet's seeded borrowers (Aave V3 and Morpho Blue). Prices are replayed as
*relative* moves: hour k sets each volatile asset to its build price times close_k / close_0,
so the book starts at its seeded health factors whatever the price level of the window. Stables
stay at 1. Each hour is one block: the oracle updates of every protocol land together, with the
block timestamp one hour after the previous one (interest accrues as on the chain).

Nobody acts in between (no repay, no liquidation), so each position's scaled balances, shares
and configuration are read once; every hour re-reads only the market state (oracle prices,
indexes) and evaluates each position with the adapters' exact integer math — the contracts'
own `getUserAccountData` is compared with it on a sample of accounts and blocks."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from onchain.app.pipeline import load_market, read_markets
from onchain.devnet.build import DevnetInfo
from onchain.devnet.chain import DevChain, calldata
from onchain.devnet.morpho import set_prices_everywhere
from onchain.protocols.base import MarketRef, Position
from onchain.protocols.registry import get_adapter
from onchain.rpc.client import BlockRef, RpcClient

HOUR_S = 3600
WAD = 10**18
# devnet symbol -> the price series that moves it (wrappers follow their underlying)
SERIES_OF_SYMBOL = {"WETH": "ETH", "WBTC": "BTC"}


@dataclass
class _Held:
    """What one position holds: enough to re-evaluate it at any later block."""

    key: str
    market: str  # the market name the replay uses (aave-v3, aave-v3.6, morpho-blue)
    # (market state, block, full): full=False may leave out what only a kept row needs (the
    # per-asset liquidation prices); the health factor and verdict are always exact
    evaluate: Callable[[Any, BlockRef, bool], Position]


@dataclass
class ReplayResult:
    """Health of every position at every replayed hour (row k = after the k-th price update)."""

    keys: list[str]
    protocols: list[str]
    times_s: npt.NDArray[np.int64]  # (K,) history time of each row (the candle close)
    history_index: npt.NDArray[np.int64]  # (K,) row in the aligned history
    health: npt.NDArray[np.float64]  # (K, N) HF, inf without debt
    liquidatable: npt.NDArray[np.bool_]  # (K, N) the contracts' verdict (HF < 1)
    positions: dict[int, list[Position]] = field(default_factory=dict)  # row -> positions
    # row -> {book column "market:asset": (supply rate, borrow rate)}, ln growth per second of
    # what a unit supplied / borrowed there owes or earns (the interest the book carries)
    rates: dict[int, dict[str, tuple[float, float]]] = field(default_factory=dict)
    blocks: list[int] = field(default_factory=list)
    verified: int = 0  # positions compared with getUserAccountData, all equal
    seconds: float = 0.0


def _aave_holder(adapter: Any, p: Position, name: str) -> _Held:
    cfg = int(p.extra["user_configuration"])
    emode = int(p.extra["emode_category"])
    balances = {
        (int(k.split(":")[0]), k.split(":")[1]): int(v)
        for k, v in p.extra["scaled_balances"].items()
    }
    account = p.account

    def evaluate(state: Any, block: BlockRef, full: bool) -> Position:
        return adapter.position(state, account, cfg, emode, balances, block, flip_prices=full)

    return _Held(f"{name}:{account}", name, evaluate)


def _morpho_holder(adapter: Any, p: Position) -> _Held:
    shares = int(p.extra["borrow_shares"])
    collateral = sum(a.collateral_raw for a in p.assets)
    market_id, account = p.market, p.account

    def evaluate(state: Any, block: BlockRef, full: bool) -> Position:
        market = next(m for m in state.markets if m.id == market_id)
        return adapter.position(state, market, account, shares, collateral, block)

    return _Held(f"morpho-blue:{market_id[:10]}:{account}", "morpho-blue", evaluate)


def column_rates(name: str, state: Any, before: Any | None) -> dict[str, tuple[float, float]]:
    """Each book column's (supply, borrow) interest rate in force at ``state``: ln growth per
    second. Aave: from the reserve indexes between ``before`` and ``state`` (nobody acts in the
    replay, so the stored rates — and the growth per second — stay those in force at
    ``before``); Morpho: the IRM's borrow rate the state read, collateral earns nothing."""
    out: dict[str, tuple[float, float]] = {}
    if name == "morpho-blue":
        for m in state.markets:
            rate = (m.borrow_rate or 0) / WAD
            out[f"{m.id.lower()}:{m.loan_token.lower()}"] = (0.0, rate)
            out.setdefault(f"{m.id.lower()}:{m.collateral_token.lower()}", (0.0, 0.0))
        return out
    if before is None:
        return out
    dt = state.block.timestamp - before.block.timestamp
    if dt <= 0:
        return out
    provider = state.addresses_provider.lower()
    for r in state.reserves:
        prev = before.by_asset.get(r.asset)
        if prev is None or not prev.normalized_income_ray or not prev.normalized_debt_ray:
            continue
        supply = float(np.log(r.normalized_income_ray / prev.normalized_income_ray)) / dt
        borrow = float(np.log(r.normalized_debt_ray / prev.normalized_debt_ray)) / dt
        out[f"{provider}:{r.asset.lower()}"] = (supply, borrow)
    return out


def _health(p: Position) -> float:
    return float("inf") if p.health_factor is None else p.health_factor / WAD


def replay(
    info: DevnetInfo,
    client: RpcClient,
    history_index: Sequence[int],
    times_s: Sequence[int],
    prices_usd: Sequence[dict[str, float]],
    keep_rows: set[int],
    *,
    protocols: Sequence[str] = ("aave-v3", "aave-v3.6", "morpho-blue"),
    verify_rows: set[int] | None = None,
    verify_accounts: int = 8,
    progress: Callable[[int, int], None] | None = None,
) -> ReplayResult:
    """Publish ``prices_usd[k]`` (devnet symbol -> USD) one hour apart and evaluate the book.

    Row 0 is the start of the window: its prices are published too (equal to the build's when
    the caller rescales). Positions are kept (for scoring) only at ``keep_rows``."""
    import time

    started = time.monotonic()
    chain = DevChain(info.rpc_url)
    refs: list[tuple[str, MarketRef]] = []
    if "aave-v3" in protocols:
        refs.append(("aave-v3", MarketRef("aave-v3", info.aave.addresses_provider)))
    m36 = getattr(info, "aave36", None)
    if "aave-v3.6" in protocols and m36 is not None:
        refs.append(
            (
                "aave-v3.6",
                MarketRef("aave-v3", m36.addresses_provider, m36.deploy_block, m36.version),
            )
        )
    if "morpho-blue" in protocols and info.morpho is not None:
        refs.append(("morpho-blue", MarketRef("morpho-blue", info.morpho.morpho)))
    head = chain.rpc("eth_getBlockByNumber", ["latest", False])
    t0 = int(head["timestamp"], 16) + HOUR_S
    held: list[_Held] = []
    first_states: dict[str, Any] = {}
    result_rows_h: list[npt.NDArray[np.float64]] = []
    result_rows_l: list[npt.NDArray[np.bool_]] = []
    out = ReplayResult(
        [],
        [],
        np.asarray(times_s, dtype=np.int64),
        np.asarray(history_index, dtype=np.int64),
        np.zeros((0, 0)),
        np.zeros((0, 0), dtype=bool),
    )
    verify_rows = verify_rows or set()
    n_rows = len(prices_usd)
    before: dict[str, Any] = {}
    for k, prices in enumerate(prices_usd):
        chain.rpc("evm_setNextBlockTimestamp", [hex(t0 + k * HOUR_S)])
        number = (
            set_prices_everywhere(info.rpc_url, info.aave, info.morpho, prices)
            if info.morpho
            else _aave_only(info, prices)
        )
        out.blocks.append(number)
        if k == 0:  # the book: every discovered position at the window's start
            reading = read_markets(client, [ref for _name, ref in refs], block_number=number)
            block = reading.block
            states = {name: m.state for (name, _ref), m in zip(refs, reading.markets, strict=True)}
            for (name, ref), read in zip(refs, reading.markets, strict=True):
                adapter = get_adapter(ref.protocol)
                for p in read.positions:
                    if not p.has_debt:
                        continue
                    held.append(
                        _morpho_holder(adapter, p)
                        if name == "morpho-blue"
                        else _aave_holder(adapter, p, name)
                    )
            out.keys = [h.key for h in held]
            out.protocols = [h.market for h in held]
            first_states = states
        else:
            block = client.pin_block(number)
            states = {name: load_market(client, ref, block) for name, ref in refs}
        for name, state in states.items():
            # eMode categories that only accounts name were read with the positions at row 0;
            # they do not change while nobody governs (an eMode price source would be re-read)
            for attr in ("emode_categories", "emode_prices"):
                known = getattr(first_states[name], attr, None)
                if known is not None:
                    for cid, value in known.items():
                        getattr(state, attr).setdefault(cid, value)
        keep = k in keep_rows
        if before:
            # rates in force over the last hour; row 0's are those over the first hour (the
            # stored rates nobody changes, see column_rates)
            for row in ([k - 1] if k - 1 in keep_rows else []) + ([k] if keep else []):
                if row in out.rates:
                    continue
                out.rates[row] = {}
                for name, state in states.items():
                    own = before[name] if row < k and name == "morpho-blue" else state
                    out.rates[row].update(column_rates(name, own, before.get(name)))
        before = states
        positions = [h.evaluate(states[h.market], block, keep) for h in held]
        result_rows_h.append(np.array([_health(p) for p in positions]))
        result_rows_l.append(np.array([p.liquidatable for p in positions], dtype=bool))
        if keep:
            out.positions[k] = positions
        if k in verify_rows:
            out.verified += _verify(chain, info, positions, number, verify_accounts)
        if progress:
            progress(k + 1, n_rows)
    out.health = np.vstack(result_rows_h) if result_rows_h else np.zeros((0, 0))
    out.liquidatable = np.vstack(result_rows_l) if result_rows_l else np.zeros((0, 0), dtype=bool)
    out.seconds = time.monotonic() - started
    return out


def _aave_only(info: DevnetInfo, prices: dict[str, float]) -> int:
    from onchain.devnet.control import set_prices

    return set_prices(info.rpc_url, info.aave, prices)


class ExactnessError(AssertionError):
    """Our health factor differs from the contract's: the backtest would score the wrong outcome."""


def _verify(
    chain: DevChain, info: DevnetInfo, positions: list[Position], block: int, n: int
) -> int:
    """Compare our Aave HF with `getUserAccountData` at ``block`` for the riskiest accounts of
    each Aave market."""
    pools = {info.aave.addresses_provider.lower(): info.aave.pool}
    m36 = getattr(info, "aave36", None)
    if m36 is not None:
        pools[m36.addresses_provider.lower()] = m36.pool
    checked = 0
    for provider, pool in pools.items():
        checked += _verify_pool(
            chain, pool, [p for p in positions if p.market.lower() == provider], block, n
        )
    return checked


def _verify_pool(chain: DevChain, pool: str, positions: list[Position], block: int, n: int) -> int:
    aave = [p for p in positions if p.protocol == "aave-v3" and p.health_factor is not None]
    aave.sort(key=lambda p: p.health_factor or 0)
    checked = 0
    for p in aave[:n]:
        data = chain.call(
            pool,
            calldata("getUserAccountData(address)", p.account),
            hex(block),
        )
        hf = int.from_bytes(data[160:192], "big")
        if hf != p.health_factor:
            raise ExactnessError(
                f"{p.account} at block {block}: contract HF {hf}, ours {p.health_factor}"
            )
        checked += 1
    return checked
