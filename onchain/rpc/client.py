"""A small JSON-RPC client over HTTP: batching, retries, block pinning and safe error messages.

Transport is a plain `requests.Session` rather than web3's HTTPProvider: we need the HTTP status
and body of refusals (413/429/5xx) for retries and the log pager, one retry policy that also
covers batches (web3 retries single requests only, with its own backoff), and no debug logging
of the endpoint URL, which carries API keys. web3's provider gives none of these cleanly.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import requests
from eth_abi import decode as abi_decode

from onchain.errors import (
    CallReverted,
    ChainMismatch,
    InputError,
    RpcError,
    RpcResponseError,
    RpcUnavailable,
)

_RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
_MAX_RETRY_AFTER_S = 10.0
_ERROR_STRING = bytes.fromhex("08c379a0")  # Error(string)
_PANIC = bytes.fromhex("4e487b71")  # Panic(uint256)


@dataclass(frozen=True)
class BlockRef:
    """A block every read of one snapshot is pinned to, so all values come from the same state."""

    number: int
    hash: str
    timestamp: int


def redact_url(url: str) -> str:
    """scheme://host[:port] only: RPC URLs carry API keys in their path, query or userinfo."""
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
    return f"{parts.scheme}://{host}" + (f":{port}" if port is not None else "")


def revert_reason(data: bytes) -> str | None:
    """Human text for Error(string) and Panic(uint256) revert data; None for custom errors."""
    try:
        if data[:4] == _ERROR_STRING:
            return str(abi_decode(["string"], data[4:])[0])
        if data[:4] == _PANIC:
            return f"panic 0x{abi_decode(['uint256'], data[4:])[0]:02x}"
    except Exception:  # malformed revert data: no reason rather than a crash
        return None
    return None


def hex_to_bytes(value: Any) -> bytes:
    """Bytes of a 0x-hex JSON value; empty for anything else (some nodes omit revert data)."""
    if isinstance(value, str) and value.startswith("0x"):
        try:
            return bytes.fromhex(value[2:])
        except ValueError:
            return b""
    return b""


