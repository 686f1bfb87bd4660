"""A test tool: a fault-injecting JSON-RPC proxy on 127.0.0.1 in front of a real node.

It makes a healthy local endpoint misbehave the way hosted providers do, from a seeded RNG so
a failing test fails the same way again: JSON-RPC error objects under HTTP 200 on whole
requests or on single items of a batch, HTTP 429/5xx, connection resets, stalls, a wrong chain
id, a lagging head that does not know recently pinned blocks, and a 401 page that echoes the
API key from the URL. Everything else is forwarded unchanged.
"""

from __future__ import annotations

import hashlib
import json
import random
import socket
import struct
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import requests

SECRET = "KEY-3f9a7c1e5b2d4f6a8c0e"  # in every proxy URL's path: must never be printed
OVERLOAD_ERRORS = [
    {"code": -32603, "message": "internal error"},
    {"code": -32005, "message": "limit exceeded"},
    {"code": -32016, "message": "over rate limit"},
    {"code": -32000, "message": "Too Many Requests: 429"},
]


def _other(block_hash: str) -> str:
    """The hash the other fork has at the same height."""
    return "0x" + hashlib.sha256(block_hash.encode()).hexdigest()


class _QuietServer(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client that gave up on a stalled answer closed its socket: not worth a traceback."""


@dataclass
class Faults:
    """Probabilities per request (or per batch item) and fixed behaviours."""

    error_rate: float = 0.0  # whole request answered with an overload error object
    item_error_rate: float = 0.0  # single items of a batch answered with one
    http_rate: float = 0.0  # HTTP 429 / 502 / 503 with an HTML body
    reset_rate: float = 0.0  # connection closed without an answer (RST)
    stall_rate: float = 0.0  # answer delayed by stall_s
    stall_s: float = 3.0
    chain_id: int | None = None  # eth_chainId answers this instead
    lag_blocks: int = 0  # claims a head this many blocks behind and knows nothing newer
    fork_blocks: int = 0  # the last blocks are other blocks here: other hashes, same numbers
    unauthorized: bool = False  # every request: HTTP 401 with a body echoing the URL's key
    seed: int = 1
    skip_methods: frozenset[str] = field(default_factory=frozenset)  # never fault these


class FaultProxy:
    """`with FaultProxy(upstream, Faults(...)) as proxy:` then point clients at `proxy.url`."""

    def __init__(self, upstream: str, faults: Faults) -> None:
        self.upstream = upstream
        self.faults = faults
        self.requests = 0
        self.injected = 0
        self.max_batch = 0  # most calls seen in one request
        self.lag_answers = 0  # answers that a lagging node gives (null, header not found, cut logs)
        self.fork_answers = 0  # answers about our blocks from the other fork
        self._rng = random.Random(faults.seed)
        self._lock = threading.Lock()
        self._numbers: dict[str, int] = {}
        self._session = requests.Session()
        self._server = _QuietServer(("127.0.0.1", 0), self._handler())
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}/v3/{SECRET}"

    def __enter__(self) -> FaultProxy:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)
        self._session.close()

    # -- decisions ---------------------------------------------------------------------------

    def _roll(self, rate: float) -> bool:
        with self._lock:
            hit = rate > 0 and self._rng.random() < rate
            if hit:
                self.injected += 1
            return hit

    def _overload(self) -> dict[str, Any]:
        with self._lock:
            return dict(self._rng.choice(OVERLOAD_ERRORS))

    # -- upstream ----------------------------------------------------------------------------

    def _forward(self, payload: Any) -> Any:
        return self._session.post(self.upstream, json=payload, timeout=60).json()

    def _head(self) -> int:
        return int(
            self._forward({"jsonrpc": "2.0", "id": 0, "method": "eth_blockNumber"})["result"], 16
        )

    def _number_of(self, block_hash: str) -> int | None:
        if block_hash not in self._numbers:
            blk = self._forward(
                {
                    "jsonrpc": "2.0",
                    "id": 0,
                    "method": "eth_getBlockByHash",
                    "params": [block_hash, False],
                }
            )["result"]
            if blk is None:
                return None
            self._numbers[block_hash] = int(blk["number"], 16)
        return self._numbers[block_hash]

    # -- one call ----------------------------------------------------------------------------

    def _lagging_answer(self, item: dict[str, Any]) -> dict[str, Any] | None:
        """What a node `lag_blocks` behind would answer, or None to forward."""
        answer = self._lagging(item)
        if answer is not None and item.get("method") != "eth_blockNumber":
            with self._lock:
                self.lag_answers += 1
        return answer

    def _lagging(self, item: dict[str, Any]) -> dict[str, Any] | None:
        head = self._head() - self.faults.lag_blocks
        method, params = item.get("method"), item.get("params") or []
        reply = {"jsonrpc": "2.0", "id": item.get("id")}
        if method == "eth_blockNumber":
            return {**reply, "result": hex(head)}
        if method == "eth_getBlockByNumber":
            tag = params[0]
            number = head if tag == "latest" else int(tag, 16) if tag.startswith("0x") else None
            if number is not None and number > head:
                return {**reply, "result": None}
            if number is not None:
                item = {**item, "params": [hex(number), *params[1:]]}
                return self._forward(item)
            return None
        if method == "eth_getLogs":
            flt = dict(params[0])
            if int(flt["toBlock"], 16) > head:  # a lagging node answers what it has
                flt["toBlock"] = hex(head)
                if int(flt["fromBlock"], 16) > head:
                    return {**reply, "result": []}
                return self._forward({**item, "params": [flt]})
            return None
        for p in params:
            if isinstance(p, dict) and "blockHash" in p:
                number = self._number_of(p["blockHash"])
                if number is None or number > head:
                    return {**reply, "error": {"code": -32000, "message": "header not found"}}
        return None

    def _answer_item(self, item: dict[str, Any], in_batch: bool) -> dict[str, Any] | None:
        """An injected answer for one call, or None to forward it."""
        f = self.faults
        reply = {"jsonrpc": "2.0", "id": item.get("id")}
        if item.get("method") in f.skip_methods:
            return None
        if in_batch and self._roll(f.item_error_rate):
            return {**reply, "error": self._overload()}
        if f.chain_id is not None and item.get("method") == "eth_chainId":
            return {**reply, "result": hex(f.chain_id)}
        if f.lag_blocks:
            return self._lagging_answer(item)
        if f.fork_blocks:
            return self._forked_answer(item)
        return None

    def _forked_answer(self, item: dict[str, Any]) -> dict[str, Any] | None:
        """What a node on another fork for the last `fork_blocks` blocks would answer: its own
        hashes for those numbers, and no knowledge of ours."""
        fork_from = self._head() - self.faults.fork_blocks + 1
        method, params = item.get("method"), item.get("params") or []
        reply = {"jsonrpc": "2.0", "id": item.get("id")}
        for p in params:
            if isinstance(p, dict) and "blockHash" in p:
                number = self._number_of(p["blockHash"])
                if number is None or number >= fork_from:
                    self._count_fork()
                    return {**reply, "error": {"code": -32000, "message": "header not found"}}
        if method == "eth_getBlockByNumber":
            answer = self._forward(item)
            blk = answer.get("result")
            if isinstance(blk, dict) and int(blk["number"], 16) >= fork_from:
                self._count_fork()
                return {**answer, "result": {**blk, "hash": _other(blk["hash"])}}
            return answer
        if method == "eth_getLogs":
            answer = self._forward(item)
            logs = answer.get("result")
            if isinstance(logs, list):
                moved = [
                    {**g, "blockHash": _other(g["blockHash"])}
                    if int(g["blockNumber"], 16) >= fork_from
                    else g
                    for g in logs
                ]
                if moved != logs:
                    self._count_fork()
                return {**answer, "result": moved}
            return answer
        return None

    def _count_fork(self) -> None:
        with self._lock:
            self.fork_answers += 1

    def _answer(self, body: bytes) -> tuple[int, bytes] | None:
        """(status, body) to send, or None to reset the connection."""
        with self._lock:
            self.requests += 1
        f = self.faults
        payload = json.loads(body)
        with self._lock:
            self.max_batch = max(self.max_batch, len(payload) if isinstance(payload, list) else 1)
        if f.unauthorized:
            return 401, f"<html>401: invalid key in {self.url}</html>".encode()
        if self._roll(f.reset_rate):
            return None
        if self._roll(f.stall_rate):
            time.sleep(f.stall_s)
        if self._roll(f.http_rate):
            with self._lock:
                status = self._rng.choice([429, 502, 503])
            return status, b"<html><body>Too busy, try later</body></html>"
        items = payload if isinstance(payload, list) else [payload]
        if not any(i.get("method") in f.skip_methods for i in items) and self._roll(f.error_rate):
            error = self._overload()
            if isinstance(payload, list):
                return 200, json.dumps(
                    [{"jsonrpc": "2.0", "id": i["id"], "error": error} for i in items]
                ).encode()
            return 200, json.dumps({"jsonrpc": "2.0", "id": payload["id"], "error": error}).encode()
        injected = [self._answer_item(i, isinstance(payload, list)) for i in items]
        forward = [i for i, a in zip(items, injected, strict=True) if a is None]
        answers = {}
        if forward:
            got = self._forward(forward if isinstance(payload, list) else forward[0])
            for a in got if isinstance(got, list) else [got]:
                answers[a.get("id")] = a
        out = [
            a if a is not None else answers[i["id"]] for i, a in zip(items, injected, strict=True)
        ]
        return 200, json.dumps(out if isinstance(payload, list) else out[0]).encode()

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                answer = proxy._answer(body)
                if answer is None:  # RST: SO_LINGER 0 then close
                    self.connection.setsockopt(
                        socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0)
                    )
                    self.close_connection = True
                    return
                status, data = answer
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: object) -> None:
                pass

        return Handler
