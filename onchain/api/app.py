"""The HTTP face of the stored history: a read-only JSON API (FastAPI; OpenAPI at
/openapi.json, Swagger UI at /docs served from the package, no CDN), the dashboard at /, Prometheus
metrics at /metrics, and /healthz, /readyz.

Every answer comes from the store: no RPC call, so no RPC URL can leak into a page. Positions are
read back as the adapters' `Position` objects and written by `scan --json`'s own writer; stress
figures come from `onchain stress`'s own functions. Bad parameters are a 4xx with a JSON
`{"error": ...}` body, an unknown market or account a 404."""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import astuple
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

import numpy as np
from fastapi import FastAPI, HTTPException, Path, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from sqlalchemy.exc import SQLAlchemyError
from starlette.exceptions import HTTPException as StarletteHTTPException

from onchain.api import schemas as S
from onchain.api.ahead import ReadAhead
from onchain.api.settings import ApiSettings
from onchain.api.signin import mount_signin
from onchain.app.stored_book import (
    rebuild_account,
    rebuild_book,
    rebuild_book_figures,
    rebuild_book_without_prices,
)
from onchain.errors import InputError
from onchain.output import _no_nan, position_json
from onchain.store import api_queries as Q
from onchain.store import queries
from onchain.store.db import Store
from onchain.store.models import TIERS

log = logging.getLogger("onchain.api")

Tier = Literal["LIQUIDATABLE", "PENDING", "CRITICAL", "HIGH", "WATCH", "SAFE"]
Sort = Literal["risk", "health_factor", "debt", "collateral", "account", "probability"]
ADDRESS = r"^0x[0-9a-fA-F]{40}$"
UINT = r"^[0-9]{1,78}$"
ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"model": S.ErrorOut, "description": "bad parameter"},
    404: {"model": S.ErrorOut, "description": "unknown market or account"},
    422: {"model": S.ErrorOut, "description": "malformed parameter"},
}
TARGETS_NOTE = (
    "positions liquidatable now (LIQUIDATABLE) or one oracle update away (PENDING) at the newest "
    "stored block, ranked by the liquidator's bonus at the stored prices, before gas and DEX "
    "slippage; `onchain targets` prices those live"
)


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


def _age(timestamp: int) -> float:
    return max(0.0, time.time() - timestamp)


def market_out(m: Q.MarketRow) -> dict[str, Any]:
    h = m.head
    return {
        "name": m.name,
        "chain": m.chain,
        "chain_id": m.chain_id,
        "protocol": m.protocol,
        "version": m.version,
        "address": m.address,
        "scope": m.scope,
        "tracked_accounts": m.tracked_accounts,
        "snapshots": m.snapshots,
        "refresh_cursor": m.refresh_cursor,
        "latest": None
        if h is None
        else {
            "block_number": h.block_number,
            "block_hash": h.block_hash,
            "block_timestamp": h.block_timestamp,
            "block_age_s": _age(h.block_timestamp),
            "taken_at": _iso(h.taken_at),
            "positions": h.positions,
            "with_debt": h.with_debt,
            "liquidatable": h.liquidatable,
            "at_risk": h.at_risk,
        },
    }


def position_out(sp: Q.StoredPosition) -> dict[str, Any]:
    """`scan --json`'s row (the same writer) plus the stored verdict; strict JSON floats."""
    row = position_json(sp.position)
    row.update(
        {
            "market_name": sp.market,
            "label": sp.label,
            "tier": sp.risk_tier,
            "reason": sp.risk_reason,
            "reasons": sp.risk_reasons,
            "liquidation_probability": sp.liquidation_probability,
            "horizon_s": sp.horizon_s,
            "pending_health_factor": sp.pending_health_factor,
        }
    )
    return _no_nan(row)


def run_out(r: queries.RunRow) -> dict[str, Any]:
    return {
        "id": r.id,
        "job": r.job,
        "started_at": _iso(r.started_at),
        "finished_at": _iso(r.finished_at),
        "seconds": r.seconds,
        "outcome": r.outcome,
        "counts": r.counts,
        "error": r.error,
    }


def _error(status: int, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status, headers=headers)


