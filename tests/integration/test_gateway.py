"""The stream gateway over real HTTP and websockets, into real Xvnc desktops.

The gateway runs in this process (uvicorn in a thread) on a real SQLite database, with a clock
the test controls, so expiry is shown without waiting. Desktops are real Xvnc servers started
here, with VNC authentication (a password in the session's endpoint) and without.
"""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import pathlib
import struct
import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import requests
import uvicorn
import websockets.exceptions

from opennimble import clock
from opennimble.domain import endpoints
from opennimble.domain.stream_tokens import StreamTokens
from opennimble.gateway import app as gateway
from opennimble.store import crypto, database, members, sessions, streams, users
from tests.integration.test_stream_gate import (
    LAUNCH_PROFILE,
    LIFETIME,
    OWNER,
    T0,
    Clock,
    seed_owner,
    session_row,
    stream_row,
)
from tests.support import vnc
from tests.support.server import free_port

pytestmark = pytest.mark.xvnc
KEY = base64.urlsafe_b64encode(b"g" * 32)  # an installation key (Fernet)
PASSWORD = "s3cret-pw"


@dataclasses.dataclass
class Site:
    """A gateway served over HTTP, its database and clock."""

    db: database.Database
    clock: Clock
    port: int
    app: gateway.Gateway
    tokens: StreamTokens = dataclasses.field(default_factory=lambda: StreamTokens(KEY))

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def session(self, desktop: vnc.Xvnc | None, password: str | None = None, **attrs: Any) -> str:
        session_id = uuid.uuid4().hex[:22]
        row = session_row(session_id, "READY")
        row["attrs"] = attrs
        endpoint = {"host": "127.0.0.1", "port": desktop.port if desktop else free_port()}
        if password is not None:
            endpoint["password"] = password
        row["endpoint"] = endpoints.seal(endpoint, crypto.Cipher(KEY))  # as the reconciler does
        with self.db.write() as conn:
            sessions.insert(conn, row)
        return session_id

    def set_state(self, session_id: str, state: str) -> None:
        with self.db.write() as conn:
            sessions.update(conn, session_id, state=state)

    def stream(self, session_id: str) -> str:
        row = stream_row(session_id)
        with self.db.write() as conn:
            streams.insert(conn, row)
        return str(row["stream_id"])

    def url(self, stream_id: str) -> str:
        with self.db.read() as conn:
            row = streams.get(conn, stream_id)
        assert row is not None
        return self.tokens.url(self.base, stream_id, row["session_id"], row["expires_at"])

    def open_page(self, stream_id: str) -> requests.Response:
        return requests.get(self.url(stream_id), timeout=10)

    def admitted_cookie(self, stream_id: str) -> str:
        """Open the stream URL as a browser would and return its credential cookie."""
        page = self.open_page(stream_id)
        assert page.status_code == 200, page.text
        return f"opennimble_stream={page.cookies['opennimble_stream']}"

    def socket_url(self, stream_id: str) -> str:
        return f"ws://127.0.0.1:{self.port}/streams/{stream_id}/websocket"

    def connect(self, stream_id: str, cookie: str | None, origin: str | None = None) -> Any:
        return vnc.connect(self.socket_url(stream_id), cookie, origin or self.base)


@pytest.fixture
def site(tmp_path: pathlib.Path, database_url: str) -> Iterator[Site]:
    db = database.Database(database_url)
    db.upgrade()
    seed_owner(db)
    now = Clock(T0 + clock.SECOND)
    novnc = tmp_path / "novnc"
    (novnc / "core").mkdir(parents=True)
    (novnc / "core" / "rfb.js").write_text("export default class RFB {}\n")
    app = gateway.Gateway(
        db, KEY, public_url="http://127.0.0.1", novnc_dir=novnc, now=now, watch_interval=0.2
    )
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="off")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert time.monotonic() < deadline and thread.is_alive(), "gateway did not start"
        time.sleep(0.02)
    try:
        yield Site(db, now, port, app)
    finally:
        server.should_exit = True
        thread.join(timeout=15)
        db.dispose()


@pytest.fixture
def desktop(tmp_path: pathlib.Path) -> Iterator[vnc.Xvnc]:
    with vnc.xvnc(tmp_path / "open") as running:
        yield running


@pytest.fixture
def locked_desktop(tmp_path: pathlib.Path) -> Iterator[vnc.Xvnc]:
    with vnc.xvnc(tmp_path / "locked", password=PASSWORD) as running:
        yield running


