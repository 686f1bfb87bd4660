"""Configuration is data: TOML files in config/, validated once into typed objects."""

from __future__ import annotations

import difflib
import math
import os
import tomllib
from dataclasses import dataclass, field, replace
from decimal import Decimal
from pathlib import Path
from typing import Any

from eth_utils import is_address, is_checksum_address, to_checksum_address

from onchain.alerts.config import AlertsConfig, parse_alerts
from onchain.errors import ConfigError
from onchain.risk.settings import RiskSettings


@dataclass(frozen=True)
class ChainConfig:
    """A chain and its RPC endpoints. Endpoints in order of preference: the URLs in the env vars
    `rpc_url_env` then `rpc_url_envs` (those that are set), then `rpc_url` then `rpc_urls`.
    Literal URLs are for local nodes and keyless endpoints; real URLs carry keys: use env vars.
    The budget (`rpc_max_rps`, `rpc_max_batch`) applies to each endpoint on its own."""

    name: str
    chain_id: int
    rpc_url_env: str | None = None
    rpc_url: str | None = None
    block_time_s: float = 12.0
    rpc_url_envs: tuple[str, ...] = ()
    rpc_urls: tuple[str, ...] = ()
    rpc_max_rps: float | None = None
    rpc_max_batch: int = 500

    def resolve_rpc_urls(self) -> list[str]:
        envs = ([self.rpc_url_env] if self.rpc_url_env else []) + list(self.rpc_url_envs)
        urls = [os.environ[e] for e in envs if os.environ.get(e)]
        urls += ([self.rpc_url] if self.rpc_url else []) + list(self.rpc_urls)
        return list(dict.fromkeys(urls))

    def resolve_rpc_url(self) -> str | None:
        urls = self.resolve_rpc_urls()
        return urls[0] if urls else None

    def rpc_hint(self) -> str:
        """How to give this chain an endpoint, for error messages."""
        envs = ([self.rpc_url_env] if self.rpc_url_env else []) + list(self.rpc_url_envs)
        return f"set {' or '.join(envs)}" if envs else "give rpc_url_env or rpc_urls"


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
    store: StoreConfig = field(default_factory=lambda: StoreConfig())
    jobs: JobsConfig = field(default_factory=lambda: JobsConfig())
    tiers: TierThresholds = field(default_factory=lambda: TierThresholds())
    risk: dict[str, Any] = field(default_factory=dict)  # [risk] as written
    # [risk] validated once, at load: what the risk assessment runs with
    risk_settings: RiskSettings = field(default_factory=lambda: RiskSettings())
    alerts: AlertsConfig = field(default_factory=lambda: AlertsConfig())  # [alerts]
    # [risk.tiers] when the file has it: health factors below which a position is at least
    # CRITICAL / HIGH / WATCH whatever its probability (scan, watch and the daemon honour it)
    health_floors: TierThresholds | None = None
    daemon: DaemonConfig = field(default_factory=lambda: DaemonConfig())  # [daemon]

    def market(self, name: str) -> MarketConfig:
        if name not in self.markets:
            known = ", ".join(sorted(self.markets)) or "none"
            raise ConfigError(f"market {name!r} is not in {self.path} (known: {known})")
        return self.markets[name]


def _did_you_mean(key: str, candidates: Any) -> str:
    """' (did you mean 'address'?)' for a misspelt key, else ''."""
    close = difflib.get_close_matches(key, [str(c) for c in candidates], n=1, cutoff=0.75)
    return f" (did you mean '{close[0]}'?)" if close else ""


def _require(table: dict[str, Any], key: str, kind: type, where: str) -> Any:
    if key not in table:
        typo = difflib.get_close_matches(key, [str(k) for k in table], n=1, cutoff=0.75)
        hint = f" ('{typo[0]}' is not a known key: misspelt?)" if typo else ""
        raise ConfigError(f"{where}: missing '{key}'{hint}")
    value = table[key]
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise ConfigError(f"{where}: '{key}' must be {kind.__name__}, got {value!r}")
    return value