def create_app(store: Store, settings: ApiSettings) -> FastAPI:
    """The application over an open store. Everything it serves is read at request time."""
    from fastapi_offline import FastAPIOffline

    ahead = ReadAhead(store, every_s=settings.read_ahead_s) if settings.read_ahead_s > 0 else None

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        if ahead is not None:
            ahead.start()
        try:
            yield
        finally:
            if ahead is not None:
                ahead.stop()

    app = FastAPIOffline(
        lifespan=lifespan,
        title="onchain",
        version="1",
        description="Stored snapshots of DeFi lending positions: markets, positions, accounts, "
        "targets, tiers over time, stress, daemon runs. Integers exact on chain are decimal "
        "strings. Read-only.",
        static_url="/static/docs",
        redoc_url=None,
    )
    app.state.store = store
    app.state.settings = settings
    app.state.ahead = ahead

    mount_signin(app, settings.token)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_request: Request, exc: StarletteHTTPException) -> JSONResponse:
        return _error(exc.status_code, str(exc.detail), getattr(exc, "headers", None))

    @app.exception_handler(RequestValidationError)
    async def invalid(_request: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0] if exc.errors() else {}
        where = ".".join(str(p) for p in first.get("loc", ()) if p not in ("query", "path"))
        return _error(
            422, f"{where}: {first.get('msg', 'invalid')}" if where else "invalid request"
        )

    @app.exception_handler(InputError)
    async def bad_input(_request: Request, exc: InputError) -> JSONResponse:
        return _error(400, str(exc))

    @app.exception_handler(SQLAlchemyError)
    async def store_down(_request: Request, exc: SQLAlchemyError) -> JSONResponse:
        log.error("store error: %s", type(exc).__name__)
        return _error(503, f"the store did not answer ({type(exc).__name__})")

    @app.exception_handler(Exception)
    async def unexpected(_request: Request, exc: Exception) -> JSONResponse:
        log.exception("unexpected error")
        return _error(500, f"internal error ({type(exc).__name__})")

    def known_market(store: Store, name: str) -> Q.MarketRow:
        for m in Q.markets(store):
            if m.name == name:
                return m
        raise HTTPException(404, f"unknown market {name!r}")

    # -- JSON API ---------------------------------------------------------------------------

    @app.get("/api/markets", response_model=S.MarketsOut, responses=ERRORS, tags=["markets"])
    def list_markets() -> dict[str, Any]:
        """Every market, its newest stored block and that block's age."""
        return {"markets": [market_out(m) for m in Q.markets(store)]}

    @app.get(
        "/api/markets/{market}", response_model=S.MarketOut, responses=ERRORS, tags=["markets"]
    )
    def one_market(market: str) -> dict[str, Any]:
        return market_out(known_market(store, market))

    @app.get("/api/positions", response_model=S.PositionsOut, responses=ERRORS, tags=["positions"])
    def list_positions(
        market: Annotated[str | None, Query(description="config market name")] = None,
        tier: Tier | None = None,
        account: Annotated[str | None, Query(pattern=ADDRESS)] = None,
        min_debt_base: Annotated[
            str | None,
            Query(pattern=UINT, description="total_debt_base at least this (base units)"),
        ] = None,
        sort: Sort = "risk",
        order: Literal["asc", "desc"] = "asc",
        limit: Annotated[int, Query(ge=1, le=1000)] = 50,
        offset: Annotated[int, Query(ge=0, le=10_000_000)] = 0,
    ) -> dict[str, Any]:
        """Positions at each market's newest stored block: filter, sort, page."""
        if market is not None:
            known_market(store, market)
        where = Q.PositionFilter(
            market=market,
            tier=tier,
            account=_checksum(account) if account else None,
            min_debt_base=int(min_debt_base) if min_debt_base is not None else None,
        )
        page = served_page(
            app, where, sort=sort, descending=order == "desc", limit=limit, offset=offset
        )
        return {
            "total": page.total,
            "limit": limit,
            "offset": offset,
            "positions": [position_out(p) for p in page.positions],
        }

    @app.get(
        "/api/accounts/{account}", response_model=S.AccountOut, responses=ERRORS, tags=["accounts"]
    )
    def one_account(
        account: Annotated[str, Path(pattern=ADDRESS)],
        history_limit: Annotated[int, Query(ge=1, le=5000)] = 500,
    ) -> dict[str, Any]:
        """One account in every market: its positions now and its health over time."""
        address = _checksum(account)
        if not Q.account_known(store, address):
            raise HTTPException(404, f"unknown account {address}")
        now = Q.positions_page(
            store, Q.PositionFilter(account=address), limit=1000, rebuild=rebuild_book
        )
        books = queries.account_history(
            store, address, limit=history_limit, rebuild=rebuild_account
        )
        return {
            "account": address,
            "positions": [position_out(p) for p in now.positions],
            "history": [
                {
                    "market": h.market,
                    "market_key": h.market_key,
                    "label": h.label,
                    "protocol": h.protocol,
                    "base_currency_decimals": h.base_currency_decimals,
                    "liquidation_threshold": 1.0,
                    "points": [
                        {
                            "block_number": p.block_number,
                            "block_hash": p.block_hash,
                            "block_timestamp": p.block_timestamp,
                            "health_factor": _str(p.health_factor),
                            "health_factor_float": p.health_factor_float,
                            "liquidatable": p.liquidatable,
                            "risk_tier": p.risk_tier,
                            "total_collateral_base": str(p.total_collateral_base),
                            "total_debt_base": str(p.total_debt_base),
                        }
                        for p in h.points
                    ],
                }
                for h in books
            ],
        }

    @app.get("/api/targets", response_model=S.TargetsOut, responses=ERRORS, tags=["positions"])
    def list_targets(
        market: str | None = None,
        limit: Annotated[int, Query(ge=1, le=1000)] = 25,
    ) -> dict[str, Any]:
        """Liquidation targets from stored data, the best bonus first."""
        if market is not None:
            known_market(store, market)
        return {"note": TARGETS_NOTE, "targets": stored_targets(store, market, limit)}

    @app.get(
        "/api/markets/{market}/history",
        response_model=S.MarketHistoryOut,
        responses=ERRORS,
        tags=["markets"],
    )
    def market_history(
        market: str, limit: Annotated[int, Query(ge=1, le=5000)] = 500
    ) -> dict[str, Any]:
        """Per book: positions with debt by tier, and collateral and debt at risk (every tier
        but SAFE) at each stored block, exact in the base currency and in USD."""
        known_market(store, market)
        books = Q.tier_series(store, market, limit, rebuild=rebuild_book_figures)
        return {
            "market": market,
            "books": [
                {
                    "market": b.market,
                    "market_key": b.market_key,
                    "label": b.label,
                    "protocol": b.protocol,
                    "base_currency": b.base_currency,
                    "base_currency_decimals": b.base_currency_decimals,
                    "points": [
                        {
                            "block_number": p.block_number,
                            "block_timestamp": p.block_timestamp,
                            "tiers": p.tiers,
                            "collateral_at_risk_base": str(p.collateral_at_risk_base),
                            "debt_at_risk_base": str(p.debt_at_risk_base),
                            "collateral_at_risk_usd": p.collateral_at_risk_usd,
                            "debt_at_risk_usd": p.debt_at_risk_usd,
                        }
                        for p in b.points
                    ],
                }
                for b in books
            ],
        }

    @app.get(
        "/api/markets/{market}/stress",
        response_model=dict[str, Any],
        responses=ERRORS,
        tags=["stress"],
    )
    def market_stress(
        market: str,
        scenario: Annotated[
            list[str] | None, Query(description="DATE or DATE/1h|4h|24h, repeatable")
        ] = None,
        drop: Annotated[list[str] | None, Query(description="e.g. ETH=-30%, repeatable")] = None,
        curve_max: Annotated[float, Query(ge=0.1, le=100, description="%")] = 60.0,
        curve_step: Annotated[float, Query(ge=0.1, le=100, description="%, at least 0.1")] = 5.0,
    ) -> Response:
        """`onchain stress --json` over the newest stored block of the market (same code): the
        scenarios, per market and per asset, and the liquidation curve. The cascade needs the
        reference pools read over RPC: `onchain stress` reports it."""
        known_market(store, market)
        report = stress_of(store, market, scenario, drop, curve_max, curve_step)
        return _json(report)

    @app.get(
        "/api/markets/{market}/curve",
        response_model=dict[str, Any],
        responses=ERRORS,
        tags=["stress"],
    )
    def market_curve(
        market: str,
        curve_max: Annotated[float, Query(ge=0.1, le=100, description="%")] = 60.0,
        curve_step: Annotated[float, Query(ge=0.1, le=100, description="%, at least 0.1")] = 5.0,
    ) -> Response:
        """The liquidation curve alone: collateral liquidatable vs a uniform drop of volatile
        assets (stables held), per book and in USD."""
        known_market(store, market)
        report = stress_of(store, market, None, None, curve_max, curve_step, curve_only=True)
        return _json({"block": report["block"], "curve": report["curve"]})

    @app.get("/api/runs", response_model=S.RunsOut, responses=ERRORS, tags=["daemon"])
    def daemon_runs(
        job: Literal["discover", "refresh", "assess", "prune"] | None = None,
        limit: Annotated[int, Query(ge=1, le=1000)] = 50,
    ) -> dict[str, Any]:
        """What the daemon ran, when, and how it ended (as `onchain status`)."""
        return {
            "jobs": [
                {
                    "job": j.job,
                    "last": run_out(j.last),
                    "last_ok_at": _iso(j.last_ok_at),
                    "runs_24h": j.runs_24h,
                    "failed_24h": j.failed_24h,
                }
                for j in queries.job_summaries(store)
            ],
            "runs": [run_out(r) for r in queries.recent_runs(store, limit, job)],
        }

    # -- health -----------------------------------------------------------------------------

    @app.get("/healthz", response_model=S.HealthOut, tags=["health"])
    def healthz() -> dict[str, str]:
        """The process is up."""
        return {"status": "ok"}

    @app.get(
        "/readyz",
        response_model=S.ReadyOut,
        responses={503: {"model": S.ReadyOut, "description": "not ready, with the reason"}},
        tags=["health"],
    )
    def readyz() -> Response:
        """The store answers and its newest snapshot was written less than
        `[api] ready_max_age_s` ago."""
        ready, reason, age = readiness(store, settings.ready_max_age_s)
        body = {"ready": ready, "reason": reason, "newest_snapshot_age_s": age}
        return JSONResponse(body, status_code=200 if ready else 503)

    default_openapi = app.openapi

    def openapi_with_stored_examples() -> dict[str, Any]:
        """The document, with a stored market and account as the examples of the `market` and
        `account` parameters (read when the document is first asked for), so generated
        requests reach real rows, not only 404s."""
        schema = default_openapi()
        examples = _stored_examples(store)
        for item in schema.get("paths", {}).values():
            for operation in item.values():
                for parameter in operation.get("parameters", []):
                    value = examples.get(parameter.get("name"))
                    if value is not None:
                        parameter["example"] = value
        return schema

    app.openapi = openapi_with_stored_examples  # type: ignore[method-assign]

    from onchain.api.backtests import mount_backtest_api
    from onchain.api.dashboard import mount_dashboard
    from onchain.api.metrics import mount_metrics

    mount_backtest_api(app, store)
    mount_metrics(app, store)
    mount_dashboard(app, settings)
    return app