def closed_with(ws: Any, timeout: float = 10) -> tuple[int | None, str]:
    """Wait for the gateway to close ``ws``; its close code and reason."""
    with pytest.raises(websockets.exceptions.ConnectionClosed):
        while True:
            ws.recv(timeout=timeout)
    assert ws.protocol.close_rcvd is not None, "the gateway dropped the connection unannounced"
    return ws.protocol.close_rcvd.code, ws.protocol.close_rcvd.reason


def test_admitted_browser_reaches_the_desktop_without_authentication(
    site: Site, desktop: vnc.Xvnc
) -> None:
    stream_id = site.stream(site.session(desktop))
    with site.connect(stream_id, site.admitted_cookie(stream_id)) as ws:
        init = vnc.RfbClient(ws).handshake()
    assert (init.width, init.height, init.name) == (800, 600, "opennimble-test")


def test_gateway_performs_vnc_authentication_for_the_browser(
    site: Site, locked_desktop: vnc.Xvnc
) -> None:
    stream_id = site.stream(site.session(locked_desktop, password=PASSWORD))
    with site.connect(stream_id, site.admitted_cookie(stream_id)) as ws:
        client = vnc.RfbClient(ws)
        init = client.handshake()  # the browser is offered security None only
        client.set_encodings(0)
        client.request_update(init.width, init.height)
        assert client.read(1) == b"\0"  # a FramebufferUpdate: the desktop is streaming
    assert init.width == 800


def test_wrong_desktop_password_is_a_clear_refusal(site: Site, locked_desktop: vnc.Xvnc) -> None:
    stream_id = site.stream(site.session(locked_desktop, password="not-it"))
    with site.connect(stream_id, site.admitted_cookie(stream_id)) as ws:
        code, reason = closed_with(ws)
    assert code == 4004
    assert "desktop refused the gateway" in reason


def test_desktop_requiring_a_password_the_gateway_lacks_is_refused(
    site: Site, locked_desktop: vnc.Xvnc
) -> None:
    stream_id = site.stream(site.session(locked_desktop))
    with site.connect(stream_id, site.admitted_cookie(stream_id)) as ws:
        code, reason = closed_with(ws)
    assert code == 4004
    assert "needs type 1" in reason


def test_desktop_not_listening_is_a_clear_refusal(site: Site) -> None:
    stream_id = site.stream(site.session(None))
    with site.connect(stream_id, site.admitted_cookie(stream_id)) as ws:
        code, reason = closed_with(ws)
    assert code == 4004
    assert reason.startswith("The desktop cannot be reached")


def test_page_sets_a_credential_bound_to_the_stream(site: Site, desktop: vnc.Xvnc) -> None:
    stream_id = site.stream(site.session(desktop))
    page = site.open_page(stream_id)
    assert page.status_code == 200
    assert f"data-websocket='{stream_id}/websocket'" in page.text
    cookie = page.headers["set-cookie"]
    # the page's path and its websocket's: a reload sends it back
    for attribute in ("HttpOnly", "SameSite=Strict", f"Path=/streams/{stream_id};", "Max-Age=119"):
        assert attribute in cookie
    assert page.headers["referrer-policy"] == "no-referrer"
    again = site.open_page(stream_id)
    assert again.status_code == 403
    assert "used already" in again.text
    assert "set-cookie" not in again.headers
    # the way to a new stream: the portal's page of the stream (it checks who asks)
    assert f"href='/portal/streams/{stream_id}'" in again.text


def test_a_reload_with_the_credential_opens_the_same_stream_again(
    site: Site, desktop: vnc.Xvnc
) -> None:
    session_id = site.session(desktop)
    stream_id = site.stream(session_id)
    cookie = site.admitted_cookie(stream_id)
    headers = {"cookie": cookie}
    # the page drops its token from the address: a reload asks without one, with the cookie
    for url in (site.url(stream_id).split("?")[0], site.url(stream_id)):
        again = requests.get(url, headers=headers, timeout=10)
        assert again.status_code == 200, again.text
        assert f"data-websocket='{stream_id}/websocket'" in again.text
        assert "set-cookie" not in again.headers
    with site.connect(stream_id, cookie) as ws:
        assert ws.recv()[:3] == b"RFB"
    # without the credential, or with another stream's, nothing
    assert requests.get(site.url(stream_id).split("?")[0], timeout=10).status_code == 403
    other = site.stream(session_id)
    answer = requests.get(site.url(other).split("?")[0], headers=headers, timeout=10)
    assert answer.status_code == 403
    assert "No valid credential" in answer.text


