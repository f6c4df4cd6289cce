"""Streams end to end without a browser: boto3 for the API, HTTP and a websocket for the URL.

The websocket client speaks RFB as noVNC does. The desktops are the server's real ones, which
ask for VNC authentication with a password only the server knows: the gateway answers it.
"""

from __future__ import annotations

from typing import Any

import pytest
import requests
import websockets.exceptions

from tests.support import vnc
from tests.support import world as worlds
from tests.support.server import FAST

pytestmark = pytest.mark.xvnc


def ready_session(client: Any, studio_id: str, launch_profile_id: str) -> dict[str, str]:
    session = client.create_streaming_session(
        studioId=studio_id, launchProfileId=launch_profile_id
    )["session"]
    ids = {"studioId": studio_id, "sessionId": session["sessionId"]}
    client.get_waiter("streaming_session_ready").wait(**ids, WaiterConfig=FAST)
    return ids


def stream_url(client: Any, ids: dict[str, str]) -> str:
    return str(client.create_streaming_session_stream(**ids)["stream"]["url"])


def admitted(url: str) -> tuple[str, str]:
    """Open a stream URL as a browser; its websocket URL and credential cookie."""
    page = requests.get(url, timeout=10)
    assert page.status_code == 200, page.text
    socket = url.split("?")[0].replace("http://", "ws://") + "/websocket"
    return socket, f"opennimble_stream={page.cookies['opennimble_stream']}"


def connect(socket: str, cookie: str | None) -> Any:
    origin = socket.replace("ws://", "http://").split("/streams/")[0]
    return vnc.connect(socket, cookie, origin)


def close_of(ws: Any) -> tuple[int, str]:
    with pytest.raises(websockets.exceptions.ConnectionClosed):
        while True:
            ws.recv(timeout=15)
    assert ws.protocol.close_rcvd is not None
    return ws.protocol.close_rcvd.code, ws.protocol.close_rcvd.reason


@pytest.fixture(scope="module")
def stoppable(world: worlds.World) -> str:
    """A launch profile whose sessions may be stopped, for the artist."""
    studio = world.studio
    admin = studio.admin.client()
    profile = admin.create_launch_profile(
        studioId=studio.studio_id,
        name="stoppable",
        ec2SubnetIds=[],
        launchProfileProtocolVersions=["2021-03-31"],
        studioComponentIds=[studio.component_id],
        streamConfiguration={
            "clipboardMode": "ENABLED",
            "ec2InstanceTypes": ["g4dn.xlarge"],
            "streamingImageIds": [studio.image_id],
            "maxStoppedSessionLengthInMinutes": 60,
        },
    )["launchProfile"]
    ids = {"studioId": studio.studio_id, "launchProfileId": profile["launchProfileId"]}
    admin.get_waiter("launch_profile_ready").wait(**ids, WaiterConfig=FAST)
    admin.put_launch_profile_members(
        **ids,
        identityStoreId=studio.admin.identity_store_id,
        members=[{"principalId": world.artist.user_id, "persona": "USER"}],
    )
    return str(profile["launchProfileId"])


def test_stream_reaches_the_sessions_desktop_through_its_vnc_password(
    world: worlds.World,
) -> None:
    client = world.artist.client()
    ids = ready_session(client, world.studio.studio_id, world.studio.launch_profile_id)
    url = stream_url(client, ids)
    socket, cookie = admitted(url)
    with connect(socket, cookie) as ws:
        init = vnc.RfbClient(ws).handshake()
    assert (init.width, init.height) == (1280, 800)
    again = requests.get(url, timeout=10)
    assert again.status_code == 403
    assert "used already" in again.text
    with connect(socket, None) as ws:
        assert close_of(ws) == (4001, "No valid credential for this stream: open its URL.")
    client.delete_streaming_session(**ids)


def test_stopping_the_session_closes_its_connections(world: worlds.World, stoppable: str) -> None:
    client = world.artist.client()
    ids = ready_session(client, world.studio.studio_id, stoppable)
    socket, cookie = admitted(stream_url(client, ids))
    unused = stream_url(client, ids)
    with connect(socket, cookie) as ws:
        vnc.RfbClient(ws).handshake()
        client.stop_streaming_session(**ids)
        assert close_of(ws) == (4010, "The session was stopped.")
    client.get_waiter("streaming_session_stopped").wait(**ids, WaiterConfig=FAST)
    refused = requests.get(unused, timeout=10)
    assert refused.status_code == 403
    assert "The session of this stream is not running." in refused.text
    with connect(socket, cookie) as ws:
        assert close_of(ws) == (4003, "The session of this stream is not running.")
    client.delete_streaming_session(**ids)


