"""The change hub (store/changes.py): open live views (the portal's My sessions, GET /events)
read nothing from the database while nothing changes, however many are open, and each gets
what changed as soon as something does.

The idle test runs the server in this process (uvicorn in a thread, the real root
application) so that every statement SQLite runs can be counted (sqlite3's trace callback on
every connection the store checks out). The hub's own tests run on the database under test.
"""

from __future__ import annotations

import asyncio
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

from opennimble import clock, config, demo, installation, server
from opennimble.domain.identity import Caller
from opennimble.protocol import model
from opennimble.store import changes, database, events, generations
from tests.support import databases
from tests.support.server import REGION, free_port

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
    db = installation.open_database(settings)
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


@pytest.mark.sqlite  # (statements are counted through sqlite3's trace callback)
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


def test_own_commits_are_heard_at_once_with_their_topic(tmp_path: pathlib.Path) -> None:
    db = database.Database(databases.fresh_url(tmp_path))
    db.upgrade()
    hub = changes.Hub(db)  # not run: neither LISTEN nor the fallback read

    async def scenario() -> None:
        seen = hub.mark()
        await asyncio.to_thread(_record_event, db, "studio-a")
        assert await hub.wait(seen, ("studio-a",), timeout=5) != seen
        assert not hub.moved(seen, ("studio-b",))  # a view of another studio sleeps on
        seen = hub.mark()
        with pytest.raises(RuntimeError):  # a transaction rolled back announces nothing

            def fail() -> None:
                with db.write() as conn:
                    _event(conn, "studio-a")
                    raise RuntimeError("rolled back")

            await asyncio.to_thread(fail)
        assert await hub.wait(seen, timeout=0.3) == seen
        await asyncio.to_thread(_bump_access, db)
        assert await hub.wait(seen, (changes.ACCESS,), timeout=5) != seen

    try:
        asyncio.run(scenario())
    finally:
        db.dispose()


def test_another_process_s_commits_are_heard(tmp_path: pathlib.Path) -> None:
    """PostgreSQL: through LISTEN, with their topic; SQLite: through the fallback read."""
    url = databases.fresh_url(tmp_path)
    ours, theirs = database.Database(url), database.Database(url)  # theirs: another process's
    ours.upgrade()
    hub = changes.Hub(ours, fallback=0.2)

    async def scenario() -> None:
        hearing = asyncio.create_task(hub.run())
        try:
            deadline = time.monotonic() + 10
            while not (hub.listening or hub.fallback_reads) and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
            await asyncio.sleep(0.3)  # (a new LISTEN connection announces "everything")
            seen = hub.mark()
            await asyncio.to_thread(_record_event, theirs, "studio-a")
            assert await hub.wait(seen, ("studio-a",), timeout=10) != seen
            if ours.is_postgresql:
                assert not hub.moved(seen, ("studio-b",))  # the topic came with the NOTIFY
            seen = hub.mark()
            await asyncio.to_thread(_bump_access, theirs)
            assert await hub.wait(seen, (changes.ACCESS,), timeout=10) != seen
        finally:
            hearing.cancel()
            await asyncio.gather(hearing, return_exceptions=True)

    try:
        asyncio.run(scenario())
    finally:
        theirs.dispose()
        ours.dispose()


def _event(conn: sa.Connection, studio_id: str) -> None:
    events.serialize(conn)
    events.record(
        conn,
        "session.ready",
        time=clock.system_now(),
        studio_id=studio_id,
        session_id="session",
        owned_by="owner",
        detail={},
    )


def _record_event(db: database.Database, studio_id: str) -> None:
    with db.write() as conn:
        _event(conn, studio_id)


def _bump_access(db: database.Database) -> None:
    with db.write() as conn:
        generations.bump(conn)
