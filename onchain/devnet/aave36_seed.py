"""Seed the devnet's Aave V3.6 market: a whale's liquidity, seeded random borrowers (as many as
the 3.0.2 market has) and scenario borrowers, each group built to exercise one 3.2-3.6 rule.

A new borrow cannot start below HF = LT/LTV, so positions under HF 1 are opened while the 3.6
oracle reads temporary feeds quoting WETH and WBTC higher by a factor, then the oracle goes back
to the shared feeds: the 3.0.2 market and the shared feeds never see those prices. Prices at the
end are the devnet's (WETH 3,000, WBTC 60,000, USDC and DAI 1); every scenario's intended health
factor is at those prices. Deterministic: seeded addresses and amounts, fixed block times."""

from __future__ import annotations

import math
import random
from dataclasses import asdict, dataclass
from fractions import Fraction
from typing import Any

from onchain.devnet.aave36 import (
    EMODES,
    RESERVES,
    Aave36Deployment,
    phase_out_ltvzero,
)
from onchain.devnet.chain import DEPLOYER, DevChain, calldata
from onchain.devnet.contracts_build import devnet_contract
from onchain.devnet.seed import UINT256_MAX, seed_in_blocks, seeded_address, supply_from
from onchain.errors import DevnetError

PRICES = {"WETH": 3000, "WBTC": 60000, "USDC": 1, "DAI": 1}  # the devnet's build prices
WHALE_SUPPLY_USD_PER_BORROWER = 22_000
OPEN_MARGIN = 1.02  # borrow at most 1/1.02 of the borrowing power at opening prices
_RESERVES = {r.symbol: r for r in RESERVES}
_EMODES = {e.id: e for e in EMODES}
_EMODE_GROUP = {1: "emode_stablecoins", 2: "emode_majors", 3: "emode_eth"}

# Scenario groups and what each exercises (`Aave36Deployment.scenarios` maps each to borrowers)
SCENARIO_GROUPS: dict[str, str] = {
    "emode_stablecoins": "eMode 1 users (USDC/DAI collateral vs USDC/DAI debt)",
    "emode_lt0_collateral": "eMode 1 users with DAI collateral: LT 0 outside eMode, counts inside (3.6)",
    "emode_majors": "eMode 2 users (WETH/WBTC vs stables); WBTC is ltvzero in 2 after seeding",
    "emode_eth": "eMode 3 users (WETH vs WETH); WETH is in categories 2 and 3",
    "multi_collateral_near_hf1": "2-3 collaterals, HF in [0.97, 1.03] (3.5 HF formula, rounding)",
    "small_under_2000": "collateral and debt under $2,000, HF < 1: whole reserve debt (3.3)",
    "dust_line": "debt or collateral near $1,000, HF < 1: partial calls leave dust (3.3)",
    "bad_debt": "liquidation seizes all collateral; remaining debt burns into deficit (3.3)",
    "half_close_factor": (
        "collateral and debt reserves >= $2,000, HF in (0.95, 1): 50% of position debt; "
        "the second one's cap would leave dust, so the largest call reverts"
    ),
    "two_debt_reserves": "WETH vs USDC + DAI ($1,300 each) near HF 0.99 and 0.93",
    "below_095": "large positions with HF < 0.95: whole reserve debt",
}


@dataclass(frozen=True)
class Plan36:
    """One borrower: eMode first, then supplies, then borrows; `open_factor` scales the WETH and
    WBTC prices the oracle quotes while it opens (1: the real feeds)."""

    address: str
    group: str
    emode: int
    collateral: dict[str, int]
    debt: dict[str, int]
    target_health: float
    open_factor: float = 1.0

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def _raw(usd: float, symbol: str, decimals: dict[str, int]) -> int:
    return int(Fraction(str(round(usd, 6))) / PRICES[symbol] * 10 ** decimals[symbol])


def _lt_ltv(symbol: str, emode: int) -> tuple[float, float]:
    if emode and symbol in _EMODES[emode].collateral:
        e = _EMODES[emode]
        return e.liquidation_threshold / 1e4, e.ltv / 1e4
    r = _RESERVES[symbol]
    return r.liquidation_threshold / 1e4, r.ltv / 1e4


