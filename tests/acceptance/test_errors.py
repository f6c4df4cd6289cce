"""Errors as a boto3 user sees them: every validation rule of the model checked by the server,
unknown resources, unknown paths and wrong-state requests.

Validation cases go through ``user.client(validate=False)`` so that botocore's own client-side
checks do not catch the bad values first; values botocore cannot even serialize are sent as raw,
correctly SigV4-signed requests.
"""

from __future__ import annotations

import json
import urllib.parse
import uuid
from collections.abc import Callable
from typing import Any

import botocore.auth
import botocore.awsrequest
import botocore.credentials
import botocore.session
import pytest
import requests
from botocore.exceptions import ClientError

from tests.support import databases
from tests.support.server import FAST, REGION, User
from tests.support.world import ROLE, World

FAKE_ID = "AAAAAAAAAAAAAAAAAAAAAA"  # 22 characters, the form of every resource id
UNKNOWN_STUDIO = f"{REGION}:stid-000000000000"


# ---- helpers ------------------------------------------------------------------------------------


def raised(call: Callable[[], Any]) -> ClientError:
    """The ClientError that ``call`` raises (it must raise one)."""
    with pytest.raises(ClientError) as info:
        call()
    return info.value


def check(error: ClientError, kind: str, status: int, *names: str, count: int | None = None) -> str:
    """Assert the error type, HTTP status and that the message names every one of ``names``."""
    response = error.response
    message = str(response["Error"]["Message"])
    assert response["Error"]["Code"] == kind, response
    assert response["ResponseMetadata"]["HTTPStatusCode"] == status, response
    for name in names:
        assert name in message, f"{name!r} not named in {message!r}"
    if count is not None:
        noun = "error" if count == 1 else "errors"
        assert message.startswith(f"{count} validation {noun} detected"), message
    return message


def path_id(value: str) -> str:
    return urllib.parse.quote(value, safe="")


def signed(
    user: User, method: str, path: str, body: bytes = b"", headers: dict[str, str] | None = None
) -> requests.Response:
    """Send a raw request, signed with SigV4 for ``user`` exactly as botocore signs."""
    url = user.server.endpoint + path
    request = botocore.awsrequest.AWSRequest(
        method=method,
        url=url,
        data=body,
        headers={"Content-Type": "application/json", **(headers or {})},
    )
    credentials = botocore.credentials.Credentials(user.access_key_id, user.secret_access_key)
    botocore.auth.SigV4Auth(credentials, "nimble", REGION).add_auth(request)
    return requests.request(
        method, url, data=body, headers=dict(request.headers.items()), timeout=10
    )


def json_error(response: requests.Response, kind: str, status: int) -> str:
    """Assert a raw response is a modelled JSON error; return its message."""
    assert response.status_code == status, response.text
    assert response.headers["x-amzn-ErrorType"] == kind
    assert response.headers["content-type"].startswith("application/json")
    document = response.json()
    assert isinstance(document["message"], str) and document["message"]
    return document["message"]


def launch_profile_args(world: World, **stream: Any) -> dict[str, Any]:
    return {
        "studioId": world.studio.studio_id,
        "name": "lp",
        "ec2SubnetIds": [],
        "launchProfileProtocolVersions": ["2021-03-31"],
        "studioComponentIds": [world.studio.component_id],
        "streamConfiguration": {
            "clipboardMode": "ENABLED",
            "ec2InstanceTypes": ["g4dn.xlarge"],
            "streamingImageIds": [world.studio.image_id],
            **stream,
        },
    }


def studio_args(**changes: Any) -> dict[str, Any]:
    args = {
        "studioName": "s" + uuid.uuid4().hex[:12],
        "displayName": "display",
        "adminRoleArn": ROLE,
        "userRoleArn": ROLE,
    }
    args.update(changes)
    return {k: v for k, v in args.items() if v is not None}


@pytest.fixture(scope="module")
def ready_session(world: World) -> dict[str, Any]:
    """A READY session of the artist (deleted by the world's teardown)."""
    artist = world.artist.client()
    session = artist.create_streaming_session(
        studioId=world.studio.studio_id, launchProfileId=world.studio.launch_profile_id
    )["session"]
    artist.get_waiter("streaming_session_ready").wait(
        studioId=world.studio.studio_id, sessionId=session["sessionId"], WaiterConfig=FAST
    )
    return dict(session)


# ---- one rule at a time ------------------------------------------------------------------------

# (id, who calls, operation, arguments, fields the message must name, words of the rule)
Case = tuple[str, str, str, Callable[[World], dict[str, Any]], tuple[str, ...], str]

