"""Seed deterministic borrowers on the devnet Aave market: a seeded RNG picks each borrower's
collateral, debt and target health factor; every borrower sends its own transactions (keyless,
impersonated by anvil), grouped so one block holds a few hundred."""

from __future__ import annotations

import math
import random
from dataclasses import asdict, dataclass
from typing import Any

from eth_utils import keccak, to_checksum_address

from onchain.devnet.aave import DEFAULT_ASSETS, STABLE_EMODE, AaveDeployment, AssetSpec
from onchain.devnet.chain import DevChain, calldata
from onchain.errors import DevnetError

UINT256_MAX = 2**256 - 1
BORROWERS_PER_BLOCK = 40
WHALE_SUPPLY_USD_PER_BORROWER = 22_000  # per asset: stables end up well utilised, as on mainnet
BORROW_TOPIC = (
    "0x" + keccak(text="Borrow(address,address,address,uint256,uint8,uint256,uint16)").hex()
)


@dataclass(frozen=True)
class BorrowerPlan:
    address: str
    collateral: dict[str, int]  # symbol -> raw amount
    debt: dict[str, int]  # symbol -> raw amount
    emode: int
    target_health: float

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def seeded_address(seed: int, label: str, index: int) -> str:
    """A deterministic address nobody holds a key for (anvil impersonates it)."""
    return to_checksum_address(keccak(f"onchain-devnet/{seed}/{label}/{index}".encode())[12:])


def _raw(usd: float, spec: AssetSpec) -> int:
    return int(usd / spec.price_usd * 10**spec.decimals)


def plan_borrowers(
    n: int, seed: int, assets: tuple[AssetSpec, ...] = DEFAULT_ASSETS
) -> list[BorrowerPlan]:
    """Many borrowers start between HF 1.03 and 1.5; some in eMode, many with two assets."""
    rng = random.Random(seed)
    by_symbol = {a.symbol: a for a in assets}
    volatile = [a.symbol for a in assets if not a.stable]
    stables = [a.symbol for a in assets if a.stable]
    plans = []
    for i in range(n):
        emode = 0
        kind = rng.random()
        if kind < 0.15 and len(stables) >= 2:
            emode = STABLE_EMODE["id"]
            coll_symbols = [rng.choice(stables)]
            debt_symbols = [s for s in stables if s not in coll_symbols][:1]
        elif kind < 0.55:
            coll_symbols = rng.sample(volatile, k=rng.choice([1, 2]))
            if rng.random() < 0.3:
                coll_symbols.append(rng.choice(stables))
            debt_symbols = rng.sample(stables, k=rng.choice([1, 2]))
        else:
            coll_symbols = [rng.choice(volatile)]
            others = [s for s in volatile if s not in coll_symbols]
            debt_symbols = [rng.choice(stables)] + (
                [others[0]] if others and rng.random() < 0.4 else []
            )
        collateral_usd = {
            s: math.exp(rng.uniform(math.log(1_000), math.log(250_000))) for s in coll_symbols
        }
        weights = {s: rng.uniform(0.3, 1.0) for s in coll_symbols}
        total_w = sum(weights.values())
        total_usd = sum(collateral_usd.values())
        collateral_usd = {s: total_usd * weights[s] / total_w for s in coll_symbols}

        def lt_ltv(symbol: str, emode: int = emode) -> tuple[float, float]:
            spec = by_symbol[symbol]
            if emode and spec.emode_category == emode:
                return STABLE_EMODE["lt"] / 1e4, STABLE_EMODE["ltv"] / 1e4
            return spec.liquidation_threshold_bps / 1e4, spec.ltv_bps / 1e4

        weighted_lt = sum(v * lt_ltv(s)[0] for s, v in collateral_usd.items())
        weighted_ltv = sum(v * lt_ltv(s)[1] for s, v in collateral_usd.items())
        min_health = weighted_lt / weighted_ltv * 1.004
        target = rng.uniform(1.0, 1.5) if rng.random() < 0.65 else rng.uniform(1.5, 3.0)
        target = max(target, min_health)
        debt_usd = weighted_lt / target
        split = [rng.uniform(0.3, 1.0) for _ in debt_symbols]
        debt = {
            s: _raw(debt_usd * w / sum(split), by_symbol[s])
            for s, w in zip(debt_symbols, split, strict=True)
        }
        collateral = {s: _raw(v, by_symbol[s]) for s, v in collateral_usd.items()}
        plans.append(
            BorrowerPlan(
                seeded_address(seed, "borrower", i), collateral, debt, emode, round(target, 4)
            )
        )
    return plans


