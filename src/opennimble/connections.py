"""HTTP connections bounded against slow and idle clients.

uvicorn's HTTP protocol closes a keep-alive connection that stays idle after a response, and
its ``limit_concurrency`` answers 503 to every request once too many connections are open; it
has no deadline for a request's headers or body, and httptools has no limit on the size of
the headers. A client could so open connections and never finish a request, until the
process runs out of file descriptors and a legitimate client is refused.

:class:`BoundedProtocol` adds to uvicorn's httptools protocol:

- a deadline for a request's headers (from the connection's start or the request's first
  byte), and a limit on their size;
- a deadline for a request's body (from the end of its headers);
- a limit on open connections: a new connection over the limit closes the connection that has
  waited longest without finishing a request (the slowest client), not the newcomer, so that
  a flood of unfinished connections cannot keep legitimate clients out.

A request past a deadline is answered ``408 RequestTimeoutException`` (a code botocore retries
as transient) when no response has started, and its connection closed.
"""

from __future__ import annotations

import dataclasses
import logging
import resource
from asyncio import TimerHandle, Transport
from typing import Any, ClassVar

from uvicorn.protocols.http import httptools_impl

from opennimble import errors
from opennimble.protocol import serialize

log = logging.getLogger("opennimble.connections")
# file descriptors kept for everything but client connections (database, desktops, logs)
RESERVED_FDS = 256


@dataclasses.dataclass(frozen=True)
class Limits:
    header_timeout: float
    body_timeout: float
    max_connections: int
    max_header_bytes: int


class RequestTimeoutException(errors.ServiceError):
    """A request whose headers or body did not arrive in time. Not an error shape of the
    model: the code load balancers in front of AWS services answer, which SDKs retry."""

    status = 408


class BoundedProtocol(httptools_impl.HttpToolsProtocol):
    """uvicorn's httptools protocol with deadlines and a connection limit (see the module)."""

    limits: ClassVar[Limits]
    # connections that have not finished a request, oldest first (dicts keep insertion order)
    unfinished: ClassVar[dict[BoundedProtocol, None]]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._deadline: TimerHandle | None = None
        self._header_bytes = 0
        # "headers" (awaited), "body" (awaited) or "handled" (the request is whole)
        self._state = "handled"

    @classmethod
    def bounded(cls, limits: Limits) -> type[BoundedProtocol]:
        """The protocol class of one server, with its limits and its own connection book."""
        return type("BoundedProtocol", (cls,), {"limits": limits, "unfinished": {}})

    # connection life

    def connection_made(self, transport: Transport) -> None:  # type: ignore[override]
        if len(self.connections) >= self.limits.max_connections and not self._evict_slowest():
            log.warning("%d connections open: a new connection is refused", len(self.connections))
            transport.close()
            return
        super().connection_made(transport)
        self._wait_for_headers()

    def connection_lost(self, exc: Exception | None) -> None:
        self._stop_deadline()
        self.unfinished.pop(self, None)
        if self.transport is None:  # refused at connection_made
            return
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        awaiting_headers = self._state == "headers"
        super().data_received(data)
        if awaiting_headers and self._state == "headers" and not self.transport.is_closing():
            self._header_bytes += len(data)
            if self._header_bytes > self.limits.max_header_bytes:
                self._answer_and_close(
                    errors.ValidationException(
                        f"The request headers exceed {self.limits.max_header_bytes} bytes"
                    )
                )

    def send_400_response(self, msg: str) -> None:
        """A request HTTP cannot parse (uvicorn answers it in plain text): the model's
        ValidationException, so that SDKs read it like any other refusal."""
        self._answer_and_close(
            errors.ValidationException(f"{msg} (malformed request line, header or chunked body)")
        )

    # parser callbacks

    def on_message_begin(self) -> None:
        super().on_message_begin()
        if self._state != "headers":
            self._wait_for_headers()

    def on_headers_complete(self) -> None:
        super().on_headers_complete()
        if self.parser.should_upgrade() and self._should_upgrade():
            self._finished()
            return
        self._state = "body"
        self._arm(self.limits.body_timeout, "body")

    def on_message_complete(self) -> None:
        self._finished()
        super().on_message_complete()

    def on_response_complete(self) -> None:
        if self._state == "body":
            # answered before its body ended (e.g. a body over the limit): the rest of the
            # body is not read, the connection ends
            self._finished()
            self.transport.close()
            return
        super().on_response_complete()
        if not self.transport.is_closing() and self.cycle.response_complete:
            self._wait_for_headers()

    # deadlines

    def _wait_for_headers(self) -> None:
        self._state = "headers"
        self._header_bytes = 0
        self.unfinished.pop(self, None)
        self.unfinished[self] = None
        self._arm(self.limits.header_timeout, "headers")

    def _finished(self) -> None:
        self._state = "handled"
        self._stop_deadline()
        self.unfinished.pop(self, None)

    def _arm(self, seconds: float, part: str) -> None:
        self._stop_deadline()
        self._deadline = self.loop.call_later(seconds, self._expired, part, seconds)

    def _stop_deadline(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _expired(self, part: str, seconds: float) -> None:
        self._deadline = None
        if self._state == "headers" and self._header_bytes == 0:
            # an idle connection (new or kept alive): closed without a word, as HTTP servers do
            self.transport.close()
            return
        log.info("a request's %s did not arrive in %g s: its connection is closed", part, seconds)
        self._answer_and_close(
            RequestTimeoutException(f"The request's {part} did not arrive within {seconds:g} s")
        )

    def _answer_and_close(self, error: errors.ServiceError) -> None:
        """Answer ``error`` unless a response has started, and close the connection."""
        if not self.transport.is_closing() and (
            self.cycle is None or self.cycle.response_complete or not self.cycle.response_started
        ):
            status, headers, body = serialize.error_response(error)
            self.transport.write(_raw_response(status, headers, body))
        self.transport.close()
        self._finished()

    def _evict_slowest(self) -> bool:
        """Close the connection that has waited longest without finishing a request."""
        for connection in self.unfinished:
            self.unfinished.pop(connection)
            log.info("connection limit reached: the slowest unfinished connection is closed")
            connection._stop_deadline()
            connection.transport.close()
            return True
        return False


def _raw_response(status: int, headers: serialize.Headers, body: bytes) -> bytes:
    lines = [f"HTTP/1.1 {status} {_REASONS.get(status, 'Error')}".encode()]
    lines += [name + b": " + value for name, value in headers]
    lines += [b"content-length: " + str(len(body)).encode(), b"connection: close"]
    return b"\r\n".join(lines) + b"\r\n\r\n" + body


_REASONS = {400: "Bad Request", 408: "Request Timeout"}


def raise_file_limit(max_connections: int) -> int:
    """Raise this process's open-file limit toward what ``max_connections`` needs (within the
    hard limit); returns the connections the limit allows."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = max_connections + RESERVED_FDS
    if soft != resource.RLIM_INFINITY and soft < wanted:
        new = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
        resource.setrlimit(resource.RLIMIT_NOFILE, (new, hard))
        soft = new
    if soft == resource.RLIM_INFINITY or soft >= wanted:
        return max_connections
    allowed = max(1, soft - RESERVED_FDS)
    log.warning(
        "the open-file limit (%d) allows %d connections, not max_connections=%d",
        soft,
        allowed,
        max_connections,
    )
    return allowed