def _stored_examples(store: Store) -> dict[str, str]:
    """A market that has a snapshot and an account of it."""
    try:
        markets = [m for m in Q.markets(store) if m.head is not None]
        if not markets:
            return {}
        page = Q.positions_page(
            store, Q.PositionFilter(market=markets[0].name), limit=1, rebuild=rebuild_book
        )
    except SQLAlchemyError:
        return {}
    out = {"market": markets[0].name}
    if page.positions:
        out["account"] = page.positions[0].position.account
    return out


def served_page(
    app: FastAPI,
    where: Q.PositionFilter,
    *,
    sort: str = "risk",
    descending: bool = False,
    limit: int = 50,
    offset: int = 0,
    rebuild: Q.BookRebuild = rebuild_book,
) -> Q.PositionPage:
    """A page of positions as a reader asked for it, noted to be read again when a block lands
    (`ahead.ReadAhead`): its next reader then finds the change layout's details rebuilt.
    `rebuild`: `rebuild_book_without_prices` for a reader that shows no liquidation price."""
    store = app.state.store

    def read() -> Q.PositionPage:
        return Q.positions_page(
            store,
            where,
            sort=sort,
            descending=descending,
            limit=limit,
            offset=offset,
            rebuild=rebuild,
        )

    page = read()
    if app.state.ahead is not None:
        key = (*astuple(where), sort, descending, limit, offset, rebuild)
        app.state.ahead.note(key, where.market, read)
    return page