def load_config(path: str | Path) -> Config:
    path = Path(path)
    try:
        raw = tomllib.loads(path.read_text())
    except (IsADirectoryError, PermissionError, UnicodeDecodeError) as exc:
        raise ConfigError(f"config file {path} cannot be read ({exc.__class__.__name__})") from None
    except FileNotFoundError:
        raise ConfigError(f"config file not found: {path}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML ({exc})") from None
    chains: dict[str, ChainConfig] = {}
    for name, table in (raw.get("chains") or {}).items():
        where = f"{path} [chains.{name}]"
        if not isinstance(table, dict):
            raise ConfigError(f"{where}: must be a table")
        chains[name] = _chain(name, table, where)
    markets: dict[str, MarketConfig] = {}
    for i, table in enumerate(raw.get("markets") or []):
        where = f"{path} [[markets]] #{i + 1}"
        name = _require(table, "name", str, where)
        chain = _require(table, "chain", str, where)
        if chain not in chains:
            raise ConfigError(f"{where}: chain {chain!r} is not defined under [chains]")
        address = _require(table, "address", str, where)
        digits = address[2:]
        mixed = digits != digits.lower() and digits != digits.upper()
        if not is_address(address) or (mixed and not is_checksum_address(address)):
            raise ConfigError(f"{where}: malformed address {address!r} (or a wrong checksum)")
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
    risk = raw.get("risk") or {}
    if not isinstance(risk, dict):
        raise ConfigError(f"{path}: [risk] must be a table")
    alerts = parse_alerts(raw, path, set(markets))
    store, jobs, tiers = _store_jobs_tiers(raw, path, markets)
    floors = tiers if "tiers" in risk else None
    if "enabled" not in ((raw.get("jobs") or {}).get("deliver") or {}):  # on where rules are
        jobs = replace(jobs, deliver=replace(jobs.deliver, enabled=alerts.enabled))
    try:
        settings = RiskSettings.from_config(risk)
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from None
    return Config(
        path,
        chains,
        markets,
        store,
        jobs,
        tiers,
        risk=risk,
        risk_settings=settings,
        alerts=alerts,
        health_floors=floors,
        daemon=_daemon(raw, path),
    )


_CHAIN_KEYS = {
    "chain_id",
    "rpc_url_env",
    "rpc_url",
    "rpc_url_envs",
    "rpc_urls",
    "rpc_max_rps",
    "rpc_max_batch",
    "block_time_s",
}


def _strings(table: dict[str, Any], key: str, where: str) -> tuple[str, ...]:
    value = table.get(key, [])
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise ConfigError(f"{where}: '{key}' must be a list of non-empty strings")
    return tuple(value)


def _chain(name: str, table: dict[str, Any], where: str) -> ChainConfig:
    _only(table, _CHAIN_KEYS, where)
    for key in ("rpc_url_env", "rpc_url"):
        if key in table and not (isinstance(table[key], str) and table[key]):
            raise ConfigError(f"{where}: '{key}' must be a non-empty string")
    rps = table.get("rpc_max_rps")
    if rps is not None:
        rps = _number(table, "rpc_max_rps", 0, where, minimum=0.001)
    return ChainConfig(
        name=name,
        chain_id=_require(table, "chain_id", int, where),
        rpc_url_env=table.get("rpc_url_env"),
        rpc_url=table.get("rpc_url"),
        block_time_s=_number(table, "block_time_s", 12.0, where, minimum=0.001),
        rpc_url_envs=_strings(table, "rpc_url_envs", where),
        rpc_urls=_strings(table, "rpc_urls", where),
        rpc_max_rps=rps,
        rpc_max_batch=_number(table, "rpc_max_batch", 500, where, integer=True, minimum=1),
    )


# -- [store], [jobs.*] and [risk.tiers]: the daemon's settings ------------------------------------

