"""The change hub (store/changes.py): open live views (the portal's My sessions, GET /events)
read nothing from the database while nothing changes, however many are open, and each gets
what changed as soon as something does.

The server runs in this process (uvicorn in a thread, the real root application) so that
every statement SQLite runs can be counted (sqlite3's trace callback on every connection the
store checks out).
"""

from __future__ import annotations

import contextlib
import json
import pathlib
import re
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
import requests
import sqlalchemy as sa
import uvicorn
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from opennimble import config, demo, server
from opennimble.domain.identity import Caller
from opennimble.protocol import model
from opennimble.store import changes
from tests.support.server import REGION, free_port

pytestmark = pytest.mark.sqlite

IDLE = 3.0  # seconds the connections stay idle while statements are counted
EACH = 25  # connections of each kind


class Traced:
    """Every statement SQLite runs for the server, as text."""

    def __init__(self, engine: sa.Engine) -> None:
        self.statements: list[str] = []
        self._lock = threading.Lock()
        sa.event.listen(engine, "checkout", self._trace)

    def _trace(self, dbapi_connection: Any, _record: Any, _proxy: Any) -> None:
        dbapi_connection.set_trace_callback(self._ran)

    def _ran(self, statement: str) -> None:
        with self._lock:
            self.statements.append(statement)

    def since(self, start: int) -> list[str]:
        with self._lock:
            return self.statements[start:]

    def __len__(self) -> int:
        with self._lock:
            return len(self.statements)


class Listening:
    """One server-sent events connection (a plain socket, so that the test can end it while a
    thread reads it), what it received collected by that thread."""

    def __init__(self, endpoint: str, path: str, headers: dict[str, str]) -> None:
        host, port = endpoint.removeprefix("http://").split(":")
        self.sock = socket.create_connection((host, int(port)), timeout=10)
        lines = [f"GET {path} HTTP/1.1", f"Host: {host}:{port}", "Accept: text/event-stream"]
        lines += [f"{k}: {v}" for k, v in headers.items()]
        self.sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
        self.sock.settimeout(None)
        self.received = b""
        self._lock = threading.Lock()
        threading.Thread(target=self._read, daemon=True).start()
        deadline = time.monotonic() + 10
        while b"\r\n\r\n" not in self.text().encode():
            assert time.monotonic() < deadline, "no answer"
            time.sleep(0.02)
        head = self.text().split("\r\n\r\n")[0]
        assert head.startswith("HTTP/1.1 200"), head
        assert "content-type: text/event-stream" in head.lower(), head

    def _read(self) -> None:
        while True:
            try:
                chunk = self.sock.recv(65536)
            except OSError:
                return
            if not chunk:
                return
            with self._lock:
                self.received += chunk

    def text(self) -> str:
        with self._lock:
            return self.received.decode(errors="replace")

    def saw(self, text: str) -> bool:
        return text in self.text()

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)
        self.sock.close()


@pytest.fixture
def served(tmp_path: pathlib.Path) -> Iterator[tuple[server.Root, Traced, str, dict[str, Any]]]:
    """A server (no reconciler: nothing else reads on its own), with the demo's studio."""
    settings = config.Settings(data_dir=tmp_path / "data", reconciler=False, port=free_port())
    db = server.open_database(settings)
    traced = Traced(db.engine)
    root = server.Root(settings, db)
    demo.bootstrap(settings, root.api)
    people = json.loads((settings.data_dir / demo.DEMO_FILE).read_text())
    uvicorn_server = uvicorn.Server(
        uvicorn.Config(root, port=settings.port, lifespan="on", log_level="warning")
    )
    thread = threading.Thread(target=uvicorn_server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not uvicorn_server.started:
        assert time.monotonic() < deadline, "the server did not start"
        time.sleep(0.05)
    try:
        yield root, traced, f"http://127.0.0.1:{settings.port}", people
    finally:
        uvicorn_server.should_exit = True
        thread.join(timeout=30)


def test_fifty_idle_live_connections_read_nothing_until_something_changes(
    served: tuple[server.Root, Traced, str, dict[str, Any]],
) -> None:
    root, traced, endpoint, people = served
    artist, operator = people["users"]["artist"], people["users"]["operator"]
    browser = requests.Session()
    form = browser.get(endpoint + "/portal/signin").text
    token = re.search(r'name="csrf_token" value="([^"]+)"', form)
    assert token is not None
    browser.post(
        endpoint + "/portal/signin",
        data={"csrf_token": token.group(1), "name": "artist", "password": artist["portalPassword"]},
    )
    cookie = "; ".join(f"{c.name}={c.value}" for c in browser.cookies)
    cards = [
        Listening(endpoint, "/portal/sessions/events", {"Cookie": cookie}) for _ in range(EACH)
    ]
    signed = _signed(operator, endpoint + "/events")
    events = [Listening(endpoint, "/events", signed) for _ in range(EACH)]
    listening = cards + events
    try:
        time.sleep(1.0)  # each connection's first look (its reads) is done
        start, reads = len(traced), root.changes.fallback_reads
        time.sleep(IDLE)
        idle = traced.since(start)
        fallback = root.changes.fallback_reads - reads
        # the process's one slow fallback read (other processes' writes on SQLite) is all
        others = [s for s in idle if not _fallback_statement(s)]
        assert others == [], f"idle connections read the database: {others[:10]}"
        assert fallback <= IDLE / changes.FALLBACK + 1

        # a change: every connection hears of it at once, and does its own reads
        start = len(traced)
        caller = Caller(artist["userId"], "artist", False)
        operations = model.operations()
        ids = {"studioId": people["studioId"]}
        session = root.api.dispatcher.invoke(
            operations["CreateStreamingSession"],
            caller,
            {**ids, "launchProfileId": people["launchProfileId"]},
        )["session"]
        deadline = time.monotonic() + 10
        while not all(c.saw(session["sessionId"]) for c in listening):
            assert time.monotonic() < deadline, "a live connection did not hear of the change"
            time.sleep(0.05)
        assert all(c.saw("event: card") for c in cards)
        assert all(c.saw("event: session.create_in_progress") for c in events)
        assert len(traced.since(start)) > 0  # (the count does see the connections' reads)
        # (no reconciler runs here: the session never gets a desktop, and stays in this
        # test's own database, which goes with its temporary directory)
    finally:
        for connection in listening:
            connection.close()


def _fallback_statement(statement: str) -> bool:
    return statement in ("BEGIN", "COMMIT") or "max(events.seq)" in statement


def _signed(user: dict[str, Any], url: str) -> dict[str, str]:
    request = AWSRequest(method="GET", url=url)
    credentials = Credentials(user["accessKeyId"], user["secretAccessKey"])
    SigV4Auth(credentials, "nimble", REGION).add_auth(request)
    return dict(request.headers.items())