def _json(value: Any) -> Response:
    from onchain.output import strict_json

    return Response(strict_json(value), media_type="application/json")


def _str(value: int | None) -> str | None:
    return None if value is None else str(value)


def _checksum(address: str) -> str:
    from onchain.app.pipeline import checked_address

    return checked_address(address, "account address")


def readiness(store: Store, max_age_s: float) -> tuple[bool, str | None, float | None]:
    """(ready, why not, age in seconds of the newest snapshot's write)."""
    try:
        heads = [m.head for m in Q.markets(store) if m.head is not None]
    except SQLAlchemyError as exc:
        return False, f"the store did not answer ({type(exc).__name__})", None
    if not heads:
        return False, "no snapshot stored yet", None
    newest = max(h.taken_at for h in heads)
    age = (datetime.now(UTC) - newest).total_seconds()
    if age > max_age_s:
        return False, f"newest snapshot is {age:.0f}s old (limit {max_age_s:g}s)", age
    return True, None, age


def stress_of(
    store: Store,
    market: str,
    scenario: list[str] | None,
    drop: list[str] | None,
    curve_max: float,
    curve_step: float,
    *,
    curve_only: bool = False,
) -> dict[str, Any]:
    """`onchain stress`'s report over the stored newest block of a market."""
    from onchain.app.stress_report import (
        no_cascade,
        parse_drops,
        select_scenarios,
        stress_book,
        stress_chosen,
    )

    if scenario and drop:
        raise InputError("give scenario or drop, not both")
    if curve_step > curve_max:
        raise InputError("curve_step must not exceed curve_max")
    custom = parse_drops(drop) if drop else None
    chosen = (
        [] if curve_only else [custom] if custom is not None else select_scenarios(scenario or [])
    )
    stored = Q.latest_positions(store, market, rebuild_book_without_prices)
    if not stored:
        raise HTTPException(404, f"no snapshot of market {market!r} yet")
    block = stored[0].position.block
    sb = stress_book(block, [s.position for s in stored])
    report = stress_chosen(sb, chosen, custom, curve_max_pct=curve_max, curve_step_pct=curve_step)
    report["cascade"] = no_cascade("the cascade reads reference pools over RPC: `onchain stress`")
    return report


