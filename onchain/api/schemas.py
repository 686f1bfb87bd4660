"""What the JSON API returns, as pydantic models: the OpenAPI document is generated from them,
and every response is validated against them. Integers that are exact on chain are decimal
strings (as in `--json`); floats are what-ifs and probabilities."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field

UintStr = str  # an unsigned integer as a decimal string (exact on chain)


class ErrorOut(BaseModel):
    error: str = Field(description="what was wrong, in one line")


class SnapshotOut(BaseModel):
    block_number: int
    block_hash: str
    block_timestamp: int
    block_age_s: float = Field(description="seconds between the block's time and now")
    taken_at: str = Field(description="when the daemon wrote it (ISO 8601, UTC)")
    positions: int
    with_debt: int
    liquidatable: int
    at_risk: int = Field(description="positions in any tier but SAFE")


class MarketOut(BaseModel):
    name: str
    chain: str
    chain_id: int
    protocol: str
    version: str | None
    address: str
    scope: str = Field(description="'' for the whole deployment, or one market id inside it")
    tracked_accounts: int
    snapshots: int
    refresh_cursor: int | None
    latest: SnapshotOut | None = Field(description="the newest stored snapshot; null before any")


class MarketsOut(BaseModel):
    markets: list[MarketOut]


class AssetOut(BaseModel):
    asset: str
    symbol: str
    decimals: int
    price_base: UintStr
    collateral_raw: UintStr
    debt_raw: UintStr
    collateral_base: UintStr
    debt_base: UintStr
    collateral_enabled: bool
    liquidation_threshold_bps: int
    liquidation_price_base: UintStr | None
    liquidation_price: str | None


class PositionOut(BaseModel):
    """The `scan --json` row of the position at its stored block, plus its stored risk verdict
    and the market (config name) it is stored under."""

    account: str
    protocol: str
    market: str = Field(description="the protocol's key of the book (as in scan --json)")
    market_name: str = Field(description="the config's market name")
    label: str
    block_number: int
    block_hash: str
    block_timestamp: int
    health_factor: UintStr | None = Field(description="wad; null when there is no debt")
    liquidatable: bool
    liquidation_hold: dict[str, Any] | None = Field(
        None,
        description="below 1 but the protocol refuses every call now: reason (grace_period, "
        "paused, inactive), until (last refused unix second of a grace period), assets",
    )
    total_collateral_base: UintStr
    total_debt_base: UintStr
    available_borrows_base: UintStr
    liquidation_threshold_bps: int
    ltv_bps: int
    base_currency_decimals: int
    emode_category: Any = None
    protocol_version: str | None
    assets: list[AssetOut]
    details: dict[str, Any]
    tier: str
    reason: str
    reasons: list[str] | None
    liquidation_probability: float | None
    horizon_s: float | None
    pending_health_factor: float | None


class PositionsOut(BaseModel):
    total: int = Field(description="positions matching the filter")
    limit: int
    offset: int
    positions: list[PositionOut]


class HistoryPointOut(BaseModel):
    block_number: int
    block_hash: str
    block_timestamp: int
    health_factor: UintStr | None
    health_factor_float: float | None
    liquidatable: bool
    risk_tier: str
    total_collateral_base: UintStr
    total_debt_base: UintStr


class AccountBookOut(BaseModel):
    market: str
    market_key: str
    label: str
    protocol: str
    base_currency_decimals: int
    liquidation_threshold: float = Field(
        description="the health factor at which the position is liquidatable (1.0)"
    )
    points: list[HistoryPointOut]


class AccountOut(BaseModel):
    account: str
    positions: list[PositionOut] = Field(description="at each market's newest stored block")
    history: list[AccountBookOut]


class TargetOut(BaseModel):
    account: str
    market_name: str
    market: str
    label: str
    protocol: str
    block_number: int
    tier: str
    health_factor: UintStr | None
    pending_health_factor: float | None
    liquidation_probability: float | None
    total_collateral_base: UintStr
    total_debt_base: UintStr
    base_currency: str
    collateral_asset: str | None
    debt_asset: str | None
    debt_repaid_base: float
    collateral_seized_base: float
    bonus_base: float = Field(description="seized value - repaid value: before gas and slippage")
    bonus_usd: float | None


class TargetsOut(BaseModel):
    note: str
    targets: list[TargetOut]


class BookPointOut(BaseModel):
    block_number: int
    block_timestamp: int
    tiers: dict[str, int]
    collateral_at_risk_base: UintStr
    debt_at_risk_base: UintStr
    collateral_at_risk_usd: float | None
    debt_at_risk_usd: float | None


class BookSeriesOut(BaseModel):
    market: str
    market_key: str
    label: str
    protocol: str
    base_currency: str
    base_currency_decimals: int
    points: list[BookPointOut]


class MarketHistoryOut(BaseModel):
    market: str
    books: list[BookSeriesOut]


class RunOut(BaseModel):
    id: int
    job: str
    started_at: str
    finished_at: str | None
    seconds: float | None
    outcome: str
    counts: dict[str, Any]
    error: str | None


class JobOut(BaseModel):
    job: str
    last: RunOut
    last_ok_at: str | None
    runs_24h: int
    failed_24h: int


class RunsOut(BaseModel):
    jobs: list[JobOut]
    runs: list[RunOut]


class HealthOut(BaseModel):
    status: str


class ReadyOut(BaseModel):
    ready: bool
    reason: str | None
    newest_snapshot_age_s: float | None


class BacktestModelOut(BaseModel):
    brier: float | None
    skill_vs_climatology: float | None
    skill_vs_best_hf_rule: float | None
    log_loss: float | None
    auc: float | None


class BacktestRunOut(BaseModel):
    id: int
    ran_at: str = Field(description="when the run was stored (ISO 8601, UTC)")
    prices: str = Field(description="the --prices source as given")
    window_start: str = Field(description="--start (ISO 8601, UTC)")
    window_end: str = Field(description="--end, exclusive (ISO 8601, UTC)")
    horizon_h: int
    cadence_h: int
    seed: int
    borrowers: int
    markets: list[str]
    models: list[str] = Field(description="the models scored, in the report's order")
    samples: int
    liquidations: int
    summary: dict[str, BacktestModelOut] = Field(description="per model, its headline figures")


class BacktestRunsOut(BaseModel):
    runs: list[BacktestRunOut]


class BacktestOut(BacktestRunOut):
    report: dict[str, Any] = Field(
        description="the whole report as `onchain backtest --json` printed it (with the ROC "
        "points per model)"
    )
