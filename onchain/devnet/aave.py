"""Deploy a complete Aave V3 market from the real `@aave/core-v3` artifacts, in the order of the
official deploy scripts: addresses provider, ACL, libraries, Pool and PoolConfigurator behind the
provider's proxies, AaveOracle over one settable feed per asset, token implementations, interest
rate strategies, reserves, risk parameters and one eMode category."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from eth_utils import to_checksum_address

from onchain.devnet.artifacts import linked_bytecode, load_artifact
from onchain.devnet.chain import DEPLOYER, DevChain, calldata
from onchain.devnet.contracts_build import devnet_contract

RAY = 10**27
ZERO_ADDRESS = "0x0000000000000000000000000000000000000000"

ART = {
    "provider": "protocol/configuration/PoolAddressesProvider.sol/PoolAddressesProvider.json",
    "registry": "protocol/configuration/PoolAddressesProviderRegistry.sol/PoolAddressesProviderRegistry.json",
    "acl": "protocol/configuration/ACLManager.sol/ACLManager.json",
    "data_provider": "misc/AaveProtocolDataProvider.sol/AaveProtocolDataProvider.json",
    "pool": "protocol/pool/Pool.sol/Pool.json",
    "configurator": "protocol/pool/PoolConfigurator.sol/PoolConfigurator.json",
    "oracle": "misc/AaveOracle.sol/AaveOracle.json",
    "atoken": "protocol/tokenization/AToken.sol/AToken.json",
    "sdebt": "protocol/tokenization/StableDebtToken.sol/StableDebtToken.json",
    "vdebt": "protocol/tokenization/VariableDebtToken.sol/VariableDebtToken.json",
    "irs": "protocol/pool/DefaultReserveInterestRateStrategy.sol/DefaultReserveInterestRateStrategy.json",
    "erc20": "mocks/tokens/MintableERC20.sol/MintableERC20.json",
}
LIBRARIES = [  # deploy order: FlashLoanLogic links BorrowLogic
    "BorrowLogic",
    "BridgeLogic",
    "ConfiguratorLogic",
    "EModeLogic",
    "LiquidationLogic",
    "PoolLogic",
    "SupplyLogic",
    "FlashLoanLogic",
]


@dataclass(frozen=True)
class AssetSpec:
    """One listed reserve: realistic parameters modelled on Aave V3 Ethereum."""

    symbol: str
    decimals: int
    price_usd: float
    ltv_bps: int
    liquidation_threshold_bps: int
    liquidation_bonus_bps: int
    reserve_factor_bps: int
    stable: bool
    emode_category: int = 0

    @property
    def price_base(self) -> int:
        return round(self.price_usd * 10**8)


DEFAULT_ASSETS: tuple[AssetSpec, ...] = (
    AssetSpec("WETH", 18, 3000.0, 8050, 8300, 10500, 1500, stable=False),
    AssetSpec("WBTC", 8, 60000.0, 7300, 7800, 10500, 2000, stable=False),
    AssetSpec("USDC", 6, 1.0, 7700, 8000, 10450, 1000, stable=True, emode_category=1),
    AssetSpec("DAI", 18, 1.0, 6300, 7700, 10500, 1000, stable=True, emode_category=1),
)
STABLE_EMODE: dict[str, Any] = {
    "id": 1,
    "ltv": 9300,
    "lt": 9500,
    "bonus": 10100,
    "label": "Stablecoins",
}


@dataclass
class AaveDeployment:
    addresses_provider: str
    pool: str
    pool_configurator: str
    oracle: str
    data_provider: str
    acl_manager: str
    tokens: dict[str, str] = field(default_factory=dict)  # symbol -> underlying
    price_feeds: dict[str, str] = field(default_factory=dict)  # symbol -> DevnetPriceFeed
    atokens: dict[str, str] = field(default_factory=dict)
    variable_debt_tokens: dict[str, str] = field(default_factory=dict)
    decimals: dict[str, int] = field(default_factory=dict)
    deploy_block: int = 0

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def _deploy_artifact(
    chain: DevChain, key: str, types: list[str], args: list[Any], libs: dict[str, str] | None = None
) -> str:
    artifact = load_artifact(ART[key])
    return chain.deploy(DEPLOYER, linked_bytecode(artifact, libs or {}), types, args)


def _tx(chain: DevChain, to: str, signature: str, *args: Any) -> None:
    chain.send(DEPLOYER, to, calldata(signature, *args), gas=10_000_000)


def deploy_aave_market(
    chain: DevChain, assets: tuple[AssetSpec, ...] = DEFAULT_ASSETS
) -> AaveDeployment:
    """Deploy the market; the deployer (an anvil dev account, no key handled here) holds every role."""
    start_block = chain.block_number()
    provider = _deploy_artifact(
        chain, "provider", ["string", "address"], ["onchain devnet", DEPLOYER]
    )
    registry = _deploy_artifact(chain, "registry", ["address"], [DEPLOYER])
    _tx(chain, registry, "registerAddressesProvider(address,uint256)", provider, 1)
    data_provider = _deploy_artifact(chain, "data_provider", ["address"], [provider])
    _tx(chain, provider, "setPoolDataProvider(address)", data_provider)
    _tx(chain, provider, "setACLAdmin(address)", DEPLOYER)
    acl = _deploy_artifact(chain, "acl", ["address"], [provider])
    _tx(chain, provider, "setACLManager(address)", acl)
    for role in ("addPoolAdmin", "addEmergencyAdmin", "addRiskAdmin", "addAssetListingAdmin"):
        _tx(chain, acl, f"{role}(address)", DEPLOYER)

    libs: dict[str, str] = {}
    for name in LIBRARIES:
        artifact = load_artifact(f"protocol/libraries/logic/{name}.sol/{name}.json")
        libs[name] = chain.deploy(DEPLOYER, linked_bytecode(artifact, libs))

    pool_impl = _deploy_artifact(chain, "pool", ["address"], [provider], libs)
    _tx(chain, pool_impl, "initialize(address)", provider)
    _tx(chain, provider, "setPoolImpl(address)", pool_impl)
    pool = to_checksum_address(chain.view(provider, "getPool()", ["address"]))
    configurator_impl = _deploy_artifact(chain, "configurator", [], [], libs)
    _tx(chain, configurator_impl, "initialize(address)", provider)
    _tx(chain, provider, "setPoolConfiguratorImpl(address)", configurator_impl)
    configurator = to_checksum_address(chain.view(provider, "getPoolConfigurator()", ["address"]))
    _tx(chain, configurator, "updateFlashloanPremiumTotal(uint128)", 5)
    _tx(chain, configurator, "updateFlashloanPremiumToProtocol(uint128)", 4)

    feed = devnet_contract("DevnetPriceFeed")
    tokens: dict[str, str] = {}
    feeds: dict[str, str] = {}
    for spec in assets:
        tokens[spec.symbol] = _deploy_artifact(
            chain, "erc20", ["string", "string", "uint8"], [spec.symbol, spec.symbol, spec.decimals]
        )
        feeds[spec.symbol] = chain.deploy(
            DEPLOYER, feed.bytecode, ["int256", "uint8"], [spec.price_base, 8]
        )
    oracle = _deploy_artifact(
        chain,
        "oracle",
        ["address", "address[]", "address[]", "address", "address", "uint256"],
        [
            provider,
            [tokens[s.symbol] for s in assets],
            [feeds[s.symbol] for s in assets],
            ZERO_ADDRESS,
            ZERO_ADDRESS,
            10**8,
        ],
    )
    _tx(chain, provider, "setPriceOracle(address)", oracle)

    atoken_impl = _deploy_artifact(chain, "atoken", ["address"], [pool])
    sdebt_impl = _deploy_artifact(chain, "sdebt", ["address"], [pool])
    vdebt_impl = _deploy_artifact(chain, "vdebt", ["address"], [pool])
    irs_types = ["address"] + ["uint256"] * 9
    volatile_irs = _deploy_artifact(
        chain,
        "irs",
        irs_types,
        [
            provider,
            45 * RAY // 100,
            0,
            4 * RAY // 100,
            300 * RAY // 100,
            0,
            0,
            2 * RAY // 100,
            8 * RAY // 100,
            20 * RAY // 100,
        ],
    )
    stable_irs = _deploy_artifact(
        chain,
        "irs",
        irs_types,
        [
            provider,
            90 * RAY // 100,
            0,
            4 * RAY // 100,
            60 * RAY // 100,
            0,
            0,
            2 * RAY // 100,
            8 * RAY // 100,
            20 * RAY // 100,
        ],
    )
    init_inputs = [
        (
            atoken_impl,
            sdebt_impl,
            vdebt_impl,
            spec.decimals,
            stable_irs if spec.stable else volatile_irs,
            tokens[spec.symbol],
            DEPLOYER,
            ZERO_ADDRESS,
            f"Aave devnet {spec.symbol}",
            f"a{spec.symbol}",
            f"Aave devnet variable debt {spec.symbol}",
            f"variableDebt{spec.symbol}",
            f"Aave devnet stable debt {spec.symbol}",
            f"stableDebt{spec.symbol}",
            b"",
        )
        for spec in assets
    ]
    init_type = "(address,address,address,uint8,address,address,address,address,string,string,string,string,string,string,bytes)[]"
    _tx(chain, configurator, f"initReserves({init_type})", init_inputs)

    for spec in assets:
        asset = tokens[spec.symbol]
        _tx(
            chain,
            configurator,
            "configureReserveAsCollateral(address,uint256,uint256,uint256)",
            asset,
            spec.ltv_bps,
            spec.liquidation_threshold_bps,
            spec.liquidation_bonus_bps,
        )
        _tx(chain, configurator, "setReserveBorrowing(address,bool)", asset, True)
        _tx(
            chain, configurator, "setReserveFactor(address,uint256)", asset, spec.reserve_factor_bps
        )
        _tx(chain, configurator, "setReserveFlashLoaning(address,bool)", asset, True)
    _tx(
        chain,
        configurator,
        "setEModeCategory(uint8,uint16,uint16,uint16,address,string)",
        STABLE_EMODE["id"],
        STABLE_EMODE["ltv"],
        STABLE_EMODE["lt"],
        STABLE_EMODE["bonus"],
        ZERO_ADDRESS,
        STABLE_EMODE["label"],
    )
    for spec in assets:
        if spec.emode_category:
            _tx(
                chain,
                configurator,
                "setAssetEModeCategory(address,uint8)",
                tokens[spec.symbol],
                spec.emode_category,
            )

    deployment = AaveDeployment(
        addresses_provider=provider,
        pool=pool,
        pool_configurator=configurator,
        oracle=oracle,
        data_provider=data_provider,
        acl_manager=acl,
        tokens=tokens,
        price_feeds=feeds,
        decimals={s.symbol: s.decimals for s in assets},
        deploy_block=start_block,
    )
    for spec in assets:
        data = chain.view(
            pool,
            "getReserveData(address)",
            [
                "(uint256,uint128,uint128,uint128,uint128,uint128,uint40,uint16,address,address,address,address,uint128,uint128,uint128)"
            ],
            tokens[spec.symbol],
        )
        deployment.atokens[spec.symbol] = to_checksum_address(data[8])
        deployment.variable_debt_tokens[spec.symbol] = to_checksum_address(data[10])
    return deployment
