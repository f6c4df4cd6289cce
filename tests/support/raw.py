"""Requests a well-behaved SDK would not send: signed by botocore's own signer, then sent over
http.client (which keeps the path as given) or written byte for byte to a socket."""

from __future__ import annotations

import dataclasses
import http.client
import socket
from typing import Any

import botocore.auth
import botocore.awsrequest
import botocore.credentials
import orjson

from opennimble import connections, errors
from tests.support.server import REGION, Server, User

# every error type the server may answer with: the model's shapes, the authentication errors
# every AWS endpoint answers, and the time-out of a slow request
KNOWN_ERRORS = frozenset(
    e.__name__ for e in (*errors.ALL, *errors.AUTHENTICATION, connections.RequestTimeoutException)
)


@dataclasses.dataclass
class Answer:
    status: int
    headers: dict[str, str]
    body: bytes

    @property
    def error_type(self) -> str | None:
        return self.headers.get("x-amzn-errortype")

    def json(self) -> Any:
        return orjson.loads(self.body)

    def assert_refused(self, *statuses: int) -> None:
        """A 4xx (one of ``statuses`` if given) that AWS SDKs parse: a known error type in
        x-amzn-ErrorType and a JSON body with a message."""
        assert 400 <= self.status < 500, self
        if statuses:
            assert self.status in statuses, self
        assert self.error_type in KNOWN_ERRORS, self
        assert self.headers.get("content-type", "").startswith("application/json"), self
        assert isinstance(self.json()["message"], str), self


def signed(
    user: User, method: str, target: str, body: bytes = b"", headers: dict[str, str] | None = None
) -> dict[str, str]:
    """The headers botocore's SigV4Auth puts on ``method target`` (path and query)."""
    request = botocore.awsrequest.AWSRequest(
        method=method,
        url=user.server.endpoint + target,
        data=body,
        headers={"Content-Type": "application/json", **(headers or {})},
    )
    credentials = botocore.credentials.Credentials(user.access_key_id, user.secret_access_key)
    botocore.auth.SigV4Auth(credentials, "nimble", REGION).add_auth(request)
    return dict(request.headers.items())


def call(
    user: User,
    method: str,
    target: str,
    body: bytes = b"",
    headers: dict[str, str] | None = None,
    *,
    sign: bool = True,
) -> Answer:
    """Send a request (signed by ``user`` unless told not to) with the path as given."""
    sent = signed(user, method, target, body, headers) if sign else dict(headers or {})
    connection = http.client.HTTPConnection("127.0.0.1", user.server.port, timeout=30)
    try:
        connection.putrequest(method, target, skip_host=True, skip_accept_encoding=True)
        connection.putheader("Host", f"127.0.0.1:{user.server.port}")
        for name, value in sent.items():
            if name.lower() != "host":  # sent as botocore signs it: its UTF-8 bytes
                connection.putheader(name, value.encode("utf-8", "surrogatepass"))
        connection.putheader("Content-Length", str(len(body)))
        connection.endheaders(body)
        response = connection.getresponse()
        return Answer(
            response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()
        )
    finally:
        connection.close()


def exchange(server: Server, request: bytes, timeout: float = 30) -> Answer:
    """Write ``request`` to a new connection and read the answer until the server closes it
    (or, with keep-alive, until the body of its Content-Length arrived)."""
    with socket.create_connection(("127.0.0.1", server.port), timeout=timeout) as sock:
        sock.sendall(request)
        received = b""
        while b"\r\n\r\n" not in received or not _whole(received):
            chunk = sock.recv(65536)
            if not chunk:
                break
            received += chunk
    return parse(received)


def _whole(received: bytes) -> bool:
    head, _, body = received.partition(b"\r\n\r\n")
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            return len(body) >= int(value)
    return False


def parse(response: bytes) -> Answer:
    head, _, body = response.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return Answer(int(lines[0].split()[1]), headers, body)
