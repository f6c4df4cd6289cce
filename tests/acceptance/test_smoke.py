"""The shortest path a user takes: a session, ready, streamed, deleted."""

from __future__ import annotations

from tests.support.server import FAST
from tests.support.world import World


def test_session_lifecycle_with_waiters(world: World) -> None:
    artist = world.artist.client()
    sid = world.studio.studio_id
    session = artist.create_streaming_session(
        studioId=sid, launchProfileId=world.studio.launch_profile_id
    )["session"]
    assert session["state"] == "CREATE_IN_PROGRESS"
    assert session["ownedBy"] == world.artist.user_id
    artist.get_waiter("streaming_session_ready").wait(
        studioId=sid, sessionId=session["sessionId"], WaiterConfig=FAST
    )
    stream = artist.create_streaming_session_stream(studioId=sid, sessionId=session["sessionId"])[
        "stream"
    ]
    artist.get_waiter("streaming_session_stream_ready").wait(
        studioId=sid, sessionId=session["sessionId"], streamId=stream["streamId"], WaiterConfig=FAST
    )
    artist.delete_streaming_session(studioId=sid, sessionId=session["sessionId"])
    artist.get_waiter("streaming_session_deleted").wait(
        studioId=sid, sessionId=session["sessionId"], WaiterConfig=FAST
    )
