"""Real Morpho Blue on the devnet: `Morpho.sol` compiled from `@morpho-org/morpho-blue` 1.0.0 with
the npm solc-js, deployed on the same anvil as the Aave V3 market, with the package's mocks for
the oracle (`OracleMock`, settable) and the IRM (`IrmMock`: the rate follows utilization, so
interest accrues as time moves), and `DevnetERC20Mock` tokens (the package's `ERC20Mock` plus
decimals; a devnet stand-in). Four markets at LLTVs 77%, 86%, 91.5% and 94.5%, one with a fee
and one without an IRM; a lender per loan token; seeded borrowers, half of them also Aave
borrowers.

Compiler settings: optimizer on (200 runs), legacy codegen, evm paris. Upstream builds with viaIR
and 999999 runs; the arithmetic (and so every figure we compare) is the same, and this compiles
in a third of the time. The deployment is deterministic: same seed, same addresses and state."""

from __future__ import annotations

import json
import math
import random
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from fractions import Fraction
from typing import Any

from eth_utils import keccak

from onchain.devnet.aave import AaveDeployment
from onchain.devnet.cache import CACHE_DIR, cache_key
from onchain.devnet.chain import DEPLOYER, DevChain, calldata
from onchain.devnet.seed import seeded_address
from onchain.devnet.solc import CONTRACTS_DIR, CompiledContract, compile_sources
from onchain.errors import DevnetError, InputError
from onchain.protocols.morpho_blue.math import market_id

ZERO_ADDRESS = "0x0000000000000000000000000000000000000000"
UINT256_MAX = 2**256 - 1
WAD = 10**18
ORACLE_PRICE_SCALE = 10**36
BORROWERS_PER_BLOCK = 40
PARAMS = "(address,address,address,address,uint256)"
BORROW_TOPIC = "0x" + keccak(text="Borrow(bytes32,address,address,address,uint256,uint256)").hex()

# The package's contracts, imported by name so the unit compiles them from node_modules as-is.
_MORPHO_UNIT = """// SPDX-License-Identifier: GPL-2.0-or-later
pragma solidity 0.8.19;

import {Morpho} from "@morpho-org/morpho-blue/src/Morpho.sol";
import {OracleMock} from "@morpho-org/morpho-blue/src/mocks/OracleMock.sol";
import {IrmMock} from "@morpho-org/morpho-blue/src/mocks/IrmMock.sol";
"""

# symbol -> (decimals, USD price at build). wstETH is a stand-in priced 1.17 WETH.
TOKENS: dict[str, tuple[int, str]] = {
    "WETH": (18, "3000"),
    "WBTC": (8, "60000"),
    "USDC": (6, "1"),
    "DAI": (18, "1"),
    "wstETH": (18, "3510"),
}
ENABLED_LLTVS = (77 * 10**16, 86 * 10**16, 915 * 10**15, 945 * 10**15)


@dataclass(frozen=True)
class MarketSpec:
    """One devnet market: collateral/loan, LLTV (wad), whether it has the IRM, fee (wad), share
    of borrowers and the utilization its lender's supply aims at."""

    collateral: str
    loan: str
    lltv: int
    with_irm: bool
    fee: int = 0
    weight: float = 1.0
    utilization: float = 0.85

    @property
    def key(self) -> str:
        return f"{self.collateral}/{self.loan}"


MARKETS: tuple[MarketSpec, ...] = (
    MarketSpec("WETH", "USDC", 86 * 10**16, True, fee=10 * 10**16, weight=0.35, utilization=0.9),
    MarketSpec("WBTC", "USDC", 77 * 10**16, True, weight=0.25),
    MarketSpec("wstETH", "WETH", 945 * 10**15, True, weight=0.25, utilization=0.8),
    MarketSpec("WBTC", "WETH", 915 * 10**15, False, weight=0.15),  # no IRM: no interest
)


@dataclass
class MorphoMarketInfo:
    key: str  # "WETH/USDC": collateral/loan
    id: str
    loan_token: str
    collateral_token: str
    oracle: str
    irm: str
    lltv: int
    loan_symbol: str
    collateral_symbol: str

    @property
    def params(self) -> tuple[str, str, str, str, int]:
        return (self.loan_token, self.collateral_token, self.oracle, self.irm, self.lltv)


