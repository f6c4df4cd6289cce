"""Session time limits, stream expiry and purges, seen through boto3 against a server whose
clock the tests move forward (tests/support/clocked.py): nothing sleeps in place of a timer.

The launch profiles here allow 30 minutes READY; the stoppable ones 60 minutes STOPPED. Every
test leaves its sessions DELETED or STOPPED before it ends, so that moving the clock never
lands in the middle of another test's transition.
"""

from __future__ import annotations

import datetime
import pathlib
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import requests
from botocore.exceptions import ClientError

from tests.support import desktops, expect
from tests.support import world as worlds
from tests.support.clocked import ControlledClock

pytestmark = pytest.mark.xvnc

# housekeeping (time limits, stream expiry, purges) runs every reconcile_interval
SERVER_ENV = {"OPENNIMBLE_RECONCILE_INTERVAL": "0.1"}
QUICK = {"Delay": 0.2, "MaxAttempts": 150}  # the model's waiters, polled faster
MAX_READY = datetime.timedelta(minutes=30)
MAX_STOPPED = datetime.timedelta(minutes=60)
LIMITS = {"maxSessionLengthInMinutes": 30}


@pytest.fixture(scope="module")
def world(
    clock: ControlledClock, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[worlds.World]:
    data_dir: pathlib.Path = tmp_path_factory.mktemp("timers") / "data"
    with worlds.running_world(data_dir, SERVER_ENV, clock) as built:
        yield built


def profile(world: worlds.World, **stream: Any) -> str:
    """A READY launch profile of the studio, for both artists."""
    members = [world.artist, world.artist2]
    return desktops.create_launch_profile(world.studio.admin, world.studio, members, **stream)


@pytest.fixture(scope="module")
def stoppable(world: worlds.World) -> str:
    return profile(world, **LIMITS, maxStoppedSessionLengthInMinutes=60)


@pytest.fixture(scope="module")
def unstoppable(world: worlds.World) -> str:
    return profile(world, **LIMITS, maxStoppedSessionLengthInMinutes=0)


@pytest.fixture(scope="module")
def persistent(world: worlds.World) -> str:
    """Session persistence without an automaticTerminationMode: it defaults to DEACTIVATED."""
    return profile(
        world,
        **LIMITS,
        maxStoppedSessionLengthInMinutes=60,
        sessionPersistenceMode="ACTIVATED",
        volumeConfiguration={"size": 200},
    )


def ready(world: worlds.World, launch_profile_id: str) -> dict[str, str]:
    """A READY session of the artist: its ids."""
    session_id = desktops.create_session(world.artist, world.studio, launch_profile_id)
    ids = {"studioId": world.studio.studio_id, "sessionId": session_id}
    wait(world, "streaming_session_ready", ids)
    return ids


def wait(world: worlds.World, waiter: str, ids: dict[str, str]) -> None:
    world.artist.client().get_waiter(waiter).wait(**ids, WaiterConfig=QUICK)


def get(world: worlds.World, ids: dict[str, str]) -> dict[str, Any]:
    session: dict[str, Any] = world.artist.client().get_streaming_session(**ids)["session"]
    return session


def gone(read: Callable[[], Any]) -> bool:
    """Whether ``read`` answers ResourceNotFoundException."""
    try:
        read()
    except ClientError as error:
        if error.response["Error"]["Code"] == "ResourceNotFoundException":
            return True
        raise
    return False


def wait_gone(read: Callable[[], Any], timeout: float = 30) -> None:
    """Poll until ``read`` answers ResourceNotFoundException (a purge pass ran)."""
    deadline = time.monotonic() + timeout
    while not gone(read):
        assert time.monotonic() < deadline, "not purged in time"
        time.sleep(0.1)


# ---- time limits -------------------------------------------------------------------------------


def test_a_session_past_its_length_is_stopped_then_terminated(
    world: worlds.World, clock: ControlledClock, stoppable: str
) -> None:
    ids = ready(world, stoppable)
    session = get(world, ids)
    assert abs(session["createdAt"] - clock.now()) < datetime.timedelta(minutes=1)
    assert session["stopAt"] == session["startedAt"] + MAX_READY
    assert "terminateAt" not in session

    clock.advance(minutes=31)
    wait(world, "streaming_session_stopped", ids)
    stopped = get(world, ids)
    assert stopped["stoppedAt"] >= session["stopAt"]
    assert "stoppedBy" not in stopped  # the time limit, not a user
    assert stopped["volumeRetentionMode"] == "RETAIN"
    assert "stopAt" not in stopped
    assert stopped["terminateAt"] == stopped["stoppedAt"] + MAX_STOPPED

    clock.advance(minutes=61)
    wait(world, "streaming_session_deleted", ids)
    assert "terminateAt" not in get(world, ids)


def test_a_session_that_cannot_be_stopped_is_terminated_at_its_length(
    world: worlds.World, clock: ControlledClock, unstoppable: str
) -> None:
    ids = ready(world, unstoppable)
    session = get(world, ids)
    assert session["terminateAt"] == session["startedAt"] + MAX_READY
    assert "stopAt" not in session

    clock.advance(minutes=31)
    wait(world, "streaming_session_deleted", ids)


def test_a_persistent_session_stays_stopped_without_automatic_termination(
    world: worlds.World, clock: ControlledClock, stoppable: str, persistent: str
) -> None:
    client = world.artist.client()
    kept, other = ready(world, persistent), ready(world, stoppable)
    session = get(world, kept)
    assert session["sessionPersistenceMode"] == "ACTIVATED"
    assert session["automaticTerminationMode"] == "DEACTIVATED"  # the model's default with it
    assert session["volumeConfiguration"] == {"size": 200}
    assert get(world, other)["automaticTerminationMode"] == "ACTIVATED"  # the default without
    for ids in (kept, other):
        client.stop_streaming_session(**ids)
        wait(world, "streaming_session_stopped", ids)
    assert "terminateAt" not in get(world, kept)
    stopped = get(world, other)
    assert stopped["stoppedBy"] == world.artist.user_id
    assert stopped["terminateAt"] == stopped["stoppedAt"] + MAX_STOPPED

    clock.advance(days=5)  # longer than maxStoppedSessionLengthInMinutes can be (4 days)
    wait(world, "streaming_session_deleted", other)  # the time limits were enforced since
    assert get(world, kept)["state"] == "STOPPED"


# ---- streams -----------------------------------------------------------------------------------


def test_a_stream_reads_deleted_after_it_expires(
    world: worlds.World, clock: ControlledClock
) -> None:
    client = world.artist.client()
    ids = ready(world, world.studio.launch_profile_id)
    stream = client.create_streaming_session_stream(**ids, expirationInSeconds=60)["stream"]
    wanted = {**ids, "streamId": stream["streamId"]}
    client.get_waiter("streaming_session_stream_ready").wait(**wanted, WaiterConfig=QUICK)
    assert client.get_streaming_session_stream(**wanted)["stream"]["state"] == "READY"

    clock.advance(seconds=61)
    expired = client.get_streaming_session_stream(**wanted)["stream"]
    assert (expired["state"], expired["statusCode"]) == ("DELETED", "STREAM_DELETED")
    assert "url" not in expired
    refused = requests.get(stream["url"], timeout=10)
    assert refused.status_code == 403
    assert "expired" in refused.text
    assert get(world, ids)["state"] == "READY"  # the session lives on
    client.delete_streaming_session(**ids)
    wait(world, "streaming_session_deleted", ids)


# ---- purges ------------------------------------------------------------------------------------


def test_deleted_sessions_and_launch_profiles_are_purged_after_a_day(
    world: worlds.World, clock: ControlledClock
) -> None:
    client, admin = world.artist.client(), world.studio.admin.client()
    first = ready(world, world.studio.launch_profile_id)
    client.delete_streaming_session(**first)
    wait(world, "streaming_session_deleted", first)

    clock.advance(hours=1)
    launch_profile = {"studioId": world.studio.studio_id, "launchProfileId": profile(world)}
    second = ready(world, launch_profile["launchProfileId"])
    client.delete_streaming_session(**second)
    wait(world, "streaming_session_deleted", second)
    admin.delete_launch_profile(**launch_profile)
    admin.get_waiter("launch_profile_deleted").wait(**launch_profile, WaiterConfig=QUICK)

    clock.advance(hours=23, minutes=1)
    wait_gone(lambda: get(world, first))  # deleted 24 h ago: a purge pass ran since
    assert get(world, second)["state"] == "DELETED"  # deleted 23 h ago: still readable
    assert admin.get_launch_profile(**launch_profile)["launchProfile"]["state"] == "DELETED"

    clock.advance(hours=1)
    wait_gone(lambda: get(world, second))
    wait_gone(lambda: admin.get_launch_profile(**launch_profile))
    expect.error(lambda: get(world, first), "ResourceNotFoundException", first["sessionId"])


# ---- what sessionPersistenceMode allows (no clock needed) --------------------------------------


def new_profile(world: worlds.World, **stream: Any) -> dict[str, Any]:
    created: dict[str, Any] = world.studio.admin.client().create_launch_profile(
        studioId=world.studio.studio_id,
        name="persistence",
        ec2SubnetIds=[],
        launchProfileProtocolVersions=[desktops.ROLE_VERSION],
        studioComponentIds=[world.studio.component_id],
        streamConfiguration={
            "clipboardMode": "ENABLED",
            "ec2InstanceTypes": ["g4dn.xlarge"],
            "streamingImageIds": [world.studio.image_id],
            **stream,
        },
    )["launchProfile"]
    return created


AUTOMATIC = "streamConfiguration.automaticTerminationMode"
VOLUME = "streamConfiguration.volumeConfiguration"


@pytest.mark.parametrize(
    ("stream", "fields"),
    [
        ({"automaticTerminationMode": "DEACTIVATED"}, [AUTOMATIC]),
        ({"volumeConfiguration": {"size": 200}}, [VOLUME]),
        (
            {
                "sessionPersistenceMode": "DEACTIVATED",
                "automaticTerminationMode": "DEACTIVATED",
                "volumeConfiguration": {"size": 200},
            },
            [AUTOMATIC, VOLUME],
        ),
    ],
    ids=["automatic-termination", "volume", "both"],
)
def test_persistence_settings_need_session_persistence(
    world: worlds.World, stream: dict[str, Any], fields: list[str]
) -> None:
    response = expect.error(
        lambda: new_profile(world, maxStoppedSessionLengthInMinutes=60, **stream),
        "ValidationException",
        *fields,
        "sessionPersistenceMode is ACTIVATED",
    )
    assert response["context"]["fields"] == ",".join(fields)

    admin = world.studio.admin.client()
    lp = {"studioId": world.studio.studio_id, "launchProfileId": world.studio.launch_profile_id}
    current = admin.get_launch_profile(**lp)["launchProfile"]["streamConfiguration"]
    given = {k: current[k] for k in ("clipboardMode", "ec2InstanceTypes", "streamingImageIds")}
    response = expect.error(
        lambda: admin.update_launch_profile(**lp, streamConfiguration={**given, **stream}),
        "ValidationException",
        *fields,
    )
    assert response["context"]["fields"] == ",".join(fields)


def test_automatic_termination_defaults_by_session_persistence(world: worlds.World) -> None:
    created = new_profile(world)
    plain = created["streamConfiguration"]
    assert (plain["sessionPersistenceMode"], plain["automaticTerminationMode"]) == (
        "DEACTIVATED",
        "ACTIVATED",
    )
    assert "volumeConfiguration" not in plain
    explicit = new_profile(world, automaticTerminationMode="ACTIVATED")["streamConfiguration"]
    assert explicit["automaticTerminationMode"] == "ACTIVATED"  # what it does anyway: allowed
    volume = {"size": 300, "iops": 3000, "throughput": 125}
    persistent = new_profile(world, sessionPersistenceMode="ACTIVATED", volumeConfiguration=volume)
    assert persistent["streamConfiguration"]["automaticTerminationMode"] == "DEACTIVATED"
    assert persistent["streamConfiguration"]["volumeConfiguration"] == volume
    kept = new_profile(
        world, sessionPersistenceMode="ACTIVATED", automaticTerminationMode="ACTIVATED"
    )["streamConfiguration"]
    assert kept["automaticTerminationMode"] == "ACTIVATED"

    admin = world.studio.admin.client()
    lp = {"studioId": world.studio.studio_id, "launchProfileId": created["launchProfileId"]}
    admin.get_waiter("launch_profile_ready").wait(**lp, WaiterConfig=QUICK)
    given = {k: plain[k] for k in ("clipboardMode", "ec2InstanceTypes", "streamingImageIds")}
    updated = admin.update_launch_profile(
        **lp, streamConfiguration={**given, "sessionPersistenceMode": "ACTIVATED"}
    )["launchProfile"]
    assert updated["streamConfiguration"]["automaticTerminationMode"] == "DEACTIVATED"
    admin.get_waiter("launch_profile_ready").wait(**lp, WaiterConfig=QUICK)
    restored = admin.update_launch_profile(**lp, streamConfiguration=given)["launchProfile"]
    assert restored["streamConfiguration"]["automaticTerminationMode"] == "ACTIVATED"