WAD = 10**18
REFRESH_AT = ("latest", "safe", "each-block")
# how the daemon stores a block: every position whole ("snapshots"), what the chain changed
# ("changes", rebuilt exactly on read), or both (while readers move to the change layout)
STORE_LAYOUTS = ("snapshots", "changes", "both")
# health factors whose crossing stores a position's verdict again in the change layout
VERDICT_BANDS = (1.0, 1.05, 1.1, 1.25, 1.5, 2.0)


@dataclass(frozen=True)
class StoreConfig:
    """Where snapshots are kept: a SQLAlchemy URL (from `url_env` when it carries a password), or
    a SQLite file whose relative path is resolved against the config file's folder."""

    url: str | None = None
    url_env: str | None = None
    path: Path | None = None
    layout: str = "snapshots"
    verdict_bands: tuple[float, ...] = VERDICT_BANDS
    # the change layout's incremental blocks: how many of the riskiest positions get their
    # details (assets, liquidation prices) written again at every block, the first pages
    whole_riskiest: int = 200

    def resolve_url(self) -> str | None:
        if self.url_env and os.environ.get(self.url_env):
            return os.environ[self.url_env]
        if self.url:
            return self.url
        return f"sqlite:///{self.path}" if self.path is not None else None


@dataclass(frozen=True)
class JobConfig:
    """One scheduled job: whether it runs and how often (seconds between starts)."""

    enabled: bool = True
    every_s: float = 60.0


@dataclass(frozen=True)
class RefreshJobConfig(JobConfig):
    """`at`: the latest block, a safe block (`confirmations` behind), or each new block.
    `incremental`: keep account state and re-read only what a block's logs touched (protocols
    that support it); `reconcile_every_blocks`: then compare the kept state with a full read
    every so many blocks and repair differences (0: never). `resume_max_gap_blocks`: a
    refresher taking up the store's states after a stop reads the logs since; past this many
    blocks it reads every account instead (the logs of a long gap cost more; 0: no limit)."""

    every_s: float = 12.0
    at: str = "latest"
    confirmations: int = 0
    max_blocks_per_run: int = 100
    reorg_window: int = 64
    incremental: bool = True
    reconcile_every_blocks: int = 100
    resume_max_gap_blocks: int = 10_000


@dataclass(frozen=True)
class PruneJobConfig(JobConfig):
    """Full resolution for `full_days` of chain time, then one snapshot per `downsample_s`;
    nothing older than `keep_days` (0: keep the downsampled history forever)."""

    every_s: float = 3600.0
    full_days: float = 7.0
    downsample_s: int = 3600
    keep_days: float = 0.0
    job_runs_days: float = 30.0


@dataclass(frozen=True)
class JobsConfig:
    discover: JobConfig = field(default_factory=lambda: JobConfig(every_s=300.0))
    refresh: RefreshJobConfig = field(default_factory=RefreshJobConfig)
    assess: JobConfig = field(default_factory=JobConfig)
    prune: PruneJobConfig = field(default_factory=PruneJobConfig)
    # sends the alerts outbox (onchain.alerts); on by default where [alerts] has rules
    deliver: JobConfig = field(default_factory=lambda: JobConfig(enabled=False, every_s=2.0))
    markets: tuple[str, ...] | None = None  # None: every market in the config


@dataclass(frozen=True)
class DaemonConfig:
    """[daemon]: `lease_seconds` is how long a worker (`run --worker`) holds a market without
    renewing it: a worker that dies loses its markets to the others within about that time."""

    lease_seconds: float = 30.0


def _daemon(raw: dict[str, Any], path: Path) -> DaemonConfig:
    where = f"{path} [daemon]"
    table = _section(raw, "daemon", str(path))
    _only(table, {"lease_seconds"}, where)
    return DaemonConfig(lease_seconds=_number(table, "lease_seconds", 30.0, where, minimum=1))


@dataclass(frozen=True)
class TierThresholds:
    """Health factors (wad, exact) below which a position is CRITICAL, HIGH or WATCH;
    LIQUIDATABLE is the protocol's own verdict, SAFE everything else."""

    critical_wad: int = 105 * 10**16
    high_wad: int = 110 * 10**16
    watch_wad: int = 125 * 10**16


