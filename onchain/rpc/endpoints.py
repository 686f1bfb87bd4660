"""Endpoints of one chain in order of preference, each with its health and request budget.

An `Endpoint` outlives the clients that use it: the daemon keeps one `EndpointSet` per chain
for its whole life, so an endpoint set aside by one run stays aside for the next, and
`onchain status` can show each endpoint's requests, errors and last error. Thread-safe: jobs
run in parallel threads, each with its own client over the same endpoints.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

from onchain.errors import InputError

SET_ASIDE_S = 30.0  # first set-aside; doubles on each repeat, up to MAX_SET_ASIDE_S
MAX_SET_ASIDE_S = 600.0
SET_ASIDE_AFTER = 3  # failed requests in a row before an endpoint is set aside
# upper bounds (seconds) of the request latency histogram each endpoint keeps
LATENCY_BUCKETS_S = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
_SECRET_LABEL = re.compile(r"^(?=.*\d)(?=.*[a-z]).{12,}$|^.{20,}$", re.IGNORECASE)


def redact_url(url: str | EndpointSet) -> str:
    """scheme://host[:port] only: RPC URLs carry API keys in their path, query or userinfo,
    and some providers in a host label (a long random-looking label becomes ***). For several
    endpoints, each so, comma-separated."""
    if isinstance(url, EndpointSet):
        return ", ".join(e.safe_url for e in url.endpoints)
    try:
        parts = urlsplit(url)
        host = parts.hostname
        port = parts.port
    except ValueError:
        return "<unparseable RPC URL>"
    if not parts.scheme or not host:
        return "<RPC URL>"
    if ":" in host:
        host = f"[{host}]"
    else:
        host = ".".join("***" if _SECRET_LABEL.match(lb) else lb for lb in host.split("."))
    return f"{parts.scheme}://{host}" + (f":{port}" if port is not None else "")


def url_secrets(url: str) -> list[str]:
    """Every part of `url` that may be a secret (path segments, query values, userinfo, long
    host labels), longest first, so provider text echoing one of them can be scrubbed."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
    except ValueError:
        return [url]
    found = [s for s in parts.path.split("/") if len(s) >= 4]
    found += [v for _, v in parse_qsl(parts.query) if len(v) >= 4]
    found += [s for s in (parts.username, parts.password, parts.fragment) if s]
    found += [lb for lb in host.split(".") if _SECRET_LABEL.match(lb)]
    found += [unquote(s) for s in found]
    return sorted(set(found), key=len, reverse=True)


@dataclass(frozen=True)
class Budget:
    """What one endpoint may be asked: requests per second (None: no limit) and JSON-RPC
    calls per HTTP batch. Free tiers ban keys that exceed theirs."""

    max_rps: float | None = None
    max_batch: int = 500

    def __post_init__(self) -> None:
        if self.max_rps is not None and self.max_rps <= 0:
            raise InputError(f"requests per second must be > 0, got {self.max_rps}")
        if self.max_batch < 1:
            raise InputError(f"calls per batch must be >= 1, got {self.max_batch}")


