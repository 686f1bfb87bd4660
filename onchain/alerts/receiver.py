"""A webhook receiver on 127.0.0.1: records every POST, checks our signature and the
timestamp's age (a receiver should reject replays), and answers with the status its owner
sets. The demo shows alerts arriving on it; the tests use it to prove delivery."""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from onchain.alerts.channels import SIGNATURE_HEADER, TIMESTAMP_HEADER, verify

REPLAY_WINDOW_S = 300


@dataclass
class Delivery:
    path: str
    headers: dict[str, str]
    body: bytes
    status: int
    signed: bool | None  # None: no secret to check against

    @property
    def json(self) -> Any:
        return json.loads(self.body)


class Receiver:
    """`with Receiver(secret) as r:` ... `r.url`, `r.status = 500`, `r.deliveries`."""

    def __init__(self, secret: str | None = None, status: int = 200) -> None:
        self.secret = secret
        self.status = status
        self.requests: list[Delivery] = []
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                headers = {k.lower(): v for k, v in self.headers.items()}
                signed = None
                if receiver.secret is not None:
                    ts = headers.get(TIMESTAMP_HEADER.lower(), "")
                    signature = headers.get(SIGNATURE_HEADER.lower(), "")
                    fresh = ts.isdigit() and abs(time.time() - int(ts)) < REPLAY_WINDOW_S
                    signed = fresh and verify(receiver.secret, ts, body, signature)
                status = receiver.status if signed is not False else 401
                with receiver.lock:
                    receiver.requests.append(Delivery(self.path, headers, body, status, signed))
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *_args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/hook"

    @property
    def port(self) -> int:
        return int(self.server.server_address[1])

    @property
    def delivered(self) -> list[Delivery]:
        """Requests answered 2xx: what the receiver acknowledged."""
        with self.lock:
            return [d for d in self.requests if 200 <= d.status < 300]

    def __enter__(self) -> Receiver:
        self.thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()
