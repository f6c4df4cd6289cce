"""The protocol layer against the model: routes, errors, validation and serialization."""

from __future__ import annotations

import pytest

from opennimble import clock, errors
from opennimble.protocol import model, parse, routing, serialize, validate


def test_error_classes_are_the_model_error_shapes() -> None:
    assert {e.__name__: e.status for e in errors.ALL} == model.error_statuses()


@pytest.mark.parametrize("name", sorted(model.operations()))
def test_every_operation_routes_to_itself(name: str) -> None:
    op = model.operations()[name]
    path = op.request_uri.split("?")[0]
    concrete = path.replace("{studioId}", "us-west-2%3Astid-abc").replace(
        "{resourceArn}", "arn%3Aaws%3Animble%3Aus-west-2%3A000000000000%3Astudio%2Fx"
    )
    for label in (
        "sessionId",
        "streamId",
        "launchProfileId",
        "principalId",
        "backupId",
        "streamingImageId",
        "studioComponentId",
        "eulaId",
    ):
        concrete = concrete.replace("{" + label + "}", "id-" + label)
    match = routing.Router(model.operations()).match(op.method, concrete)
    assert match.operation.name == name
    if "{studioId}" in path:
        assert match.path_params["studioId"] == "us-west-2:stid-abc"
    if "{resourceArn}" in path:
        assert match.path_params["resourceArn"].endswith(":studio/x")


def test_unknown_paths_and_methods() -> None:
    router = routing.Router(model.operations())
    with pytest.raises(routing.NoRoute) as nothing:
        router.match("GET", "/2020-08-01/nothing")
    assert nothing.value.allowed == ()
    with pytest.raises(routing.NoRoute) as wrong_method:
        router.match("PUT", "/2020-08-01/studios")
    assert wrong_method.value.allowed == ("GET", "POST")


def test_parse_binds_each_member_from_its_location() -> None:
    op = model.operations()["ListLaunchProfiles"]
    params = parse.parse_input(
        op, {"studioId": "s"}, "maxResults=5&states=READY&states=DELETED", {}, b""
    )
    assert params == {"studioId": "s", "maxResults": 5, "states": ["READY", "DELETED"]}
    create = model.operations()["CreateStreamingSession"]
    params = parse.parse_input(
        create,
        {"studioId": "s"},
        "",
        {"x-amz-client-token": "t"},
        b'{"launchProfileId": "lp", "ownedBy": "u"}',
    )
    assert params == {"studioId": "s", "clientToken": "t", "launchProfileId": "lp", "ownedBy": "u"}


@pytest.mark.parametrize("body", [b"{not json", b"[1, 2]"])
def test_parse_refuses_bodies_that_are_not_json_objects(body: bytes) -> None:
    op = model.operations()["CreateStudio"]
    with pytest.raises(errors.ValidationException):
        parse.parse_input(op, {}, "", {}, body)


def test_parse_refuses_non_integer_query_values() -> None:
    op = model.operations()["ListStudioMembers"]
    with pytest.raises(errors.ValidationException, match="maxResults"):
        validate.validate(
            op.input, parse.parse_input(op, {"studioId": "s"}, "maxResults=many", {}, b"")
        )


def test_validation_collects_every_problem_and_hides_sensitive_values() -> None:
    op = model.operations()["CreateStudio"]
    with pytest.raises(errors.ValidationException) as caught:
        validate.validate(
            op.input,
            {
                "studioName": "No",
                "displayName": "secret" * 20,
                "adminRoleArn": 5,
                "tags": {"k": "v"},
            },
        )
    message = caught.value.message
    assert message.startswith("5 validation errors detected")
    for field in ("userRoleArn", "studioName", "displayName", "adminRoleArn"):
        assert f"'{field}'" in message
    assert "secret" not in message
    assert "regular expression" in message and "length greater than or equal to 3" in message


