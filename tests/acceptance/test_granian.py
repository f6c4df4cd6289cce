"""``http_server = "granian"``: the API through boto3, the lifespan and a stream's websocket,
against a server process running on granian. The slow-client limits are tested on both servers
in test_slow_clients.py; what granian lacks is in ARCHITECTURE.md ("HTTP servers").
"""

from __future__ import annotations

import pathlib
import socket
import time
from collections.abc import Iterator

import pytest
import requests

from opennimble import http_servers
from tests.acceptance.test_stream import admitted, ready_session, stream_url
from tests.acceptance.test_stream import connect as connect_websocket
from tests.support import server as support
from tests.support import vnc
from tests.support import world as worlds


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[worlds.World]:
    """A studio set up through the API of a server on granian."""
    data_dir: pathlib.Path = tmp_path_factory.mktemp("granian") / "data"
    server = support.Server(data_dir, env={"OPENNIMBLE_HTTP_SERVER": "granian"})
    with worlds.served(server) as built:
        yield built


def test_granian_serves_the_api_to_boto3(world: worlds.World) -> None:
    health = requests.get(f"{world.server.endpoint}/healthz", timeout=10)
    assert health.headers["server"] == "granian"
    client = world.artist.client()
    studios = client.list_studios()["studios"]
    assert [s["studioId"] for s in studios] == [world.studio.studio_id]
    sessions = client.list_streaming_sessions(studioId=world.studio.studio_id)["sessions"]
    assert sessions == []


def test_the_lifespan_ran_the_reconciler(world: worlds.World) -> None:
    ready = requests.get(f"{world.server.endpoint}/readyz", timeout=10)
    assert ready.status_code == 200, ready.text
    assert ready.json()["status"] == "ready"


@pytest.mark.xvnc
def test_a_stream_websocket_reaches_the_sessions_desktop(world: worlds.World) -> None:
    client = world.artist.client()
    ids = ready_session(client, world.studio.studio_id, world.studio.launch_profile_id)
    socket_url, cookie = admitted(stream_url(client, ids))
    with connect_websocket(socket_url, cookie) as ws:
        init = vnc.RfbClient(ws).handshake()
    assert (init.width, init.height) == (1280, 800)
    client.delete_streaming_session(**ids)


def test_a_stop_ends_the_lifespan_within_the_grace_despite_an_open_request(
    tmp_path: pathlib.Path,
) -> None:
    """granian itself would wait for every connection before the lifespan's shutdown; serve
    gives open requests SHUTDOWN_GRACE seconds, as on uvicorn."""
    server = support.Server(tmp_path / "data", env={"OPENNIMBLE_HTTP_SERVER": "granian"})
    server.start()
    try:
        with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
            # a body that never ends (body_timeout is 30 s)
            sock.sendall(
                b"POST /2020-08-01/studios HTTP/1.1\r\nHost: x\r\nContent-Length: 9\r\n\r\n{"
            )
            time.sleep(0.5)
            started = time.monotonic()
            server.stop()
            took = time.monotonic() - started
    finally:
        server.stop()
    assert took < http_servers.SHUTDOWN_GRACE + 3
    log = server.log()
    assert "they end with the server" in log
    assert "event=stopped" in log  # the lifespan's shutdown ran
