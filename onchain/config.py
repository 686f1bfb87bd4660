"""Configuration is data: TOML files in config/, validated once into typed objects."""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from eth_utils import is_address, to_checksum_address

from onchain.errors import ConfigError


@dataclass(frozen=True)
class ChainConfig:
    name: str
    chain_id: int
    rpc_url_env: str | None = None
    rpc_url: str | None = None  # only for local nodes; real URLs carry keys: use rpc_url_env
    block_time_s: float = 12.0

    def resolve_rpc_url(self) -> str | None:
        if self.rpc_url_env and os.environ.get(self.rpc_url_env):
            return os.environ[self.rpc_url_env]
        return self.rpc_url


@dataclass(frozen=True)
class MarketConfig:
    name: str
    protocol: str
    chain: str
    address: str
    start_block: int = 0
    version: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Config:
    path: Path
    chains: dict[str, ChainConfig]
    markets: dict[str, MarketConfig]

    def market(self, name: str) -> MarketConfig:
        if name not in self.markets:
            known = ", ".join(sorted(self.markets)) or "none"
            raise ConfigError(f"market {name!r} is not in {self.path} (known: {known})")
        return self.markets[name]


def _require(table: dict[str, Any], key: str, kind: type, where: str) -> Any:
    if key not in table:
        raise ConfigError(f"{where}: missing '{key}'")
    value = table[key]
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise ConfigError(f"{where}: '{key}' must be {kind.__name__}, got {value!r}")
    return value


def load_config(path: str | Path) -> Config:
    path = Path(path)
    try:
        raw = tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"config file not found: {path}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML ({exc})") from None
    chains: dict[str, ChainConfig] = {}
    for name, table in (raw.get("chains") or {}).items():
        where = f"{path} [chains.{name}]"
        if not isinstance(table, dict):
            raise ConfigError(f"{where}: must be a table")
        chains[name] = ChainConfig(
            name=name,
            chain_id=_require(table, "chain_id", int, where),
            rpc_url_env=table.get("rpc_url_env"),
            rpc_url=table.get("rpc_url"),
            block_time_s=float(table.get("block_time_s", 12.0)),
        )
    markets: dict[str, MarketConfig] = {}
    for i, table in enumerate(raw.get("markets") or []):
        where = f"{path} [[markets]] #{i + 1}"
        name = _require(table, "name", str, where)
        chain = _require(table, "chain", str, where)
        if chain not in chains:
            raise ConfigError(f"{where}: chain {chain!r} is not defined under [chains]")
        address = _require(table, "address", str, where)
        if not is_address(address):
            raise ConfigError(f"{where}: malformed address {address!r}")
        if name in markets:
            raise ConfigError(f"{where}: duplicate market name {name!r}")
        known = {"name", "protocol", "chain", "address", "start_block", "version"}
        markets[name] = MarketConfig(
            name=name,
            protocol=_require(table, "protocol", str, where),
            chain=chain,
            address=to_checksum_address(address),
            start_block=int(table.get("start_block", 0)),
            version=table.get("version"),
            extra={k: v for k, v in table.items() if k not in known},
        )
    return Config(path, chains, markets)
