"""The host's capacity (max_desktops): over it, new sessions fail with INSUFFICIENT_CAPACITY and
a started one with START_FAILED; nothing more runs than the limit allows."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support import desktops
from tests.support import world as worlds
from tests.support.server import FAST

pytestmark = pytest.mark.xvnc

FULL = "This host already runs its maximum of 1 desktops (max_desktops): stop or delete a session"


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[worlds.World]:
    """A server that runs one desktop at most. (On PostgreSQL a new session waits a claim
    timeout for another host with room before it is refused: a short one here.)"""
    data_dir = tmp_path_factory.mktemp("capacity") / "data"
    env = {"OPENNIMBLE_PROVIDERS__LOCAL__MAX_DESKTOPS": "1", "OPENNIMBLE_CLAIM_TIMEOUT": "3"}
    with worlds.running_world(data_dir, env) as built:
        yield built


def test_over_capacity_sessions_fail_with_insufficient_capacity(world: worlds.World) -> None:
    studio, artist = world.studio, world.artist
    client = artist.client()
    profile = desktops.stoppable(studio.admin, studio, [artist])

    def ready(session_id: str) -> None:
        client.get_waiter("streaming_session_ready").wait(
            studioId=studio.studio_id, sessionId=session_id, WaiterConfig=FAST
        )

    first = desktops.create_session(artist, studio, profile)
    ready(first)
    refused = desktops.settle(artist, studio, desktops.create_session(artist, studio, profile))
    assert (refused["state"], refused["statusCode"]) == ("CREATE_FAILED", "INSUFFICIENT_CAPACITY")
    assert refused["statusMessage"].startswith(FULL)

    client.stop_streaming_session(studioId=studio.studio_id, sessionId=first)
    client.get_waiter("streaming_session_stopped").wait(
        studioId=studio.studio_id, sessionId=first, WaiterConfig=FAST
    )
    second = desktops.create_session(artist, studio, profile)
    ready(second)  # the stopped session's place was free
    client.start_streaming_session(studioId=studio.studio_id, sessionId=first)
    restarted = desktops.settle(artist, studio, first)
    assert (restarted["state"], restarted["statusCode"]) == (
        "START_FAILED",
        "INSUFFICIENT_CAPACITY",
    )
    assert restarted["statusMessage"].startswith(FULL)

    client.delete_streaming_session(studioId=studio.studio_id, sessionId=second)
    client.get_waiter("streaming_session_deleted").wait(
        studioId=studio.studio_id, sessionId=second, WaiterConfig=FAST
    )
    ready(desktops.create_session(artist, studio, profile))  # room again
