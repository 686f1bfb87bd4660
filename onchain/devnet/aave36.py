"""Deploy an Aave V3.6.0 market (Pool revision 10) beside the 3.0.2 one, from the sources of npm
`@aave-dao/aave-v3-origin` 3.6.0 (compiled by `aave36_build`).

It lists the devnet's own tokens and prices them with the same settable feeds as the 3.0.2 market,
so `devnet set-price` moves both markets in one block. Order: addresses provider, ACL, the six
logic libraries (FlashLoanLogic links BorrowLogic), one `DefaultReserveInterestRateStrategyV2`,
`PoolInstance(provider, strategy)` and `PoolConfiguratorInstance` behind the provider's proxies
(implementations are never initialised: their constructors lock them), data provider, oracle,
token implementations, reserves, risk parameters and three eMode categories set with the 3.2+
bitmap calls: DAI is collateral only inside the stablecoin category (LT 0 outside), WETH sits in
two categories, and WBTC is marked ltvzero in one once its borrowers are in."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from eth_abi import encode
from eth_utils import to_checksum_address

from onchain.devnet.aave import AaveDeployment
from onchain.devnet.aave36_build import compile_aave36
from onchain.devnet.chain import DEPLOYER, DevChain, calldata
from onchain.devnet.seed import seeded_address

VERSION = "3.6.0"
POOL_REVISION = 10
ZERO_ADDRESS = "0x0000000000000000000000000000000000000000"
LIBRARIES = (  # deploy order: FlashLoanLogic links BorrowLogic
    "BorrowLogic",
    "ConfiguratorLogic",
    "LiquidationLogic",
    "PoolLogic",
    "SupplyLogic",
    "FlashLoanLogic",
)
RESERVE_DATA = (
    "(uint256,uint128,uint128,uint128,uint128,uint128,uint40,uint16,address,address,address,"
    "address,uint128,uint128,uint128)"
)


@dataclass(frozen=True)
class Reserve36:
    """Risk parameters of one reserve, modelled on Aave V3 Ethereum (bps; rates in bps a year)."""

    symbol: str
    ltv: int
    liquidation_threshold: int
    liquidation_bonus: int
    reserve_factor: int
    liquidation_protocol_fee: int
    optimal_usage: int
    base_rate: int
    slope1: int
    slope2: int
    volatile: bool


RESERVES: tuple[Reserve36, ...] = (  # listing order = reserve id (0..3)
    Reserve36("WETH", 8050, 8300, 10500, 1500, 1000, 9000, 0, 270, 8000, volatile=True),
    Reserve36("WBTC", 7300, 7800, 10500, 2000, 1000, 8000, 0, 400, 30000, volatile=True),
    Reserve36("USDC", 7500, 7800, 10450, 1000, 1000, 9200, 0, 650, 6000, volatile=False),
    # DAI: no collateral outside eMode (LTV 0, LT 0), collateral inside the stablecoin category
    Reserve36("DAI", 0, 0, 0, 1000, 1000, 9200, 0, 650, 6000, volatile=False),
)


@dataclass
class EMode36:
    """One eMode category as configured: its members by symbol."""

    id: int
    label: str
    ltv: int
    liquidation_threshold: int
    liquidation_bonus: int
    collateral: list[str]
    borrowable: list[str]
    ltvzero: list[str] = field(default_factory=list)  # set after seeding


EMODES: tuple[EMode36, ...] = (
    EMode36(1, "Stablecoins", 9300, 9500, 10100, ["USDC", "DAI"], ["USDC", "DAI"]),
    EMode36(2, "Majors vs stablecoins", 8300, 8600, 10400, ["WETH", "WBTC"], ["USDC", "DAI"]),
    EMode36(3, "ETH correlated", 9000, 9300, 10100, ["WETH"], ["WETH"]),
)
LTVZERO_AFTER_SEEDING = {2: ["WBTC"]}  # category -> assets phased out (ltvzero) once users are in


@dataclass
class Aave36Deployment:
    """The 3.6 market: addresses, reserves, eMode categories, borrowers and scenario groups."""

    addresses_provider: str
    pool: str
    pool_configurator: str
    oracle: str
    data_provider: str
    acl_manager: str
    interest_rate_strategy: str
    treasury: str
    version: str = VERSION
    pool_revision: int = POOL_REVISION
    tokens: dict[str, str] = field(default_factory=dict)  # symbol -> underlying (shared)
    price_feeds: dict[str, str] = field(default_factory=dict)  # symbol -> feed (shared)
    atokens: dict[str, str] = field(default_factory=dict)
    variable_debt_tokens: dict[str, str] = field(default_factory=dict)
    decimals: dict[str, int] = field(default_factory=dict)
    reserve_ids: dict[str, int] = field(default_factory=dict)
    reserves: dict[str, dict[str, Any]] = field(default_factory=dict)  # symbol -> Reserve36 fields
    emodes: list[dict[str, Any]] = field(default_factory=list)  # EMode36 fields
    libraries: dict[str, str] = field(default_factory=dict)
    whale: str = ""
    borrowers: list[str] = field(default_factory=list)  # the seeded random borrowers
    scenarios: dict[str, list[str]] = field(default_factory=dict)  # group -> borrowers
    scenario_plans: list[dict[str, Any]] = field(default_factory=list)  # intended shapes
    deploy_block: int = 0

    @property
    def all_borrowers(self) -> list[str]:
        return list(dict.fromkeys(self.borrowers + [p["address"] for p in self.scenario_plans]))

    def emode(self, category: int) -> dict[str, Any]:
        for e in self.emodes:
            if e["id"] == category:
                return e
        raise KeyError(category)

    def as_aave_deployment(self) -> AaveDeployment:
        """The shape the devnet's price controls take (feeds are shared with the 3.0.2 market)."""
        return AaveDeployment(
            addresses_provider=self.addresses_provider,
            pool=self.pool,
            pool_configurator=self.pool_configurator,
            oracle=self.oracle,
            data_provider=self.data_provider,
            acl_manager=self.acl_manager,
            tokens=dict(self.tokens),
            price_feeds=dict(self.price_feeds),
            atokens=dict(self.atokens),
            variable_debt_tokens=dict(self.variable_debt_tokens),
            decimals=dict(self.decimals),
            deploy_block=self.deploy_block,
        )

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Aave36Deployment:
        return cls(**data)


