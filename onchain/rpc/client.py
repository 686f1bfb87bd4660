"""A small JSON-RPC client over HTTP: several endpoints with failover, retries of what is
transient, batches that re-ask only their failed items, block pinning and safe error messages.

Transport is a plain `requests.Session` rather than web3's HTTPProvider: we need the HTTP status
and body of refusals (413/429/5xx) for retries and the log pager, one retry policy that also
covers batches (web3 retries single requests only, with its own backoff), and no debug logging
of the endpoint URL, which carries API keys. web3's provider gives none of these cleanly.
A library caller may still hand over their own web3 provider (`provider=`, see
`onchain.app.library`): the calls then go through it, with our batching, retries and checks.
What counts as transient is decided in `onchain.rpc.faults`; endpoint health in
`onchain.rpc.endpoints`.
"""

from __future__ import annotations

import itertools
import json
import random
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

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
from onchain.rpc.endpoints import Budget, Endpoint, EndpointSet, redact_url
from onchain.rpc.faults import LAG_TEXT, Fault, classify_error, classify_http, is_behind

__all__ = ["BlockRef", "Budget", "EndpointSet", "RpcClient", "redact_url"]

_MAX_RETRY_AFTER_S = 10.0
_MAX_DELAY_S = 2.0
_BEHIND_ATTEMPTS = 3  # asks of the only endpoint left that lacks the pinned block
_ERROR_STRING = bytes.fromhex("08c379a0")  # Error(string)
_PANIC = bytes.fromhex("4e487b71")  # Panic(uint256)


@dataclass(frozen=True)
class BlockRef:
    """A block every read of one snapshot is pinned to, so all values come from the same state."""

    number: int
    hash: str
    timestamp: int
    # the parent's hash when the node said it ("" otherwise): proves the block before is
    # canonical without asking; not part of the block's identity
    parent_hash: str = field(default="", compare=False)


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


class _Pending:
    """One JSON-RPC call on its way, with the cause of its last transient failure."""

    __slots__ = ("behind", "block", "cause", "index", "method", "params", "pinned")

    def __init__(self, index: int, method: str, params: list[Any]) -> None:
        self.index = index
        self.method = method
        self.params = params
        self.cause = ""
        self.behind = False  # the last failure said the endpoint lacks the pinned block
        self.block = next(
            (p["blockHash"] for p in params if isinstance(p, dict) and "blockHash" in p), None
        )
        self.pinned = self.block is not None


