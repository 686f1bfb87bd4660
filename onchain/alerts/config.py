"""`[alerts]`: who is watched, from which tier, on what change, and where messages go.

Parsed once at start-up with the rest of the config, so a bad channel URL, a missing secret
variable or an unknown tier name is one ConfigError (one line, exit 2) before anything is sent.
Secrets are read from the environment here and kept in `Secret`, whose repr hides them; only a
channel's name and URL scheme are ever shown."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from functools import cached_property
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from onchain.errors import ConfigError

WAD = 10**18
# most severe first, as onchain.store.models.TIERS
ALERT_TIERS = ("LIQUIDATABLE", "PENDING", "CRITICAL", "HIGH", "WATCH")
SEVERITY = {t: i for i, t in enumerate((*ALERT_TIERS, "SAFE"))}
WEBHOOK_SCHEMES = ("http", "https")
OWN_SCHEMES = ("console",)  # printed on the daemon's stdout: for the demo and for cron mail
DEFAULT_REARM = 5 * 10**16  # hysteresis: HF must climb 0.05 above where the episode began


class Secret(str):
    """A string that never shows itself in a repr, a log line or a traceback's locals."""

    def __repr__(self) -> str:
        return "Secret('***')"


@dataclass(frozen=True)
class ChannelConfig:
    """One destination. `kind` is 'webhook' (our signed JSON, http/https), 'apprise' (any other
    scheme Apprise knows: Slack, Discord, Telegram, email...) or 'console'."""

    name: str
    kind: str
    url: Secret
    secret: Secret | None = None
    timeout_s: float = 10.0

    @property
    def scheme(self) -> str:
        return urlsplit(self.url).scheme

    @property
    def shown(self) -> str:
        """What may be printed or logged: the name and the scheme, never the URL."""
        return f"{self.name} ({self.scheme})"


@dataclass(frozen=True)
class RuleConfig:
    """Who (accounts, markets; none given: every position), from which tier and/or below which
    health factor an episode begins, when it re-arms (hysteresis), and how often it may fire.

    An episode begins when the position reaches `from_tier` (or worse) or its HF drops below
    `below_hf_wad`; a worse tier during the episode fires at once (escalation); the episode ends
    with a recovery message once neither holds and the HF is at or above the re-arm level
    (`rearm_hf_wad`, or 0.05 above the HF at which the episode began). A new episode within
    `cooldown_s` of the last message waits for the cooldown to pass."""

    name: str
    from_tier: str | None = "HIGH"
    below_hf_wad: int | None = None
    rearm_hf_wad: int | None = None
    accounts: frozenset[str] | None = None  # lowercase addresses
    markets: frozenset[str] | None = None  # market names
    cooldown_s: float = 3600.0
    recovery: bool = True
    digest_every_s: float = 0.0  # 0: no digest
    channels: tuple[str, ...] = ()  # empty: every channel

    def watches(self, market: str, account: str) -> bool:
        if self.markets is not None and market not in self.markets:
            return False
        return self.accounts is None or account.lower() in self.accounts


@dataclass(frozen=True)
class DeliveryConfig:
    """Retries: the n-th failed attempt waits base * 2**(n-1) seconds, at most `retry_max_s`;
    after `max_attempts` the delivery is marked failed (recorded, shown by `alerts list`)."""

    retry_base_s: float = 2.0
    retry_max_s: float = 300.0
    max_attempts: int = 30
    batch: int = 50


@dataclass(frozen=True)
class AlertsConfig:
    """Rules and delivery settings are parsed with the file; channels are resolved from the
    environment when first needed (`check`, at the start of `onchain run` and `alerts test`),
    so commands that send nothing (db, status, report) need no alert secrets."""

    rules: tuple[RuleConfig, ...] = ()
    channel_tables: tuple[tuple[str, dict[str, Any]], ...] = ()  # (where, table) as written
    delivery: DeliveryConfig = field(default_factory=DeliveryConfig)
    command: str = "onchain"  # how messages name the command to see more

    @property
    def channel_names(self) -> tuple[str, ...]:
        return tuple(str(t["name"]) for _, t in self.channel_tables)

    @property
    def enabled(self) -> bool:
        return bool(self.rules and self.channel_tables)

    @cached_property
    def channels(self) -> dict[str, ChannelConfig]:
        """Each channel with its URL and secret from the environment; a ConfigError names the
        first one that cannot be used (bad URL, variable not set)."""
        return {
            c.name: c
            for c in (
                _channel(table, where, dict(os.environ)) for where, table in self.channel_tables
            )
        }

    def check(self) -> None:
        """At start-up: every channel usable, or one ConfigError before anything is sent."""
        _ = self.channels

    def rule_channels(self, rule: RuleConfig) -> tuple[str, ...]:
        return rule.channels or self.channel_names