@dataclass
class MorphoDeployment:
    """Addresses of the devnet's Morpho Blue, its markets and seeded borrowers."""

    morpho: str
    irm: str
    owner: str
    fee_recipient: str
    lender: str
    tokens: dict[str, str] = field(default_factory=dict)  # symbol -> DevnetERC20Mock
    decimals: dict[str, int] = field(default_factory=dict)
    markets: list[MorphoMarketInfo] = field(default_factory=list)
    borrowers: list[str] = field(default_factory=list)
    deploy_block: int = 0

    def market(self, key: str) -> MorphoMarketInfo:
        for m in self.markets:
            if key in (m.key, m.id):
                return m
        raise InputError(f"no devnet Morpho market {key!r}")

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> MorphoDeployment:
        fields = dict(data)
        fields["markets"] = [MorphoMarketInfo(**m) for m in fields.get("markets", [])]
        return cls(**fields)


@dataclass(frozen=True)
class MorphoBorrowerPlan:
    address: str
    positions: tuple[tuple[str, int, int], ...]  # (market key, collateral raw, borrow raw)


def compile_morpho() -> dict[str, CompiledContract]:
    """Morpho, the package's mocks and our token, from node_modules (cached by the solc wrapper)."""
    sources = {
        "MorphoBlueDevnet.sol": _MORPHO_UNIT,
        "DevnetERC20Mock.sol": (CONTRACTS_DIR / "DevnetERC20Mock.sol").read_text(),
    }
    return compile_sources(sources, optimizer_runs=200)


def oracle_price(collateral_usd: Fraction, loan_usd: Fraction, coll_dec: int, loan_dec: int) -> int:
    """What a Morpho oracle returns: one raw collateral unit in raw loan units, times 1e36."""
    return math.floor(collateral_usd / loan_usd * 10 ** (36 + loan_dec - coll_dec))


def _usd(symbol: str) -> Fraction:
    return Fraction(TOKENS[symbol][1])


def _send(chain: DevChain, to: str, signature: str, *args: Any, sender: str = DEPLOYER) -> None:
    chain.send(sender, to, calldata(signature, *args), gas=3_000_000)


def deploy_morpho(chain: DevChain, seed: int) -> MorphoDeployment:
    """Deploy Morpho (owner: anvil's first dev account), the IRM, tokens, oracles and markets."""
    compiled = compile_morpho()
    start = chain.block_number()
    morpho = chain.deploy(DEPLOYER, compiled["Morpho"].bytecode, ["address"], [DEPLOYER])
    irm = chain.deploy(DEPLOYER, compiled["IrmMock"].bytecode)
    tokens: dict[str, str] = {}
    for symbol, (decimals, _price) in TOKENS.items():
        tokens[symbol] = chain.deploy(
            DEPLOYER,
            compiled["DevnetERC20Mock"].bytecode,
            ["string", "string", "uint8"],
            [f"{symbol} (devnet stand-in)", symbol, decimals],
        )
    _send(chain, morpho, "enableIrm(address)", irm)
    _send(chain, morpho, "enableIrm(address)", ZERO_ADDRESS)
    for lltv in ENABLED_LLTVS:
        _send(chain, morpho, "enableLltv(uint256)", lltv)
    fee_recipient = seeded_address(seed, "morpho-fee-recipient", 0)
    _send(chain, morpho, "setFeeRecipient(address)", fee_recipient)
    markets: list[MorphoMarketInfo] = []
    for spec in MARKETS:
        oracle = chain.deploy(DEPLOYER, compiled["OracleMock"].bytecode)
        price = oracle_price(
            _usd(spec.collateral),
            _usd(spec.loan),
            TOKENS[spec.collateral][0],
            TOKENS[spec.loan][0],
        )
        _send(chain, oracle, "setPrice(uint256)", price)
        info = MorphoMarketInfo(
            key=spec.key,
            id="",
            loan_token=tokens[spec.loan],
            collateral_token=tokens[spec.collateral],
            oracle=oracle,
            irm=irm if spec.with_irm else ZERO_ADDRESS,
            lltv=spec.lltv,
            loan_symbol=spec.loan,
            collateral_symbol=spec.collateral,
        )
        info.id = market_id(*info.params)
        _send(chain, morpho, f"createMarket({PARAMS})", info.params)
        markets.append(info)
    return MorphoDeployment(
        morpho=morpho,
        irm=irm,
        owner=DEPLOYER,
        fee_recipient=fee_recipient,
        lender=seeded_address(seed, "morpho-lender", 0),
        tokens=tokens,
        decimals={s: d for s, (d, _p) in TOKENS.items()},
        markets=markets,
        deploy_block=start,
    )


