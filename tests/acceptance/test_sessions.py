"""Streaming sessions and their streams, as a user of the boto3 ``nimble`` client sees them."""

from __future__ import annotations

import datetime
import re
import urllib.parse
from typing import Any

import pytest
import requests

from tests.support.server import FAST
from tests.support.world import World

ARN = re.compile(r"^arn:aws:nimble:us-west-2:\d{12}:streaming-session/(?P<id>[A-Za-z0-9_-]{22})$")
ONE_MS = datetime.timedelta(milliseconds=1)


def create(client: Any, world: World, **kwargs: Any) -> dict[str, Any]:
    return dict(
        client.create_streaming_session(
            studioId=world.studio.studio_id,
            launchProfileId=world.studio.launch_profile_id,
            **kwargs,
        )["session"]
    )


def wait_ready(client: Any, world: World, session_id: str) -> dict[str, Any]:
    client.get_waiter("streaming_session_ready").wait(
        studioId=world.studio.studio_id, sessionId=session_id, WaiterConfig=FAST
    )
    return get(client, world, session_id)


def get(client: Any, world: World, session_id: str) -> dict[str, Any]:
    return dict(
        client.get_streaming_session(studioId=world.studio.studio_id, sessionId=session_id)[
            "session"
        ]
    )


def stream(client: Any, world: World, session_id: str, **kwargs: Any) -> dict[str, Any]:
    return dict(
        client.create_streaming_session_stream(
            studioId=world.studio.studio_id, sessionId=session_id, **kwargs
        )["stream"]
    )


def token_of(url: str) -> str:
    return urllib.parse.parse_qs(urllib.parse.urlsplit(url).query)["token"][0]


def with_token(url: str, token: str) -> str:
    parts = urllib.parse.urlsplit(url)
    return urllib.parse.urlunsplit(parts._replace(query=urllib.parse.urlencode({"token": token})))


def message(exc: pytest.ExceptionInfo[Any]) -> str:
    return str(exc.value.response["Error"]["Message"])


def near_now(value: datetime.datetime) -> bool:
    now = datetime.datetime.now(datetime.UTC)
    return abs(now - value) < datetime.timedelta(minutes=1)


@pytest.fixture(scope="module")
def artist_session(world: World) -> dict[str, Any]:
    """A READY session of the artist, which they created themselves."""
    artist = world.artist.client()
    session = create(artist, world)
    return wait_ready(artist, world, session["sessionId"])


# ---- ownedBy ------------------------------------------------------------------------------------


def test_create_without_owned_by_fills_every_field(world: World) -> None:
    artist = world.artist.client()
    profile = world.studio.admin.client().get_launch_profile(
        studioId=world.studio.studio_id, launchProfileId=world.studio.launch_profile_id
    )["launchProfile"]
    created = create(artist, world, tags={"project": "spring", "shot": "010"})

    match = ARN.match(created["arn"])
    assert match is not None, created["arn"]
    assert match["id"] == created["sessionId"]
    assert created["ownedBy"] == world.artist.user_id
    assert created["createdBy"] == world.artist.user_id
    assert created["updatedBy"] == world.artist.user_id
    assert created["launchProfileId"] == world.studio.launch_profile_id
    assert created["ec2InstanceType"] == "g4dn.xlarge"  # the launch profile's first type
    assert created["streamingImageId"] == world.studio.image_id  # and its first image
    assert created["state"] == "CREATE_IN_PROGRESS"
    assert created["statusCode"] == "STREAMING_SESSION_CREATE_IN_PROGRESS"
    assert created["statusMessage"]
    assert created["tags"] == {"project": "spring", "shot": "010"}
    assert isinstance(created["createdAt"], datetime.datetime)
    assert isinstance(created["updatedAt"], datetime.datetime)
    assert near_now(created["createdAt"])
    assert created["updatedAt"] >= created["createdAt"]
    assert isinstance(created["terminateAt"], datetime.datetime)
    assert created["terminateAt"] > created["createdAt"]
    config = profile["streamConfiguration"]
    assert created["automaticTerminationMode"] == config["automaticTerminationMode"]
    assert created["sessionPersistenceMode"] == config["sessionPersistenceMode"]
    assert "stopAt" not in created  # maxStoppedSessionLengthInMinutes 0: never stopped

    ready = wait_ready(artist, world, created["sessionId"])
    assert ready["state"] == "READY"
    assert ready["statusCode"] == "STREAMING_SESSION_READY"
    assert ready["statusMessage"]
    assert ready["arn"] == created["arn"]
    assert ready["createdAt"] == created["createdAt"]
    assert ready["updatedAt"] >= created["updatedAt"]
    assert ready["ownedBy"] == ready["createdBy"] == world.artist.user_id
    assert ready["tags"] == created["tags"]
    assert ready["terminateAt"] > ready["createdAt"]
    # a session READY for maxSessionLengthInMinutes (690 by default) is terminated
    limit = datetime.timedelta(minutes=config["maxSessionLengthInMinutes"])
    assert ready["createdAt"] + limit <= ready["terminateAt"] <= ready["updatedAt"] + limit + ONE_MS