CASES: list[Case] = [
    (
        "required-studioName",
        "operator",
        "create_studio",
        lambda w: studio_args(studioName=None),
        ("studioName",),
        "must not be null",
    ),
    (
        "required-streamConfiguration",
        "admin",
        "create_launch_profile",
        lambda w: {k: v for k, v in launch_profile_args(w).items() if k != "streamConfiguration"},
        ("streamConfiguration",),
        "must not be null",
    ),
    (
        "required-nested-clipboardMode",
        "admin",
        "create_launch_profile",
        lambda w: {
            **launch_profile_args(w),
            "streamConfiguration": {
                "ec2InstanceTypes": ["g4dn.xlarge"],
                "streamingImageIds": [w.studio.image_id],
            },
        },
        ("streamConfiguration.clipboardMode",),
        "must not be null",
    ),
    (
        "type-list-for-string",
        "operator",
        "create_studio",
        lambda w: studio_args(studioName=["abc", "def"]),
        ("studioName",),
        "type string",
    ),
    (
        "string-min",
        "operator",
        "create_studio",
        lambda w: studio_args(studioName="ab"),
        ("studioName",),
        "length greater than or equal to 3",
    ),
    (
        "string-max",
        "operator",
        "create_studio",
        lambda w: studio_args(studioName="a" * 65),
        ("studioName",),
        "length less than or equal to 64",
    ),
    (
        "integer-min",
        "artist",
        "create_streaming_session_stream",
        lambda w: {"studioId": w.studio.studio_id, "sessionId": FAKE_ID, "expirationInSeconds": 59},
        ("expirationInSeconds",),
        "value greater than or equal to 60",
    ),
    (
        "integer-max",
        "artist",
        "create_streaming_session_stream",
        lambda w: {
            "studioId": w.studio.studio_id,
            "sessionId": FAKE_ID,
            "expirationInSeconds": 3601,
        },
        ("expirationInSeconds",),
        "value less than or equal to 3600",
    ),
    (
        "integer-min-in-query",
        "admin",
        "list_launch_profiles",
        lambda w: {"studioId": w.studio.studio_id, "maxResults": 0},
        ("maxResults",),
        "value greater than or equal to 1",
    ),
    (
        "integer-max-in-query",
        "admin",
        "list_launch_profiles",
        lambda w: {"studioId": w.studio.studio_id, "maxResults": 101},
        ("maxResults",),
        "value less than or equal to 100",
    ),
    (
        "string-max-in-header",
        "artist",
        "create_streaming_session",
        lambda w: {
            "studioId": w.studio.studio_id,
            "launchProfileId": w.studio.launch_profile_id,
            "clientToken": "t" * 65,
        },
        ("clientToken",),
        "length less than or equal to 64",
    ),
    (
        "list-min",
        "admin",
        "create_launch_profile",
        lambda w: launch_profile_args(w, ec2InstanceTypes=[]),
        ("streamConfiguration.ec2InstanceTypes",),
        "length greater than or equal to 1",
    ),
    (
        "list-max",
        "admin",
        "put_studio_members",
        lambda w: {
            "studioId": w.studio.studio_id,
            "identityStoreId": w.studio.admin.identity_store_id,
            "members": [{"principalId": w.artist.user_id, "persona": "ADMINISTRATOR"}] * 21,
        },
        ("members",),
        "length less than or equal to 20",
    ),
    (
        "pattern-studioName",
        "operator",
        "create_studio",
        lambda w: studio_args(studioName="Bad-Name"),
        ("studioName",),
        "regular expression pattern",
    ),
    (
        "pattern-ec2ImageId",
        "admin",
        "create_streaming_image",
        lambda w: {"studioId": w.studio.studio_id, "name": "img", "ec2ImageId": "notanami"},
        ("ec2ImageId",),
        "regular expression pattern",
    ),
    (
        "enum-ec2InstanceType",
        "artist",
        "create_streaming_session",
        lambda w: {
            "studioId": w.studio.studio_id,
            "launchProfileId": w.studio.launch_profile_id,
            "ec2InstanceType": "m5.large",
        },
        ("ec2InstanceType",),
        "enum value set",
    ),
    (
        "enum-persona",
        "admin",
        "put_studio_members",
        lambda w: {
            "studioId": w.studio.studio_id,
            "identityStoreId": w.studio.admin.identity_store_id,
            "members": [{"principalId": w.artist.user_id, "persona": "OWNER"}],
        },
        ("members.1.member.persona",),
        "enum value set",
    ),
]


def caller(world: World, who: str) -> User:
    return {"operator": world.operator, "admin": world.studio.admin, "artist": world.artist}[who]