def plan_morpho_borrowers(
    n: int, seed: int, deployment: MorphoDeployment, aave_borrowers: Sequence[str]
) -> list[MorphoBorrowerPlan]:
    """Every other borrower is also an Aave borrower. Most borrow between 80% and 99.9% of their
    limit (a few days of interest push the closest over), some far below, a few only post
    collateral; a quarter use two markets."""
    rng = random.Random(f"morpho/{seed}")
    specs = {s.key: s for s in MARKETS}
    keys = [s.key for s in MARKETS]
    weights = [s.weight for s in MARKETS]
    plans: list[MorphoBorrowerPlan] = []
    for j in range(n):
        address = (
            aave_borrowers[j]
            if j % 2 == 0 and j < len(aave_borrowers)
            else seeded_address(seed, "morpho-borrower", j)
        )
        chosen = [rng.choices(keys, weights)[0]]
        if rng.random() < 0.25:
            chosen.append(rng.choice([k for k in keys if k != chosen[0]]))
        positions = []
        for key in chosen:
            spec = specs[key]
            info = deployment.market(key)
            coll_dec, loan_dec = TOKENS[spec.collateral][0], TOKENS[spec.loan][0]
            usd = math.exp(rng.uniform(math.log(2_000), math.log(300_000)))
            collateral = int(Fraction(usd) / _usd(spec.collateral) * 10**coll_dec)
            price = oracle_price(_usd(spec.collateral), _usd(spec.loan), coll_dec, loan_dec)
            limit = collateral * price // ORACLE_PRICE_SCALE * info.lltv // WAD
            kind = rng.random()
            if kind < 0.05:
                ratio = 0.0
            elif kind < 0.17:
                ratio = rng.uniform(0.990, 0.9992)
            elif kind < 0.70:
                ratio = rng.uniform(0.80, 0.990)
            else:
                ratio = rng.uniform(0.30, 0.80)
            positions.append((key, collateral, int(limit * ratio)))
        plans.append(MorphoBorrowerPlan(address, tuple(positions)))
    return plans


def supply_liquidity(
    chain: DevChain, deployment: MorphoDeployment, plans: Sequence[MorphoBorrowerPlan]
) -> None:
    """One lender supplies each market so that the seeded borrows reach its target utilization."""
    lender, morpho = deployment.lender, deployment.morpho
    chain.set_balance([lender], 10**24)
    borrows: dict[str, int] = {m.key: 0 for m in deployment.markets}
    for plan in plans:
        for key, _c, b in plan.positions:
            borrows[key] += b
    specs = {s.key: s for s in MARKETS}
    supply = {
        key: max(int(total / specs[key].utilization), 10 ** TOKENS[specs[key].loan][0])
        for key, total in borrows.items()
    }
    per_token: dict[str, int] = {}
    for m in deployment.markets:
        per_token[m.loan_symbol] = per_token.get(m.loan_symbol, 0) + supply[m.key]
    for symbol, amount in per_token.items():
        token = deployment.tokens[symbol]
        _send(chain, token, "setBalance(address,uint256)", lender, amount, sender=lender)
        _send(chain, token, "approve(address,uint256)", morpho, UINT256_MAX, sender=lender)
    for m in deployment.markets:
        _send(
            chain,
            morpho,
            f"supply({PARAMS},uint256,uint256,address,bytes)",
            m.params,
            supply[m.key],
            0,
            lender,
            b"",
            sender=lender,
        )
    for spec in MARKETS:  # a fee from the start: interest then mints supply shares as well
        if spec.fee:
            _send(
                chain,
                morpho,
                f"setFee({PARAMS},uint256)",
                deployment.market(spec.key).params,
                spec.fee,
            )


