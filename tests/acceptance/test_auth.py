"""SigV4 over real HTTP: what a caller whose request is not correctly signed sees.

Each refusal is the 403 error an AWS endpoint answers with (UnrecognizedClientException,
InvalidSignatureException, IncompleteSignatureException, MissingAuthenticationTokenException),
named in ``x-amzn-ErrorType`` so that botocore raises a ClientError with that code, with a message
a user can act on; botocore does not retry any of them.
"""

from __future__ import annotations

import datetime
import urllib.parse
from collections.abc import Iterator
from typing import Any
from unittest import mock

import boto3
import botocore
import botocore.auth
import botocore.awsrequest
import botocore.config
import botocore.credentials
import botocore.exceptions
import pytest
import requests

from tests.support.server import REGION, User
from tests.support.world import World

LIST_STUDIOS = "/2020-08-01/studios"


def client_for(
    world: World,
    access_key_id: str,
    secret: str,
    region: str = REGION,
    **config: Any,
) -> Any:
    return boto3.client(
        "nimble",
        endpoint_url=world.server.endpoint,
        region_name=region,
        aws_access_key_id=access_key_id,
        aws_secret_access_key=secret,
        config=botocore.config.Config(retries={"mode": "standard", "max_attempts": 3}, **config),
    )


def refused(client: Any, code: str, *words: str) -> str:
    """Call ListStudios; assert botocore raised a ClientError of code ``code`` from a 403,
    without retrying it."""
    with pytest.raises(botocore.exceptions.ClientError) as info:
        client.list_studios()
    response = info.value.response
    assert response["Error"]["Code"] == code, response
    assert response["ResponseMetadata"]["HTTPStatusCode"] == 403
    assert response["ResponseMetadata"]["HTTPHeaders"]["x-amzn-errortype"] == code
    assert response["ResponseMetadata"]["RetryAttempts"] == 0
    message = str(response["Error"]["Message"])
    for word in words:
        assert word in message, f"{word!r} not in {message!r}"
    return message


def sign(
    user: User,
    method: str,
    path: str,
    body: bytes = b"",
    *,
    service: str = "nimble",
) -> dict[str, str]:
    """The headers botocore's SigV4Auth puts on a request, signed for ``service``."""
    request = botocore.awsrequest.AWSRequest(
        method=method,
        url=user.server.endpoint + path,
        data=body,
        headers={"Content-Type": "application/json"},
    )
    credentials = botocore.credentials.Credentials(user.access_key_id, user.secret_access_key)
    botocore.auth.SigV4Auth(credentials, service, REGION).add_auth(request)
    return dict(request.headers.items())


def send(user: User, method: str, path: str, headers: dict[str, str], body: bytes = b"") -> Any:
    response = requests.request(
        method, user.server.endpoint + path, data=body, headers=headers, timeout=10
    )
    assert response.headers["content-type"].startswith("application/json")
    return response.status_code, response.headers.get("x-amzn-ErrorType"), response.json()


@pytest.fixture
def signing_clock() -> Iterator[Any]:
    """Set the time botocore signs with: ``signing_clock(offset)`` shifts it from now."""
    with mock.patch("botocore.auth.get_current_datetime") as patched:

        def shift(offset: datetime.timedelta) -> None:
            now = datetime.datetime.now(datetime.UTC).replace(tzinfo=None)
            patched.return_value = now + offset

        yield shift


# ---- refusals ------------------------------------------------------------------------------------


def test_a_wrong_secret_is_refused(world: World) -> None:
    client = client_for(world, world.artist.access_key_id, world.artist.secret_access_key[::-1])
    refused(client, "InvalidSignatureException", "signature", "secret access key")


def test_an_unknown_access_key_id_is_refused(world: World) -> None:
    client = client_for(world, "AKIAUNKNOWNKEY000000", world.artist.secret_access_key)
    refused(client, "UnrecognizedClientException", "security token", "AKIAUNKNOWNKEY000000")


def test_a_request_signed_for_another_region_is_refused(world: World) -> None:
    user = world.artist
    client = client_for(world, user.access_key_id, user.secret_access_key, region="eu-west-1")
    refused(client, "InvalidSignatureException", "region", "us-west-2", "eu-west-1")


def test_a_request_signed_for_another_service_is_refused(world: World) -> None:
    headers = sign(world.artist, "GET", LIST_STUDIOS, service="s3")
    status, kind, document = send(world.artist, "GET", LIST_STUDIOS, headers)
    assert (status, kind) == (403, "InvalidSignatureException")
    assert "service" in document["message"] and "'s3'" in document["message"]
    assert "nimble" in document["message"]


@pytest.mark.parametrize(
    "minutes", [pytest.param(-16, id="16-min-behind"), pytest.param(16, id="16-min-ahead")]
)
def test_a_clock_skew_over_15_minutes_is_refused(
    world: World, signing_clock: Any, minutes: int
) -> None:
    client = client_for(world, world.artist.access_key_id, world.artist.secret_access_key)
    signing_clock(datetime.timedelta(minutes=minutes))
    words = "Signature expired" if minutes < 0 else "Signature not yet current"
    refused(client, "InvalidSignatureException", words, "15 min.")


@pytest.mark.parametrize(
    "minutes", [pytest.param(-14, id="14-min-behind"), pytest.param(14, id="14-min-ahead")]
)
def test_a_clock_skew_under_15_minutes_is_accepted(
    world: World, signing_clock: Any, minutes: int
) -> None:
    client = world.artist.client()
    signing_clock(datetime.timedelta(minutes=minutes))
    studios = client.list_studios()["studios"]
    assert [s["studioId"] for s in studios] == [world.studio.studio_id]


