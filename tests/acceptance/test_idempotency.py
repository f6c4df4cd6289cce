"""Client tokens: a retried request does its work once, even when the retries race."""

from __future__ import annotations

import concurrent.futures
import threading
import uuid
from typing import Any

import pytest

from tests.support.server import FAST
from tests.support.world import World


def create(client: Any, world: World, token: str, **kwargs: Any) -> dict[str, Any]:
    return dict(
        client.create_streaming_session(
            studioId=world.studio.studio_id,
            launchProfileId=world.studio.launch_profile_id,
            clientToken=token,
            **kwargs,
        )["session"]
    )


def sessions(client: Any, world: World, **filters: Any) -> list[dict[str, Any]]:
    paginator = client.get_paginator("list_streaming_sessions")
    return [
        s
        for page in paginator.paginate(studioId=world.studio.studio_id, **filters)
        for s in page["sessions"]
    ]


def new_token() -> str:
    return str(uuid.uuid4())


def test_same_token_same_request_creates_one_session(world: World) -> None:
    artist = world.artist.client()
    before = {s["sessionId"] for s in sessions(artist, world)}
    token = new_token()
    first = create(artist, world, token, tags={"try": "1"})
    again = create(artist, world, token, tags={"try": "1"})
    also = create(world.artist.client(), world, token, tags={"try": "1"})  # another connection
    assert again["sessionId"] == first["sessionId"] == also["sessionId"]
    assert again["arn"] == first["arn"]
    assert again["createdAt"] == first["createdAt"]
    assert again["ownedBy"] == world.artist.user_id
    after = {s["sessionId"] for s in sessions(artist, world)}
    assert after - before == {first["sessionId"]}
    listed = sessions(artist, world, sessionIds=first["sessionId"])
    assert [s["sessionId"] for s in listed] == [first["sessionId"]]


def test_same_token_other_request_is_a_validation_error(world: World) -> None:
    artist = world.artist.client()
    token = new_token()
    first = create(artist, world, token)
    before = {s["sessionId"] for s in sessions(artist, world)}
    for changed in (
        {"ec2InstanceType": "g4dn.2xlarge"},
        {"tags": {"other": "yes"}},
    ):
        with pytest.raises(artist.exceptions.ValidationException) as exc:
            create(artist, world, token, **changed)
        assert "token" in str(exc.value.response["Error"]["Message"]).lower()
    assert {s["sessionId"] for s in sessions(artist, world)} == before
    # the original request still replays
    assert create(artist, world, token)["sessionId"] == first["sessionId"]


def test_concurrent_identical_creates_make_one_session(world: World) -> None:
    count = 20
    clients = [world.artist2.client() for _ in range(count)]  # one client per thread
    token = new_token()
    barrier = threading.Barrier(count)

    def attempt(client: Any) -> str:
        barrier.wait(timeout=30)
        return str(create(client, world, token, ec2InstanceType="g4dn.xlarge")["sessionId"])

    with concurrent.futures.ThreadPoolExecutor(max_workers=count) as pool:
        results = list(pool.map(attempt, clients))
    assert len(results) == count
    assert len(set(results)) == 1
    owned = sessions(world.artist2.client(), world, ownedBy=world.artist2.user_id)
    assert [s["sessionId"] for s in owned if s["sessionId"] in results] == results[:1]
    made_with_token = [s for s in owned if s["sessionId"] == results[0]]
    assert len(made_with_token) == 1


def test_tokens_are_scoped_per_caller(world: World) -> None:
    token = new_token()
    mine = create(world.artist.client(), world, token)
    theirs = create(world.artist2.client(), world, token)
    assert mine["sessionId"] != theirs["sessionId"]
    assert mine["ownedBy"] == world.artist.user_id
    assert theirs["ownedBy"] == world.artist2.user_id
    # and per caller, an admin using the same token for the artist makes a third session
    for_artist = create(world.studio.admin.client(), world, token, ownedBy=world.artist.user_id)
    assert for_artist["sessionId"] not in (mine["sessionId"], theirs["sessionId"])
    assert for_artist["createdBy"] == world.studio.admin.user_id


def test_repeated_delete_with_the_same_token(world: World) -> None:
    artist = world.artist.client()
    session = create(artist, world, new_token())
    sid = session["sessionId"]
    artist.get_waiter("streaming_session_ready").wait(
        studioId=world.studio.studio_id, sessionId=sid, WaiterConfig=FAST
    )
    token = new_token()
    first = artist.delete_streaming_session(
        studioId=world.studio.studio_id, sessionId=sid, clientToken=token
    )["session"]
    assert first["sessionId"] == sid
    assert first["state"] == "DELETE_IN_PROGRESS"
    again = artist.delete_streaming_session(
        studioId=world.studio.studio_id, sessionId=sid, clientToken=token
    )["session"]
    assert again["sessionId"] == sid
    assert again["state"] in ("DELETE_IN_PROGRESS", "DELETED")
    artist.get_waiter("streaming_session_deleted").wait(
        studioId=world.studio.studio_id, sessionId=sid, WaiterConfig=FAST
    )
    late = artist.delete_streaming_session(
        studioId=world.studio.studio_id, sessionId=sid, clientToken=token
    )["session"]
    assert late["sessionId"] == sid
    assert late["state"] in ("DELETE_IN_PROGRESS", "DELETED")
    # the same token names a different request on another session
    other = create(artist, world, new_token())["sessionId"]
    artist.get_waiter("streaming_session_ready").wait(
        studioId=world.studio.studio_id, sessionId=other, WaiterConfig=FAST
    )
    with pytest.raises(artist.exceptions.ValidationException):
        artist.delete_streaming_session(
            studioId=world.studio.studio_id, sessionId=other, clientToken=token
        )
    assert (
        artist.get_streaming_session(studioId=world.studio.studio_id, sessionId=other)["session"][
            "state"
        ]
        == "READY"
    )


def test_stream_creation_with_the_same_token(world: World) -> None:
    artist = world.artist.client()
    sid = create(artist, world, new_token())["sessionId"]
    artist.get_waiter("streaming_session_ready").wait(
        studioId=world.studio.studio_id, sessionId=sid, WaiterConfig=FAST
    )
    token = new_token()
    first = artist.create_streaming_session_stream(
        studioId=world.studio.studio_id, sessionId=sid, clientToken=token
    )["stream"]
    again = artist.create_streaming_session_stream(
        studioId=world.studio.studio_id, sessionId=sid, clientToken=token
    )["stream"]
    assert again["streamId"] == first["streamId"]
    assert again["expiresAt"] == first["expiresAt"]
    with pytest.raises(artist.exceptions.ValidationException):
        artist.create_streaming_session_stream(
            studioId=world.studio.studio_id,
            sessionId=sid,
            clientToken=token,
            expirationInSeconds=900,
        )
