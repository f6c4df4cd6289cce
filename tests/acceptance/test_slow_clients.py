"""Slow and unfinished clients over real sockets: they are closed in time, and a flood of them
does not keep a legitimate boto3 client out.

The server runs with short deadlines (2 s for headers, 2 s for a body) and the default
connection limit (1,024): 1,100 unfinished connections, more than the limit, are the flood that
once made the server refuse everyone.

Every test runs on both HTTP servers (``http_server``): uvicorn, and granian, which closes on a
header deadline without an answer, answers oversized headers with an empty 431, and has no
connection limit (ARCHITECTURE.md, "HTTP servers").
"""

from __future__ import annotations

import contextlib
import pathlib
import socket
import time
from collections.abc import Iterator

import orjson
import pytest

from tests.support import server as support

HEADER_TIMEOUT = 2.0
BODY_TIMEOUT = 2.0
FLOOD = 1100
PATH = "/2020-08-01/studios"


@pytest.fixture(scope="module", params=["uvicorn", "granian"])
def srv(
    tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest
) -> Iterator[support.Server]:
    data_dir: pathlib.Path = tmp_path_factory.mktemp("slow") / "data"
    server = support.Server(
        data_dir,
        env={
            "OPENNIMBLE_HTTP_SERVER": request.param,
            "OPENNIMBLE_HEADER_TIMEOUT": str(HEADER_TIMEOUT),
            "OPENNIMBLE_BODY_TIMEOUT": str(BODY_TIMEOUT),
            "OPENNIMBLE_MAX_HEADER_BYTES": "8192",
        },
    )
    with support.running(server):
        yield server


@pytest.fixture(scope="module")
def operator(srv: support.Server) -> support.User:
    return srv.user("slow-admin", operator=True)


def on_granian(srv: support.Server) -> bool:
    return srv.env["OPENNIMBLE_HTTP_SERVER"] == "granian"


def connect(srv: support.Server) -> socket.socket:
    return socket.create_connection(("127.0.0.1", srv.port), timeout=10)


def read_until_closed(sock: socket.socket, limit: float) -> tuple[bytes, float]:
    """What the server sends until it closes the connection, and how long that took."""
    started = time.monotonic()
    sock.settimeout(limit)
    received = b""
    while True:
        chunk = sock.recv(65536)
        if not chunk:
            return received, time.monotonic() - started
        received += chunk


def read_response(sock: socket.socket) -> bytes:
    """One whole response (its head, then its body of Content-Length bytes): the two may
    come in separate segments."""
    received = b""
    while b"\r\n\r\n" not in received:
        chunk = sock.recv(65536)
        assert chunk, f"the connection closed after {received!r}"
        received += chunk
    head, _, body = received.partition(b"\r\n\r\n")
    length = next(
        int(line.split(b":", 1)[1])
        for line in head.split(b"\r\n")[1:]
        if line.lower().startswith(b"content-length:")
    )
    while len(body) < length:
        chunk = sock.recv(65536)
        assert chunk, f"the connection closed after {received!r}"
        body += chunk
    return head + b"\r\n\r\n" + body


def error_of(response: bytes) -> tuple[int, str, dict[str, object]]:
    head, _, body = response.partition(b"\r\n\r\n")
    lines = head.decode().split("\r\n")
    headers = {name.lower(): value for name, value in (line.split(": ", 1) for line in lines[1:])}
    return int(lines[0].split()[1]), headers["x-amzn-errortype"], orjson.loads(body)


def test_a_stalled_body_is_answered_408_and_closed_within_the_body_timeout(
    srv: support.Server,
) -> None:
    with connect(srv) as sock:
        sock.sendall(
            f"POST {PATH} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            'Content-Length: 100\r\n\r\n{"displayName":'.encode()
        )
        response, waited = read_until_closed(sock, BODY_TIMEOUT + 5)
    status, code, body = error_of(response)
    assert (status, code) == (408, "RequestTimeoutException")
    assert "body" in str(body["message"])
    assert BODY_TIMEOUT - 0.5 <= waited <= BODY_TIMEOUT + 2


def test_stalled_headers_are_answered_408_and_closed_within_the_header_timeout(
    srv: support.Server,
) -> None:
    with connect(srv) as sock:
        sock.sendall(f"GET {PATH} HTTP/1.1\r\nHost: x\r\nX-Slow: ".encode())
        response, waited = read_until_closed(sock, HEADER_TIMEOUT + 5)
    assert waited <= HEADER_TIMEOUT + 2
    if on_granian(srv):
        assert response == b""  # hyper closes without an answer
        return
    status, code, _ = error_of(response)
    assert (status, code) == (408, "RequestTimeoutException")


