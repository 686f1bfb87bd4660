"""Logs never carry an endpoint's secrets. RPC URLs hold API keys in their path, query, user
info or a host label, and libraries log them (urllib3 prints every request path at debug level),
so the redaction sits on the log handlers: every record is formatted once, then each secret part
of the URLs we were given is replaced with "…" before a handler writes it."""

from __future__ import annotations

import ipaddress
import logging
from collections.abc import Iterable
from urllib.parse import unquote, urlsplit

HIDDEN = "…"
MIN_SECRET = 8  # shorter fragments ("/v3", "user") are not keys and would mangle every message


def secret_parts(url: str) -> set[str]:
    """The parts of a URL that may be keys: the path and each of its segments, the query, the
    user and password, and a host's first label when it looks like a token (QuickNode style)."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        user, password = parts.username, parts.password
    except ValueError:  # an unparseable URL: hide all of it
        return {url} if url else set()
    secrets = {parts.path, parts.query, parts.fragment, user or "", password or ""}
    secrets |= {unquote(s) for s in secrets}
    secrets |= {segment for segment in parts.path.split("/") if len(segment) >= MIN_SECRET}
    secrets |= {pair.partition("=")[2] for pair in parts.query.split("&")}
    labels = host.split(".")
    if len(labels) >= 3 and not _is_ip(host) and _looks_like_token(labels[0]):
        secrets.add(labels[0])
    return {s for s in secrets if len(s) >= MIN_SECRET and s != "/"}


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def _looks_like_token(label: str) -> bool:
    return len(label) >= 16 and any(c.isdigit() for c in label)


class RedactSecrets(logging.Filter):
    """A handler filter: the record's message (and traceback) with every secret replaced."""

    def __init__(self, urls: Iterable[str | None], secrets: Iterable[str | None] = ()) -> None:
        super().__init__()
        self.secrets: list[str] = []
        self.add(urls, secrets)

    def add(self, urls: Iterable[str | None], secrets: Iterable[str | None] = ()) -> None:
        """More secrets to hide (a command learns its endpoints after logging is set up)."""
        found = {s for url in urls if url for s in secret_parts(url)} | set(self.secrets)
        found |= {s for s in secrets if s and len(s) >= MIN_SECRET}
        self.secrets = sorted(
            found, key=len, reverse=True
        )  # longest first: a path before its segment

    def scrub(self, text: str) -> str:
        for secret in self.secrets:
            if secret in text:
                text = text.replace(secret, HIDDEN)
        return text

    def filter(self, record: logging.LogRecord) -> bool:
        if not self.secrets:
            return True
        record.msg, record.args = self.scrub(record.getMessage()), None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = self.scrub(record.exc_text)
        if record.stack_info:
            record.stack_info = self.scrub(record.stack_info)
        return True


def redact_logs(urls: Iterable[str | None], secrets: Iterable[str | None] = ()) -> None:
    """Put the filter on every handler of the root logger (call after logging is configured).
    `urls`: RPC endpoints (every secret part hidden); `secrets`: other strings (passwords)."""
    redact = RedactSecrets(urls, secrets)
    for handler in logging.getLogger().handlers:
        handler.addFilter(redact)
