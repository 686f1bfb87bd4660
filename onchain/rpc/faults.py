"""What a failed JSON-RPC answer means: ask again, ask another endpoint, or give up.

Hosted providers answer overload and lag with JSON-RPC error objects under HTTP 200 as often as
with HTTP 429/5xx, and they reuse codes: Infura's -32005 is a rate limit for eth_call but a
result-size cap for eth_getLogs; -32000 is a revert, a lagging backend ("header not found") or
a gas cap depending on its text. So each failure is classed by method, code and text together:

- TRANSIENT: the same request may succeed in a moment or on another endpoint (HTTP 429/5xx,
  resets, timeouts, -32603 internal error, -32005/-32016 and rate-limit wording, and for a read
  pinned to a block hash: "header not found", "missing trie node", "unknown block", anvil's
  -32001, which a load-balanced provider's lagging backend says about a block we just pinned).
- ENDPOINT: this endpoint cannot serve us (HTTP 401/403/404, wrong chain): set it aside, ask the
  next; final only when no other endpoint is left.
- FINAL: the answer is about the request (a revert, invalid params, method not found, a log range
  or gas cap that only a smaller request passes): retrying the same request cannot help.
"""

from __future__ import annotations

import re
from typing import Any, Literal

Fault = Literal["transient", "endpoint", "final"]

TRANSIENT_HTTP = frozenset({408, 425, 429, 500, 502, 503, 504, 520, 521, 522, 523, 524, 529})
ENDPOINT_HTTP = frozenset({401, 402, 403, 404, 405})
TRANSIENT_CODES = frozenset({-32603, -32005, -32016, -32002, -32097, -32098, -32099, 429})
REVERT_TEXT = re.compile(r"revert|invalid opcode|vm exception", re.IGNORECASE)
RATE_LIMIT_TEXT = re.compile(
    r"rate.?limit|too many requests|per second|compute units|capacity|throttl|exceeded the quota|"
    r"\b429\b|busy|overload|try again|temporarily|unavailable|timeout|timed out|internal error",
    re.IGNORECASE,
)
LAG_TEXT = re.compile(
    r"header not found|header for hash not found|missing trie node|unknown block|"
    r"block not found|could not find block|resource not found|not found for block|"
    r"state (is )?not available|pruned",
    re.IGNORECASE,
)
LAG_CODES = frozenset({-32001})
# Providers' words for "this log query is too big" (geth/erigon/reth, Alchemy, Infura,
# QuickNode, Ankr, public RPCs): the pager answers them with a smaller span, not a retry.
LOG_RANGE_TEXT = re.compile(
    r"range|too many|more than \d+ results|\d+ results|response size|size exceeded|too large|"
    r"limit exceeded|exceeds? (the )?(max|limit)|query timeout|timed out",
    re.IGNORECASE,
)
LOG_RATE_TEXT = re.compile(
    r"rate.?limit|too many requests|per second|compute units|capacity|throttl|quota|\b429\b",
    re.IGNORECASE,
)
LOG_RANGE_CODES = frozenset({-32005})
# aggregate3 chunks refused for their size: split them rather than retry them.
LIMIT_TEXT = re.compile(r"gas|limit|exceed|too large|too big|size", re.IGNORECASE)


def is_log_range_refusal(code: Any, text: str, http_status: int | None) -> bool:
    """Whether eth_getLogs was refused for its size (a smaller span may pass)."""
    if http_status == 413:
        return True
    if http_status == 429 or LOG_RATE_TEXT.search(text):
        return False
    return code in LOG_RANGE_CODES or LOG_RANGE_TEXT.search(text) is not None


def classify_error(method: str, code: Any, message: str, *, pinned: bool) -> Fault:
    """The class of a JSON-RPC error object answered for `method`.

    `pinned`: the request names a block by hash that this client pinned from some endpoint,
    so "unknown block" means this backend lags behind, not that the block does not exist.
    """
    if method == "eth_chainId" and code == -32601:
        return "endpoint"
    if REVERT_TEXT.search(message) or code == 3:
        return "final"
    if method == "eth_getLogs" and is_log_range_refusal(code, message, None):
        return "final"
    if pinned and is_behind(code, message):
        return "transient"
    if code in (-32600, -32601, -32602, -32700):
        return "final"
    if code == -32000 and LIMIT_TEXT.search(message) and not RATE_LIMIT_TEXT.search(message):
        return "final"  # a gas cap or size limit: only a smaller request passes
    if code in TRANSIENT_CODES or RATE_LIMIT_TEXT.search(message):
        return "transient"
    return "final"


def is_behind(code: Any, message: str) -> bool:
    """Whether an error says the node lacks a block (lagging, or on another fork)."""
    return code in LAG_CODES or LAG_TEXT.search(message) is not None


def classify_http(status: int) -> Fault:
    if status in TRANSIENT_HTTP:
        return "transient"
    if status in ENDPOINT_HTTP:
        return "endpoint"
    return "final"
