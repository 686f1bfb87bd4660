"""The dashboard: server-rendered pages (Jinja2 templates in this package) whose tables link
market -> positions -> account, and whose charts are drawn in the browser with Plotly from the
JSON API, fetched again every `refresh_s` seconds. plotly.min.js is served from the `plotly`
Python package: nothing is loaded from another host, so the pages work offline."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from fastapi import FastAPI, Request
from fastapi.responses import FileResponse, HTMLResponse, Response
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from pydantic import ValidationError

from onchain.api.settings import ApiSettings
from onchain.app.stored_book import rebuild_book, rebuild_book_without_prices
from onchain.errors import InputError
from onchain.numbers import format_base
from onchain.store import api_queries as Q
from onchain.store.models import TIERS

HERE = Path(__file__).resolve().parent
WAD = 10**18


def plotly_js() -> Path:
    """plotly.min.js as the `plotly` wheel ships it."""
    import plotly

    path = Path(plotly.__file__).resolve().parent / "package_data" / "plotly.min.js"
    if not path.is_file():
        raise FileNotFoundError(f"plotly.min.js not found in the plotly package at {path}")
    return path


def _hf(value: str | None) -> str:
    if value is None:
        return "∞ (no debt)"
    whole, rest = divmod(int(value), WAD)
    return f"{whole}.{rest * 10**4 // WAD:04d}"  # truncated: 0.99999 never shows as 1.0000


def _amount(value: str, decimals: int) -> str:
    return format_base(int(value), decimals)


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value:.2%}"


def _usd(value: float | None) -> str:
    return "n/a" if value is None else f"{value:,.2f}"


def _age(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f}s"
    if seconds < 7200:
        return f"{seconds / 60:.0f}m"
    if seconds < 172_800:
        return f"{seconds / 3600:.0f}h"
    return f"{seconds / 86400:.0f}d"


def mount_dashboard(app: FastAPI, settings: ApiSettings) -> None:
    from onchain.api import app as api

    templates = Jinja2Templates(directory=str(HERE / "templates"))
    templates.env.filters.update(hf=_hf, amount=_amount, pct=_pct, usd=_usd, age=_age)
    app.mount("/static/app", StaticFiles(directory=str(HERE / "static")), name="static-app")
    plotly_path = plotly_js()

    @app.get("/static/plotly.min.js", include_in_schema=False)
    def plotly_file() -> FileResponse:
        return FileResponse(plotly_path, media_type="text/javascript")

    def render(
        request: Request, name: str, page: str, status: int = 200, **context: Any
    ) -> Response:
        return templates.TemplateResponse(
            request,
            name,
            {
                "page": page,
                "refresh_s": settings.refresh_s,
                "signed_in": getattr(request.state, "signed_in", False),
                "now": f"{datetime.now(UTC):%Y-%m-%d %H:%M:%S} UTC",
                **context,
            },
            status_code=status,
        )

    def not_found(request: Request, message: str) -> Response:
        return render(request, "error.html", "error", 404, code=404, message=message)

    store = app.state.store

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    def index(request: Request) -> Response:
        markets = [api.market_out(m) for m in Q.markets(store)]
        targets = api.stored_targets(store, None, 15)
        return render(
            request,
            "index.html",
            "index",
            markets=markets,
            targets=targets,
            targets_note=api.TARGETS_NOTE,
        )

    @app.get("/markets/{market}", response_class=HTMLResponse, include_in_schema=False)
    def market_page(request: Request, market: str) -> Response:
        rows = [m for m in Q.markets(store) if m.name == market]
        if not rows:
            return not_found(request, f"unknown market {market!r}")
        page = api.served_page(
            app, Q.PositionFilter(market=market), limit=50, rebuild=rebuild_book_without_prices
        )
        return render(
            request,
            "market.html",
            "market",
            market=api.market_out(rows[0]),
            positions=[api.position_out(p) for p in page.positions],
        )

    @app.get("/positions", response_class=HTMLResponse, include_in_schema=False)
    def positions_page(request: Request) -> Response:
        params = {k: v for k, v in request.query_params.items() if v != ""}
        markets = Q.markets(store)
        try:
            filters = _filters(params, {m.name for m in markets})
        except (InputError, ValidationError, ValueError) as exc:
            return render(request, "error.html", "error", 400, code=400, message=str(exc))
        limit, offset = filters["limit"], filters["offset"]
        page = api.served_page(
            app,
            Q.PositionFilter(
                filters["market"], filters["tier"], filters["account"], filters["min_debt_base"]
            ),
            sort=filters["sort"],
            descending=filters["order"] == "desc",
            limit=limit,
            offset=offset,
            rebuild=rebuild_book_without_prices,  # its table shows no asset
        )
        query = {k: v for k, v in params.items() if k not in ("offset",)}

        def url(at: int) -> str:
            return "/positions?" + urlencode({**query, "offset": at})

        shown = len(page.positions)
        return render(
            request,
            "positions.html",
            "positions",
            markets=markets,
            tiers=TIERS,
            sorts=Q.SORTS,
            filters=filters,
            positions=[api.position_out(p) for p in page.positions],
            query=urlencode({**query, "offset": offset, "limit": limit}),
            page_info=f"{offset + 1 if shown else 0}–{offset + shown} of {page.total}",
            prev_url=url(max(0, offset - limit)) if offset > 0 else None,
            next_url=url(offset + limit) if offset + limit < page.total else None,
        )

    @app.get("/accounts/{account}", response_class=HTMLResponse, include_in_schema=False)
    def account_page(request: Request, account: str) -> Response:
        try:
            address = api._checksum(account)
        except InputError as exc:
            return render(request, "error.html", "error", 400, code=400, message=str(exc))
        if not Q.account_known(store, address):
            return not_found(request, f"unknown account {address}")
        from onchain.app.stored_book import rebuild_account
        from onchain.store import queries

        page = Q.positions_page(
            store, Q.PositionFilter(account=address), limit=1000, rebuild=rebuild_book
        )
        return render(
            request,
            "account.html",
            "account",
            account=address,
            positions=[api.position_out(p) for p in page.positions],
            history=queries.account_history(store, address, limit=1, rebuild=rebuild_account),
        )

    from onchain.api.backtests import mount_backtest_pages

    mount_backtest_pages(app, store, render, not_found)


def _filters(params: dict[str, str], markets: set[str]) -> dict[str, Any]:
    """The positions page's query, checked as the API checks it (one message when wrong)."""
    from onchain.api.app import _checksum

    market = params.get("market")
    if market is not None and market not in markets:
        raise InputError(f"unknown market {market!r}")
    tier = params.get("tier")
    if tier is not None and tier not in TIERS:
        raise InputError(f"unknown tier {tier!r} (tiers: {', '.join(TIERS)})")
    sort = params.get("sort", "risk")
    if sort not in Q.SORTS:
        raise InputError(f"unknown sort {sort!r} (sorts: {', '.join(Q.SORTS)})")
    order = params.get("order", "asc")
    if order not in ("asc", "desc"):
        raise InputError("order must be asc or desc")
    min_debt = params.get("min_debt_base")
    if min_debt is not None and not (min_debt.isdigit() and len(min_debt) <= 78):
        raise InputError("min_debt_base must be a non-negative integer (base units)")
    try:
        limit = int(params.get("limit", 50))
        offset = int(params.get("offset", 0))
    except ValueError:
        raise InputError("limit and offset must be integers") from None
    if not (1 <= limit <= 1000 and 0 <= offset <= 10_000_000):
        raise InputError("limit must be 1..1000 and offset 0..10000000")
    account = params.get("account")
    return {
        "market": market,
        "tier": tier,
        "account": _checksum(account) if account else None,
        "min_debt_base": int(min_debt) if min_debt is not None else None,
        "sort": sort,
        "order": order,
        "limit": limit,
        "offset": offset,
    }
