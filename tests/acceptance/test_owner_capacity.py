"""One owner's share of a host (max_desktops_per_owner): over it, that owner's new sessions fail
with INSUFFICIENT_CAPACITY naming the limit, while another owner's start as usual."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support import desktops
from tests.support import world as worlds
from tests.support.server import FAST

pytestmark = pytest.mark.xvnc


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[worlds.World]:
    data_dir = tmp_path_factory.mktemp("owner-capacity") / "data"
    env = {
        "OPENNIMBLE_PROVIDERS__LOCAL__MAX_DESKTOPS_PER_OWNER": "1",
        "OPENNIMBLE_CLAIM_TIMEOUT": "3",
    }
    with worlds.running_world(data_dir, env) as built:
        yield built


def test_one_owner_cannot_take_every_desktop(world: worlds.World) -> None:
    studio, artist, other = world.studio, world.artist, world.artist2
    profile = desktops.stoppable(studio.admin, studio, [artist, other])

    def ready(user: worlds.User, session_id: str) -> None:
        user.client().get_waiter("streaming_session_ready").wait(
            studioId=studio.studio_id, sessionId=session_id, WaiterConfig=FAST
        )

    def delete(user: worlds.User, session_id: str) -> None:
        client = user.client()
        client.delete_streaming_session(studioId=studio.studio_id, sessionId=session_id)
        client.get_waiter("streaming_session_deleted").wait(
            studioId=studio.studio_id, sessionId=session_id, WaiterConfig=FAST
        )

    first = desktops.create_session(artist, studio, profile)
    ready(artist, first)
    refused_id = desktops.create_session(artist, studio, profile)
    refused = desktops.settle(artist, studio, refused_id)
    assert (refused["state"], refused["statusCode"]) == ("CREATE_FAILED", "INSUFFICIENT_CAPACITY")
    assert "max_desktops_per_owner 1" in refused["statusMessage"]
    theirs = desktops.create_session(other, studio, profile)
    ready(other, theirs)  # another owner is not affected
    delete(artist, first)
    again = desktops.create_session(artist, studio, profile)
    ready(artist, again)  # room for the owner again
    for user, session_id in ((artist, refused_id), (artist, again), (other, theirs)):
        delete(user, session_id)
