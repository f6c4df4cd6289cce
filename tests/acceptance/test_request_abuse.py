"""Hostile requests over real HTTP: bodies over the limit, deeply nested JSON, invalid UTF-8,
duplicate headers, header injection and path traversal in every id of every operation.

Each is answered 4xx with an error AWS SDKs parse (a known ``x-amzn-ErrorType`` and a JSON
body), never 5xx and never a hang; meanwhile a bystander keeps calling the API, and every one
of its calls must succeed promptly.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Iterator
from typing import Any

import botocore.exceptions
import pytest

from opennimble.protocol import model
from tests.support import raw
from tests.support.world import World

STUDIOS = "/2020-08-01/studios"
TRAVERSALS = [
    "..",
    "../../../../etc/passwd",
    "..%2F..%2F..%2Fetc%2Fpasswd",
    "%2e%2e%2f%2e%2e%2fstudios",
    "a/../b",
    "%00",
    "%FF%FE",
    "studio-1%0d%0aX-Injected:%20yes",
    "*",
    "%25",
]


class Bystander:
    """A client that keeps calling the API while the test runs, and what it saw."""

    def __init__(self, client: Any) -> None:
        self.client = client
        self.failures: list[str] = []
        self.slowest = 0.0
        self.calls = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            started = time.monotonic()
            try:
                self.client.list_studios()
            except Exception as exc:
                self.failures.append(repr(exc))
            self.slowest = max(self.slowest, time.monotonic() - started)
            self.calls += 1
            time.sleep(0.05)

    def __enter__(self) -> Bystander:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(timeout=30)


@pytest.fixture(scope="module", autouse=True)
def bystander(world: World) -> Iterator[Bystander]:
    with Bystander(world.operator.client()) as watching:
        yield watching
    assert watching.calls > 0
    assert watching.failures == []
    assert watching.slowest < 2.0, f"a bystander's call took {watching.slowest:.2f} s"


def uri_operations() -> list[model.Operation]:
    return [op for op in model.operations().values() if "{" in op.request_uri]


def with_ids(op: model.Operation, value: str) -> str:
    """The operation's path with ``value`` (percent-encoded already) in every id position."""
    return re.sub(r"\{(\w+)\+?\}", lambda _: value, op.request_uri.split("?")[0])


@pytest.mark.parametrize("value", TRAVERSALS)
def test_path_traversal_in_every_id_of_every_operation_is_refused(world: World, value: str) -> None:
    for op in uri_operations():
        body = b"{}" if op.method in ("POST", "PUT", "PATCH") else b""
        raw.call(world.operator, op.method, with_ids(op, value), body).assert_refused()


@pytest.mark.parametrize("value", ["../../etc/passwd", "..", "a\x00b", "é/../x"])
def test_traversal_ids_through_boto3_are_refused(world: World, value: str) -> None:
    """As a user's script would send them: boto3 without parameter validation."""
    client = world.operator.client(validate=False)
    for call in (
        lambda: client.get_studio(studioId=value),
        lambda: client.get_launch_profile(studioId=world.studio.studio_id, launchProfileId=value),
        lambda: client.get_streaming_session(studioId=world.studio.studio_id, sessionId=value),
        lambda: client.delete_streaming_image(
            studioId=world.studio.studio_id, streamingImageId=value
        ),
    ):
        with pytest.raises(botocore.exceptions.ClientError) as info:
            call()
        status = info.value.response["ResponseMetadata"]["HTTPStatusCode"]
        assert 400 <= status < 500
        assert info.value.response["Error"]["Code"] in raw.KNOWN_ERRORS


def test_a_body_over_the_limit_is_a_validation_error(world: World) -> None:
    client = world.operator.client(validate=False)
    with pytest.raises(botocore.exceptions.ClientError) as info:
        client.create_studio(
            studioName="big",
            displayName="big",
            adminRoleArn="x",
            userRoleArn="x",
            tags={f"k{i}": "v" * 250 for i in range(6000)},
        )
    assert info.value.response["Error"]["Code"] == "ValidationException"
    assert "exceeds" in info.value.response["Error"]["Message"]


@pytest.mark.parametrize("depth", [100, 1_000, 100_000])
def test_deeply_nested_json_is_refused(world: World, depth: int) -> None:
    for body in (b"[" * depth + b"]" * depth, b'{"a":' * depth + b"1" + b"}" * depth):
        answer = raw.call(world.operator, "POST", STUDIOS, body)
        answer.assert_refused(400)


@pytest.mark.parametrize(
    "body",
    [
        b'{"studioName": "\xff\xfe", "displayName": "x"}',
        b'{"\xc3\x28": 1}',
        b"\xed\xa0\x80",
        b'{"studioName": "\\ud800"}',
        b"\x00\x01\x02",
        b"{" * 3,
        b"[]",
        b"null",
        b'"text"',
        b'{"tags": {"a": [1, 2]}, "studioName": {"x": 1}}',
    ],
)
def test_bodies_that_are_not_the_input_shape_are_refused(world: World, body: bytes) -> None:
    raw.call(world.operator, "POST", STUDIOS, body).assert_refused(400)