def test_head_does_not_use_the_token(site: Site, desktop: vnc.Xvnc) -> None:
    stream_id = site.stream(site.session(desktop))
    assert requests.head(site.url(stream_id), timeout=10).status_code == 200
    assert site.open_page(stream_id).status_code == 200


def test_socket_without_or_with_a_forged_credential_is_refused(
    site: Site, desktop: vnc.Xvnc
) -> None:
    stream_id = site.stream(site.session(desktop))
    for cookie in (None, "opennimble_stream=forged"):
        with site.connect(stream_id, cookie) as ws:
            assert closed_with(ws) == (4001, "No valid credential for this stream: open its URL.")
    # a stream whose page was never opened has no credential at all
    with site.connect(stream_id, "opennimble_stream=") as ws:
        assert closed_with(ws)[0] == 4001


def test_credential_of_another_sessions_stream_is_refused(site: Site, desktop: vnc.Xvnc) -> None:
    mine = site.stream(site.session(desktop))
    other_session = site.stream(site.session(desktop))
    same_session = site.stream(site.session(desktop))
    cookie = site.admitted_cookie(mine)
    for target in (other_session, same_session):
        site.admitted_cookie(target)  # even once that stream's own page was opened
        with site.connect(target, cookie) as ws:
            assert closed_with(ws)[0] == 4001


def test_page_of_another_site_cannot_connect(site: Site, desktop: vnc.Xvnc) -> None:
    stream_id = site.stream(site.session(desktop))
    cookie = site.admitted_cookie(stream_id)
    host = f"127.0.0.1:{site.port}"
    for origin in (
        "http://evil.example",
        "null",  # a sandboxed frame, a file:// page
        f"http://{host}.evil.example",  # a look-alike host
        f"http://{host}@evil.example",
        f"http://127.0.0.1:{site.port + 1}",  # another port of the same machine
    ):
        with site.connect(stream_id, cookie, origin=origin) as ws:
            assert closed_with(ws) == (4001, "Cross-site connection refused."), origin
    with site.connect(stream_id, cookie) as ws:  # the page's own origin still connects
        vnc.RfbClient(ws).handshake()


def test_the_urls_token_opens_no_websocket(site: Site, desktop: vnc.Xvnc) -> None:
    """A client that skips the page and hands the URL's token to the websocket gets nothing,
    and the token stays unused for the page."""
    stream_id = site.stream(site.session(desktop))
    query = site.url(stream_id).split("?", 1)[1]
    with vnc.connect(f"{site.socket_url(stream_id)}?{query}", None, site.base) as ws:
        assert closed_with(ws) == (4001, "No valid credential for this stream: open its URL.")
    assert site.open_page(stream_id).status_code == 200


def test_connections_start_only_before_expiry_and_outlive_it(site: Site, desktop: vnc.Xvnc) -> None:
    stream_id = site.stream(site.session(desktop))
    cookie = site.admitted_cookie(stream_id)
    with site.connect(stream_id, cookie) as early:
        vnc.RfbClient(early).handshake()
        site.clock.now = T0 + LIFETIME  # the stream expires now
        with site.connect(stream_id, cookie) as late:
            assert closed_with(late) == (
                4002,
                "This stream link has expired: ask for a new stream.",
            )
        client = vnc.RfbClient(early)  # the established connection lives on
        client.set_encodings(0)
        client.request_update(16, 16)
        assert client.read(1) == b"\0"


def test_expired_token_gets_a_page_that_says_so(site: Site, desktop: vnc.Xvnc) -> None:
    stream_id = site.stream(site.session(desktop))
    site.clock.now = T0 + LIFETIME + clock.SECOND
    page = site.open_page(stream_id)
    assert page.status_code == 403
    assert "has expired" in page.text


@pytest.mark.parametrize(
    ("state", "reason"),
    [("STOP_IN_PROGRESS", "The session was stopped."), ("DELETED", "The session was deleted.")],
)
def test_stopping_or_deleting_the_session_closes_live_connections(
    site: Site, desktop: vnc.Xvnc, state: str, reason: str
) -> None:
    session_id = site.session(desktop)
    stream_id = site.stream(session_id)
    with site.connect(stream_id, site.admitted_cookie(stream_id)) as ws:
        vnc.RfbClient(ws).handshake()
        # the state changes in the database only, as when another server handles the call
        site.set_state(session_id, state)
        started = time.monotonic()
        assert closed_with(ws) == (4010, reason)
    assert time.monotonic() - started < 3
    assert len(site.app.connections) == 0