@pytest.mark.parametrize(
    ("who", "operation", "make_args", "fields", "rule"),
    [pytest.param(*case[1:], id=case[0]) for case in CASES],
)
def test_each_rule_of_the_model_is_checked_by_the_server(
    world: World,
    who: str,
    operation: str,
    make_args: Callable[[World], dict[str, Any]],
    fields: tuple[str, ...],
    rule: str,
) -> None:
    client = caller(world, who).client(validate=False)
    call = getattr(client, operation)
    with pytest.raises(client.exceptions.ValidationException) as info:
        call(**make_args(world))
    message = check(info.value, "ValidationException", 400, *fields, count=1)
    assert rule in message
    assert info.value.response["context"]["fields"] == fields[0]


def test_the_bounds_themselves_are_accepted(world: World, ready_session: dict[str, Any]) -> None:
    artist = world.artist.client(validate=False)
    for seconds in (60, 3600):
        stream = artist.create_streaming_session_stream(
            studioId=world.studio.studio_id,
            sessionId=ready_session["sessionId"],
            expirationInSeconds=seconds,
        )["stream"]
        assert stream["createdBy"] == world.artist.user_id


RAW_TYPE_CASES = [
    pytest.param(
        "streaming-sessions/{session}/streams",
        lambda w: {"expirationInSeconds": "abc"},
        "expirationInSeconds",
        "type integer",
        id="string-for-integer",
    ),
    pytest.param(
        "launch-profiles",
        lambda w: {
            k: v
            for k, v in launch_profile_args(w, ec2InstanceTypes="g4dn.xlarge").items()
            if k != "studioId"
        },
        "streamConfiguration.ec2InstanceTypes",
        "type list",
        id="string-for-list",
    ),
    pytest.param(
        "launch-profiles",
        lambda w: {
            k: v
            for k, v in launch_profile_args(w, maxSessionLengthInMinutes=True).items()
            if k != "studioId"
        },
        "streamConfiguration.maxSessionLengthInMinutes",
        "type integer",
        id="boolean-for-integer",
    ),
]


@pytest.mark.parametrize(("where", "make_body", "field", "rule"), RAW_TYPE_CASES)
def test_a_value_of_the_wrong_type_is_refused(
    world: World, where: str, make_body: Callable[[World], dict[str, Any]], field: str, rule: str
) -> None:
    """botocore cannot serialize these: raw, signed requests with the JSON a client could send."""
    path = f"/2020-08-01/studios/{path_id(world.studio.studio_id)}/" + where.format(session=FAKE_ID)
    body = json.dumps(make_body(world)).encode()
    response = signed(world.studio.admin, "POST", path, body)
    message = json_error(response, "ValidationException", 400)
    assert message.startswith("1 validation error detected"), message
    assert field in message
    assert rule in message
    assert response.json()["context"]["fields"] == field


def test_a_body_that_is_not_json_is_refused(world: World) -> None:
    path = f"/2020-08-01/studios/{path_id(world.studio.studio_id)}/streaming-sessions"
    response = signed(world.artist, "POST", path, b"{this is not json")
    message = json_error(response, "ValidationException", 400)
    assert "JSON" in message
    response = signed(world.artist, "POST", path, b'["a JSON list"]')
    message = json_error(response, "ValidationException", 400)
    assert "JSON object" in message


def test_a_query_value_of_the_wrong_type_is_refused(world: World) -> None:
    path = f"/2020-08-01/studios/{path_id(world.studio.studio_id)}/launch-profiles?maxResults=abc"
    response = signed(world.studio.admin, "GET", path)
    message = json_error(response, "ValidationException", 400)
    assert "maxResults" in message
    assert "integer" in message


@pytest.mark.parametrize("value", ["1_0", "%D9%A3"], ids=["underscore", "arabic-indic-digit"])
def test_a_query_integer_must_be_plain_digits(world: World, value: str) -> None:
    path = (
        f"/2020-08-01/studios/{path_id(world.studio.studio_id)}/launch-profiles?maxResults={value}"
    )
    response = signed(world.studio.admin, "GET", path)
    message = json_error(response, "ValidationException", 400)
    assert "maxResults" in message


def test_a_query_value_of_the_wrong_type_is_answered_with_the_other_problems(
    world: World,
) -> None:
    path = (
        f"/2020-08-01/studios/{path_id(world.studio.studio_id)}/launch-profiles"
        "?maxResults=abc&states=BOGUS"
    )
    response = signed(world.studio.admin, "GET", path)
    message = json_error(response, "ValidationException", 400)
    assert "maxResults" in message
    assert "states" in message
    assert message.startswith("2 validation errors detected"), message