def test_invalid_utf8_in_the_path_and_query_is_refused(world: World) -> None:
    for target in (
        STUDIOS + "/%FF%FE",
        f"{STUDIOS}/{world.studio.studio_id}/streaming-sessions?ownedBy=%FF",
        f"{STUDIOS}/{world.studio.studio_id}/streaming-sessions?%FF=1",
        f"{STUDIOS}/{world.studio.studio_id}/streaming-sessions?nextToken=%C3%28",
    ):
        answer = raw.call(world.operator, "GET", target)
        answer.assert_refused(400)
        assert "not valid UTF-8" in answer.json()["message"]
    for request in (
        b"GET /2020-08-01/studios/\xff\xfe HTTP/1.1\r\nHost: x\r\n\r\n",
        b"GET /2020-08-01/studios?x=\xc3\x28 HTTP/1.1\r\nHost: x\r\n\r\n",
    ):
        raw.exchange(world.server, request).assert_refused()


def test_invalid_utf8_in_a_header_is_refused(world: World) -> None:
    request = (
        b"POST /2020-08-01/studios HTTP/1.1\r\nHost: x\r\nX-Amz-Client-Token: \xff\xfe\r\n"
        b"Authorization: AWS4-HMAC-SHA256 Credential=\xc3\x28\r\nContent-Length: 2\r\n\r\n{}"
    )
    raw.exchange(world.server, request).assert_refused()


@pytest.mark.parametrize(
    "duplicated",
    ["X-Amz-Date", "Authorization", "X-Amz-Content-Sha256", "Content-Type", "X-Amz-Client-Token"],
)
def test_a_duplicated_header_is_refused(world: World, duplicated: str) -> None:
    body = b'{"studioName": "dup", "displayName": "dup", "adminRoleArn": "a", "userRoleArn": "u"}'
    headers = raw.signed(world.operator, "POST", STUDIOS, body)
    lines = [f"POST {STUDIOS} HTTP/1.1", f"Content-Length: {len(body)}"]
    lines += [f"{k}: {v}" for k, v in headers.items()]
    value = headers.get(duplicated, "a-second-value")
    lines.append(f"{duplicated}: {value if duplicated == 'Content-Type' else value + '0'}")
    answer = raw.exchange(world.server, "\r\n".join(lines).encode() + b"\r\n\r\n" + body)
    if duplicated == "Content-Type":  # the same value twice changes nothing signed
        assert answer.status in (200, 400, 403), answer
        return
    answer.assert_refused()


def test_two_content_lengths_are_refused(world: World) -> None:
    request = (
        b"POST /2020-08-01/studios HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n"
        b"Content-Length: 40\r\n\r\n{}"
    )
    raw.exchange(world.server, request).assert_refused(400)


@pytest.mark.parametrize(
    "header",
    [
        b"X-Amz-Client-Token: a\rX-Injected: yes",
        b"X-Amz-Client-Token: a\nX-Injected: yes",
        b"X-Amz-Client-Token: a\x00b",
        b"X Amz Client Token: a",
        b"X-Amz-Client-Token:\r\n\tfolded",
        b": no-name",
    ],
)
def test_header_injection_is_refused(world: World, header: bytes) -> None:
    request = (
        b"POST /2020-08-01/studios HTTP/1.1\r\nHost: x\r\n"
        + header
        + b"\r\nContent-Length: 2\r\n\r\n{}"
    )
    answer = raw.exchange(world.server, request)
    answer.assert_refused()
    assert "x-injected" not in answer.headers


def test_a_request_smuggled_after_a_chunked_body_is_not_run(world: World) -> None:
    request = (
        b"POST /2020-08-01/studios HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
        b"Content-Length: 4\r\n\r\n0\r\n\r\nGET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"
    )
    raw.exchange(world.server, request).assert_refused(400)


@pytest.mark.parametrize("token", ["tökén-é", "\x80", "令牌"])
def test_a_non_ascii_header_signed_by_botocore_is_verified(world: World, token: str) -> None:
    """botocore sends a header's UTF-8 bytes and signs its text: the server reads the bytes
    as UTF-8 to verify it (it read them as Latin-1, and refused the signature)."""
    client = world.operator.client(validate=False)
    with pytest.raises(botocore.exceptions.ClientError) as info:
        client.accept_eulas(studioId=world.studio.studio_id, clientToken=token, eulaIds=["no"])
    code = info.value.response["Error"]["Code"]
    assert code in ("ValidationException", "ResourceNotFoundException")
