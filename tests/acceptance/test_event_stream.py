"""GET /events: a client that disconnects in the middle of a session's life resumes with
Last-Event-ID and gets the rest, without loss or duplicates; each caller sees only what is
theirs; mistakes are clear errors."""

from __future__ import annotations

from urllib.parse import quote

import pytest
import requests

from tests.support import desktops, lifecycle
from tests.support import world as worlds
from tests.support.lifecycle import LIFE
from tests.support.sse import Stream, signed_headers

pytestmark = pytest.mark.xvnc


@pytest.fixture(scope="module")
def profile(world: worlds.World) -> str:
    return desktops.stoppable(world.studio.admin, world.studio, [world.artist, world.artist2])


def is_(session_id: str, type_: str):  # type: ignore[no-untyped-def]
    return lambda m: m["data"]["sessionId"] == session_id and m["event"] == type_


def test_a_client_resumes_after_a_disconnect_without_loss_or_duplicates(
    world: worlds.World, profile: str
) -> None:
    studio = world.studio.studio_id
    first = Stream(world.artist, "?studioId=" + quote(studio, safe=""))
    admin = Stream(world.studio.admin)  # the studio's administrator sees the artist's sessions
    other = Stream(world.artist2)  # another member of the studio does not
    session_id = lifecycle.begin(world.artist, world.studio, profile)
    first.until(is_(session_id, "stream.created"))
    first.close()  # gone in the middle of the session's life
    last_id = first.messages[-1]["id"]
    lifecycle.finish(world.artist, world.studio, session_id)
    resumed = Stream(world.artist, "?studioId=" + quote(studio, safe=""), last_event_id=last_id)
    resumed.until(is_(session_id, "session.deleted"))
    resumed.close()

    both = first.events(session_id) + resumed.events(session_id)
    assert [e["type"] for e in both] == LIFE
    numbers = [int(m["id"]) for m in first.messages + resumed.messages]
    assert numbers == sorted(set(numbers)), "an event came twice or out of order"
    assert all(int(m["id"]) > int(last_id) for m in resumed.messages)
    assert both[1]["detail"] == {
        "state": "READY",
        "previousState": "CREATE_IN_PROGRESS",
        "statusCode": "STREAMING_SESSION_READY",
        "statusMessage": "The session is ready",
        "launchProfileId": profile,
    }

    admin.until(is_(session_id, "session.deleted"))
    admin.close()
    assert [e["type"] for e in admin.events(session_id)] == LIFE
    # the other artist's stream: their own session's events come, the artist's never did
    own = desktops.create_session(world.artist2, world.studio, profile)
    other.until(is_(own, "session.create_in_progress"))
    other.close()
    assert {m["data"]["sessionId"] for m in other.messages} == {own}


def test_mistakes_and_strangers_get_clear_errors(world: worlds.World) -> None:
    url = f"{world.server.endpoint}/events"
    unsigned = requests.get(url, timeout=10)
    assert unsigned.status_code == 403
    assert unsigned.headers["x-amzn-ErrorType"].startswith("MissingAuthenticationToken")

    def get(user, query: str = "", **headers: str) -> requests.Response:  # type: ignore[no-untyped-def]
        signed = signed_headers(user, url + query, headers)
        return requests.get(url + query, headers=signed, timeout=10)

    foreign = get(world.outsider, "?studioId=" + quote(world.studio.studio_id, safe=""))
    assert foreign.status_code == 403 and "AccessDenied" in foreign.headers["x-amzn-ErrorType"]
    bad = get(world.artist, **{"Last-Event-ID": "yesterday"})
    assert bad.status_code == 400 and "Last-Event-ID" in bad.json()["message"]
    unknown = get(world.artist, "?since=5")
    assert unknown.status_code == 400 and "since" in unknown.json()["message"]