def test_headers_dripped_a_byte_at_a_time_do_not_extend_the_deadline(srv: support.Server) -> None:
    started = time.monotonic()
    with connect(srv) as sock:
        sock.sendall(f"GET {PATH} HTTP/1.1\r\n".encode())
        with contextlib.suppress(OSError):
            for _ in range(int(HEADER_TIMEOUT * 10) + 30):
                sock.sendall(b"x")
                time.sleep(0.1)
        response, _ = read_until_closed(sock, 5)
    assert time.monotonic() - started <= HEADER_TIMEOUT + 3
    if on_granian(srv):
        assert response == b""
        return
    assert error_of(response)[:2] == (408, "RequestTimeoutException")


def test_an_idle_connection_is_closed_silently(srv: support.Server) -> None:
    with connect(srv) as sock:
        response, waited = read_until_closed(sock, HEADER_TIMEOUT + 5)
    assert response == b""
    assert waited <= HEADER_TIMEOUT + 2


def test_headers_over_the_limit_are_refused_with_a_validation_error(srv: support.Server) -> None:
    with connect(srv) as sock:
        sock.sendall(f"GET {PATH} HTTP/1.1\r\nHost: x\r\nX-Big: {'a' * 20000}".encode())
        response, _ = read_until_closed(sock, 5)
    if on_granian(srv):
        assert response.startswith(b"HTTP/1.1 431 ")
        return
    status, code, body = error_of(response)
    assert (status, code) == (400, "ValidationException")
    assert "8192 bytes" in str(body["message"])


def test_a_body_over_the_limit_is_refused_and_the_rest_not_read(
    srv: support.Server, operator: support.User
) -> None:
    size = 8 * 1024 * 1024
    with connect(srv) as sock:
        sock.sendall(f"POST {PATH} HTTP/1.1\r\nHost: x\r\nContent-Length: {size}\r\n\r\n".encode())
        with contextlib.suppress(OSError):  # the server closes while we still send
            for _ in range(size // 65536):
                sock.sendall(b"a" * 65536)
        response, _ = read_until_closed(sock, 10)
    status, code, body = error_of(response)
    assert (status, code) == (400, "ValidationException")
    assert "exceeds" in str(body["message"])


def test_a_flood_of_unfinished_connections_does_not_keep_a_legitimate_client_out(
    srv: support.Server, operator: support.User, request: pytest.FixtureRequest
) -> None:
    if on_granian(srv):
        # granian's backpressure holds a place per connection and nothing evicts the slowest:
        # a newcomer waits in the listen queue until the flood's deadlines end connections
        # (ARCHITECTURE.md, "HTTP servers"); strict, so that a granian that can is noticed
        request.applymarker(pytest.mark.xfail(strict=True, reason="granian has no eviction"))
    client = operator.client()
    flood: list[socket.socket] = []
    try:
        for n in range(FLOOD):
            sock = connect(srv)
            # half of them stall in their headers, half in their body
            if n % 2:
                sock.sendall(f"GET {PATH} HTTP/1.1\r\nHost: x\r\n".encode())
            else:
                sock.sendall(f"POST {PATH} HTTP/1.1\r\nContent-Length: 50\r\n\r\n{{".encode())
            flood.append(sock)
        started = time.monotonic()
        assert client.list_studios()["ResponseMetadata"]["HTTPStatusCode"] == 200
        took = time.monotonic() - started
    finally:
        for sock in flood:
            sock.close()
    assert took < 1.0, f"a legitimate call took {took:.2f} s during the flood"
    # more connections than the limit: the slowest were closed to make room
    assert "the slowest unfinished connection is closed" in srv.log()
    assert client.list_studios()["ResponseMetadata"]["HTTPStatusCode"] == 200


def test_keep_alive_requests_on_one_connection_still_work(
    srv: support.Server, operator: support.User
) -> None:
    client = operator.client()
    for _ in range(3):
        client.list_studios()
        time.sleep(HEADER_TIMEOUT / 3)
    assert client.list_studios()["ResponseMetadata"]["HTTPStatusCode"] == 200


def test_a_body_that_arrives_in_time_in_pieces_is_handled(srv: support.Server) -> None:
    body = b'{"displayName": "x", "studioName": "x"}'
    with connect(srv) as sock:
        sock.sendall(
            f"POST {PATH} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n\r\n".encode()
            + body[:10]
        )
        time.sleep(BODY_TIMEOUT / 2)
        sock.sendall(body[10:])
        sock.settimeout(10)
        response = read_response(sock)
    # handled: refused for want of a signature, not for time
    assert error_of(response)[:2] == (403, "MissingAuthenticationTokenException")