def test_a_request_without_authorization_is_refused(world: World) -> None:
    unsigned = client_for(world, "unused", "unused", signature_version=botocore.UNSIGNED)
    refused(unsigned, "MissingAuthenticationTokenException", "authorization")
    # the same from a plain HTTP client: a JSON error, never an HTML page
    status, kind, _ = send(world.artist, "GET", LIST_STUDIOS, {})
    assert (status, kind) == (403, "MissingAuthenticationTokenException")


def test_a_body_changed_after_signing_is_refused(world: World) -> None:
    studio = urllib.parse.quote(world.studio.studio_id, safe="")
    path = f"/2020-08-01/studios/{studio}/streaming-sessions"
    signed_body = b'{"launchProfileId": "AAAAAAAAAAAAAAAAAAAAAA"}'
    headers = sign(world.artist, "POST", path, signed_body)
    tampered = signed_body.replace(b"AAAA", b"BBBB", 1)
    status, kind, document = send(world.artist, "POST", path, headers, tampered)
    assert (status, kind) == (403, "InvalidSignatureException")
    assert "signature" in document["message"]
    # the untampered request passes the signature check (and fails only on the unknown profile)
    status, kind, _ = send(world.artist, "POST", path, headers, signed_body)
    assert (status, kind) == (404, "ResourceNotFoundException")


def test_a_query_changed_after_signing_is_refused(world: World) -> None:
    studio = urllib.parse.quote(world.studio.studio_id, safe="")
    path = f"/2020-08-01/studios/{studio}/launch-profiles"
    headers = sign(world.studio.admin, "GET", path + "?maxResults=1")
    status, kind, document = send(world.studio.admin, "GET", path + "?maxResults=2", headers)
    assert (status, kind) == (403, "InvalidSignatureException")
    status, kind, document = send(world.studio.admin, "GET", path + "?maxResults=1", headers)
    assert status == 200, document
    assert len(document["launchProfiles"]) == 1


# ---- acceptance ----------------------------------------------------------------------------------


def test_a_user_created_while_the_server_runs_can_call_at_once(world: World) -> None:
    late = world.server.user("late")
    client = late.client()
    assert client.list_studios()["studios"] == []
    # known, authenticated, just not a member of the studio
    with pytest.raises(client.exceptions.AccessDeniedException) as info:
        client.get_studio(studioId=world.studio.studio_id)
    assert info.value.response.get("code") is None
    assert late.user_id in info.value.response["Error"]["Message"]


def test_query_values_that_need_encoding_are_signed_and_verified_alike(world: World) -> None:
    """botocore percent-encodes the query (',' ' ' '/' ':' '='); the server must agree."""
    client = world.studio.admin.client()
    sessions = client.list_streaming_sessions(
        studioId=world.studio.studio_id,
        sessionIds="no such id, another/one",
        createdBy="a:b=c&d",
        ownedBy="x+y~z",
    )["sessions"]
    assert sessions == []


def test_temporary_credentials_are_refused(world: World) -> None:
    user = world.artist
    client = boto3.client(
        "nimble",
        endpoint_url=world.server.endpoint,
        region_name=REGION,
        aws_access_key_id=user.access_key_id,
        aws_secret_access_key=user.secret_access_key,
        aws_session_token="a-session-token-this-server-never-issued",
        config=botocore.config.Config(retries={"mode": "standard", "max_attempts": 1}),
    )
    refused(client, "UnrecognizedClientException", "X-Amz-Security-Token")


def test_an_x_amz_header_added_after_signing_is_refused(world: World) -> None:
    """The client token is an x-amz-* header: unsigned, a replay could carry a new one."""
    studio = urllib.parse.quote(world.studio.studio_id, safe="")
    path = f"/2020-08-01/studios/{studio}/streaming-sessions"
    body = b'{"launchProfileId": "AAAAAAAAAAAAAAAAAAAAAA"}'
    headers = {**sign(world.artist, "POST", path, body), "X-Amz-Client-Token": "replayed-1"}
    status, kind, document = send(world.artist, "POST", path, headers, body)
    assert (status, kind) == (403, "IncompleteSignatureException")
    assert "x-amz-client-token" in document["message"]


def test_a_plus_and_its_escape_mean_the_same_value(world: World) -> None:
    """``+`` and ``%2B`` sign alike, so they must mean the same: a plus."""
    studio = urllib.parse.quote(world.studio.studio_id, safe="")
    path = f"/2020-08-01/studios/{studio}/streaming-sessions"
    headers = sign(world.studio.admin, "GET", path + "?ownedBy=a%2Bb")
    for query in ("?ownedBy=a%2Bb", "?ownedBy=a+b"):
        status, _, document = send(world.studio.admin, "GET", path + query, headers)
        assert status == 200, document
        assert document["sessions"] == []


def test_responses_carry_the_date_that_sdks_correct_their_clock_with(world: World) -> None:
    """SDKs that correct clock skew on InvalidSignatureException read the Date header."""
    status, kind, _ = send(world.artist, "GET", LIST_STUDIOS, {})
    response = requests.get(world.server.endpoint + LIST_STUDIOS, timeout=10)
    assert (status, kind) == (403, "MissingAuthenticationTokenException")
    assert "date" in {name.lower() for name in response.headers}
