"""The events of a whole session life, as tests drive it: create, READY, a stream, stop,
start, delete (docs/events.md)."""

from __future__ import annotations

from tests.support import desktops
from tests.support.server import FAST, User
from tests.support.world import Studio

LIFE = [
    "session.create_in_progress",
    "session.ready",
    "stream.created",
    "session.stop_in_progress",
    "session.stopped",
    "session.start_in_progress",
    "session.ready",
    "session.delete_in_progress",
    "session.deleted",
]


def begin(user: User, studio: Studio, profile: str) -> str:
    """A new session of ``user``, READY, with a stream: the first three events of LIFE."""
    client = user.client()
    session_id = desktops.create_session(user, studio, profile)
    ids = {"studioId": studio.studio_id, "sessionId": session_id}
    client.get_waiter("streaming_session_ready").wait(**ids, WaiterConfig=FAST)
    client.create_streaming_session_stream(**ids)
    return session_id


def finish(user: User, studio: Studio, session_id: str) -> None:
    """Stop, start and delete the session: the rest of LIFE."""
    client = user.client()
    ids = {"studioId": studio.studio_id, "sessionId": session_id}
    for call, waiter in (
        (client.stop_streaming_session, "streaming_session_stopped"),
        (client.start_streaming_session, "streaming_session_ready"),
        (client.delete_streaming_session, "streaming_session_deleted"),
    ):
        call(**ids)
        client.get_waiter(waiter).wait(**ids, WaiterConfig=FAST)