def test_every_problem_is_answered_together_in_one_error(world: World) -> None:
    secret = "SECRET-display-name-"
    client = world.operator.client(validate=False)
    with pytest.raises(client.exceptions.ValidationException) as info:
        client.create_studio(
            studioName="X!",  # too short and not matching the pattern: two problems
            displayName=secret * 4,  # 80 characters, over the 64 allowed
            userRoleArn=ROLE,  # adminRoleArn missing
        )
    message = check(
        info.value,
        "ValidationException",
        400,
        "studioName",
        "displayName",
        "adminRoleArn",
        count=4,
    )
    assert "length greater than or equal to 3" in message
    assert "regular expression pattern" in message
    assert "length less than or equal to 64" in message
    assert "must not be null" in message
    fields = info.value.response["context"]["fields"].split(",")
    assert set(fields) == {"studioName", "displayName", "adminRoleArn"}
    assert secret not in message  # displayName is sensitive: never echoed
    assert secret not in json.dumps(info.value.response, default=str)


def test_a_sensitive_value_is_never_echoed(world: World) -> None:
    secret = "SECRET-display-name-"
    client = world.operator.client(validate=False)
    with pytest.raises(client.exceptions.ValidationException) as info:
        client.create_studio(**studio_args(displayName=[secret]))
    message = check(info.value, "ValidationException", 400, "displayName", count=1)
    assert secret not in message


# ---- checks against the launch profile -----------------------------------------------------------


def test_an_instance_type_the_launch_profile_does_not_offer(world: World) -> None:
    client = world.artist.client()
    with pytest.raises(client.exceptions.ValidationException) as info:
        client.create_streaming_session(
            studioId=world.studio.studio_id,
            launchProfileId=world.studio.launch_profile_id,
            ec2InstanceType="g5.xlarge",  # in the model's enum, not in the launch profile
        )
    check(info.value, "ValidationException", 400, "ec2InstanceType", "g5.xlarge", count=1)


def test_an_image_the_launch_profile_does_not_offer(world: World) -> None:
    client = world.artist.client()
    with pytest.raises(client.exceptions.ValidationException) as info:
        client.create_streaming_session(
            studioId=world.studio.studio_id,
            launchProfileId=world.studio.launch_profile_id,
            streamingImageId=world.studio.other_image_id,
        )
    check(info.value, "ValidationException", 400, "streamingImageId", count=1)


# ---- unknown resources ---------------------------------------------------------------------------


def test_unknown_resources_are_not_found(world: World) -> None:
    artist = world.artist.client()
    sid = world.studio.studio_id
    calls: list[tuple[str, Callable[[], Any]]] = [
        (
            FAKE_ID,
            lambda: artist.create_streaming_session(studioId=sid, launchProfileId=FAKE_ID),
        ),
        (FAKE_ID, lambda: artist.get_launch_profile(studioId=sid, launchProfileId=FAKE_ID)),
        (UNKNOWN_STUDIO, lambda: artist.get_studio(studioId=UNKNOWN_STUDIO)),
        (
            UNKNOWN_STUDIO,
            lambda: artist.create_streaming_session(
                studioId=UNKNOWN_STUDIO, launchProfileId=world.studio.launch_profile_id
            ),
        ),
        (FAKE_ID, lambda: artist.get_streaming_session(studioId=sid, sessionId=FAKE_ID)),
        (FAKE_ID, lambda: artist.delete_streaming_session(studioId=sid, sessionId=FAKE_ID)),
        (
            FAKE_ID,
            lambda: artist.create_streaming_session_stream(studioId=sid, sessionId=FAKE_ID),
        ),
        (
            FAKE_ID,
            lambda: artist.get_streaming_session_stream(
                studioId=sid, sessionId=FAKE_ID, streamId=FAKE_ID
            ),
        ),
    ]
    for resource_id, call in calls:
        with pytest.raises(artist.exceptions.ResourceNotFoundException) as info:
            call()
        check(info.value, "ResourceNotFoundException", 404, resource_id)
        assert info.value.response["context"]["resourceId"] == resource_id


def test_an_unknown_stream_of_a_known_session_is_not_found(
    world: World, ready_session: dict[str, Any]
) -> None:
    artist = world.artist.client()
    with pytest.raises(artist.exceptions.ResourceNotFoundException) as info:
        artist.get_streaming_session_stream(
            studioId=world.studio.studio_id, sessionId=ready_session["sessionId"], streamId=FAKE_ID
        )
    check(info.value, "ResourceNotFoundException", 404, FAKE_ID)