class Endpoint:
    """One URL with its counters; the URL itself is never shown, only `safe_url`."""

    def __init__(self, url: str, budget: Budget | None = None) -> None:
        self.url = url
        self.safe_url = redact_url(url)
        self.secrets = url_secrets(url)
        self.budget = budget or Budget()
        self.requests = 0
        self.errors = 0
        self.errors_by_kind: dict[str, int] = {}  # fault class (client's _Refused kind) -> count
        self.latency_buckets = [0] * len(LATENCY_BUCKETS_S)  # requests answered within each
        self.latency_count = 0
        self.latency_sum_s = 0.0
        self.last_error: str | None = None
        self.last_error_at: float | None = None
        self.set_aside_until = 0.0  # time.time() seconds
        self.chain_id: int | None = None
        self.head = -1  # highest head seen (eth_blockNumber), for log reads
        self._lacks: dict[str, float] = {}  # block hash -> until when we skip asking for it
        self.wrong_chain: str | None = None  # set once: a node does not change chains
        self._strikes = 0  # failed requests in a row
        self._penalty = 0  # set-asides in a row (doubles the next one)
        self._next_slot = 0.0
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"Endpoint({self.safe_url})"

    def scrub(self, text: str) -> str:
        """Provider text with any piece of our URL (an echoed key) replaced by ***."""
        for secret in self.secrets:
            text = text.replace(secret, "***")
        return text

    def lacking(self, block_hash: str) -> None:
        """The endpoint said it does not know this block: ask others about it for a while."""
        with self._lock:
            if len(self._lacks) > 64:
                self._lacks.clear()
            self._lacks[block_hash] = time.time() + SET_ASIDE_S

    def lacks(self, block_hash: str) -> bool:
        return self._lacks.get(block_hash, 0.0) > time.time()

    def available(self, now: float | None = None) -> bool:
        return self.wrong_chain is None and (now or time.time()) >= self.set_aside_until

    def wait_for_slot(self) -> None:
        """Sleep as long as the requests-per-second budget asks; count the request."""
        with self._lock:
            self.requests += 1
            if self.budget.max_rps is None:
                return
            now = time.monotonic()
            slot = max(now, self._next_slot)
            self._next_slot = slot + 1.0 / self.budget.max_rps
        if slot > now:
            time.sleep(slot - now)

    def succeeded(self) -> None:
        with self._lock:
            self._strikes = 0
            self._penalty = 0

    def observed(self, seconds: float) -> None:
        """Record how long one request took (answered or not), for the latency histogram."""
        with self._lock:
            self.latency_count += 1
            self.latency_sum_s += seconds
            for i, bound in enumerate(LATENCY_BUCKETS_S):
                if seconds <= bound:
                    self.latency_buckets[i] += 1

    def failed(self, cause: str, *, set_aside: bool = False, kind: str = "transient") -> None:
        """Record a failure of this `kind` (silent, transient, behind, endpoint, rate_limited,
        wrong_chain ...); the endpoint is set aside after SET_ASIDE_AFTER in a row, at once
        when `set_aside`, or at its first failure after coming back from a set-aside."""
        with self._lock:
            self.errors += 1
            self.errors_by_kind[kind] = self.errors_by_kind.get(kind, 0) + 1
            self.last_error = cause
            self.last_error_at = time.time()
            self._strikes += 1
            if set_aside or self._strikes >= SET_ASIDE_AFTER or self._penalty:
                span = min(SET_ASIDE_S * 2**self._penalty, MAX_SET_ASIDE_S)
                self.set_aside_until = time.time() + span
                self._penalty += 1
                self._strikes = 0

    def health(self) -> dict[str, Any]:
        """What `onchain status` shows (JSON-safe)."""
        now = time.time()
        with self._lock:
            return {
                "endpoint": self.safe_url,
                "requests": self.requests,
                "errors": self.errors,
                "errors_by_kind": dict(self.errors_by_kind),
                "latency_s": {
                    "buckets": [
                        [b, n] for b, n in zip(LATENCY_BUCKETS_S, self.latency_buckets, strict=True)
                    ],
                    "count": self.latency_count,
                    "sum": self.latency_sum_s,
                },
                "last_error": self.wrong_chain or self.last_error,
                "last_error_at": self.last_error_at,
                "set_aside_until": (
                    "for good"
                    if self.wrong_chain
                    else (self.set_aside_until if self.set_aside_until > now else None)
                ),
            }


class EndpointSet:
    """A chain's endpoints in order of preference; `ordered()` puts available ones first."""

    def __init__(self, endpoints: Sequence[Endpoint]) -> None:
        if not endpoints:
            raise InputError("no RPC endpoint given")
        self.endpoints = list(endpoints)

    @classmethod
    def of(cls, urls: str | Sequence[str], budget: Budget | None = None) -> EndpointSet:
        if isinstance(urls, str):
            urls = [urls]
        unique = list(dict.fromkeys(u for u in urls if u))
        return cls([Endpoint(u, budget) for u in unique])

    def ordered(self) -> list[Endpoint]:
        """Available endpoints in preference order, then the set-aside ones soonest back first
        (when all are aside, asking one beats failing); endpoints of another chain never."""
        now = time.time()
        usable = [e for e in self.endpoints if e.wrong_chain is None]
        ready = [e for e in usable if e.available(now)]
        aside = sorted((e for e in usable if not e.available(now)), key=lambda e: e.set_aside_until)
        return ready + aside

    def health(self) -> list[dict[str, Any]]:
        return [e.health() for e in self.endpoints]

    @property
    def max_batch(self) -> int:
        return min(e.budget.max_batch for e in self.endpoints)
