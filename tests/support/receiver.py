"""A webhook receiver: a real HTTP server on a loopback port that keeps what it is POSTed, and
checks each delivery's signature as docs/events.md tells receivers to."""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import http.server
import json
import threading
import time
from collections.abc import Callable
from typing import Any

from tests.support.server import free_port

TOLERANCE = 300  # seconds a signature's timestamp may be off


def verify(secret: str, header: str, body: bytes, now: float | None = None) -> bool:
    """The check of docs/events.md: t=..., v1=... over "<t>." + body, recent enough."""
    parts = dict(p.split("=", 1) for p in header.split(",") if "=" in p)
    try:
        timestamp = int(parts["t"])
    except (KeyError, ValueError):
        return False
    expected = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    recent = abs((now or time.time()) - timestamp) <= TOLERANCE
    return recent and hmac.compare_digest(expected.hexdigest(), parts.get("v1", ""))


class Receiver:
    """``start()``/``stop()`` it as often as needed: it comes back on the same port."""

    def __init__(self, secret: str) -> None:
        self.secret = secret
        self.port = free_port()
        self.received: list[dict[str, Any]] = []  # {"headers", "body", "valid"} in arrival order
        self._server: http.server.ThreadingHTTPServer | None = None
        self._lock = threading.Lock()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    def start(self) -> None:
        receiver = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                header = self.headers.get("X-Opennimble-Signature", "")
                with receiver._lock:
                    receiver.received.append(
                        {
                            "headers": dict(self.headers),
                            "body": json.loads(body),
                            "valid": verify(receiver.secret, header, body),
                        }
                    )
                self.send_response(204)
                self.end_headers()

            def log_message(self, *_args: Any) -> None:
                pass

        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def events(self, session_id: str | None = None) -> list[dict[str, Any]]:
        with self._lock:
            return [
                r["body"]
                for r in self.received
                if session_id is None or r["body"]["sessionId"] == session_id
            ]

    def wait_for(self, done: Callable[[list[dict[str, Any]]], bool], timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while not done(self.events()):
            if time.monotonic() > deadline:
                raise AssertionError(f"the receiver got only {self.events()}")
            time.sleep(0.1)


@contextlib.contextmanager
def running(secret: str) -> Any:
    receiver = Receiver(secret)
    receiver.start()
    try:
        yield receiver
    finally:
        receiver.stop()