def test_session_reports_the_backup_settings_of_its_launch_profile(world: World) -> None:
    profile = world.studio.admin.client().get_launch_profile(
        studioId=world.studio.studio_id, launchProfileId=world.studio.launch_profile_id
    )["launchProfile"]
    backup = profile["streamConfiguration"]["sessionBackup"]
    created = create(world.artist.client(), world)
    assert created.get("backupMode") == backup["mode"]
    assert created.get("maxBackupsToRetain") == backup["maxBackupsToRetain"]


def test_create_with_owned_by_self(world: World) -> None:
    artist = world.artist.client()
    created = create(artist, world, ownedBy=world.artist.user_id, ec2InstanceType="g4dn.2xlarge")
    assert created["ownedBy"] == world.artist.user_id
    assert created["createdBy"] == world.artist.user_id
    assert created["ec2InstanceType"] == "g4dn.2xlarge"
    assert get(artist, world, created["sessionId"])["ownedBy"] == world.artist.user_id


@pytest.mark.parametrize("creator", ["admin", "operator"])
def test_admin_and_operator_create_sessions_for_an_artist(world: World, creator: str) -> None:
    user = world.studio.admin if creator == "admin" else world.operator
    created = create(user.client(), world, ownedBy=world.artist.user_id)
    assert created["ownedBy"] == world.artist.user_id
    assert created["createdBy"] == user.user_id
    assert created["updatedBy"] == user.user_id
    # the owner sees it as theirs; the creator, an admin, can read it too
    seen = wait_ready(world.artist.client(), world, created["sessionId"])
    assert (seen["ownedBy"], seen["createdBy"]) == (world.artist.user_id, user.user_id)
    assert get(user.client(), world, created["sessionId"])["ownedBy"] == world.artist.user_id
    # and another artist does not
    with pytest.raises(world.artist2.client().exceptions.AccessDeniedException):
        get(world.artist2.client(), world, created["sessionId"])


def test_user_cannot_create_a_session_for_someone_else(world: World) -> None:
    artist = world.artist.client()
    with pytest.raises(artist.exceptions.AccessDeniedException):
        create(artist, world, ownedBy=world.artist2.user_id)
    owned = world.artist2.client().list_streaming_sessions(
        studioId=world.studio.studio_id, createdBy=world.artist.user_id
    )["sessions"]
    assert owned == []


def test_owned_by_unknown_user_is_a_validation_error(world: World) -> None:
    admin = world.studio.admin.client()
    with pytest.raises(admin.exceptions.ValidationException) as exc:
        create(admin, world, ownedBy="no-such-user-0000000000")
    assert "ownedBy" in message(exc)


def test_owned_by_non_member_is_a_validation_error(world: World) -> None:
    admin = world.studio.admin.client()
    with pytest.raises(admin.exceptions.ValidationException) as exc:
        create(admin, world, ownedBy=world.outsider.user_id)
    assert "ownedBy" in message(exc)
    # the operator is no exception
    operator = world.operator.client()
    with pytest.raises(operator.exceptions.ValidationException) as exc:
        create(operator, world, ownedBy=world.outsider.user_id)
    assert "ownedBy" in message(exc)


def test_only_members_and_admins_create_sessions(world: World) -> None:
    for user in (world.outsider, world.foreign.admin):
        client = user.client()
        with pytest.raises(client.exceptions.AccessDeniedException):
            create(client, world)
        with pytest.raises(client.exceptions.AccessDeniedException):
            create(client, world, ownedBy=world.artist.user_id)


def test_what_the_session_runs_is_validated(world: World) -> None:
    artist = world.artist.client()
    with pytest.raises(artist.exceptions.ValidationException) as exc:
        create(artist, world, ec2InstanceType="g4dn.4xlarge")
    assert "ec2InstanceType" in message(exc)
    with pytest.raises(artist.exceptions.ValidationException) as exc:
        create(artist, world, streamingImageId=world.studio.other_image_id)
    assert "streamingImageId" in message(exc)
    with pytest.raises(artist.exceptions.ResourceNotFoundException):
        artist.create_streaming_session(studioId=world.studio.studio_id, launchProfileId="L" * 22)
    with pytest.raises(artist.exceptions.ResourceNotFoundException):
        artist.create_streaming_session(
            studioId="us-west-2:stid-000000000000",
            launchProfileId=world.studio.launch_profile_id,
        )