class RpcClient:
    """JSON-RPC over HTTP to one or several endpoints of one chain. Not thread-safe (its
    endpoints are: several clients may share an EndpointSet).

    Endpoints are asked in order of preference; one that keeps failing is set aside for a while
    and the next serves. Transient failures (see onchain.rpc.faults) are retried with
    exponential backoff and jitter, at most `max_attempts` times and `retry_budget_s` seconds per
    call; a batch re-asks only its failed items. An endpoint that does not answer at all gets
    `retries` retries before the next one is tried. Every endpoint's chain id is checked before
    its first use. Reads pinned to a block hash can never mix states: an endpoint that does not
    know the hash says so, and another is asked.

    `requests_sent` counts HTTP requests (a batch counts once, each retry counts);
    `calls_sent` counts JSON-RPC calls, including each call inside a batch.
    Timeouts are retried too, so only send methods that are safe to repeat (reads, or
    eth_sendRawTransaction whose repeat is a no-op).
    """

    def __init__(
        self,
        url: str | Sequence[str] | EndpointSet,
        *,
        timeout_s: float = 10.0,
        retries: int = 2,
        expected_chain_id: int | None = None,
        max_batch_size: int | None = None,
        backoff_s: float = 0.2,
        max_attempts: int = 12,
        retry_budget_s: float = 60.0,
        budget: Budget | None = None,
        seed: int | None = None,
        provider: Any = None,
    ) -> None:
        if retries < 0 or timeout_s <= 0 or max_attempts < 1 or retry_budget_s <= 0:
            raise InputError(
                "RpcClient: retries >= 0, timeout_s > 0, max_attempts >= 1, retry_budget_s > 0"
            )
        if max_batch_size is not None and max_batch_size < 1:
            raise InputError("RpcClient: max_batch_size >= 1")
        self.endpoints = url if isinstance(url, EndpointSet) else EndpointSet.of(url, budget)
        first = self.endpoints.endpoints[0]
        self.url = first.url
        self.timeout_s = timeout_s
        self.retries = retries
        self.max_batch_size = min(max_batch_size or 500, self.endpoints.max_batch)
        self.backoff_s = backoff_s
        self.max_attempts = max_attempts
        self.retry_budget_s = retry_budget_s
        self.expected_chain_id = expected_chain_id
        self.requests_sent = 0
        self.calls_sent = 0
        self._sessions: dict[int, requests.Session] = {}
        self._ids = itertools.count(1)
        self._checked: set[int] = set()
        self._random = random.Random(seed)
        self._served_by: Endpoint = first
        self._pinned_max = -1  # highest block pinned so far: every endpoint should know it
        self._pinned: dict[int, str] = {}  # number -> hash of every block pinned
        # hash -> the header each pin fetched (gas, base fee ...), so no one asks for it again
        self.pinned_headers: dict[str, dict[str, Any]] = {}
        self._repinning = False
        # a caller's web3 provider (anything with make_request / make_batch_request) instead of
        # our HTTP transport: `url` is then only its name in messages
        self.provider = provider

    @property
    def safe_url(self) -> str:
        """The endpoint that served last (scheme://host:port only)."""
        return self._served_by.safe_url

    def __repr__(self) -> str:
        return f"RpcClient({', '.join(e.safe_url for e in self.endpoints.endpoints)})"

    def close(self) -> None:
        for session in self._sessions.values():
            session.close()
        self._sessions.clear()

    def __enter__(self) -> RpcClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def health(self) -> list[dict[str, Any]]:
        """Per endpoint: requests, errors, last error, set aside until (for status and logs)."""
        return self.endpoints.health()

    def set_aside_notes(self) -> list[str]:
        """One line per endpoint that failed during this client's life, naming its last cause."""
        return [
            f"RPC endpoint {h['endpoint']}: {h['errors']} failed request(s), last: {h['last_error']}"
            + (" (set aside)" if h["set_aside_until"] else "")
            for h in self.health()
            if h["errors"] and h["last_error"]
        ]

    # -- raw JSON-RPC ---------------------------------------------------------------------

    def request(self, method: str, params: Sequence[Any] | None = None) -> Any:
        """One JSON-RPC call; a JSON-RPC error raises RpcResponseError (CallReverted on revert)."""
        answer = self._run([(method, params)], as_batch=False)[0]
        if isinstance(answer, Exception):
            raise answer
        return answer

    def batch(
        self, calls: Sequence[tuple[str, Sequence[Any] | None]], *, return_errors: bool = False
    ) -> list[Any]:
        """Many calls in one HTTP request (chunked by max_batch_size); results in input order.

        Items that fail transiently are asked again (alone, in a smaller batch); with
        return_errors, a call that fails for good yields its exception in place instead of
        raising, so one revert does not discard the other results.
        """
        results: list[Any] = []
        for start in range(0, len(calls), self.max_batch_size):
            results += self._run(calls[start : start + self.max_batch_size], as_batch=True)
        if not return_errors:
            for answer in results:
                if isinstance(answer, Exception):
                    raise answer
        return results

    # -- chain and blocks -------------------------------------------------------------------

    def chain_id(self) -> int:
        """The chain id of the endpoints (checked on each endpoint before its first use)."""
        if self.expected_chain_id is None and len(self.endpoints.endpoints) == 1:
            endpoint = self.endpoints.endpoints[0]
            if endpoint.chain_id is None:
                endpoint.chain_id = int(self.request("eth_chainId"), 16)
            return endpoint.chain_id
        self.request("eth_chainId")  # checks the endpoint that serves first
        assert self.expected_chain_id is not None
        return self.expected_chain_id

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
        """The latest block (None) or block `number`, as a BlockRef to pin reads to.

        The latest block comes from the preferred endpoint that answers; a numbered block
        unknown to a lagging endpoint is asked of the others before it is called beyond the
        head."""
        if number is None:
            tag = "latest"
        elif isinstance(number, bool) or not isinstance(number, int) or number < 0:
            raise InputError(f"block must be a non-negative integer, got {number!r}")
        else:
            tag = hex(number)
        self._repinning = True  # a new pin may see a reorg: it is the new truth, not a fork
        try:
            blk = self.request("eth_getBlockByNumber", [tag, False])
            if blk is None and number is not None and len(self.endpoints.endpoints) > 1:
                blk = self._ask_others("eth_getBlockByNumber", [tag, False])
        finally:
            self._repinning = False
        if blk is None:
            if number is None:
                raise RpcError(f"RPC endpoint {self.safe_url} returned no latest block")
            raise InputError(f"block {number} is beyond the chain head ({self.block_number()})")
        ref = BlockRef(
            int(blk["number"], 16),
            str(blk["hash"]),
            int(blk["timestamp"], 16),
            str(blk.get("parentHash") or ""),
        )
        self._pinned_max = max(self._pinned_max, ref.number)
        self._pinned[ref.number] = ref.hash
        self.pinned_headers[ref.hash] = blk
        return ref

    def _ask_others(self, method: str, params: list[Any]) -> Any:
        """The first non-null answer from the endpoints that did not just answer null."""
        for endpoint in self.endpoints.ordered():
            if endpoint is self._served_by:
                continue
            try:
                answer = self._run([(method, params)], as_batch=False, only=endpoint)[0]
            except RpcError:
                continue
            if answer is not None and not isinstance(answer, Exception):
                return answer
        return None

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

    def logs(self, flt: dict[str, Any], *, min_block: int) -> Any:
        """eth_getLogs; with several endpoints, from one whose head has reached `min_block`: a
        lagging node would answer a range past its head with fewer logs, not with an error."""
        answer = self._run([("eth_getLogs", [flt])], as_batch=False, min_block=min_block)[0]
        if isinstance(answer, Exception):
            raise answer
        return answer

    # -- transport ---------------------------------------------------------------------------

    def _session(self, endpoint: Endpoint) -> requests.Session:
        session = self._sessions.get(id(endpoint))
        if session is None:
            session = requests.Session()
            session.headers["Content-Type"] = "application/json"
            self._sessions[id(endpoint)] = session
        return session

    def _run(
        self,
        calls: Sequence[tuple[str, Sequence[Any] | None]],
        *,
        as_batch: bool,
        only: Endpoint | None = None,
        min_block: int | None = None,
    ) -> list[Any]:
        """Answers (or final errors, in place) for `calls`, retrying transient failures on the
        best endpoint available; raises when some call got no final answer in time."""
        if not calls:
            return []
        results: list[Any] = [_UNSET] * len(calls)
        pending = [_Pending(i, m, list(p or [])) for i, (m, p) in enumerate(calls)]
        started = time.monotonic()
        trouble = _Trouble()
        block = pending[0].block
        if block is not None:  # endpoints that said lately they lack this block come last
            trouble.behind = {id(e) for e in self.endpoints.endpoints if e.lacks(block)}
        previous: Endpoint | None = None
        retry_after = 0.0
        while pending:
            candidates = [only] if only is not None else self.endpoints.ordered()
            candidates = [e for e in candidates if trouble.silent.get(id(e), 0) <= self.retries]
            # An endpoint behind the pinned block is asked again only when no other is left.
            current = [e for e in candidates if id(e) not in trouble.behind]
            candidates = current or candidates
            if not candidates:
                raise self._gave_up(pending, trouble, started, unavailable=True)
            endpoint = candidates[0]
            if endpoint is previous or retry_after:
                self._sleep(trouble.failures, retry_after, started)
            previous = endpoint
            try:
                self._prepare(endpoint, min_block)
                retry_after = self._exchange(endpoint, pending, results, as_batch)
            except ChainMismatch:
                if only is not None or not self.endpoints.ordered():
                    raise
                trouble.causes[endpoint.safe_url] = endpoint.wrong_chain or "wrong chain"
                continue
            except _Refused as refused:
                retry_after = refused.retry_after
                trouble.causes[endpoint.safe_url] = refused.cause
                trouble.status = refused.http_status or trouble.status
                endpoint.failed(
                    refused.cause,
                    set_aside=refused.kind in ("silent", "endpoint"),
                    kind=refused.kind,
                )
                trouble.failures += 1
                if refused.kind == "silent":
                    trouble.silent[id(endpoint)] = trouble.silent.get(id(endpoint), 0) + 1
                elif refused.kind == "behind" and self._others(endpoint, trouble):
                    trouble.behind.add(id(endpoint))
                elif refused.kind == "endpoint":
                    trouble.silent[id(endpoint)] = self.retries + 1  # not again in this call
                else:
                    trouble.attempts += 1
                    if trouble.attempts >= self.max_attempts or self._late(started):
                        raise self._gave_up(pending, trouble, started) from None
                continue
            pending = [p for p in pending if results[p.index] is _UNSET]
            if not pending:
                endpoint.succeeded()
                self._served_by = endpoint
                break
            # Some items of a batch failed transiently: ask again for those alone.
            cause = pending[0].cause
            trouble.causes[endpoint.safe_url] = cause
            endpoint.failed(cause, kind="behind" if all(p.behind for p in pending) else "transient")
            trouble.failures += 1
            if all(p.behind for p in pending):
                if self._others(endpoint, trouble):
                    trouble.behind.add(id(endpoint))  # not overloaded: it lacks the block
                    if block is not None:
                        endpoint.lacking(block)
                    continue
                # No one else to ask: a lagging backend catches up within a block or two.
                trouble.attempts = max(trouble.attempts, self.max_attempts - _BEHIND_ATTEMPTS)
            trouble.attempts += 1
            if trouble.attempts >= self.max_attempts or self._late(started):
                raise self._gave_up(pending, trouble, started)
        return results

    def _others(self, endpoint: Endpoint, trouble: _Trouble) -> bool:
        """Whether an endpoint other than this one may still serve the current call."""
        return any(
            e is not endpoint
            and id(e) not in trouble.behind
            and trouble.silent.get(id(e), 0) <= self.retries
            for e in self.endpoints.ordered()
        )

    def _prepare(self, endpoint: Endpoint, min_block: int | None) -> None:
        """Check the endpoint's chain id once; for log reads, that its head reached min_block."""
        if id(endpoint) not in self._checked:
            if self.expected_chain_id is not None or len(self.endpoints.endpoints) > 1:
                if endpoint.chain_id is None:
                    endpoint.chain_id = int(self._one(endpoint, "eth_chainId"), 16)
                expected = self.expected_chain_id
                if expected is None:
                    self.expected_chain_id = expected = endpoint.chain_id
                if endpoint.chain_id != expected:
                    endpoint.wrong_chain = (
                        f"RPC endpoint {endpoint.safe_url} serves chain id {endpoint.chain_id}, "
                        f"expected {expected}"
                    )
                    endpoint.failed(endpoint.wrong_chain, set_aside=True, kind="wrong_chain")
                    raise ChainMismatch(endpoint.wrong_chain)
            self._checked.add(id(endpoint))
        several = len(self.endpoints.endpoints) > 1
        if several and min_block is not None and endpoint.head < min_block:
            endpoint.head = max(endpoint.head, int(self._one(endpoint, "eth_blockNumber"), 16))
            if endpoint.head < min_block:
                raise _Refused("behind", f"its head {endpoint.head} is behind block {min_block}")

    def _one(self, endpoint: Endpoint, method: str) -> Any:
        """One call without params to one endpoint, no retry; a failure raises _Refused."""
        results: list[Any] = [_UNSET]
        p = _Pending(0, method, [])
        self._exchange(endpoint, [p], results, as_batch=False)
        if results[0] is _UNSET:
            raise _Refused("transient", p.cause)
        if isinstance(results[0], Exception):
            raise _Refused("endpoint", str(results[0]))
        return results[0]

    def _exchange(
        self, endpoint: Endpoint, pending: list[_Pending], results: list[Any], as_batch: bool
    ) -> float:
        """POST the pending calls once. Answers and final errors go into results; an item that
        failed transiently stays unset with its cause. A failure of the whole request raises
        _Refused (to retry or fail over) or the final error. Returns a Retry-After wait."""
        ids = [next(self._ids) for _ in pending]
        items = [
            {"jsonrpc": "2.0", "id": i, "method": p.method, "params": p.params}
            for i, p in zip(ids, pending, strict=True)
        ]
        data = json.dumps(items if as_batch else items[0], separators=(",", ":"))
        endpoint.wait_for_slot()
        self.requests_sent += 1
        self.calls_sent += len(items)
        resp: requests.Response | None = None
        sent_at = time.monotonic()
        if self.provider is not None:
            status, ok, body = 200, True, self._ask_provider(pending, ids, as_batch)
            endpoint.observed(time.monotonic() - sent_at)
        else:
            try:
                resp = self._session(endpoint).post(endpoint.url, data=data, timeout=self.timeout_s)
            except requests.RequestException as exc:
                endpoint.observed(time.monotonic() - sent_at)
                # Never show str(exc): requests puts the full URL (with any API key) in it.
                raise _Refused("silent", _transport_reason(exc, self.timeout_s)) from None
            endpoint.observed(time.monotonic() - sent_at)
            status, ok = resp.status_code, resp.ok
            try:
                body = resp.json()
            except ValueError:
                body = None
        if not isinstance(body, (dict, list)) or (not ok and not _has_rpc_error(body)):
            # No JSON-RPC answer. The body is never shown: a 401 page may echo the key.
            kind = classify_http(status) if not ok else "transient"
            if kind == "final":
                raise RpcResponseError(
                    f"RPC endpoint {endpoint.safe_url} answered HTTP {status}", http_status=status
                )
            cause = f"HTTP {status}" if not ok else "an answer that is not JSON-RPC"
            wait = _retry_after(resp) if status == 429 and resp is not None else 0.0
            raise _Refused(kind, cause, http_status=status, retry_after=wait)
        if as_batch and isinstance(body, dict):
            # One error object for the whole batch (a refused batch).
            error = body.get("error")
            batch_error = self._error(endpoint, "batch", error, status)
            kind = self._classify(pending[0], error)
            if kind == "final":
                raise batch_error
            raise _Refused(kind, _cause(endpoint, error), http_status=status)
        if as_batch:
            by_id = {a.get("id"): a for a in body if isinstance(a, dict)}
            answers = [by_id.get(i) for i in ids]
        else:
            answers = [body if isinstance(body, dict) else None]
        for p, answer in zip(pending, answers, strict=True):
            p.behind = False
            if not isinstance(answer, dict) or ("error" not in answer and "result" not in answer):
                p.cause = f"{p.method} missing from the answer"
            elif "error" in answer:
                error = answer["error"]
                kind = self._classify(p, error)
                if kind == "final":
                    results[p.index] = self._error(endpoint, p.method, error, status)
                elif kind == "endpoint" and not as_batch:
                    raise _Refused(kind, _cause(endpoint, error), http_status=status)
                else:
                    p.cause = _cause(endpoint, error)
                    p.behind = p.pinned and is_behind(error.get("code"), str(error.get("message")))
            elif answer["result"] is None and self._lags_behind(p):
                p.cause, p.behind = f"no block {p.params[0]} yet", True
            elif self._disagrees(p, answer["result"]):
                p.cause, p.behind = "another block under a pinned block's number", True
            else:
                results[p.index] = answer["result"]
        return 0.0

    def _ask_provider(self, pending: list[_Pending], ids: list[int], as_batch: bool) -> Any:
        """The calls through the caller's web3 provider; its answers carry our ids, so they are
        checked like any endpoint's. A provider that raises is a transient failure (its error is
        named by type only: a provider's message may hold its URL)."""
        try:
            if as_batch:
                answers = self.provider.make_batch_request([(p.method, p.params) for p in pending])
            else:
                answers = self.provider.make_request(pending[0].method, pending[0].params)
        except Exception as exc:  # whatever the caller's provider raises
            raise _Refused("silent", f"the provider raised {type(exc).__name__}") from None
        if isinstance(answers, list):  # in the order asked
            return [
                dict(a, id=i) if isinstance(a, dict) else a
                for a, i in zip(answers, ids, strict=False)
            ]
        if isinstance(answers, dict) and not as_batch:
            return dict(answers, id=ids[0])
        return answers  # one error for a whole batch

    def _disagrees(self, p: _Pending, result: Any) -> bool:
        """Whether a by-number answer names a block we pinned with another hash: that endpoint
        is on another fork (or behind a reorg), and its answers must not be mixed in."""
        if not self._pinned or self._repinning or len(self.endpoints.endpoints) == 1:
            return False
        if p.method == "eth_getBlockByNumber" and isinstance(result, dict):
            items = [result]
        elif p.method == "eth_getLogs" and isinstance(result, list):
            items = result
        else:
            return False
        for item in items:
            try:
                number = int(str(item.get("number") or item.get("blockNumber")), 16)
                block_hash = item.get("hash") or item.get("blockHash")
            except (AttributeError, TypeError, ValueError):
                continue
            if number in self._pinned and block_hash != self._pinned[number]:
                return True
        return False

    def _lags_behind(self, p: _Pending) -> bool:
        """A null block by number at or below a block this client already pinned: with several
        endpoints, that endpoint lags (a single node cannot lack what it served)."""
        if p.method != "eth_getBlockByNumber" or len(self.endpoints.endpoints) == 1:
            return False
        tag = p.params[0] if p.params else None
        return isinstance(tag, str) and tag.startswith("0x") and int(tag, 16) <= self._pinned_max

    def _classify(self, p: _Pending, error: Any) -> Fault:
        if not isinstance(error, dict):
            return "transient"
        return classify_error(
            p.method, error.get("code"), str(error.get("message", "")), pinned=p.pinned
        )

    def _sleep(self, failures: int, retry_after: float, started: float) -> None:
        """Exponential backoff with full jitter, never past the retry budget."""
        cap = min(self.backoff_s * 2 ** max(failures - 1, 0), _MAX_DELAY_S)
        delay = max(self._random.uniform(cap / 2, cap), retry_after)
        remaining = self.retry_budget_s - (time.monotonic() - started)
        if remaining > 0:
            time.sleep(min(delay, remaining))

    def _late(self, started: float) -> bool:
        return time.monotonic() - started >= self.retry_budget_s

    def _gave_up(
        self,
        pending: list[_Pending],
        trouble: _Trouble,
        started: float,
        *,
        unavailable: bool = False,
    ) -> RpcError:
        """One line: what failed, after how much trying, and each endpoint's last cause."""
        first = pending[0]
        what = first.method if len(pending) == 1 else f"{len(pending)} calls ({first.method}, …)"
        where = "; ".join(f"{url} ({cause})" for url, cause in trouble.causes.items())
        if unavailable and len(trouble.causes) == 1 and len(self.endpoints.endpoints) == 1:
            url, cause = next(iter(trouble.causes.items()))
            if trouble.status:
                return RpcResponseError(
                    f"RPC endpoint {url} answered {cause} after {trouble.failures} attempt(s)",
                    http_status=trouble.status,
                )
            return RpcUnavailable(
                f"RPC endpoint {url} did not answer ({cause}) after {trouble.failures} attempts"
            )
        if unavailable:
            return RpcUnavailable(f"{what} failed: no RPC endpoint answered: {where}")
        if first.pinned and any(LAG_TEXT.search(c) for c in trouble.causes.values()):
            return RpcError(
                f"{what} failed: no RPC endpoint serves the pinned block (answers from endpoints "
                f"that disagree on it are never mixed; run again to re-pin): {where}"
            )
        elapsed = time.monotonic() - started
        return RpcResponseError(
            f"{what} failed after {trouble.attempts} attempts in {elapsed:.1f}s: {where}",
            http_status=trouble.status,
        )

    def _error(self, endpoint: Endpoint, method: str, error: Any, status: int) -> RpcError:
        if not isinstance(error, dict):
            return RpcResponseError(
                f"{method} failed: {endpoint.scrub(repr(error))}", http_status=status
            )
        code = error.get("code")
        message = endpoint.scrub(str(error.get("message", "")).strip())
        data = error.get("data")
        if method == "eth_call" and (code == 3 or "revert" in message.lower()):
            return CallReverted(f"eth_call reverted: {message}", hex_to_bytes(data))
        return RpcResponseError(
            f"{method} failed: {message} (code {code})",
            code=code if isinstance(code, int) else None,
            http_status=status,
            data=data,
        )