def stored_targets(store: Store, market: str | None, limit: int) -> list[dict[str, Any]]:
    """LIQUIDATABLE and PENDING positions of the newest blocks, each priced as its best single
    liquidation call by the risk module's planner at the stored prices (bonus before gas)."""
    from onchain.app.stress_report import stress_book
    from onchain.risk.liquidator import plan_liquidations

    stored = [
        s
        for s in Q.latest_positions(store, market, rebuild_book_without_prices)
        if s.position.has_debt
    ]
    if not stored:
        return []
    eligible = np.array([s.risk_tier in ("LIQUIDATABLE", "PENDING") for s in stored])
    if not eligible.any():
        return []
    sb = stress_book(stored[0].position.block, [s.position for s in stored])
    plan = plan_liquidations(sb.book, eligible=eligible)
    group = {}
    for g in sb.markets:
        for r in g.rows:
            group[int(r)] = g
    rows: list[dict[str, Any]] = []
    for i in np.flatnonzero(eligible):
        s, g = stored[i], group[int(i)]
        bonus = float(plan.bonus_base[i])
        ci, di = int(plan.collateral_index[i]), int(plan.debt_index[i])
        rows.append(
            {
                "account": s.position.account,
                "market_name": s.market,
                "market": s.position.market,
                "label": s.label,
                "protocol": s.position.protocol,
                "block_number": s.position.block.number,
                "tier": s.risk_tier,
                "health_factor": _str(s.position.health_factor),
                "pending_health_factor": s.pending_health_factor,
                "liquidation_probability": s.liquidation_probability,
                "total_collateral_base": str(s.position.total_collateral_base),
                "total_debt_base": str(s.position.total_debt_base),
                "base_currency": g.base_currency,
                "collateral_asset": sb.book.symbols[ci] if ci >= 0 else None,
                "debt_asset": sb.book.symbols[di] if ci >= 0 else None,
                "debt_repaid_base": float(plan.debt_repaid_base[i]),
                "collateral_seized_base": float(plan.collateral_seized_base[i]),
                "bonus_base": bonus,
                "bonus_usd": None if g.usd_per_base is None else bonus * g.usd_per_base,
            }
        )
    rows.sort(key=lambda r: (-(r["bonus_usd"] or 0.0), TIERS.index(r["tier"]), r["account"]))
    return _no_nan(rows[:limit])


def plain_text(message: str, status: int = 200) -> PlainTextResponse:
    return PlainTextResponse(message, status_code=status)