def test_studio_administrator_may_own_a_session(world: World) -> None:
    created = create(world.operator.client(), world, ownedBy=world.studio.admin.user_id)
    assert created["ownedBy"] == world.studio.admin.user_id
    assert created["createdBy"] == world.operator.user_id


# ---- who may act on a session -------------------------------------------------------------------


def test_other_users_cannot_act_on_a_session(world: World, artist_session: dict[str, Any]) -> None:
    sid = artist_session["sessionId"]
    made = stream(world.artist.client(), world, sid)
    for user in (world.artist2, world.outsider, world.foreign.admin):
        other = user.client()
        with pytest.raises(other.exceptions.AccessDeniedException):
            get(other, world, sid)
        with pytest.raises(other.exceptions.AccessDeniedException):
            other.delete_streaming_session(studioId=world.studio.studio_id, sessionId=sid)
        with pytest.raises(other.exceptions.AccessDeniedException):
            stream(other, world, sid)
        with pytest.raises(other.exceptions.AccessDeniedException):
            other.get_streaming_session_stream(
                studioId=world.studio.studio_id, sessionId=sid, streamId=made["streamId"]
            )
    assert get(world.artist.client(), world, sid)["state"] == "READY"


def test_unknown_session_is_not_found(world: World) -> None:
    artist = world.artist.client()
    with pytest.raises(artist.exceptions.ResourceNotFoundException):
        get(artist, world, "A" * 22)


def test_admin_reads_and_streams_an_artists_session(
    world: World, artist_session: dict[str, Any]
) -> None:
    admin = world.studio.admin.client()
    sid = artist_session["sessionId"]
    assert get(admin, world, sid) == get(world.artist.client(), world, sid)
    made = stream(admin, world, sid)
    assert made["createdBy"] == world.studio.admin.user_id
    assert made["ownedBy"] == world.artist.user_id
    seen = world.artist.client().get_streaming_session_stream(
        studioId=world.studio.studio_id, sessionId=sid, streamId=made["streamId"]
    )["stream"]
    assert (seen["createdBy"], seen["ownedBy"]) == (
        world.studio.admin.user_id,
        world.artist.user_id,
    )
    assert requests.get(made["url"], timeout=10).status_code == 200


def test_owner_streams_into_a_session_an_admin_made_for_them(world: World) -> None:
    sid = create(world.studio.admin.client(), world, ownedBy=world.artist.user_id)["sessionId"]
    artist = world.artist.client()
    wait_ready(artist, world, sid)
    made = stream(artist, world, sid)
    assert (made["createdBy"], made["ownedBy"]) == (world.artist.user_id, world.artist.user_id)


# ---- streams ------------------------------------------------------------------------------------


def test_stream_fields(world: World, artist_session: dict[str, Any]) -> None:
    artist = world.artist.client()
    sid = artist_session["sessionId"]
    default = stream(artist, world, sid)
    longer = stream(artist, world, sid, expirationInSeconds=600)

    for made, seconds in ((default, 120), (longer, 600)):
        assert made["streamId"]
        assert made["createdBy"] == world.artist.user_id
        assert made["ownedBy"] == world.artist.user_id
        assert isinstance(made["createdAt"], datetime.datetime)
        assert near_now(made["createdAt"])
        lifetime = made["expiresAt"] - made["createdAt"]
        assert abs(lifetime - datetime.timedelta(seconds=seconds)) <= ONE_MS
        assert made["state"] == "READY"
        assert made["statusCode"] == "STREAM_READY"
        assert made["url"].startswith(world.server.endpoint + "/")
        assert made["streamId"] in made["url"]
        assert token_of(made["url"])

        artist.get_waiter("streaming_session_stream_ready").wait(
            studioId=world.studio.studio_id,
            sessionId=sid,
            streamId=made["streamId"],
            WaiterConfig=FAST,
        )
        got = artist.get_streaming_session_stream(
            studioId=world.studio.studio_id, sessionId=sid, streamId=made["streamId"]
        )["stream"]
        assert got == made

    assert default["streamId"] != longer["streamId"]
    assert token_of(default["url"]) != token_of(longer["url"])


def test_unknown_stream_is_not_found(world: World, artist_session: dict[str, Any]) -> None:
    artist = world.artist.client()
    with pytest.raises(artist.exceptions.ResourceNotFoundException):
        artist.get_streaming_session_stream(
            studioId=world.studio.studio_id,
            sessionId=artist_session["sessionId"],
            streamId="B" * 22,
        )