def _section(raw: dict[str, Any], key: str, where: str) -> dict[str, Any]:
    value = raw.get(key, {})
    if not isinstance(value, dict):
        raise ConfigError(f"{where}: [{key}] must be a table")
    return value


def _only(table: dict[str, Any], allowed: set[str], where: str) -> None:
    unknown = sorted(set(table) - allowed)
    if unknown:
        raise ConfigError(
            f"{where}: unknown key(s) {', '.join(unknown)}{_did_you_mean(unknown[0], allowed)} "
            f"(known: {', '.join(sorted(allowed))})"
        )


def _number(
    table: dict[str, Any],
    key: str,
    default: float,
    where: str,
    *,
    integer: bool = False,
    minimum: float = 0,
) -> Any:
    value = table.get(key, default)
    ok = isinstance(value, int) if integer else isinstance(value, (int, float))
    if isinstance(value, bool) or not ok or value < minimum:
        kind = "an integer" if integer else "a number"
        raise ConfigError(f"{where}: '{key}' must be {kind} >= {minimum:g}, got {value!r}")
    return int(value) if integer else float(value)


def _job(table: dict[str, Any], default_every_s: float, where: str, extra: set[str]) -> Any:
    """The keys every job has (enabled, every_s); `extra` names the job's own keys."""
    _only(table, {"enabled", "every_s"} | extra, where)
    enabled = table.get("enabled", True)
    if not isinstance(enabled, bool):
        raise ConfigError(f"{where}: 'enabled' must be true or false, got {enabled!r}")
    every_s = _number(table, "every_s", default_every_s, where, minimum=0.05)
    return {"enabled": enabled, "every_s": every_s}