def borrower_transactions(
    plan: MorphoBorrowerPlan, deployment: MorphoDeployment
) -> list[tuple[str, str, bytes, int]]:
    me, morpho = plan.address, deployment.morpho
    markets = [deployment.market(key) for key, _c, _b in plan.positions]
    needed: dict[str, int] = {}
    for m, (_key, collateral, _b) in zip(markets, plan.positions, strict=True):
        needed[m.collateral_symbol] = needed.get(m.collateral_symbol, 0) + collateral
    txs: list[tuple[str, str, bytes, int]] = []
    for symbol, amount in needed.items():
        token = deployment.tokens[symbol]
        txs.append((me, token, calldata("setBalance(address,uint256)", me, amount), 120_000))
        txs.append((me, token, calldata("approve(address,uint256)", morpho, UINT256_MAX), 100_000))
    for m, (_key, collateral, borrow) in zip(markets, plan.positions, strict=True):
        txs.append(
            (
                me,
                morpho,
                calldata(
                    f"supplyCollateral({PARAMS},uint256,address,bytes)",
                    m.params,
                    collateral,
                    me,
                    b"",
                ),
                300_000,
            )
        )
        if borrow:
            txs.append(
                (
                    me,
                    morpho,
                    calldata(
                        f"borrow({PARAMS},uint256,uint256,address,address)",
                        m.params,
                        borrow,
                        0,
                        me,
                        me,
                    ),
                    500_000,
                )
            )
    return txs


def seed_morpho_borrowers(
    chain: DevChain, deployment: MorphoDeployment, plans: Sequence[MorphoBorrowerPlan]
) -> None:
    """Each group's transactions in one block; every borrow must land."""
    chain.set_balance([p.address for p in plans], 10**21)
    chain.set_automine(False)
    try:
        for start in range(0, len(plans), BORROWERS_PER_BLOCK):
            group = plans[start : start + BORROWERS_PER_BLOCK]
            txs = [tx for plan in group for tx in borrower_transactions(plan, deployment)]
            chain.send_many(txs)
            chain.mine()
            block = chain.rpc("eth_getBlockByNumber", ["latest", False])
            logs = chain.rpc(
                "eth_getLogs",
                [
                    {
                        "address": deployment.morpho,
                        "fromBlock": block["number"],
                        "toBlock": block["number"],
                        "topics": [BORROW_TOPIC],
                    }
                ],
            )
            expected = sum(1 for p in group for _k, _c, b in p.positions if b)
            if len(block["transactions"]) != len(txs) or len(logs) != expected:
                raise DevnetError(
                    f"Morpho seeding block {int(block['number'], 16)}: "
                    f"{len(block['transactions'])}/{len(txs)} transactions, "
                    f"{len(logs)}/{expected} borrows"
                )
    finally:
        chain.set_automine(True)


def deploy_and_seed_morpho(
    chain: DevChain, seed: int, n_borrowers: int, aave_borrowers: Sequence[str]
) -> MorphoDeployment:
    """The whole Morpho part of a devnet build."""
    deployment = deploy_morpho(chain, seed)
    plans = plan_morpho_borrowers(n_borrowers, seed, deployment, aave_borrowers)
    supply_liquidity(chain, deployment, plans)
    seed_morpho_borrowers(chain, deployment, plans)
    deployment.borrowers = sorted({p.address for p in plans})
    return deployment


# -- moving prices on a running devnet ------------------------------------------------------------


def _in_one_block(
    chain: DevChain, txs: list[tuple[str, str, bytes, int]], same_timestamp: bool
) -> int:
    if same_timestamp:
        head = chain.rpc("eth_getBlockByNumber", ["latest", False])
        chain.rpc("evm_setNextBlockTimestamp", [head["timestamp"]])
    chain.set_automine(False)
    try:
        chain.send_many(txs)
        chain.mine()
    finally:
        chain.set_automine(True)
    return chain.block_number()


def set_oracle_price(
    url: str, deployment: MorphoDeployment, market: str, price: int, *, same_timestamp: bool = False
) -> int:
    """`OracleMock.setPrice` of one market (key or id) to an exact 1e36-scaled price; with
    `same_timestamp` the block keeps the head's timestamp, so no interest accrues meanwhile."""
    info = deployment.market(market)
    tx = (DEPLOYER, info.oracle, calldata("setPrice(uint256)", price), 100_000)
    return _in_one_block(DevChain(url), [tx], same_timestamp)