def test_an_unknown_path_is_a_json_error(world: World) -> None:
    response = signed(world.operator, "GET", "/2020-08-01/nothing")
    assert 400 <= response.status_code < 500
    assert "<html" not in response.text.lower()
    assert response.headers["x-amzn-ErrorType"] in (
        "ResourceNotFoundException",
        "ValidationException",
    )
    json_error(response, response.headers["x-amzn-ErrorType"], response.status_code)
    # a path of the API with a method it does not have: a JSON error too
    response = signed(world.operator, "DELETE", "/2020-08-01/studios")
    assert 400 <= response.status_code < 500
    message = json_error(response, response.headers["x-amzn-ErrorType"], response.status_code)
    assert "DELETE" in message


# ---- wrong states ------------------------------------------------------------------------------


def test_stream_and_delete_while_the_session_is_being_created_conflict(world: World) -> None:
    artist = world.artist.client()
    sid = world.studio.studio_id
    session = artist.create_streaming_session(
        studioId=sid, launchProfileId=world.studio.launch_profile_id
    )["session"]
    session_id = session["sessionId"]
    assert session["state"] == "CREATE_IN_PROGRESS"
    stream_error = raised(
        lambda: artist.create_streaming_session_stream(studioId=sid, sessionId=session_id)
    )
    delete_error = raised(
        lambda: artist.delete_streaming_session(studioId=sid, sessionId=session_id)
    )
    state = artist.get_streaming_session(studioId=sid, sessionId=session_id)["session"]["state"]
    for error in (stream_error, delete_error):
        check(error, "ConflictException", 409, session_id, "CREATE_IN_PROGRESS")
        assert error.response["context"]["resourceId"] == session_id
    assert state in ("CREATE_IN_PROGRESS", "READY")
    artist.get_waiter("streaming_session_ready").wait(
        studioId=sid, sessionId=session_id, WaiterConfig=FAST
    )
    artist.delete_streaming_session(studioId=sid, sessionId=session_id)


def test_a_stream_into_a_deleted_session_conflicts(world: World) -> None:
    artist = world.artist.client()
    sid = world.studio.studio_id
    session_id = artist.create_streaming_session(
        studioId=sid, launchProfileId=world.studio.launch_profile_id
    )["session"]["sessionId"]
    artist.get_waiter("streaming_session_ready").wait(
        studioId=sid, sessionId=session_id, WaiterConfig=FAST
    )
    deleting = artist.delete_streaming_session(studioId=sid, sessionId=session_id)["session"]
    assert deleting["state"] == "DELETE_IN_PROGRESS"
    # deleting again returns the session unchanged (the model marks Delete idempotent)
    again = artist.delete_streaming_session(studioId=sid, sessionId=session_id)["session"]
    assert again["state"] in ("DELETE_IN_PROGRESS", "DELETED")
    with pytest.raises(artist.exceptions.ConflictException) as info:
        artist.create_streaming_session_stream(studioId=sid, sessionId=session_id)
    check(info.value, "ConflictException", 409, session_id)
    artist.get_waiter("streaming_session_deleted").wait(
        studioId=sid, sessionId=session_id, WaiterConfig=FAST
    )
    with pytest.raises(artist.exceptions.ConflictException) as info:
        artist.create_streaming_session_stream(studioId=sid, sessionId=session_id)
    check(info.value, "ConflictException", 409, session_id, "DELETED")
    gone = artist.delete_streaming_session(studioId=sid, sessionId=session_id)["session"]
    assert gone["state"] == "DELETED"


@pytest.mark.skipif(
    not databases.postgresql(), reason="needs a server without a reconciler: PostgreSQL only"
)
def test_a_session_from_a_launch_profile_not_ready_yet_conflicts(world: World) -> None:
    """With no reconciler running (``serve --no-reconciler``), a new launch profile stays
    CREATE_IN_PROGRESS, and a session from it is a conflict."""
    srv, admin, sid = world.server, world.studio.admin.client(), world.studio.studio_id
    env = dict(srv.env)
    srv.stop()
    srv.env = {**env, "OPENNIMBLE_RECONCILER": "false"}
    srv.start()
    try:
        profile = admin.create_launch_profile(**launch_profile_args(world))["launchProfile"]
        assert profile["state"] == "CREATE_IN_PROGRESS"
        with pytest.raises(admin.exceptions.ConflictException) as info:
            admin.create_streaming_session(studioId=sid, launchProfileId=profile["launchProfileId"])
        check(info.value, "ConflictException", 409, profile["launchProfileId"], "READY")
    finally:
        srv.stop()
        srv.env = env
        srv.start()
