"""Who may read when `onchain serve` has a token: API clients send `Authorization: Bearer
<token>`; a browser, which cannot add that header to a page it opens, signs in once at /login
and then carries a session cookie (its value is random, kept in this process's memory: never
the token, and signing out ends it on the server too). Without a token nothing here is mounted.

The token is only ever read from a POSTed form body, so it never reaches a URL, the access log
or a page; it is compared in constant time. Guessing is throttled per client address: after
MAX_WRONG wrong tokens (at /login or as a bearer) within WRONG_WINDOW_S, that address's next
attempts are answered 429 with Retry-After, unchecked, until the oldest of them is that old."""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import logging
import math
import secrets
import threading
import time
from collections import deque
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
# at most MAX_WRONG wrong tokens per client address in any WRONG_WINDOW_S: a person mistyping
# is far below it, a guesser gets 960 tries a day; MAX_CLIENTS addresses are remembered at once
MAX_WRONG = 10
WRONG_WINDOW_S = 15 * 60
MAX_CLIENTS = 10_000
# what the sign-in page itself needs before anyone is signed in
OPEN_PATHS = frozenset({"/login", "/logout", "/static/app/style.css"})


def token_matches(given: str, token: str) -> bool:
    """Constant time, whatever the lengths: the digests are compared, not the strings."""
    return hmac.compare_digest(
        hashlib.sha256(given.encode()).digest(), hashlib.sha256(token.encode()).digest()
    )


def bearer(request: Request) -> str | None:
    """The token an `Authorization: Bearer` header carries; None without such a header."""
    scheme, _, value = request.headers.get("authorization", "").partition(" ")
    return value.strip() if scheme.lower() == "bearer" else None


def client_key(request: Request) -> str:
    """The address wrong tokens are counted by: an IPv4 address, or an IPv6 one's /64 (one host
    commonly holds a whole /64, so counting single IPv6 addresses would count nothing). Behind
    a reverse proxy every client has the proxy's address: they share one allowance."""
    host = request.client.host if request.client else ""
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return host or "?"
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        return str(ipaddress.IPv6Network((address, 64), strict=False))
    return str(address)


class WrongTokens:
    """A sliding-window limit on guessing: at most `limit` wrong tokens per client within
    `window_s`. In memory and bounded: at most `max_clients` clients, each with at most `limit`
    times; a new client pushes out the one whose last wrong token is the oldest."""

    def __init__(
        self,
        limit: int = MAX_WRONG,
        window_s: float = WRONG_WINDOW_S,
        max_clients: int = MAX_CLIENTS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.limit = limit
        self.window_s = window_s
        self.max_clients = max_clients
        self._clock = clock
        self._times: dict[str, deque[float]] = {}  # by last wrong token, oldest first
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._times)

    def _recent(self, client: str, now: float) -> deque[float] | None:
        """The client's wrong tokens still inside the window (None, and forgotten, if none)."""
        times = self._times.get(client)
        if times is None:
            return None
        while times and times[0] <= now - self.window_s:
            times.popleft()
        if not times:
            del self._times[client]
            return None
        return times

    def retry_after_s(self, client: str) -> int:
        """Whole seconds until `client` may try a token again; 0 when it may now."""
        now = self._clock()
        with self._lock:
            times = self._recent(client, now)
            if times is None or len(times) < self.limit:
                return 0
            return max(1, math.ceil(times[0] + self.window_s - now))

    def wrong(self, client: str) -> bool:
        """Count a wrong token from `client`; True when it is the last one allowed."""
        now = self._clock()
        with self._lock:
            times = self._recent(client, now)
            if times is None:
                times = deque(maxlen=self.limit)
                while len(self._times) >= self.max_clients:
                    del self._times[next(iter(self._times))]
            else:
                del self._times[client]  # back in at the end: the newest last wrong token
            times.append(now)
            self._times[client] = times
            return len(times) == self.limit


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
    wrong_tokens = WrongTokens()
    templates = Jinja2Templates(directory=str(Path(__file__).resolve().parent / "templates"))

    def held_back_s(request: Request) -> int:
        """Seconds the client must wait before its next token is checked (0: none)."""
        return wrong_tokens.retry_after_s(client_key(request))

    def count_wrong(request: Request) -> None:
        client = client_key(request)
        if wrong_tokens.wrong(client):
            log.warning(
                "%d wrong tokens from %s within %d s: its tokens are refused unchecked (429) "
                "until the first of them is that old",
                wrong_tokens.limit,
                client,
                wrong_tokens.window_s,
            )

    @app.middleware("http")
    async def authenticate(
        request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        """Every request needs a signed-in session's cookie or the bearer header; a page
        opened without either goes to the sign-in page, anything else is a 401; a bearer from
        an address that used up its wrong tokens is not checked (429)."""
        if request.url.path in OPEN_PATHS:
            return await call_next(request)
        if sessions.valid(request.cookies.get(COOKIE)):
            request.state.signed_in = True
            return await call_next(request)
        given = bearer(request)
        if given is None and wants_page(request):
            asked = request.url.path + (f"?{request.url.query}" if request.url.query else "")
            return RedirectResponse("/login?" + urlencode({"next": asked}), status_code=303)
        if given is not None:
            wait_s = held_back_s(request)
            if wait_s:
                return JSONResponse(
                    {"error": f"too many wrong tokens from this address: retry in {wait_s} s"},
                    status_code=429,
                    headers={"Retry-After": str(wait_s)},
                )
            if token_matches(given, token):
                return await call_next(request)
            count_wrong(request)
        return JSONResponse(
            {"error": "missing or wrong bearer token"},
            status_code=401,
            headers={"WWW-Authenticate": "Bearer"},
        )

    def form(
        request: Request, target: str, status: int = 200, error: str = "", wait_s: int = 0
    ) -> Response:
        reply = templates.TemplateResponse(
            request, "login.html", {"next": target, "error": error}, status_code=status
        )
        reply.headers["Cache-Control"] = "no-store"
        if wait_s:
            reply.headers["Retry-After"] = str(wait_s)
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
        wait_s = held_back_s(request)
        if wait_s:
            minutes = math.ceil(wait_s / 60)
            error = f"too many wrong tokens from this address: try again in {minutes} min"
            return form(request, target, 429, error, wait_s)
        given = (fields.get("token") or [""])[0]
        if len(body) > MAX_FORM_BYTES or not token_matches(given, token):
            client = request.client.host if request.client else "?"
            log.warning("dashboard sign-in refused (wrong token) from %s", client)
            count_wrong(request)
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