def test_websockets_exist_only_for_streams(world: worlds.World) -> None:
    with (
        pytest.raises(websockets.exceptions.InvalidStatus),
        vnc.connect(world.server.endpoint.replace("http://", "ws://") + "/2020-08-01/studios"),
    ):
        pass


def test_removing_a_member_ends_their_streams_but_not_an_administrators(
    world: worlds.World, stoppable: str
) -> None:
    sid = world.studio.studio_id
    leaver = world.server.user("streamleaver")
    lp = {"studioId": sid, "launchProfileId": stoppable}
    world.operator.client().put_launch_profile_members(
        **lp,
        identityStoreId=leaver.identity_store_id,
        members=[{"principalId": leaver.user_id, "persona": "USER"}],
    )
    client, admin = leaver.client(), world.studio.admin.client()
    ids = ready_session(client, sid, stoppable)
    socket, cookie = admitted(stream_url(client, ids))
    admin_socket, admin_cookie = admitted(stream_url(admin, ids))
    with connect(socket, cookie) as ws, connect(admin_socket, admin_cookie) as watching:
        vnc.RfbClient(ws).handshake()
        watcher = vnc.RfbClient(watching)
        init = watcher.handshake()
        admin.delete_launch_profile_member(**lp, principalId=leaver.user_id)
        lost = "The user of this stream no longer has access to its session."
        assert close_of(ws) == (4006, lost)
        watcher.set_encodings(0)  # the administrator's stream goes on
        watcher.request_update(init.width, init.height)
        assert watcher.read(1) == b"\0"
    with connect(socket, cookie) as ws:
        assert close_of(ws) == (4006, lost)
    admin.delete_streaming_session(**ids)


def test_streams_from_before_a_stop_admit_nothing_after_the_restart(
    world: worlds.World, stoppable: str
) -> None:
    """A stop ends the session's streams for good: once it runs again, neither a link given out
    before the stop nor the cookie of a page opened then gets in (before their expiry too)."""
    client = world.artist.client()
    ids = ready_session(client, world.studio.studio_id, stoppable)
    socket, cookie = admitted(stream_url(client, ids))
    unused = stream_url(client, ids)
    client.stop_streaming_session(**ids)
    client.get_waiter("streaming_session_stopped").wait(**ids, WaiterConfig=FAST)
    client.start_streaming_session(**ids)
    client.get_waiter("streaming_session_ready").wait(**ids, WaiterConfig=FAST)
    refused = requests.get(unused, timeout=10)
    assert refused.status_code == 403
    assert "ask for a new stream" in refused.text
    with connect(socket, cookie) as ws:
        assert close_of(ws) == (4002, "This stream link has expired: ask for a new stream.")
    fresh_socket, fresh_cookie = admitted(stream_url(client, ids))  # a new stream works
    with connect(fresh_socket, fresh_cookie) as ws:
        vnc.RfbClient(ws).handshake()
    client.delete_streaming_session(**ids)


@pytest.mark.parametrize(
    "path",
    [
        "/stream-client/novnc/core/no-such-module.js",
        "/stream-client/app/no-such-file.css",
        "/stream-client/app/",
        "/stream-client/novnc/core/",
        "/stream-client/app/%2e%2e/%2e%2e/%2e%2e/etc/passwd",
        "/stream-client/novnc/..%2f..%2f..%2fetc%2fpasswd",
    ],
)
def test_missing_or_escaping_static_paths_are_404_not_500(world: worlds.World, path: str) -> None:
    response = requests.get(world.server.endpoint + path, timeout=10)
    assert response.status_code == 404, (path, response.status_code, response.text[:200])
    assert "root:" not in response.text
    assert "Traceback" not in world.server.log()


def test_the_stream_clients_files_are_served(world: worlds.World) -> None:
    for path in ("/stream-client/app/stream.js", "/stream-client/novnc/core/rfb.js"):
        assert requests.get(world.server.endpoint + path, timeout=10).status_code == 200