def oracle_prices(url: str, deployment: MorphoDeployment) -> dict[str, int]:
    """Each market's current oracle price, by market key."""
    chain = DevChain(url)
    return {m.key: int(chain.view(m.oracle, "price()", ["uint256"])) for m in deployment.markets}


def price_transactions(
    chain: DevChain,
    aave: AaveDeployment | None,
    deployment: MorphoDeployment,
    prices_usd: Mapping[str, float],
) -> list[tuple[str, str, bytes, int]]:
    """Transactions that move Aave feeds and Morpho oracles to the given USD prices together.

    Current USD prices come from the Aave feeds (8 decimals) and, for assets only Morpho lists,
    from their oracle against an asset Aave prices (wstETH follows WETH unless given). Each Morpho
    oracle is rescaled by the exact ratio of the moves, so markets whose assets did not move keep
    their price to the unit."""
    known = set(deployment.tokens) | set(aave.price_feeds if aave else ())
    unknown = set(prices_usd) - known
    if unknown:
        raise InputError(f"unknown devnet asset(s): {', '.join(sorted(unknown))}")
    old: dict[str, Fraction] = {}
    if aave:
        for symbol, feed in aave.price_feeds.items():
            old[symbol] = Fraction(int(chain.view(feed, "latestAnswer()", ["int256"])), 10**8)
    current = {m.key: int(chain.view(m.oracle, "price()", ["uint256"])) for m in deployment.markets}
    for m in deployment.markets:  # assets Aave does not list: priced through their market
        if m.collateral_symbol not in old and m.loan_symbol in old:
            scale = 10 ** (
                36 + deployment.decimals[m.loan_symbol] - deployment.decimals[m.collateral_symbol]
            )
            old[m.collateral_symbol] = Fraction(current[m.key], scale) * old[m.loan_symbol]
    for symbol in deployment.tokens:
        old.setdefault(symbol, _usd(symbol))
    new = dict(old)
    new.update({s: Fraction(str(v)) for s, v in prices_usd.items()})
    for m in deployment.markets:  # stand-ins without a feed move with what they are priced in
        if (
            m.collateral_symbol not in prices_usd
            and aave
            and m.collateral_symbol not in aave.price_feeds
        ):
            new[m.collateral_symbol] = (
                old[m.collateral_symbol] * new[m.loan_symbol] / old[m.loan_symbol]
            )
    txs: list[tuple[str, str, bytes, int]] = []
    if aave:
        for symbol, value in prices_usd.items():
            if symbol in aave.price_feeds:
                answer = round(Fraction(str(value)) * 10**8)
                txs.append(
                    (
                        DEPLOYER,
                        aave.price_feeds[symbol],
                        calldata("setAnswer(int256)", answer),
                        200_000,
                    )
                )
    for m in deployment.markets:
        c, lo = m.collateral_symbol, m.loan_symbol
        ratio = (new[c] / old[c]) * (old[lo] / new[lo])
        if ratio != 1:
            price = math.floor(current[m.key] * ratio)
            txs.append((DEPLOYER, m.oracle, calldata("setPrice(uint256)", price), 100_000))
    return txs


def set_prices_everywhere(
    url: str,
    aave: AaveDeployment | None,
    deployment: MorphoDeployment,
    prices_usd: Mapping[str, float],
    *,
    same_timestamp: bool = False,
) -> int:
    """Move Aave feeds and Morpho oracles to the given USD prices in ONE block; returns it."""
    chain = DevChain(url)
    txs = price_transactions(chain, aave, deployment, prices_usd)
    if not txs:
        chain.mine()
        return chain.block_number()
    return _in_one_block(chain, txs, same_timestamp)


def cached_morpho(n_borrowers: int = 300, seed: int = 7) -> MorphoDeployment | None:
    """The Morpho addresses of a devnet built before with these parameters (None: none there)."""
    meta_path = CACHE_DIR / cache_key(n_borrowers, seed) / "meta.json"
    if not meta_path.exists():
        return None
    data = json.loads(meta_path.read_text()).get("morpho_blue")
    return MorphoDeployment.from_json(data) if data else None