def _open_factor(collateral_usd: dict[str, float], debt_usd: float, emode: int) -> float:
    """The smallest volatile-price factor (rounded up to 0.01) at which the debt can be borrowed."""
    volatile = sum(
        v * _lt_ltv(s, emode)[1] for s, v in collateral_usd.items() if _RESERVES[s].volatile
    )
    stable = sum(
        v * _lt_ltv(s, emode)[1] for s, v in collateral_usd.items() if not _RESERVES[s].volatile
    )
    need = debt_usd * OPEN_MARGIN - stable
    if need <= volatile:
        return 1.0
    if volatile == 0:
        raise DevnetError(f"scenario cannot open: ${debt_usd:,.0f} debt on stable collateral")
    return math.ceil(need / volatile * 100) / 100


def _plan(
    address: str,
    group: str,
    collateral_usd: dict[str, float],
    debt_usd: dict[str, float],
    decimals: dict[str, int],
    emode: int = 0,
) -> Plan36:
    weighted_lt = sum(v * _lt_ltv(s, emode)[0] for s, v in collateral_usd.items())
    total_debt = sum(debt_usd.values())
    return Plan36(
        address=address,
        group=group,
        emode=emode,
        collateral={s: _raw(v, s, decimals) for s, v in collateral_usd.items()},
        debt={s: _raw(v, s, decimals) for s, v in debt_usd.items()},
        target_health=round(weighted_lt / total_debt, 4),
        open_factor=_open_factor(collateral_usd, total_debt, emode),
    )


def plan_scenarios(seed: int, decimals: dict[str, int]) -> list[Plan36]:
    """The scenario borrowers, group by group (USD at the build prices)."""
    rows: list[tuple[str, int, dict[str, float], dict[str, float]]] = [
        # group, eMode, collateral USD, debt USD
        ("emode_lt0_collateral", 1, {"DAI": 1_000}, {"USDC": 900}),  # Pool HF 1.0556
        ("emode_lt0_collateral", 1, {"DAI": 50_000}, {"USDC": 45_500}),
        ("emode_lt0_collateral", 1, {"DAI": 6_000, "USDC": 4_000}, {"USDC": 9_100}),
        ("emode_stablecoins", 1, {"USDC": 20_000}, {"DAI": 18_000}),
        ("emode_stablecoins", 1, {"USDC": 2_400}, {"DAI": 2_150}),
        ("emode_majors", 2, {"WETH": 10_000, "WBTC": 6_000}, {"USDC": 13_000}),
        ("emode_majors", 2, {"WETH": 20_000, "WBTC": 10_000}, {"USDC": 15_000, "DAI": 11_000}),
        ("emode_majors", 2, {"WBTC": 4_000}, {"DAI": 3_300}),
        ("emode_majors", 2, {"WETH": 3_000}, {"USDC": 2_600}),
        ("emode_eth", 3, {"WETH": 30_000}, {"WETH": 26_400}),
        ("emode_eth", 3, {"WETH": 5_000}, {"WETH": 4_400}),
        # the measured 3.5 example: flips between WETH 2,840.97 and 2,841.29
        ("multi_collateral_near_hf1", 0, {"WETH": 1_000, "WBTC": 300}, {"USDC": 1_020}),
        ("small_under_2000", 0, {"WETH": 1_800}, {"USDC": 1_550}),
        ("small_under_2000", 0, {"WBTC": 1_500}, {"DAI": 1_250}),
        ("small_under_2000", 0, {"WETH": 1_900}, {"USDC": 1_000, "DAI": 600}),
        ("dust_line", 0, {"WETH": 1_250}, {"USDC": 1_060}),
        ("dust_line", 0, {"WETH": 2_400}, {"USDC": 2_050}),
        ("dust_line", 0, {"WETH": 2_150}, {"USDC": 1_850}),
        ("dust_line", 0, {"WBTC": 3_000}, {"USDC": 1_950, "DAI": 1_050}),
        ("bad_debt", 0, {"WETH": 2_000}, {"USDC": 2_300}),
        ("bad_debt", 0, {"WETH": 5_000}, {"USDC": 3_000, "DAI": 2_800}),
        ("bad_debt", 0, {"WBTC": 1_500}, {"DAI": 1_600}),
        ("half_close_factor", 0, {"WETH": 20_000}, {"USDC": 16_800}),
        (
            "half_close_factor",
            0,
            {"WETH": 12_000, "WBTC": 8_000},
            {"USDC": 9_000, "DAI": 7_500},
        ),
        ("half_close_factor", 0, {"WBTC": 50_000}, {"DAI": 39_500}),
        ("half_close_factor", 0, {"WETH": 4_000}, {"USDC": 3_400}),
        ("two_debt_reserves", 0, {"WETH": 3_100}, {"USDC": 1_300, "DAI": 1_300}),
        ("two_debt_reserves", 0, {"WETH": 2_900}, {"USDC": 1_300, "DAI": 1_300}),
        ("below_095", 0, {"WETH": 30_000}, {"USDC": 27_000}),
        ("below_095", 0, {"WETH": 8_000, "WBTC": 8_000}, {"USDC": 14_000}),
    ]
    rng = random.Random(f"{seed}/aave36-near-hf1")
    for _ in range(24):  # multi-collateral positions around HF 1
        symbols = rng.sample(["WETH", "WBTC", "USDC"], k=rng.choice([2, 3]))
        total = math.exp(rng.uniform(math.log(3_000), math.log(120_000)))
        weights = {s: rng.uniform(0.2, 1.0) for s in symbols}
        coll = {s: total * w / sum(weights.values()) for s, w in weights.items()}
        capacity = sum(v * _lt_ltv(s, 0)[0] for s, v in coll.items())
        debt_total = capacity / rng.uniform(0.97, 1.03)
        debts = ["DAI"] if "USDC" in symbols else rng.sample(["USDC", "DAI"], k=rng.choice([1, 2]))
        split = {s: rng.uniform(0.3, 1.0) for s in debts}
        debt = {s: debt_total * w / sum(split.values()) for s, w in split.items()}
        rows.append(("multi_collateral_near_hf1", 0, coll, debt))
    return [
        _plan(seeded_address(seed, "aave36-scenario", i), group, coll, debt, decimals, emode)
        for i, (group, emode, coll, debt) in enumerate(rows)
    ]