class RpcClient:
    """JSON-RPC over HTTP with retries, batches and call counters. Not thread-safe.

    `requests_sent` counts HTTP requests (a batch counts once, each retry counts);
    `calls_sent` counts JSON-RPC calls, including each call inside a batch.
    Timeouts are retried too, so only send methods that are safe to repeat (reads, or
    eth_sendRawTransaction whose repeat is a no-op).
    """

    def __init__(
        self,
        url: str,
        *,
        timeout_s: float = 10.0,
        retries: int = 2,
        expected_chain_id: int | None = None,
        max_batch_size: int = 500,
        backoff_s: float = 0.2,
    ) -> None:
        if retries < 0 or max_batch_size < 1 or timeout_s <= 0:
            raise InputError("RpcClient: retries >= 0, max_batch_size >= 1, timeout_s > 0")
        self.url = url
        self.safe_url = redact_url(url)
        self.timeout_s = timeout_s
        self.retries = retries
        self.max_batch_size = max_batch_size
        self.backoff_s = backoff_s
        self.expected_chain_id = expected_chain_id
        self.requests_sent = 0
        self.calls_sent = 0
        self._session = requests.Session()
        self._session.headers["Content-Type"] = "application/json"
        self._ids = itertools.count(1)
        self._chain_id: int | None = None
        self._chain_checked = expected_chain_id is None
        self._retry_after: str | None = None

    def __repr__(self) -> str:
        return f"RpcClient({self.safe_url})"

    def close(self) -> None:
        self._session.close()

    def __enter__(self) -> RpcClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- raw JSON-RPC ---------------------------------------------------------------------

    def request(self, method: str, params: Sequence[Any] | None = None) -> Any:
        """One JSON-RPC call; a JSON-RPC error raises RpcResponseError (CallReverted on revert)."""
        self._ensure_chain()
        payload = {"jsonrpc": "2.0", "id": next(self._ids), "method": method}
        payload["params"] = list(params or [])
        body, status = self._post(payload, n_calls=1)
        if not isinstance(body, dict):
            raise RpcError(f"RPC endpoint {self.safe_url} answered {method} with a non-object")
        if "error" in body:
            raise self._error(method, body["error"], status)
        if "result" not in body:
            raise RpcError(f"RPC endpoint {self.safe_url} answered {method} without a result")
        return body["result"]

    def batch(
        self, calls: Sequence[tuple[str, Sequence[Any] | None]], *, return_errors: bool = False
    ) -> list[Any]:
        """Many calls in one HTTP request (chunked by max_batch_size); results in input order.

        With return_errors, a failed call yields its exception in place instead of raising,
        so one revert does not discard the other results.
        """
        self._ensure_chain()
        results: list[Any] = []
        for start in range(0, len(calls), self.max_batch_size):
            chunk = calls[start : start + self.max_batch_size]
            ids = [next(self._ids) for _ in chunk]
            payload = [
                {"jsonrpc": "2.0", "id": i, "method": m, "params": list(p or [])}
                for i, (m, p) in zip(ids, chunk, strict=True)
            ]
            body, status = self._post(payload, n_calls=len(chunk))
            if isinstance(body, dict):  # the whole batch was refused with one error object
                raise self._error("batch", body.get("error"), status)
            if not isinstance(body, list):
                raise RpcError(f"RPC endpoint {self.safe_url} answered a batch with a non-list")
            by_id = {item.get("id"): item for item in body if isinstance(item, dict)}
            for i, (method, _) in zip(ids, chunk, strict=True):
                item = by_id.get(i)
                if item is None:
                    raise RpcError(f"RPC endpoint {self.safe_url} dropped a {method} from a batch")
                if "error" in item:
                    err = self._error(method, item["error"], status)
                    if not return_errors:
                        raise err
                    results.append(err)
                else:
                    results.append(item.get("result"))
        return results

    # -- chain and blocks -------------------------------------------------------------------

    def chain_id(self) -> int:
        """The endpoint's chain id (asked once, then cached: it cannot change)."""
        if self._chain_id is None:
            self._chain_id = int(self.request("eth_chainId"), 16)
        return self._chain_id

    def check_chain_id(self, expected: int) -> None:
        """Refuse to read from a node of another chain: its addresses would mean other things."""
        actual = self.chain_id()
        if actual != expected:
            raise ChainMismatch(
                f"RPC endpoint {self.safe_url} serves chain id {actual}, expected {expected}"
            )

    def block_number(self) -> int:
        return int(self.request("eth_blockNumber"), 16)

    def pin_block(self, number: int | None = None) -> BlockRef:
        """The latest block (None) or block `number`, as a BlockRef to pin reads to."""
        if number is None:
            tag = "latest"
        elif isinstance(number, bool) or not isinstance(number, int) or number < 0:
            raise InputError(f"block must be a non-negative integer, got {number!r}")
        else:
            tag = hex(number)
        blk = self.request("eth_getBlockByNumber", [tag, False])
        if blk is None:
            if number is None:
                raise RpcError(f"RPC endpoint {self.safe_url} returned no latest block")
            raise InputError(f"block {number} is beyond the chain head ({self.block_number()})")
        return BlockRef(int(blk["number"], 16), str(blk["hash"]), int(blk["timestamp"], 16))

    # -- state reads pinned by block hash (EIP-1898) ----------------------------------------

    def eth_call(
        self, to: str, data: bytes, block: BlockRef, *, sender: str | None = None
    ) -> bytes:
        """eth_call at `block`, pinned by hash so a reorg cannot silently change the state read."""
        try:
            result = self.request("eth_call", [call_object(to, data, sender), block_param(block)])
        except CallReverted as exc:
            raise reverted(to, data, exc.data) from None
        return hex_to_bytes(result)

    def get_code(self, address: str, block: BlockRef) -> bytes:
        return hex_to_bytes(self.request("eth_getCode", [address, block_param(block)]))

    def get_balance(self, address: str, block: BlockRef) -> int:
        return int(self.request("eth_getBalance", [address, block_param(block)]), 16)

    # -- transport ---------------------------------------------------------------------------

    def _ensure_chain(self) -> None:
        if self._chain_checked or self.expected_chain_id is None:
            return
        self._chain_checked = True  # set first: chain_id() goes through request()
        try:
            self.check_chain_id(self.expected_chain_id)
        except BaseException:
            self._chain_checked = False
            raise

    def _post(self, payload: Any, *, n_calls: int) -> tuple[Any, int]:
        """POST with retries on timeouts, refused connections, 429 and 5xx; (JSON body, status)."""
        data = json.dumps(payload, separators=(",", ":"))
        attempts = self.retries + 1
        failure = ""
        status = 0
        for attempt in range(attempts):
            if attempt:
                time.sleep(self._delay(attempt, failure))
            self.requests_sent += 1
            self.calls_sent += n_calls
            try:
                resp = self._session.post(self.url, data=data, timeout=self.timeout_s)
            except requests.RequestException as exc:
                # Never show str(exc): requests puts the full URL (with any API key) in it.
                failure = _transport_reason(exc, self.timeout_s)
                status = 0
                continue
            status = resp.status_code
            if status in _RETRY_STATUSES and not _is_rpc_answer(resp):
                failure = f"HTTP {status}"
                self._retry_after = resp.headers.get("Retry-After")
                continue
            return self._parse(resp), status
        if status:
            raise RpcResponseError(
                f"RPC endpoint {self.safe_url} answered HTTP {status} after {attempts} attempts",
                http_status=status,
            )
        raise RpcUnavailable(
            f"RPC endpoint {self.safe_url} did not answer ({failure}) after {attempts} attempts"
        )

    def _delay(self, attempt: int, failure: str) -> float:
        delay = self.backoff_s * 2 ** (attempt - 1)
        if failure == "HTTP 429" and self._retry_after:
            with contextlib.suppress(ValueError):  # an HTTP-date Retry-After: keep our backoff
                delay = max(delay, min(float(self._retry_after), _MAX_RETRY_AFTER_S))
        self._retry_after = None
        return delay

    def _parse(self, resp: requests.Response) -> Any:
        try:
            body = resp.json()
        except ValueError:
            body = None
        if resp.ok and body is not None:
            return body
        if body is not None and isinstance(body, (dict, list)) and _has_rpc_error(body):
            return body  # a JSON-RPC error sent with a 4xx status: the caller raises it
        snippet = resp.text[:200].strip().replace("\n", " ")
        raise RpcResponseError(
            f"RPC endpoint {self.safe_url} answered HTTP {resp.status_code}: {snippet}",
            http_status=resp.status_code,
        )

    def _error(self, method: str, error: Any, status: int) -> RpcError:
        if not isinstance(error, dict):
            return RpcResponseError(f"{method} failed: {error!r}", http_status=status)
        code = error.get("code")
        message = str(error.get("message", "")).strip()
        data = error.get("data")
        if method == "eth_call" and (code == 3 or "revert" in message.lower()):
            return CallReverted(f"eth_call reverted: {message}", hex_to_bytes(data))
        return RpcResponseError(
            f"{method} failed: {message} (code {code})",
            code=code if isinstance(code, int) else None,
            http_status=status,
            data=data,
        )