def test_validation_of_nested_lists_enums_and_numbers() -> None:
    op = model.operations()["CreateLaunchProfile"]
    params = {
        "studioId": "s",
        "name": "n",
        "ec2SubnetIds": [],
        "studioComponentIds": ["c"],
        "launchProfileProtocolVersions": ["2021-03-31"],
        "streamConfiguration": {
            "clipboardMode": "MAYBE",
            "ec2InstanceTypes": [],
            "streamingImageIds": ["i"],
            "maxSessionLengthInMinutes": 0,
        },
    }
    with pytest.raises(errors.ValidationException) as caught:
        validate.validate(op.input, params)
    fields = caught.value.context["fields"].split(",")
    assert fields == [
        "streamConfiguration.clipboardMode",
        "streamConfiguration.ec2InstanceTypes",
        "streamConfiguration.maxSessionLengthInMinutes",
    ]


def test_booleans_are_not_integers() -> None:
    op = model.operations()["CreateStreamingSessionStream"]
    with pytest.raises(errors.ValidationException, match="integer"):
        validate.validate(
            op.input, {"studioId": "s", "sessionId": "x", "expirationInSeconds": True}
        )


def test_serialize_keeps_modelled_members_and_formats_timestamps() -> None:
    op = model.operations()["GetStreamingSessionStream"]
    status, headers, body = serialize.response(
        op,
        {
            "stream": {
                "streamId": "a",
                "createdAt": 1_700_000_000_123_456,
                "url": None,
                "secretThing": 1,
            }
        },
    )
    assert status == 200
    assert (b"content-type", b"application/json") in headers
    assert body == b'{"stream":{"createdAt":"2023-11-14T22:13:20.123Z","streamId":"a"}}'


def test_serialize_writes_lists_of_nested_structures_in_the_models_order() -> None:
    op = model.operations()["ListStreamingSessions"]
    session = {
        "volumeConfiguration": {"size": 500, "throughput": 125, "unmodelled": 1},
        "tags": {"team": "fx"},
        "sessionId": "ss-1",
        "createdAt": 1_700_000_000_123_456,
        "stopAt": "2023-11-14T22:13:20.000Z",  # already written: kept as it is
        "startedAt": None,
        "secretThing": 1,
    }
    status, _, body = serialize.response(op, {"sessions": [session, {}], "nextToken": None})
    assert status == 200
    assert body == (
        b'{"sessions":[{"createdAt":"2023-11-14T22:13:20.123Z","sessionId":"ss-1",'
        b'"stopAt":"2023-11-14T22:13:20.000Z","tags":{"team":"fx"},'
        b'"volumeConfiguration":{"size":500,"throughput":125}},{}]}'
    )


def test_a_value_written_before_is_put_in_the_response_as_it_is() -> None:
    op = model.operations()["ListStreamingSessions"]
    session = {"sessionId": "ss-1", "createdAt": 1_700_000_000_123_456, "secretThing": 1}
    written = serialize.written(model.shape_named("StreamingSession"), session)
    assert written == session  # read as the dict it is (the portal calls handlers itself)
    with pytest.raises(TypeError, match="read-only"):
        written["state"] = "READY"  # shared by every listing of the same row
    _, _, direct = serialize.response(op, {"sessions": [session]})
    _, _, from_written = serialize.response(op, {"sessions": [written]})
    assert from_written == direct
    assert direct == b'{"sessions":[{"createdAt":"2023-11-14T22:13:20.123Z","sessionId":"ss-1"}]}'


def test_error_response_names_its_type() -> None:
    status, headers, body = serialize.error_response(
        errors.ConflictException("busy", context={"resourceId": "x"})
    )
    assert status == 409
    assert (b"x-amzn-errortype", b"ConflictException") in headers
    assert body == b'{"message":"busy","context":{"resourceId":"x"}}'


def test_iso_timestamps_are_utc() -> None:
    assert clock.iso(0) == "1970-01-01T00:00:00.000Z"


def test_session_states_are_the_models() -> None:
    from opennimble.store.sessions import SessionState

    assert {s.value for s in SessionState} == model.shape_named("StreamingSessionState").enum
    assert all(s.name == s.value for s in SessionState)