def plan_random_borrowers(n: int, seed: int, decimals: dict[str, int]) -> list[Plan36]:
    """Borrowers like the 3.0.2 market's, spread over the three eMode categories too; all open
    at the build prices (HF from LT/LTV up to 3)."""
    rng = random.Random(f"{seed}/aave36-borrowers")
    plans = []
    for i in range(n):
        kind = rng.random()
        if kind < 0.10:
            emode = 1
            coll_symbols = rng.sample(["USDC", "DAI"], k=rng.choice([1, 2]))
            debt_symbols = [rng.choice(["USDC", "DAI"])]
        elif kind < 0.20:
            emode = 2
            coll_symbols = rng.sample(["WETH", "WBTC"], k=rng.choice([1, 2]))
            debt_symbols = rng.sample(["USDC", "DAI"], k=rng.choice([1, 2]))
        elif kind < 0.25:
            emode, coll_symbols, debt_symbols = 3, ["WETH"], ["WETH"]
        elif kind < 0.65:
            emode = 0
            coll_symbols = rng.sample(["WETH", "WBTC"], k=rng.choice([1, 2]))
            if rng.random() < 0.3:
                coll_symbols.append("USDC")
            debt_symbols = rng.sample(["USDC", "DAI"], k=rng.choice([1, 2]))
        else:
            emode = 0
            coll_symbols = [rng.choice(["WETH", "WBTC"])]
            other = "WBTC" if coll_symbols[0] == "WETH" else "WETH"
            debt_symbols = [rng.choice(["USDC", "DAI"])] + ([other] if rng.random() < 0.4 else [])
        total = math.exp(rng.uniform(math.log(1_000), math.log(250_000)))
        weights = {s: rng.uniform(0.3, 1.0) for s in coll_symbols}
        coll = {s: total * w / sum(weights.values()) for s, w in weights.items()}
        weighted_lt = sum(v * _lt_ltv(s, emode)[0] for s, v in coll.items())
        weighted_ltv = sum(v * _lt_ltv(s, emode)[1] for s, v in coll.items())
        target = rng.uniform(1.0, 1.5) if rng.random() < 0.65 else rng.uniform(1.5, 3.0)
        target = max(target, weighted_lt / weighted_ltv * OPEN_MARGIN * 1.002)
        debt_total = weighted_lt / target
        split = {s: rng.uniform(0.3, 1.0) for s in debt_symbols}
        debt = {s: debt_total * w / sum(split.values()) for s, w in split.items()}
        plan = _plan(
            seeded_address(seed, "aave36-borrower", i), "random", coll, debt, decimals, emode
        )
        plans.append(plan)
    return plans


