"""READY means usable: keystrokes sent the moment a session turns READY reach its terminal,
also on a loaded host.

The test acts as an impatient artist: it creates a session with boto3, reads it until it is
READY (no waiter's delay), opens a stream at once and types a command over the stream's
websocket as noVNC would (RFB KeyEvents), while other processes keep every CPU busy. The
command, run by the terminal as the owner, leaves a file in the owner's home.
"""

from __future__ import annotations

import contextlib
import os
import struct
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from tests.acceptance.test_stream import admitted, connect, stream_url
from tests.support import desktops, vnc
from tests.support import world as worlds
from tests.support.server import FAST

pytestmark = pytest.mark.xvnc
RETURN = 0xFF0D


@contextlib.contextmanager
def busy_cpus() -> Iterator[None]:
    """Every CPU of the host kept busy, twice over, while the block runs."""
    burners = [
        subprocess.Popen([sys.executable, "-c", "while True: pass"])
        for _ in range(2 * (os.cpu_count() or 1))
    ]
    try:
        yield
    finally:
        for burner in burners:
            burner.kill()
            burner.wait()


def ready_at_once(client: Any, ids: dict[str, str], timeout: float = 60) -> None:
    """Return the moment the session reads READY (it is read every 20 ms)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        state = client.get_streaming_session(**ids)["session"]["state"]
        if state == "READY":
            return
        assert state == "CREATE_IN_PROGRESS", state
        time.sleep(0.02)
    raise AssertionError("the session did not become READY")


def keys(text: str) -> bytes:
    """RFB KeyEvents (press and release) typing ``text`` (ASCII: keysym = code) and Return."""
    symbols = [ord(c) for c in text] + [RETURN]
    return b"".join(struct.pack(">BBxxI", 4, down, s) for s in symbols for down in (1, 0))


def test_keystrokes_sent_right_after_ready_reach_the_terminal(world: worlds.World) -> None:
    client = world.artist.client()
    studio = world.studio
    with busy_cpus():
        for _ in range(3):
            session = client.create_streaming_session(
                studioId=studio.studio_id, launchProfileId=studio.launch_profile_id
            )["session"]
            ids = {"studioId": studio.studio_id, "sessionId": session["sessionId"]}
            ready_at_once(client, ids)
            socket, cookie = admitted(stream_url(client, ids))
            proof = f"typed-{uuid.uuid4().hex[:12]}"
            with connect(socket, cookie) as ws:
                vnc.RfbClient(ws).handshake()
                ws.send(keys(f"touch {proof}"))
                desktops.wait_for_file(world.server.desktops_dir, proof)
            client.delete_streaming_session(**ids)
            client.get_waiter("streaming_session_deleted").wait(**ids, WaiterConfig=FAST)