@pytest.mark.parametrize(
    ("loss", "reason"),
    [
        ("user deleted", "The user of this stream was removed."),
        ("membership removed", "The user of this stream no longer has access to its session."),
    ],
)
def test_a_user_who_loses_access_is_disconnected_and_refused(
    site: Site, desktop: vnc.Xvnc, loss: str, reason: str
) -> None:
    stream_id = site.stream(site.session(desktop))
    cookie = site.admitted_cookie(stream_id)
    with site.connect(stream_id, cookie) as ws:
        vnc.RfbClient(ws).handshake()
        # as `opennimble users delete` or DeleteLaunchProfileMember on any server would
        with site.db.write() as conn:
            if loss == "user deleted":
                users.delete_user(conn, OWNER)
            else:
                members.delete(conn, LAUNCH_PROFILE, OWNER)
        started = time.monotonic()
        assert closed_with(ws) == (4006, reason)
    assert time.monotonic() - started < 3
    assert len(site.app.connections) == 0
    with site.connect(stream_id, cookie) as again:  # the cookie opens nothing any more
        assert closed_with(again) == (4006, reason)


def test_desktop_ending_under_a_busy_browser_still_says_why(site: Site, desktop: vnc.Xvnc) -> None:
    session_id = site.session(desktop)
    stream_id = site.stream(session_id)
    with site.connect(stream_id, site.admitted_cookie(stream_id)) as ws:
        vnc.RfbClient(ws).handshake()
        site.set_state(session_id, "DELETE_IN_PROGRESS")
        desktop.process.kill()  # as deleting the session does, while the user moves the mouse
        with pytest.raises(websockets.exceptions.ConnectionClosed):
            for x in range(100_000):
                ws.send(struct.pack(">BBHH", 5, 0, x % 800, 300))
                time.sleep(0.001)
        assert ws.protocol.close_rcvd is not None
        assert (ws.protocol.close_rcvd.code, ws.protocol.close_rcvd.reason) == (
            4010,
            "The session was deleted.",
        )


def test_session_not_ready_refuses_new_connections(site: Site, desktop: vnc.Xvnc) -> None:
    session_id = site.session(desktop)
    stream_id = site.stream(session_id)
    cookie = site.admitted_cookie(stream_id)
    site.set_state(session_id, "STOPPED")
    with site.connect(stream_id, cookie) as ws:
        assert closed_with(ws) == (4003, "The session of this stream is not running.")


def test_client_speaking_another_protocol_is_refused(site: Site, desktop: vnc.Xvnc) -> None:
    stream_id = site.stream(site.session(desktop))
    with site.connect(stream_id, site.admitted_cookie(stream_id)) as ws:
        client = vnc.RfbClient(ws)
        assert client.read(12) == b"RFB 003.008\n"
        client.send(b"RFB 003.003\n")
        assert closed_with(ws) == (4005, "The VNC client must speak RFB 3.8.")


def test_missing_novnc_gives_a_clear_page_and_keeps_the_token(
    site: Site, desktop: vnc.Xvnc
) -> None:
    stream_id = site.stream(site.session(desktop))
    novnc = site.app.novnc_dir
    assert novnc is not None
    (novnc / "core" / "rfb.js").unlink()
    page = site.open_page(stream_id)
    assert page.status_code == 503
    assert "noVNC" in page.text
    (novnc / "core" / "rfb.js").write_text("export default class RFB {}\n")
    assert site.open_page(stream_id).status_code == 200


def test_client_files_are_served(site: Site) -> None:
    script = requests.get(f"{site.base}/stream-client/app/stream.js", timeout=10)
    assert script.status_code == 200
    assert "javascript" in script.headers["content-type"]
    assert requests.get(f"{site.base}/stream-client/novnc/core/rfb.js", timeout=10).ok
    outside = requests.get(f"{site.base}/stream-client/novnc/../../gateway.db", timeout=10)
    assert outside.status_code == 404


def test_server_shutdown_closes_connections(site: Site, desktop: vnc.Xvnc) -> None:
    stream_id = site.stream(site.session(desktop))
    with site.connect(stream_id, site.admitted_cookie(stream_id)) as ws:
        vnc.RfbClient(ws).handshake()
        asyncio.run_coroutine_threadsafe(site.app.close(), _loop_of(site)).result(timeout=10)
        assert closed_with(ws) == (1001, "The server is shutting down.")


def _loop_of(site: Site) -> asyncio.AbstractEventLoop:
    task = site.app.connections._watch
    assert task is not None
    return task.get_loop()
