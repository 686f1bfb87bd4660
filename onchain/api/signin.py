"""Who may read when `onchain serve` has a token: API clients send `Authorization: Bearer
<token>`; a browser, which cannot add that header to a page it opens, signs in once at /login
and then carries a session cookie (its value is random, kept in this process's memory: never
the token, and signing out ends it on the server too). Without a token nothing here is mounted.

The token is only ever read from a POSTed form body, so it never reaches a URL, the access log
or a page; it is compared in constant time."""

from __future__ import annotations

import hashlib
import hmac
import logging
import secrets
import threading
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Annotated
from urllib.parse import parse_qs, urlencode, urlsplit

from fastapi import FastAPI, Query, Request
from fastapi.responses import JSONResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates

log = logging.getLogger("onchain.api")

COOKIE = "onchain_session"
SESSION_S = 12 * 3600
MAX_SESSIONS = 1000
MAX_FORM_BYTES = 8192
# what the sign-in page itself needs before anyone is signed in
OPEN_PATHS = frozenset({"/login", "/logout", "/static/app/style.css"})


def token_matches(given: str, token: str) -> bool:
    """Constant time, whatever the lengths: the digests are compared, not the strings."""
    return hmac.compare_digest(
        hashlib.sha256(given.encode()).digest(), hashlib.sha256(token.encode()).digest()
    )


def bearer_matches(request: Request, token: str) -> bool:
    scheme, _, value = request.headers.get("authorization", "").partition(" ")
    return scheme.lower() == "bearer" and token_matches(value.strip(), token)


class Sessions:
    """Signed-in browsers: random values with their expiry, in memory (a restart signs
    everyone out). At most MAX_SESSIONS live; the oldest goes first."""

    def __init__(self, lifetime_s: float = SESSION_S) -> None:
        self.lifetime_s = lifetime_s
        self._expiry: dict[str, float] = {}
        self._lock = threading.Lock()

    def start(self) -> str:
        value = secrets.token_urlsafe(32)
        now = time.monotonic()
        with self._lock:
            for old in [v for v, at in self._expiry.items() if at <= now]:
                del self._expiry[old]
            while len(self._expiry) >= MAX_SESSIONS:
                del self._expiry[min(self._expiry, key=self._expiry.__getitem__)]
            self._expiry[value] = now + self.lifetime_s
        return value

    def valid(self, value: str | None) -> bool:
        if not value:
            return False
        with self._lock:
            at = self._expiry.get(value)
            if at is None:
                return False
            if at <= time.monotonic():
                del self._expiry[value]
                return False
            return True

    def end(self, value: str | None) -> None:
        if value:
            with self._lock:
                self._expiry.pop(value, None)


def local_path(target: str | None) -> str:
    """`target` when it is a path on this server, else "/": no scheme, no host, no `//host` or
    `/\\host` (browsers read both as another host), no control characters. No open redirect."""
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return "/"
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in target):
        return "/"
    parts = urlsplit(target)
    if parts.scheme or parts.netloc or parts.path in ("/login", "/logout"):
        return "/"
    return target


def wants_page(request: Request) -> bool:
    """A browser opening a page (not a script's fetch, not an API client)."""
    return request.method == "GET" and "text/html" in request.headers.get("accept", "")


def mount_signin(app: FastAPI, token: str | None) -> None:
    """The auth middleware, and with a token the sign-in and sign-out routes."""
    if not token:
        return
    sessions = Sessions()
    templates = Jinja2Templates(directory=str(Path(__file__).resolve().parent / "templates"))

    @app.middleware("http")
    async def authenticate(
        request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        """Every request needs the bearer header or a signed-in session's cookie; a page
        opened without either goes to the sign-in page, anything else is a 401."""
        if request.url.path not in OPEN_PATHS and not bearer_matches(request, token):
            if sessions.valid(request.cookies.get(COOKIE)):
                request.state.signed_in = True
            elif wants_page(request):
                asked = request.url.path + (f"?{request.url.query}" if request.url.query else "")
                return RedirectResponse("/login?" + urlencode({"next": asked}), status_code=303)
            else:
                return JSONResponse(
                    {"error": "missing or wrong bearer token"},
                    status_code=401,
                    headers={"WWW-Authenticate": "Bearer"},
                )
        return await call_next(request)

    def form(request: Request, target: str, status: int = 200, error: str = "") -> Response:
        reply = templates.TemplateResponse(
            request, "login.html", {"next": target, "error": error}, status_code=status
        )
        reply.headers["Cache-Control"] = "no-store"
        return reply

    @app.get("/login", include_in_schema=False)
    def login_page(request: Request, asked: Annotated[str, Query(alias="next")] = "/") -> Response:
        target = local_path(asked)
        if sessions.valid(request.cookies.get(COOKIE)):
            return RedirectResponse(target, status_code=303)
        return form(request, target)

    @app.post("/login", include_in_schema=False)
    async def login(request: Request) -> Response:
        body = await request.body()
        fields = parse_qs(body[:MAX_FORM_BYTES].decode("utf-8", "replace"))
        target = local_path((fields.get("next") or ["/"])[0])
        given = (fields.get("token") or [""])[0]
        if len(body) > MAX_FORM_BYTES or not token_matches(given, token):
            client = request.client.host if request.client else "?"
            log.warning("dashboard sign-in refused (wrong token) from %s", client)
            return form(request, target, 401, "wrong token")
        reply = RedirectResponse(target, status_code=303)
        reply.set_cookie(
            COOKIE,
            sessions.start(),
            max_age=int(sessions.lifetime_s),
            path="/",
            httponly=True,
            samesite="strict",
            secure=request.url.scheme == "https",
        )
        return reply

    @app.post("/logout", include_in_schema=False)
    def logout(request: Request) -> Response:
        sessions.end(request.cookies.get(COOKIE))
        reply = RedirectResponse("/login", status_code=303)
        reply.delete_cookie(
            COOKIE,
            path="/",
            httponly=True,
            samesite="strict",
            secure=request.url.scheme == "https",
        )
        return reply