_UNSET: Any = object()  # a result not yet answered (None is a valid answer)


class _Trouble:
    """What went wrong so far in one call: for the retry policy and the final one-line error."""

    def __init__(self) -> None:
        self.failures = 0  # every failed request (sets the backoff)
        self.attempts = 0  # failures where an endpoint answered (bounded by max_attempts)
        self.silent: dict[int, int] = {}  # endpoint -> requests it did not answer
        self.behind: set[int] = set()  # endpoints that lack the block this call needs
        self.causes: dict[str, str] = {}  # safe url -> last cause
        self.status: int | None = None


class _Refused(Exception):
    """Internal: a request failed as a whole, with its fault class and a safe cause."""

    def __init__(
        self, kind: str, cause: str, *, http_status: int | None = None, retry_after: float = 0.0
    ) -> None:
        super().__init__(cause)
        self.kind = kind
        self.cause = cause
        self.http_status = http_status
        self.retry_after = retry_after


def _cause(endpoint: Endpoint, error: Any) -> str:
    """A JSON-RPC error object as a short, scrubbed cause."""
    if not isinstance(error, dict):
        return endpoint.scrub(repr(error))[:120]
    message = endpoint.scrub(str(error.get("message", "")).strip())[:120]
    return f"{message} (code {error.get('code')})"


def _retry_after(resp: requests.Response) -> float:
    """Retry-After in seconds (capped); an HTTP-date or garbage counts as none."""
    try:
        return min(max(float(resp.headers.get("Retry-After", "")), 0.0), _MAX_RETRY_AFTER_S)
    except ValueError:
        return 0.0


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


def _has_rpc_error(body: Any) -> bool:
    """Whether an HTTP error's body is a JSON-RPC answer (some nodes send reverts under 500)
    rather than the server's own refusal page."""
    items = [body] if isinstance(body, dict) else body
    return any(isinstance(i, dict) and isinstance(i.get("error"), dict) for i in items)


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
