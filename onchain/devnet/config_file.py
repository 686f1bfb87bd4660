"""The TOML config describing a running devnet, so every command can be pointed at it."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def devnet_config_text(info: Any) -> str:
    """Chains and markets of the devnet; sections are added here as protocols join the devnet."""
    return (
        "# Written by `onchain devnet --write-config`: the local chain and its markets.\n"
        f'[chains.devnet]\nchain_id = {info.chain_id}\nrpc_url = "{info.rpc_url}"\nblock_time_s = 12\n\n'
        f'[[markets]]\nname = "aave-v3-devnet"\nprotocol = "aave-v3"\nchain = "devnet"\n'
        f'address = "{info.aave.addresses_provider}"\nstart_block = 0\nversion = "3.0.2"\n'
    )


def write_devnet_config(path: Path, info: Any) -> None:
    path.write_text(devnet_config_text(info))