def _hf(value: Any, where: str, key: str) -> int:
    try:
        if isinstance(value, bool) or not isinstance(value, (int, float, str)):
            raise InvalidOperation
        wad = int(Decimal(str(value)) * WAD)
    except (InvalidOperation, ValueError):
        raise ConfigError(
            f"{where}: '{key}' must be a health factor like 1.10, got {value!r}"
        ) from None
    if wad <= 0:
        raise ConfigError(f"{where}: '{key}' must be above 0, got {value!r}")
    return wad


def _seconds(table: dict[str, Any], key: str, default: float, where: str) -> float:
    value = table.get(key, default)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
        raise ConfigError(f"{where}: '{key}' must be a number >= 0, got {value!r}")
    return float(value)


def _strings(table: dict[str, Any], key: str, where: str) -> list[str] | None:
    value = table.get(key)
    if value is None:
        return None
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ConfigError(f"{where}: '{key}' must be a list of strings")
    return value


def _only(table: dict[str, Any], allowed: set[str], where: str) -> None:
    unknown = sorted(set(table) - allowed)
    if unknown:
        raise ConfigError(
            f"{where}: unknown key(s) {', '.join(unknown)} (known: {', '.join(sorted(allowed))})"
        )


def _tier(value: Any, where: str) -> str:
    if not isinstance(value, str) or value.upper() not in ALERT_TIERS:
        raise ConfigError(f"{where}: unknown tier {value!r} (known: {', '.join(ALERT_TIERS)})")
    return value.upper()


def check_apprise_url(url: str, where: str) -> None:
    """Apprise's own parser decides: a URL it cannot load is a config error now, not a
    delivery failure at 3 a.m."""
    import apprise

    if not apprise.Apprise().add(url):
        raise ConfigError(f"{where}: Apprise cannot use this {urlsplit(url).scheme}:// URL")


def _channel_table(table: Any, where: str) -> str:
    """The checks that need no environment; returns the channel's name."""
    if not isinstance(table, dict):
        raise ConfigError(f"{where}: must be a table")
    _only(table, {"name", "url", "url_env", "secret_env", "timeout_s"}, where)
    name = table.get("name")
    if not isinstance(name, str) or not name or len(name) > 64:
        raise ConfigError(f"{where}: 'name' must be a short string")
    return name


def _channel(table: dict[str, Any], where: str, env: dict[str, str]) -> ChannelConfig:
    name = _channel_table(table, where)
    where = f"{where} ({name})"
    if ("url" in table) == ("url_env" in table):
        raise ConfigError(f"{where}: give exactly one of 'url' and 'url_env'")
    if "url_env" in table:
        var = table["url_env"]
        if not isinstance(var, str) or not env.get(var):
            raise ConfigError(f"{where}: environment variable {var} is not set (the channel URL)")
        url = env[var]
    else:
        url = table["url"]
        if not isinstance(url, str):
            raise ConfigError(f"{where}: 'url' must be a string")
    scheme = urlsplit(url).scheme.lower()
    if not scheme or "://" not in url:
        raise ConfigError(f"{where}: not a URL (expected scheme://...)")
    secret = None
    if "secret_env" in table:
        var = table["secret_env"]
        if not isinstance(var, str) or not env.get(var):
            raise ConfigError(f"{where}: environment variable {var} is not set (the secret)")
        secret = Secret(env[var])
    if scheme in WEBHOOK_SCHEMES:
        kind = "webhook"
        if not urlsplit(url).hostname:
            raise ConfigError(f"{where}: {scheme}:// URL without a host")
        if secret is None:
            raise ConfigError(f"{where}: a webhook needs 'secret_env' (its HMAC secret)")
    elif scheme in OWN_SCHEMES:
        kind = "console"
    else:
        kind = "apprise"
        check_apprise_url(url, where)
    timeout = _seconds(table, "timeout_s", 10.0, where) or 10.0
    return ChannelConfig(name, kind, Secret(url), secret, timeout)


