"""StopStreamingSession and StartStreamingSession through boto3: states, waiters, wrong-state
errors, who and when, and what survives a stop (the home; the session's storage unless the stop
says volumeRetentionMode DELETE)."""

from __future__ import annotations

import datetime
import pathlib
from typing import Any

import botocore.exceptions
import pytest

from opennimble.providers import local_process
from tests.support import desktops
from tests.support import world as worlds
from tests.support.server import FAST

pytestmark = pytest.mark.xvnc


@pytest.fixture(scope="module")
def profile(world: worlds.World) -> str:
    return desktops.stoppable(world.studio.admin, world.studio, [world.artist, world.artist2])


@pytest.fixture
def ready(world: worlds.World, profile: str) -> str:
    """A READY session of the artist from the stoppable launch profile."""
    session_id = desktops.create_session(world.artist, world.studio, profile)
    world.artist.client().get_waiter("streaming_session_ready").wait(
        studioId=world.studio.studio_id, sessionId=session_id, WaiterConfig=FAST
    )
    return session_id


def call(client: Any, operation: str, world: worlds.World, session_id: str, **extra: Any) -> Any:
    method = getattr(client, operation)
    return method(studioId=world.studio.studio_id, sessionId=session_id, **extra)["session"]


def wait(client: Any, waiter: str, world: worlds.World, session_id: str) -> None:
    client.get_waiter(waiter).wait(
        studioId=world.studio.studio_id, sessionId=session_id, WaiterConfig=FAST
    )


def conflict(client: Any, operation: str, world: worlds.World, session_id: str) -> str:
    with pytest.raises(botocore.exceptions.ClientError) as raised:
        call(client, operation, world, session_id)
    assert raised.value.response["Error"]["Code"] == "ConflictException"
    return str(raised.value.response["Error"]["Message"])


def files(desktop: dict[str, Any], session_id: str) -> tuple[pathlib.Path, pathlib.Path]:
    """A file in the owner's home and one in the session's storage, written as the owner."""
    home = pathlib.Path(desktop["home"])
    storage = home / "sessions" / session_id
    written = desktops.run_as(
        desktop, "sh", "-c", f"echo plan > {home}/plan.txt && echo cache > {storage}/cache.bin"
    )
    assert written.returncode == 0, written.stderr
    return home / "plan.txt", storage / "cache.bin"


def test_stop_and_start_keep_the_owners_files(world: worlds.World, ready: str) -> None:
    artist, srv = world.artist.client(), world.server
    created = call(artist, "get_streaming_session", world, ready)
    assert created["startedBy"] == world.artist.user_id
    before = desktops.record(srv, ready)
    in_home, in_storage = files(before, ready)

    stopping = call(artist, "stop_streaming_session", world, ready)
    assert stopping["state"] == "STOP_IN_PROGRESS"
    assert stopping["stoppedBy"] == world.artist.user_id
    assert stopping["volumeRetentionMode"] == "RETAIN"
    assert isinstance(stopping["stoppedAt"], datetime.datetime)
    assert "while it is STOP" in conflict(artist, "stop_streaming_session", world, ready)
    wait(artist, "streaming_session_stopped", world, ready)
    stopped = call(artist, "get_streaming_session", world, ready)
    assert (stopped["state"], stopped["statusCode"]) == ("STOPPED", "STREAMING_SESSION_STOPPED")
    assert stopped["stoppedAt"] == stopping["stoppedAt"]
    assert not local_process.user_pids(before["uid"])  # every process of the desktop ended
    assert "while it is STOPPED" in conflict(artist, "stop_streaming_session", world, ready)
    assert "while it is STOPPED" in conflict(
        artist, "create_streaming_session_stream", world, ready
    )

    starting = call(artist, "start_streaming_session", world, ready)
    assert starting["state"] == "START_IN_PROGRESS"
    assert starting["startedBy"] == world.artist.user_id
    assert starting["startedAt"] > created["startedAt"]
    conflict(artist, "start_streaming_session", world, ready)  # START_IN_PROGRESS or READY
    wait(artist, "streaming_session_ready", world, ready)
    again = call(artist, "get_streaming_session", world, ready)
    assert again["startedAt"] == starting["startedAt"]
    assert "while it is READY" in conflict(artist, "start_streaming_session", world, ready)
    after = desktops.record(srv, ready)
    assert after["pid"] != before["pid"] and after["home"] == before["home"]
    assert in_home.read_text() == "plan\n" and in_storage.read_text() == "cache\n"


