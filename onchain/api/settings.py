"""`onchain serve`'s settings: where it listens, the bearer token, and the readiness limit.

The `[api]` table of the config file (optional) holds `ready_max_age_s` (how old the newest
snapshot may be before /readyz says 503), `refresh_s` (how often the dashboard fetches) and
`read_ahead_s` (how often the served pages' markets are checked for a new block, to read
those pages again: `onchain.api.ahead`; 0 turns it off);
the token comes only from the environment (ONCHAIN_API_TOKEN), never from a file."""

from __future__ import annotations

import ipaddress
import math
import os
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from onchain.errors import ConfigError, InputError

TOKEN_ENV = "ONCHAIN_API_TOKEN"
DEFAULT_READY_MAX_AGE_S = 300.0
DEFAULT_REFRESH_S = 15.0
DEFAULT_READ_AHEAD_S = 1.0


@dataclass(frozen=True)
class ApiSettings:
    host: str = "127.0.0.1"
    port: int = 8000
    token: str | None = None
    ready_max_age_s: float = DEFAULT_READY_MAX_AGE_S
    refresh_s: float = DEFAULT_REFRESH_S
    # how often the served pages' newest blocks are checked, to read them again (`ahead`); 0: never
    read_ahead_s: float = DEFAULT_READ_AHEAD_S


def is_loopback(host: str) -> bool:
    """127.0.0.0/8, ::1 or localhost: only this machine can connect."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _positive(table: dict[str, Any], key: str, default: float, where: str) -> float:
    value = table.get(key, default)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigError(f"{where}: '{key}' must be a number of seconds, got {value!r}")
    if not (math.isfinite(value) and value > 0):
        raise ConfigError(f"{where}: '{key}' must be positive, got {value!r}")
    return float(value)


def _seconds_or_off(table: dict[str, Any], key: str, default: float, where: str) -> float:
    """`_positive`, or 0: off."""
    value = table.get(key, default)
    if type(value) in (int, float) and value == 0:
        return 0.0
    try:
        return _positive(table, key, default, where)
    except ConfigError:
        raise ConfigError(
            f"{where}: '{key}' must be a positive number of seconds or 0 (off), got {value!r}"
        ) from None


def api_settings(config: Path | None, host: str, port: int) -> ApiSettings:
    """Validated settings; a non-loopback host without ONCHAIN_API_TOKEN is an InputError."""
    if not 0 < port < 65536:
        raise InputError(f"--port must be 1..65535, got {port}")
    token = os.environ.get(TOKEN_ENV) or None
    if not is_loopback(host) and not token:
        raise InputError(
            f"refusing to listen on {host} without a token: set {TOKEN_ENV} "
            "(API requests then need 'Authorization: Bearer <token>'; browsers sign in at /login)"
        )
    table: dict[str, Any] = {}
    if config is not None:
        try:
            raw = tomllib.loads(config.read_text())
        except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError):
            raw = {}  # load_config has already said what is wrong with the file
        table = raw.get("api") or {}
        if not isinstance(table, dict):
            raise ConfigError(f"{config}: [api] must be a table")
        unknown = sorted(set(table) - {"ready_max_age_s", "refresh_s", "read_ahead_s"})
        if unknown:
            raise ConfigError(f"{config} [api]: unknown key(s) {', '.join(unknown)}")
    where = f"{config} [api]"
    return ApiSettings(
        host=host,
        port=port,
        token=token,
        ready_max_age_s=_positive(table, "ready_max_age_s", DEFAULT_READY_MAX_AGE_S, where),
        refresh_s=_positive(table, "refresh_s", DEFAULT_REFRESH_S, where),
        read_ahead_s=_seconds_or_off(table, "read_ahead_s", DEFAULT_READ_AHEAD_S, where),
    )