def _rule(table: Any, i: int, path: Path, markets: set[str], channels: Any) -> RuleConfig:
    where = f"{path} [[alerts.rules]] #{i + 1}"
    if not isinstance(table, dict):
        raise ConfigError(f"{where}: must be a table")
    keys = {
        "name",
        "accounts",
        "markets",
        "from_tier",
        "below_hf",
        "rearm_hf",
        "cooldown_s",
        "recovery",
        "digest_every_h",
        "channels",
        "min_target_profit",
    }
    _only(table, keys, where)
    name = table.get("name", f"rule{i + 1}")
    if not isinstance(name, str) or not name or len(name) > 64:
        raise ConfigError(f"{where}: 'name' must be a short string")
    if "min_target_profit" in table:
        raise ConfigError(
            f"{where}: 'min_target_profit' is not available: the daemon's refresh does not "
            "price liquidation targets (use `onchain targets`); alert on tier LIQUIDATABLE instead"
        )
    accounts = _strings(table, "accounts", where)
    if accounts is not None:
        from eth_utils import is_address

        bad = [a for a in accounts if not is_address(a)]
        if bad:
            raise ConfigError(f"{where}: malformed address {bad[0]!r}")
    names = _strings(table, "markets", where)
    if names is not None:
        missing = [n for n in names if n not in markets]
        if missing:
            raise ConfigError(f"{where}: market(s) not defined: {', '.join(missing)}")
    below = _hf(table["below_hf"], where, "below_hf") if "below_hf" in table else None
    from_tier = _tier(table["from_tier"], where) if "from_tier" in table else None
    if from_tier is None and below is None:
        from_tier = "HIGH"
    rearm = _hf(table["rearm_hf"], where, "rearm_hf") if "rearm_hf" in table else None
    if rearm is not None and below is not None and rearm < below:
        raise ConfigError(f"{where}: 'rearm_hf' must be >= 'below_hf' (it is the way back up)")
    recovery = table.get("recovery", True)
    if not isinstance(recovery, bool):
        raise ConfigError(f"{where}: 'recovery' must be true or false")
    wanted = _strings(table, "channels", where) or []
    unknown = [c for c in wanted if c not in channels]
    if unknown:
        raise ConfigError(f"{where}: channel(s) not defined: {', '.join(unknown)}")
    return RuleConfig(
        name=name,
        from_tier=from_tier,
        below_hf_wad=below,
        rearm_hf_wad=rearm,
        accounts=None if accounts is None else frozenset(a.lower() for a in accounts),
        markets=None if names is None else frozenset(names),
        cooldown_s=_seconds(table, "cooldown_s", 3600.0, where),
        recovery=recovery,
        digest_every_s=_seconds(table, "digest_every_h", 0.0, where) * 3600.0,
        channels=tuple(wanted),
    )


def parse_alerts(raw: dict[str, Any], path: Path, markets: set[str]) -> AlertsConfig:
    """The `[alerts]` section; every mistake is one ConfigError naming the file and key."""
    section = raw.get("alerts")
    if section is None:
        return AlertsConfig()
    where = f"{path} [alerts]"
    if not isinstance(section, dict):
        raise ConfigError(f"{where}: must be a table")
    _only(section, {"rules", "channels", "delivery", "command"}, where)
    channels: dict[str, tuple[str, dict[str, Any]]] = {}
    raw_channels = section.get("channels") or []
    if not isinstance(raw_channels, list):
        raise ConfigError(f"{where}: 'channels' must be [[alerts.channels]] tables")
    for i, table in enumerate(raw_channels):
        at = f"{path} [[alerts.channels]] #{i + 1}"
        name = _channel_table(table, at)
        if name in channels:
            raise ConfigError(f"{path} [[alerts.channels]]: duplicate name {name!r}")
        channels[name] = (at, table)
    raw_rules = section.get("rules") or []
    if not isinstance(raw_rules, list):
        raise ConfigError(f"{where}: 'rules' must be [[alerts.rules]] tables")
    rules = tuple(_rule(t, i, path, markets, channels) for i, t in enumerate(raw_rules))
    if len({r.name for r in rules}) != len(rules):
        raise ConfigError(f"{path} [[alerts.rules]]: rule names must be unique")
    if rules and not channels:
        raise ConfigError(f"{where}: rules without any [[alerts.channels]] to send to")
    w = f"{path} [alerts.delivery]"
    d = section.get("delivery") or {}
    if not isinstance(d, dict):
        raise ConfigError(f"{w}: must be a table")
    _only(d, {"retry_base_s", "retry_max_s", "max_attempts"}, w)
    attempts = d.get("max_attempts", 30)
    if isinstance(attempts, bool) or not isinstance(attempts, int) or attempts < 1:
        raise ConfigError(f"{w}: 'max_attempts' must be an integer >= 1, got {attempts!r}")
    delivery = DeliveryConfig(
        retry_base_s=_seconds(d, "retry_base_s", 2.0, w),
        retry_max_s=_seconds(d, "retry_max_s", 300.0, w),
        max_attempts=attempts,
    )
    command = section.get("command", "onchain")
    if not isinstance(command, str):
        raise ConfigError(f"{where}: 'command' must be a string")
    return AlertsConfig(rules, tuple(channels.values()), delivery, command)
