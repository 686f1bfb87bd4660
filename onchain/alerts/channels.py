"""Sending one message to one channel. Our signed JSON webhook is written here (its contract is
in the README); everything else (Slack, Discord, Telegram, email, ...) goes through Apprise.
A send never raises: it returns what happened, with an error text that names no secret."""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import threading
import time
from dataclasses import dataclass
from typing import Any

import requests

from onchain.alerts.config import ChannelConfig

SIGNATURE_HEADER = "X-Onchain-Signature"
TIMESTAMP_HEADER = "X-Onchain-Timestamp"
ID_HEADER = "X-Onchain-Alert-Id"
_console_lock = threading.Lock()


@dataclass(frozen=True)
class SendResult:
    ok: bool
    status: int | None = None
    error: str | None = None
    duration_ms: int = 0


def canonical_body(payload: dict[str, Any]) -> bytes:
    """The exact bytes sent and signed: compact, keys sorted, UTF-8."""
    return json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def sign(secret: str, timestamp: str, body: bytes) -> str:
    """`sha256=<hex>`: HMAC-SHA256 with the secret over `timestamp + "." + body`."""
    mac = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256)
    return "sha256=" + mac.hexdigest()


def verify(secret: str, timestamp: str, body: bytes, signature: str) -> bool:
    """What a receiver does (constant-time compare); it should also reject old timestamps."""
    return hmac.compare_digest(sign(secret, timestamp, body), signature)


def _webhook(channel: ChannelConfig, payload: dict[str, Any]) -> SendResult:
    body = canonical_body(payload)
    timestamp = str(int(time.time()))
    assert channel.secret is not None
    headers = {
        "Content-Type": "application/json",
        "User-Agent": "onchain-alerts",
        TIMESTAMP_HEADER: timestamp,
        SIGNATURE_HEADER: sign(channel.secret, timestamp, body),
        ID_HEADER: str(payload.get("id", "")),
    }
    try:
        reply = requests.post(
            str(channel.url), data=body, headers=headers, timeout=channel.timeout_s
        )
    except requests.RequestException as exc:  # the message names the URL: say only the kind
        return SendResult(False, None, f"{type(exc).__name__} (no answer from {channel.shown})")
    if 200 <= reply.status_code < 300:
        return SendResult(True, reply.status_code)
    return SendResult(False, reply.status_code, f"HTTP {reply.status_code}")


def _apprise(channel: ChannelConfig, payload: dict[str, Any]) -> SendResult:
    import apprise

    logging.getLogger("apprise").setLevel(logging.CRITICAL)  # its lines may carry the URL
    notifier = apprise.Apprise()
    if not notifier.add(str(channel.url)):
        return SendResult(False, None, f"Apprise cannot use the {channel.scheme}:// URL")
    title = str(payload["text"]).split("\n", 1)[0][:120]
    try:
        ok = notifier.notify(title=title, body=str(payload["text"]))
    except Exception as exc:  # a plugin bug must not stop the job
        return SendResult(False, None, f"{type(exc).__name__} in Apprise {channel.scheme}")
    return SendResult(True) if ok else SendResult(False, None, f"{channel.scheme}: not accepted")


def _console(channel: ChannelConfig, payload: dict[str, Any]) -> SendResult:
    with _console_lock:
        print(f"[alert {channel.name} {payload['id'][:12]}]\n{payload['text']}", flush=True)
    return SendResult(True)


def send(channel: ChannelConfig, payload: dict[str, Any]) -> SendResult:
    """One attempt; times it; never raises."""
    started = time.perf_counter()
    kind = {"webhook": _webhook, "apprise": _apprise, "console": _console}[channel.kind]
    try:
        result = kind(channel, payload)
    except Exception as exc:
        result = SendResult(False, None, f"{type(exc).__name__} sending to {channel.shown}")
    ms = round((time.perf_counter() - started) * 1000)
    return SendResult(result.ok, result.status, result.error, ms)
