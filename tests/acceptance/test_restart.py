"""kill -9 the server at any moment: nothing acknowledged is lost, desktops are re-attached or
cleaned up, and no Xvnc is left behind."""

from __future__ import annotations

import json
import pathlib
import threading
import time
from collections.abc import Iterator
from typing import Any

import botocore.exceptions
import pytest

from tests.support import server as support
from tests.support import world as worlds
from tests.support.server import FAST

pytestmark = pytest.mark.xvnc


@pytest.fixture
def fresh(tmp_path: pathlib.Path) -> Iterator[worlds.World]:
    # about durability, not capacity: room for all the desktops a burst of creates asks for
    room = {
        "OPENNIMBLE_PROVIDERS__LOCAL__MAX_DESKTOPS": "64",
        "OPENNIMBLE_PROVIDERS__LOCAL__MAX_DESKTOPS_PER_OWNER": "64",
    }
    srv = support.Server(tmp_path / "data", env=room)
    srv.start()
    try:
        built = worlds.build(srv)
        yield built
        worlds.delete_all_sessions(built)
    finally:
        srv.stop()
        leftovers = support.xvnc_pids(str(srv.desktops_dir))
        support.kill_all(leftovers)
    assert leftovers == [], "Xvnc processes left behind"


def desktop_pid(desktops_dir: pathlib.Path, session_id: str) -> int | None:
    record = desktops_dir / "desktops" / session_id / "desktop.json"
    pid = json.loads(record.read_text()).get("pid") if record.exists() else None
    return int(pid) if pid else None


def create(client: Any, world: worlds.World) -> str:
    session = client.create_streaming_session(
        studioId=world.studio.studio_id, launchProfileId=world.studio.launch_profile_id
    )["session"]
    return str(session["sessionId"])


def test_kill9_and_restart_loses_nothing_and_reattaches(fresh: worlds.World) -> None:
    srv, sid = fresh.server, fresh.studio.studio_id
    artist = fresh.artist.client()
    ready = [create(artist, fresh) for _ in range(3)]
    for session_id in ready:
        artist.get_waiter("streaming_session_ready").wait(
            studioId=sid, sessionId=session_id, WaiterConfig=FAST
        )
    pids_before = {s: desktop_pid(srv.desktops_dir, s) for s in ready}
    doomed = ready.pop()
    artist.delete_streaming_session(studioId=sid, sessionId=doomed)
    just_created = [create(artist, fresh) for _ in range(2)]

    srv.kill9()
    assert support.xvnc_pids(str(srv.desktops_dir)), "desktops outlive the server process"
    srv.start()

    artist = fresh.artist.client()
    for session_id in ready + just_created:
        artist.get_waiter("streaming_session_ready").wait(
            studioId=sid, sessionId=session_id, WaiterConfig=FAST
        )
    artist.get_waiter("streaming_session_deleted").wait(
        studioId=sid, sessionId=doomed, WaiterConfig=FAST
    )
    for session_id in ready:  # the running desktops were re-attached, not replaced
        assert desktop_pid(srv.desktops_dir, session_id) == pids_before[session_id]
    worlds.delete_all_sessions(fresh)
    assert support.xvnc_pids(str(srv.desktops_dir)) == []


def test_kill9_during_a_stream_of_creates(fresh: worlds.World) -> None:
    srv, sid = fresh.server, fresh.studio.studio_id
    acknowledged: list[str] = []
    stop, enough = threading.Event(), threading.Event()

    def creator() -> None:
        client = fresh.artist.client()
        while not stop.is_set() and len(acknowledged) < 20:
            try:
                acknowledged.append(create(client, fresh))
            except (
                botocore.exceptions.EndpointConnectionError,
                botocore.exceptions.ConnectionClosedError,
            ):
                return
            if len(acknowledged) >= 6:
                enough.set()

    thread = threading.Thread(target=creator)
    thread.start()
    enough.wait(timeout=30)  # kill while creates are still arriving
    srv.kill9()
    stop.set()
    thread.join(timeout=30)
    assert acknowledged, "the server answered no create before the kill"

    srv.start()
    artist = fresh.artist.client()
    for session_id in acknowledged:
        try:
            artist.get_waiter("streaming_session_ready").wait(
                studioId=sid, sessionId=session_id, WaiterConfig=FAST
            )
        except botocore.exceptions.WaiterError as exc:
            session = exc.last_response.get("session", {})
            raise AssertionError(
                f"{session_id}: {session.get('statusCode')}: {session.get('statusMessage')}\n"
                f"server log:\n{srv.log()[-4000:]}"
            ) from exc
    paginator = artist.get_paginator("list_streaming_sessions")
    listed = {s["sessionId"] for p in paginator.paginate(studioId=sid) for s in p["sessions"]}
    assert set(acknowledged) <= listed
    worlds.delete_all_sessions(fresh)
    assert support.xvnc_pids(str(srv.desktops_dir)) == []


def test_a_lost_desktop_is_started_again_after_a_restart(fresh: worlds.World) -> None:
    srv, sid = fresh.server, fresh.studio.studio_id
    artist = fresh.artist.client()
    session_id = create(artist, fresh)
    artist.get_waiter("streaming_session_ready").wait(
        studioId=sid, sessionId=session_id, WaiterConfig=FAST
    )
    lost = desktop_pid(srv.desktops_dir, session_id)
    assert lost is not None
    srv.stop()
    support.kill_all([lost])  # as if the host had rebooted under the session
    srv.start()
    artist = fresh.artist.client()
    deadline = time.monotonic() + 30
    while desktop_pid(srv.desktops_dir, session_id) in (lost, None):
        assert time.monotonic() < deadline, "the lost desktop was not started again"
        time.sleep(0.2)
    artist.get_waiter("streaming_session_ready").wait(
        studioId=sid, sessionId=session_id, WaiterConfig=FAST
    )
    session = artist.get_streaming_session(studioId=sid, sessionId=session_id)["session"]
    assert session["state"] == "READY"
    worlds.delete_all_sessions(fresh)