def _tx(chain: DevChain, to: str, signature: str, *args: Any) -> None:
    chain.send(DEPLOYER, to, calldata(signature, *args), gas=10_000_000)


def _deploy(
    chain: DevChain,
    name: str,
    types: list[str] | None = None,
    args: list[Any] | None = None,
    libs: dict[str, str] | None = None,
) -> str:
    contract = compile_aave36()[name]
    return chain.deploy(DEPLOYER, contract.linked(libs or {}), types or [], args or [])


def deploy_aave36_market(chain: DevChain, aave: AaveDeployment, seed: int) -> Aave36Deployment:
    """Deploy and configure the market (no users); the deployer holds every role."""
    start_block = chain.block_number()
    provider = _deploy(
        chain, "PoolAddressesProvider", ["string", "address"], ["onchain devnet 3.6", DEPLOYER]
    )
    _tx(chain, provider, "setACLAdmin(address)", DEPLOYER)
    acl = _deploy(chain, "ACLManager", ["address"], [provider])
    _tx(chain, provider, "setACLManager(address)", acl)
    for role in ("addPoolAdmin", "addEmergencyAdmin", "addRiskAdmin", "addAssetListingAdmin"):
        _tx(chain, acl, f"{role}(address)", DEPLOYER)

    libs: dict[str, str] = {}
    for name in LIBRARIES:
        libs[name] = _deploy(chain, name, libs=libs)
    strategy = _deploy(chain, "DefaultReserveInterestRateStrategyV2", ["address"], [provider])
    pool_impl = _deploy(chain, "PoolInstance", ["address", "address"], [provider, strategy], libs)
    _tx(chain, provider, "setPoolImpl(address)", pool_impl)
    pool = to_checksum_address(chain.view(provider, "getPool()", ["address"]))
    configurator_impl = _deploy(chain, "PoolConfiguratorInstance", libs=libs)
    _tx(chain, provider, "setPoolConfiguratorImpl(address)", configurator_impl)
    configurator = to_checksum_address(chain.view(provider, "getPoolConfigurator()", ["address"]))
    data_provider = _deploy(chain, "AaveProtocolDataProvider", ["address"], [provider])
    _tx(chain, provider, "setPoolDataProvider(address)", data_provider)
    _tx(chain, configurator, "updateFlashloanPremium(uint128)", 5)

    symbols = [r.symbol for r in RESERVES]
    oracle = _deploy(
        chain,
        "AaveOracle",
        ["address", "address[]", "address[]", "address", "address", "uint256"],
        [
            provider,
            [aave.tokens[s] for s in symbols],
            [aave.price_feeds[s] for s in symbols],
            ZERO_ADDRESS,
            ZERO_ADDRESS,
            10**8,
        ],
    )
    _tx(chain, provider, "setPriceOracle(address)", oracle)

    treasury = seeded_address(seed, "aave36-treasury", 0)
    atoken_impl = _deploy(
        chain, "ATokenInstance", ["address", "address", "address"], [pool, ZERO_ADDRESS, treasury]
    )
    vdebt_impl = _deploy(
        chain, "VariableDebtTokenInstance", ["address", "address"], [pool, ZERO_ADDRESS]
    )
    inputs = [
        (
            atoken_impl,
            vdebt_impl,
            aave.tokens[r.symbol],
            f"Aave devnet 3.6 {r.symbol}",
            f"a36{r.symbol}",
            f"Aave devnet 3.6 variable debt {r.symbol}",
            f"variableDebt36{r.symbol}",
            b"",
            encode(
                ["(uint16,uint32,uint32,uint32)"],
                [(r.optimal_usage, r.base_rate, r.slope1, r.slope2)],
            ),
        )
        for r in RESERVES
    ]
    _tx(
        chain,
        configurator,
        "initReserves((address,address,address,string,string,string,string,bytes,bytes)[])",
        inputs,
    )
    for r in RESERVES:
        asset = aave.tokens[r.symbol]
        if r.liquidation_threshold:
            _tx(
                chain,
                configurator,
                "configureReserveAsCollateral(address,uint256,uint256,uint256)",
                asset,
                r.ltv,
                r.liquidation_threshold,
                r.liquidation_bonus,
            )
        _tx(chain, configurator, "setReserveBorrowing(address,bool)", asset, True)
        _tx(chain, configurator, "setReserveFactor(address,uint256)", asset, r.reserve_factor)
        _tx(
            chain,
            configurator,
            "setLiquidationProtocolFee(address,uint256)",
            asset,
            r.liquidation_protocol_fee,
        )
        _tx(chain, configurator, "setReserveFlashLoaning(address,bool)", asset, True)
    for e in EMODES:
        _tx(
            chain,
            configurator,
            "setEModeCategory(uint8,uint16,uint16,uint16,string)",
            e.id,
            e.ltv,
            e.liquidation_threshold,
            e.liquidation_bonus,
            e.label,
        )
        for s in e.collateral:
            _tx(
                chain,
                configurator,
                "setAssetCollateralInEMode(address,uint8,bool)",
                aave.tokens[s],
                e.id,
                True,
            )
        for s in e.borrowable:
            _tx(
                chain,
                configurator,
                "setAssetBorrowableInEMode(address,uint8,bool)",
                aave.tokens[s],
                e.id,
                True,
            )

    deployment = Aave36Deployment(
        addresses_provider=provider,
        pool=pool,
        pool_configurator=configurator,
        oracle=oracle,
        data_provider=data_provider,
        acl_manager=acl,
        interest_rate_strategy=strategy,
        treasury=treasury,
        tokens={s: aave.tokens[s] for s in symbols},
        price_feeds={s: aave.price_feeds[s] for s in symbols},
        decimals={s: aave.decimals[s] for s in symbols},
        reserves={r.symbol: asdict(r) for r in RESERVES},
        emodes=[asdict(e) for e in EMODES],
        libraries=libs,
        deploy_block=start_block,
    )
    for s in symbols:
        data = chain.view(pool, "getReserveData(address)", [RESERVE_DATA], aave.tokens[s])
        deployment.reserve_ids[s] = int(data[7])
        deployment.atokens[s] = to_checksum_address(data[8])
        deployment.variable_debt_tokens[s] = to_checksum_address(data[10])
    return deployment


def phase_out_ltvzero(chain: DevChain, deployment: Aave36Deployment) -> None:
    """Mark assets ltvzero in a category once its users hold them (as governance phases an asset
    out: it still counts at the category's LT, adds no borrowing power)."""
    for category, symbols in LTVZERO_AFTER_SEEDING.items():
        for s in symbols:
            _tx(
                chain,
                deployment.pool_configurator,
                "setAssetLtvzeroInEMode(address,uint8,bool)",
                deployment.tokens[s],
                category,
                True,
            )
            deployment.emode(category)["ltvzero"].append(s)