def call_object(to: str, data: bytes, sender: str | None = None) -> dict[str, str]:
    """The eth_call transaction object; no gas field, so the node applies its own call cap."""
    obj = {"to": to, "data": "0x" + data.hex()}
    if sender is not None:
        obj["from"] = sender
    return obj


def block_param(block: BlockRef) -> dict[str, str]:
    """EIP-1898 block parameter by hash (anvil 1.7.1, geth, erigon, reth all accept it)."""
    return {"blockHash": block.hash}


def reverted(target: str, data: bytes, revert_data: bytes) -> CallReverted:
    """A CallReverted naming the target and selector, with the decoded reason when there is one."""
    reason = revert_reason(revert_data)
    text = f": {reason}" if reason else (f" (data 0x{revert_data.hex()})" if revert_data else "")
    selector = data[:4].hex() or "none"
    return CallReverted(
        f"call to {target} (selector 0x{selector}) reverted{text}", revert_data, target
    )


def _is_rpc_answer(resp: requests.Response) -> bool:
    """A JSON-RPC error under HTTP 500 (some nodes report reverts so): an answer, not a fault."""
    if resp.status_code != 500:
        return False
    try:
        body = resp.json()
    except ValueError:
        return False
    return isinstance(body, (dict, list)) and _has_rpc_error(body)


def _has_rpc_error(body: Any) -> bool:
    if isinstance(body, dict):
        return "error" in body
    return any(isinstance(item, dict) and "error" in item for item in body)


def _transport_reason(exc: requests.RequestException, timeout_s: float) -> str:
    if isinstance(exc, requests.ConnectTimeout):
        return f"connect timed out after {timeout_s:g}s"
    if isinstance(exc, requests.Timeout):
        return f"no response within {timeout_s:g}s"
    text = str(exc).lower()
    if "refused" in text:
        return "connection refused"
    if "resolve" in text or "name or service" in text or "nodename" in text:
        return "host name did not resolve"
    if isinstance(exc, requests.ConnectionError):
        return "connection failed"
    return type(exc).__name__