def test_stop_with_delete_retention_discards_the_session_storage(
    world: worlds.World, ready: str
) -> None:
    artist = world.artist.client()
    in_home, in_storage = files(desktops.record(world.server, ready), ready)
    stopping = call(artist, "stop_streaming_session", world, ready, volumeRetentionMode="DELETE")
    assert stopping["volumeRetentionMode"] == "DELETE"
    wait(artist, "streaming_session_stopped", world, ready)
    with desktops.home_at_rest(world.server, desktops.record(world.server, ready)) as home:
        assert not (home / "sessions" / ready).exists()
        assert (home / in_home.name).read_text() == "plan\n"
    call(artist, "start_streaming_session", world, ready)
    wait(artist, "streaming_session_ready", world, ready)
    assert in_storage.parent.is_dir() and not in_storage.exists()


def test_an_administrator_stops_and_starts_a_session_others_may_not(
    world: worlds.World, ready: str
) -> None:
    admin = world.studio.admin
    for client in (world.artist2.client(), world.outsider.client()):
        with pytest.raises(botocore.exceptions.ClientError) as raised:
            call(client, "stop_streaming_session", world, ready)
        assert raised.value.response["Error"]["Code"] == "AccessDeniedException"
    stopping = call(admin.client(), "stop_streaming_session", world, ready)
    assert stopping["stoppedBy"] == admin.user_id
    wait(admin.client(), "streaming_session_stopped", world, ready)
    starting = call(admin.client(), "start_streaming_session", world, ready)
    assert starting["startedBy"] == admin.user_id
    wait(admin.client(), "streaming_session_ready", world, ready)
    call(admin.client(), "stop_streaming_session", world, ready)
    wait(admin.client(), "streaming_session_stopped", world, ready)
    desktop = desktops.record(world.server, ready)
    with desktops.home_at_rest(world.server, desktop) as home:
        assert (home / "sessions" / ready).is_dir()
    deleted = call(admin.client(), "delete_streaming_session", world, ready)
    assert deleted["state"] == "DELETE_IN_PROGRESS"
    wait(admin.client(), "streaming_session_deleted", world, ready)
    with desktops.home_at_rest(world.server, desktop) as home:
        assert not (home / "sessions" / ready).exists() and home.is_dir()  # the home stays


def test_sessions_of_a_profile_without_stopped_time_cannot_be_stopped(
    world: worlds.World,
) -> None:
    artist = world.artist.client()
    session_id = desktops.create_session(world.artist, world.studio, world.studio.launch_profile_id)
    with pytest.raises(botocore.exceptions.ClientError) as raised:
        call(artist, "stop_streaming_session", world, session_id)
    error = raised.value.response["Error"]
    assert error["Code"] == "ValidationException"
    assert "maxStoppedSessionLengthInMinutes of its launch profile is 0" in error["Message"]


def test_start_of_a_session_that_is_not_stopped_is_a_conflict(
    world: worlds.World, ready: str
) -> None:
    artist = world.artist.client()
    assert "while it is READY" in conflict(artist, "start_streaming_session", world, ready)
    with pytest.raises(botocore.exceptions.ClientError) as raised:  # the state comes first
        call(artist, "start_streaming_session", world, ready, backupId="no-such-backup")
    assert raised.value.response["Error"]["Code"] == "ConflictException"
    call(artist, "delete_streaming_session", world, ready)
    assert "while it is DELETE" in conflict(artist, "start_streaming_session", world, ready)