def test_stream_url_is_single_use_and_bound_to_its_stream(
    world: World, artist_session: dict[str, Any]
) -> None:
    artist = world.artist.client()
    sid = artist_session["sessionId"]
    first, second = stream(artist, world, sid), stream(artist, world, sid)

    # the URL of one stream with the token of another: refused, and nothing is consumed
    crossed = with_token(second["url"], token_of(first["url"]))
    assert requests.get(crossed, timeout=10).status_code == 403
    # a mangled token: refused
    token = token_of(second["url"])
    mangled = token[:5] + ("A" if token[5] != "A" else "B") + token[6:]
    assert requests.get(with_token(second["url"], mangled), timeout=10).status_code == 403
    assert requests.get(with_token(second["url"], ""), timeout=10).status_code == 403

    answer = requests.get(first["url"], timeout=10)
    assert answer.status_code == 200
    assert "opennimble_stream" in answer.cookies  # admitted: the desktop client page
    reused = requests.get(first["url"], timeout=10)  # single use
    assert reused.status_code == 403
    assert "used already" in reused.text
    assert requests.get(second["url"], timeout=10).status_code == 200
    assert requests.get(second["url"], timeout=10).status_code == 403


# ---- deletion -----------------------------------------------------------------------------------


def test_delete_then_deleted_stays_readable(world: World) -> None:
    artist = world.artist.client()
    session = wait_ready(artist, world, create(artist, world)["sessionId"])
    sid = session["sessionId"]
    made = stream(artist, world, sid, expirationInSeconds=3600)

    deleting = artist.delete_streaming_session(studioId=world.studio.studio_id, sessionId=sid)[
        "session"
    ]
    assert deleting["sessionId"] == sid
    assert deleting["state"] == "DELETE_IN_PROGRESS"
    assert deleting["statusCode"] == "STREAMING_SESSION_DELETE_IN_PROGRESS"
    assert deleting["updatedBy"] == world.artist.user_id

    artist.get_waiter("streaming_session_deleted").wait(
        studioId=world.studio.studio_id, sessionId=sid, WaiterConfig=FAST
    )
    deleted = get(artist, world, sid)
    assert deleted["state"] == "DELETED"
    assert deleted["statusCode"] == "STREAMING_SESSION_DELETED"
    assert deleted["arn"] == session["arn"]
    assert deleted["ownedBy"] == deleted["createdBy"] == world.artist.user_id

    # deleting again changes nothing and is no error
    again = artist.delete_streaming_session(studioId=world.studio.studio_id, sessionId=sid)[
        "session"
    ]
    assert again == deleted
    assert get(artist, world, sid) == deleted

    # the streams into it are gone, and no new one can be made
    gone = artist.get_streaming_session_stream(
        studioId=world.studio.studio_id, sessionId=sid, streamId=made["streamId"]
    )["stream"]
    assert gone["state"] == "DELETED"
    assert gone["statusCode"] == "STREAM_DELETED"
    assert "url" not in gone
    assert requests.get(made["url"], timeout=10).status_code == 403
    with pytest.raises(artist.exceptions.ConflictException):
        stream(artist, world, sid)

    # a DELETED session still shows in the owner's listing
    listed = artist.list_streaming_sessions(studioId=world.studio.studio_id, sessionIds=sid)[
        "sessions"
    ]
    assert [s["state"] for s in listed] == ["DELETED"]


def test_admin_deletes_an_artists_session(world: World) -> None:
    admin = world.studio.admin.client()
    artist = world.artist.client()
    sid = create(artist, world)["sessionId"]
    wait_ready(artist, world, sid)
    deleting = admin.delete_streaming_session(studioId=world.studio.studio_id, sessionId=sid)[
        "session"
    ]
    assert deleting["state"] == "DELETE_IN_PROGRESS"
    assert deleting["updatedBy"] == world.studio.admin.user_id
    assert deleting["ownedBy"] == world.artist.user_id
    # at once again, by the owner this time: no error, no change
    again = artist.delete_streaming_session(studioId=world.studio.studio_id, sessionId=sid)[
        "session"
    ]
    assert again["state"] in ("DELETE_IN_PROGRESS", "DELETED")
    assert again["updatedBy"] == world.studio.admin.user_id
    artist.get_waiter("streaming_session_deleted").wait(
        studioId=world.studio.studio_id, sessionId=sid, WaiterConfig=FAST
    )
    assert get(admin, world, sid)["state"] == "DELETED"
