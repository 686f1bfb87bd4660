"""A JSON-RPC proxy in front of the devnet whose URL carries a key, and that can hold requests
open (a request in flight), for the tests of Ctrl-C and of what the logs may show."""

from __future__ import annotations

import threading
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@contextmanager
def rpc_proxy(
    upstream: str, stall: Callable[[bytes], bool]
) -> Iterator[tuple[str, threading.Event]]:
    """A JSON-RPC proxy on 127.0.0.1 in front of the devnet: it forwards every request, except
    those `stall` picks, which it holds open (a request in flight) until the proxy stops.
    Yields its URL and an event set when the first request is held."""
    held = threading.Event()
    release = threading.Event()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            if stall(body):
                held.set()
                release.wait(60)
                return
            request = urllib.request.Request(
                upstream, data=body, headers={"Content-Type": "application/json"}
            )
            with urllib.request.urlopen(request, timeout=30) as answer:
                payload = answer.read()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, *_args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/v3/SECRETKEY123", held
    finally:
        release.set()
        server.shutdown()
        server.server_close()