def supply_whale_liquidity(
    chain: DevChain, market: AaveDeployment, seed: int, n_borrowers: int
) -> str:
    whale = seeded_address(seed, "whale", 0)
    amounts = {
        market.tokens[spec.symbol]: _raw(
            WHALE_SUPPLY_USD_PER_BORROWER * max(n_borrowers, 100), spec
        )
        for spec in DEFAULT_ASSETS
    }
    supply_from(chain, market.pool, whale, amounts)
    return whale


def supply_from(chain: DevChain, pool: str, supplier: str, amounts: dict[str, int]) -> None:
    """Mint each token (address -> raw amount) to `supplier` and supply it to an Aave pool."""
    chain.set_balance([supplier], 10**24)
    for token, amount in amounts.items():
        chain.send(supplier, token, calldata("mint(uint256)", amount), gas=200_000)
        chain.send(
            supplier,
            token,
            calldata("approve(address,uint256)", pool, UINT256_MAX),
            gas=100_000,
        )
        chain.send(
            supplier,
            pool,
            calldata("supply(address,uint256,address,uint16)", token, amount, supplier, 0),
            gas=1_000_000,
        )


def borrower_transactions(
    plan: BorrowerPlan, market: AaveDeployment
) -> list[tuple[str, str, bytes, int]]:
    txs: list[tuple[str, str, bytes, int]] = []
    me = plan.address
    for symbol, amount in plan.collateral.items():
        token = market.tokens[symbol]
        txs.append((me, token, calldata("mint(uint256)", amount), 150_000))
        txs.append(
            (me, token, calldata("approve(address,uint256)", market.pool, UINT256_MAX), 100_000)
        )
        txs.append(
            (
                me,
                market.pool,
                calldata("supply(address,uint256,address,uint16)", token, amount, me, 0),
                600_000,
            )
        )
    if plan.emode:
        txs.append((me, market.pool, calldata("setUserEMode(uint8)", plan.emode), 400_000))
    for symbol, amount in plan.debt.items():
        txs.append(
            (
                me,
                market.pool,
                calldata(
                    "borrow(address,uint256,uint256,uint16,address)",
                    market.tokens[symbol],
                    amount,
                    2,
                    0,
                    me,
                ),
                900_000,
            )
        )
    return txs


def seed_borrowers(chain: DevChain, market: AaveDeployment, plans: list[BorrowerPlan]) -> None:
    """Send each group's transactions into one block; check every borrow landed."""
    seed_in_blocks(
        chain,
        market.pool,
        [(p.address, borrower_transactions(p, market), len(p.debt)) for p in plans],
    )


def seed_in_blocks(
    chain: DevChain,
    pool: str,
    borrowers: list[tuple[str, list[tuple[str, str, bytes, int]], int]],
    per_block: int = BORROWERS_PER_BLOCK,
) -> None:
    """(address, transactions, borrows) per borrower: `per_block` borrowers a block; every
    transaction must land and `pool` must log every borrow."""
    chain.set_balance([b[0] for b in borrowers], 10**21)
    chain.set_automine(False)
    try:
        for start in range(0, len(borrowers), per_block):
            group = borrowers[start : start + per_block]
            txs = [tx for _address, plan_txs, _n in group for tx in plan_txs]
            chain.send_many(txs)
            chain.mine()
            block = chain.rpc("eth_getBlockByNumber", ["latest", False])
            if len(block["transactions"]) != len(txs):
                raise DevnetError(
                    f"block {int(block['number'], 16)} holds {len(block['transactions'])} of {len(txs)} seeding transactions"
                )
            logs = chain.rpc(
                "eth_getLogs",
                [
                    {
                        "address": pool,
                        "fromBlock": block["number"],
                        "toBlock": block["number"],
                        "topics": [BORROW_TOPIC],
                    }
                ],
            )
            expected = sum(n for _address, _txs, n in group)
            if len(logs) != expected:
                raise DevnetError(
                    f"block {int(block['number'], 16)}: {len(logs)} of {expected} borrows succeeded"
                )
    finally:
        chain.set_automine(True)
