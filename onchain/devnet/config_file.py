"""The TOML config describing a running devnet, so every command can be pointed at it."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def devnet_config_text(info: Any, *, with_aave36: bool = False) -> str:
    """Chains and markets of the devnet; sections are added here as protocols join the devnet.

    `with_aave36` adds the Aave V3.6.0 market. It is off by default while the Aave adapter
    follows 3.0.2 only (it cannot load a 3.6 Pool: no stable debt token); `onchain devnet
    --write-config` and the demo turn it on."""
    return (
        (
            "# Written by `onchain devnet --write-config`: the local chain and its markets.\n"
            f'[chains.devnet]\nchain_id = {info.chain_id}\nrpc_url = "{info.rpc_url}"\nblock_time_s = 12\n\n'
            f'[[markets]]\nname = "aave-v3-devnet"\nprotocol = "aave-v3"\nchain = "devnet"\n'
            f'address = "{info.aave.addresses_provider}"\nstart_block = 0\nversion = "3.0.2"\n'
        )
        + (_aave36_section(info) if with_aave36 else "")
        + _morpho_section(info)
        + _daemon_section()
        + risk_section(info)
    )


def _aave36_section(info: Any) -> str:
    """The devnet's Aave V3.6.0 market (Pool revision 10), beside the 3.0.2 one."""
    market = getattr(info, "aave36", None)
    if market is None:
        return ""
    return (
        f'\n[[markets]]\nname = "aave-v3.6-devnet"\nprotocol = "aave-v3"\nchain = "devnet"\n'
        f'address = "{market.addresses_provider}"\nstart_block = {market.deploy_block}\n'
        f'version = "{market.version}"\n'
    )


def _morpho_section(info: Any) -> str:
    """The devnet's Morpho Blue: the singleton's address; its markets are found from logs."""
    morpho = getattr(info, "morpho", None)
    if morpho is None:
        return ""
    return (
        f'\n[[markets]]\nname = "morpho-blue-devnet"\nprotocol = "morpho-blue"\nchain = "devnet"\n'
        f'address = "{morpho.morpho}"\nstart_block = {morpho.deploy_block}\n'
    )


def _daemon_section() -> str:
    """`onchain run` settings for a devnet: a SQLite file next to the config, every block."""
    return (
        '\n[store]\npath = "onchain-devnet.sqlite"  # relative to this file\n'
        '\n[jobs.refresh]\nat = "each-block"\nevery_s = 2\n'
        "\n[jobs.discover]\nevery_s = 30\n\n[jobs.assess]\nevery_s = 10\n"
        "\n[jobs.prune]\nevery_s = 600\nfull_days = 7\ndownsample_s = 3600\n"
    )


def risk_section(info: Any) -> str:
    """The devnet's reference markets: its Uniswap V3 pools, and the feeds they run ahead of."""
    uniswap = getattr(info, "uniswap", None)
    if uniswap is None:
        return ""
    text = (
        "\n[risk]\nreaction_s = 30\ntarget_probability = 0.01\n"
        f"\n[risk.targets]  # where `onchain targets` sells seized collateral\n"
        f'dex_factory = "{uniswap.factory}"\ndex_quoter = "{uniswap.quoter}"\n'
    )
    for symbol, pair, deviation, heartbeat in (
        ("WETH", "WETH/USDC", 0.005, 3600),
        ("WBTC", "WBTC/USDC", 0.005, 3600),
        ("DAI", "DAI/USDC", 0.0025, 86400),
    ):
        pool = uniswap.pools.get(pair)
        if pool is None:
            continue
        text += (
            f'\n[risk.references.{symbol}]\npool = "{pool["pool"]}"\nquote = "USDC"\n'
            f'feed = "{info.aave.price_feeds[symbol]}"\ndeviation = {deviation}\nheartbeat_s = {heartbeat}\n'
        )
    return text


def write_devnet_config(path: Path, info: Any, *, with_aave36: bool = False) -> None:
    path.write_text(devnet_config_text(info, with_aave36=with_aave36))