def _store_jobs_tiers(
    raw: dict[str, Any], path: Path, markets: dict[str, MarketConfig]
) -> tuple[StoreConfig, JobsConfig, TierThresholds]:
    """Parse the daemon's sections; every mistake is one ConfigError naming file and key."""
    where = f"{path} [store]"
    store_t = _section(raw, "store", str(path))
    _only(store_t, {"url", "url_env", "path", "layout", "verdict_bands", "whole_riskiest"}, where)
    for key in ("url", "url_env", "path"):
        if key in store_t and not isinstance(store_t[key], str):
            raise ConfigError(f"{where}: '{key}' must be a string")
    db_path = store_t.get("path")
    layout = store_t.get("layout", "snapshots")
    if layout not in STORE_LAYOUTS:
        raise ConfigError(f"{where}: 'layout' must be one of {', '.join(STORE_LAYOUTS)}")
    bands = store_t.get("verdict_bands", list(VERDICT_BANDS))
    if (
        not isinstance(bands, list)
        or not all(isinstance(b, (int, float)) and not isinstance(b, bool) for b in bands)
        or not all(math.isfinite(b) for b in bands)  # nan and inf order nothing
        or sorted(bands) != bands
    ):
        raise ConfigError(f"{where}: 'verdict_bands' must be a rising list of health factors")
    riskiest = store_t.get("whole_riskiest", StoreConfig.whole_riskiest)
    if not isinstance(riskiest, int) or isinstance(riskiest, bool) or riskiest < 0:
        raise ConfigError(f"{where}: 'whole_riskiest' must be a whole number >= 0")
    store = StoreConfig(
        url=store_t.get("url"),
        url_env=store_t.get("url_env"),
        path=(path.parent / db_path).resolve() if db_path else None,
        layout=layout,
        verdict_bands=tuple(float(b) for b in bands),
        whole_riskiest=riskiest,
    )

    jobs_t = _section(raw, "jobs", str(path))
    _only(
        jobs_t, {"discover", "refresh", "assess", "prune", "deliver", "markets"}, f"{path} [jobs]"
    )
    names = jobs_t.get("markets")
    if names is not None:
        if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
            raise ConfigError(f"{path} [jobs]: 'markets' must be a list of market names")
        missing = [n for n in names if n not in markets]
        if missing:
            raise ConfigError(f"{path} [jobs]: market(s) not defined: {', '.join(missing)}")
    defaults_jobs = JobsConfig()
    w = f"{path} [jobs.discover]"
    t = _section(jobs_t, "discover", w)
    discover = JobConfig(**_job(t, defaults_jobs.discover.every_s, w, set()))
    w = f"{path} [jobs.refresh]"
    t = _section(jobs_t, "refresh", w)
    base = _job(
        t,
        defaults_jobs.refresh.every_s,
        w,
        {
            "at",
            "confirmations",
            "max_blocks_per_run",
            "reorg_window",
            "incremental",
            "reconcile_every_blocks",
            "resume_max_gap_blocks",
        },
    )
    incremental = t.get("incremental", True)
    if not isinstance(incremental, bool):
        raise ConfigError(f"{w}: 'incremental' must be true or false, got {incremental!r}")
    at = t.get("at", "latest")
    if at not in REFRESH_AT:
        raise ConfigError(f"{w}: 'at' must be one of {', '.join(REFRESH_AT)}, got {at!r}")
    refresh = RefreshJobConfig(
        **base,
        at=at,
        confirmations=_number(t, "confirmations", 0, w, integer=True),
        max_blocks_per_run=_number(t, "max_blocks_per_run", 100, w, integer=True, minimum=1),
        reorg_window=_number(t, "reorg_window", 64, w, integer=True, minimum=1),
        incremental=incremental,
        reconcile_every_blocks=_number(t, "reconcile_every_blocks", 100, w, integer=True),
        resume_max_gap_blocks=_number(
            t,
            "resume_max_gap_blocks",
            defaults_jobs.refresh.resume_max_gap_blocks,
            w,
            integer=True,
            minimum=0,
        ),
    )
    w = f"{path} [jobs.assess]"
    assess = JobConfig(
        **_job(_section(jobs_t, "assess", w), defaults_jobs.assess.every_s, w, set())
    )
    w = f"{path} [jobs.prune]"
    t = _section(jobs_t, "prune", w)
    base = _job(
        t,
        defaults_jobs.prune.every_s,
        w,
        {"full_days", "downsample_s", "keep_days", "job_runs_days"},
    )
    prune = PruneJobConfig(
        **base,
        full_days=_number(t, "full_days", 7.0, w),
        downsample_s=_number(t, "downsample_s", 3600, w, integer=True, minimum=1),
        keep_days=_number(t, "keep_days", 0.0, w),
        job_runs_days=_number(t, "job_runs_days", 30.0, w),
    )
    if prune.keep_days and prune.keep_days < prune.full_days:
        raise ConfigError(f"{w}: 'keep_days' must be 0 (forever) or >= 'full_days'")
    w = f"{path} [jobs.deliver]"
    deliver = JobConfig(**_job(_section(jobs_t, "deliver", w), 2.0, w, set()))
    jobs = JobsConfig(
        discover, refresh, assess, prune, deliver, tuple(names) if names is not None else None
    )

    w = f"{path} [risk.tiers]"
    tiers_t = _section(_section(raw, "risk", str(path)), "tiers", w)
    _only(tiers_t, {"critical", "high", "watch"}, w)
    defaults = TierThresholds()
    wads = {}
    for key, default in (
        ("critical", defaults.critical_wad),
        ("high", defaults.high_wad),
        ("watch", defaults.watch_wad),
    ):
        value = tiers_t.get(key)
        if value is None:
            wads[key] = default
            continue
        try:
            if isinstance(value, bool) or not isinstance(value, (int, float, str)):
                raise ValueError
            wads[key] = int(Decimal(str(value)) * WAD)
        except (ValueError, ArithmeticError):
            raise ConfigError(
                f"{w}: '{key}' must be a health factor like 1.05, got {value!r}"
            ) from None
    if not WAD <= wads["critical"] <= wads["high"] <= wads["watch"]:
        raise ConfigError(f"{w}: thresholds must satisfy 1 <= critical <= high <= watch")
    tiers = TierThresholds(wads["critical"], wads["high"], wads["watch"])
    return store, jobs, tiers