def _transactions(plan: Plan36, d: Aave36Deployment) -> list[tuple[str, str, bytes, int]]:
    me, txs = plan.address, []
    if plan.emode:  # first: DAI only becomes collateral when supplied inside eMode 1
        txs.append((me, d.pool, calldata("setUserEMode(uint8)", plan.emode), 500_000))
    for symbol, amount in plan.collateral.items():
        token = d.tokens[symbol]
        txs.append((me, token, calldata("mint(uint256)", amount), 150_000))
        txs.append((me, token, calldata("approve(address,uint256)", d.pool, UINT256_MAX), 100_000))
        txs.append(
            (
                me,
                d.pool,
                calldata("supply(address,uint256,address,uint16)", token, amount, me, 0),
                800_000,
            )
        )
    for symbol, amount in plan.debt.items():
        txs.append(
            (
                me,
                d.pool,
                calldata(
                    "borrow(address,uint256,uint256,uint16,address)",
                    d.tokens[symbol],
                    amount,
                    2,
                    0,
                    me,
                ),
                1_200_000,
            )
        )
    return txs


def _seed_group(chain: DevChain, d: Aave36Deployment, plans: list[Plan36]) -> None:
    seed_in_blocks(chain, d.pool, [(p.address, _transactions(p, d), len(p.debt)) for p in plans])


def seed_aave36(chain: DevChain, d: Aave36Deployment, seed: int, n_borrowers: int) -> None:
    """Whale, random borrowers, then scenarios phase by phase; records them in `d`."""
    d.whale = seeded_address(seed, "aave36-whale", 0)
    per_asset_usd = WHALE_SUPPLY_USD_PER_BORROWER * max(n_borrowers, 100)
    supply_from(
        chain,
        d.pool,
        d.whale,
        {d.tokens[r.symbol]: _raw(per_asset_usd, r.symbol, d.decimals) for r in RESERVES},
    )
    randoms = plan_random_borrowers(n_borrowers, seed, d.decimals)
    _seed_group(chain, d, randoms)
    scenarios = plan_scenarios(seed, d.decimals)
    feed = devnet_contract("DevnetPriceFeed")
    volatile = [r.symbol for r in RESERVES if r.volatile]
    temporary = {
        s: chain.deploy(DEPLOYER, feed.bytecode, ["int256", "uint8"], [PRICES[s] * 10**8, 8])
        for s in volatile
    }
    set_sources = "setAssetSources(address[],address[])"
    assets = [d.tokens[s] for s in volatile]
    chain.send(DEPLOYER, d.oracle, calldata(set_sources, assets, [temporary[s] for s in volatile]))
    try:
        for factor in sorted({p.open_factor for p in scenarios}):
            for s in volatile:
                answer = round(Fraction(str(factor)) * PRICES[s] * 10**8)
                chain.send(DEPLOYER, temporary[s], calldata("setAnswer(int256)", answer))
            _seed_group(chain, d, [p for p in scenarios if p.open_factor == factor])
    finally:  # back to the shared feeds: both markets read the same prices again
        chain.send(
            DEPLOYER, d.oracle, calldata(set_sources, assets, [d.price_feeds[s] for s in volatile])
        )
    phase_out_ltvzero(chain, d)
    d.borrowers = [p.address for p in randoms]
    d.scenario_plans = [p.to_json() for p in scenarios]
    d.scenarios = {g: [p.address for p in scenarios if p.group == g] for g in SCENARIO_GROUPS}
    for p in randoms:  # random eMode users join their category's group too
        if p.emode:
            d.scenarios[_EMODE_GROUP[p.emode]].append(p.address)
        if p.emode == 1 and "DAI" in p.collateral:
            d.scenarios["emode_lt0_collateral"].append(p.address)


def deploy_and_seed_aave36(
    chain: DevChain, aave: Any, seed: int, n_borrowers: int
) -> Aave36Deployment:
    """The whole 3.6 market, deployed after everything else on the devnet."""
    from onchain.devnet.aave36 import deploy_aave36_market

    d = deploy_aave36_market(chain, aave, seed)
    seed_aave36(chain, d, seed, n_borrowers)
    return d
