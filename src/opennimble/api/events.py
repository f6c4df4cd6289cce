"""``GET /events``: the lifecycle events as server-sent events (docs/events.md).

SigV4-signed like any API call (an empty body); resumable with ``Last-Event-ID`` or
``?after=N``; each caller sees what :class:`opennimble.domain.event_feed.Audience` allows,
re-checked whenever access changes (a deleted or disabled user's stream ends, a lost
membership narrows it). A connection waits on the process's change hub
(:mod:`opennimble.store.changes`): while nothing changes it reads nothing.
"""

from __future__ import annotations

import asyncio
import time
import urllib.parse
from collections.abc import Awaitable, Callable, Collection, MutableMapping
from typing import Any

import orjson

from opennimble import errors
from opennimble.api import auth, dispatch, telemetry
from opennimble.domain import access, event_feed
from opennimble.domain.identity import Caller
from opennimble.protocol import serialize, sigv4, validate
from opennimble.store import changes as changes_hub
from opennimble.store import database
from opennimble.store import events as event_store

PATH = "/events"
OPERATION = "Events"  # in the request log and metrics
KEEPALIVE = 15.0  # seconds of silence before a comment line

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]


class EventStream:
    def __init__(
        self,
        db: database.Database,
        authenticator: auth.Authenticator,
        as_error: Callable[[Exception], errors.ServiceError],
        changes: changes_hub.Hub,
    ) -> None:
        self.db = db
        self.auth = authenticator
        self.as_error = as_error
        self.changes = changes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        started = time.perf_counter()
        request_id = telemetry.new_request_id()
        id_header = (telemetry.REQUEST_ID_HEADER, request_id.encode())
        try:
            caller, studio_id, after = self._admit(scope)
            after = await self.db.run(self._start, caller, studio_id, after)
        except Exception as exc:
            status, headers, body = serialize.error_response(self.as_error(exc))
            await _respond(send, status, [*headers, id_header], body)
            telemetry.finished(scope, request_id, OPERATION, status, started)
            return
        headers = [
            (b"content-type", b"text/event-stream; charset=utf-8"),
            (b"cache-control", b"no-store"),
            (b"x-accel-buffering", b"no"),
            id_header,
        ]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        telemetry.finished(scope, request_id, OPERATION, 200, started)
        # the stream ends when the client goes away, even while it waits for a change
        streaming = asyncio.create_task(self._stream(send, caller, studio_id, after))
        watcher = asyncio.create_task(_watch_disconnect(receive))
        try:
            await asyncio.wait((streaming, watcher), return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (streaming, watcher):
                task.cancel()
            await asyncio.gather(streaming, watcher, return_exceptions=True)
        if not streaming.cancelled():
            streaming.result()  # raises what ended it, if anything did
        await send({"type": "http.response.body", "body": b"", "more_body": False})

    def _admit(self, scope: Scope) -> tuple[Caller, str | None, int | None]:
        raw_path = (scope.get("raw_path") or scope["path"].encode()).decode("utf-8", "replace")
        query = scope.get("query_string", b"").decode("utf-8", "surrogateescape")
        headers = [(k.decode("latin-1"), v.decode("utf-8", "replace")) for k, v in scope["headers"]]
        if scope["method"] != "GET":
            raise errors.ValidationException(
                f"{scope['method']} is not allowed on {PATH}; allowed: GET"
            )
        caller = self.auth.authenticate(sigv4.SignedRequest("GET", raw_path, query, headers, b""))
        scope[telemetry.CALLER] = caller
        params = dict(urllib.parse.parse_qsl(query, keep_blank_values=True))
        unknown = sorted(set(params) - {"studioId", "after"})
        problems = [(name, f"'{name}' is not a parameter of {PATH}") for name in unknown]
        last_id = next((v for k, v in headers if k.lower() == "last-event-id"), None)
        after: int | None = None
        for name, value in (("Last-Event-ID", last_id), ("after", params.get("after"))):
            if value is None:
                continue
            if not value.strip().isdigit():
                problems.append((name, f"'{name}' must be an event id (a whole number >= 0)"))
            else:
                after = max(after or 0, int(value))
        studio_id = params.get("studioId") or None
        if problems:
            raise validate.exception(problems)
        return caller, studio_id, after

    def _start(self, caller: Caller, studio_id: str | None, after: int | None) -> int:
        """Whether the caller may follow (the studio's) events, and from which number."""
        with self.db.read() as conn:
            dispatch.still_a_user(conn, caller)
            if studio_id is not None:
                access.studio(conn, caller, studio_id)
            return event_feed.start(conn, after)

    async def _stream(self, send: Send, caller: Caller, studio_id: str | None, after: int) -> None:
        access = (changes_hub.ACCESS,)
        audience: event_feed.Audience | None = None
        checked = 0  # the hub's version when the audience was read
        topics: Collection[str] | None = None if studio_id is None else {studio_id, *access}
        quiet_since = time.monotonic()
        feed = event_feed.follow(
            self.db, self.changes, after, studio_id=studio_id, topics=lambda: topics
        )
        async for batch in feed:
            now = time.monotonic()
            if audience is None or self.changes.moved(checked, access):
                checked = self.changes.mark()
                audience = await self._audience(caller)
                if audience is None:
                    return  # no longer a user: the stream ends
                if studio_id is None:
                    topics = audience.topics
            chunks = [_message(e) for e in batch if audience.sees(e)]
            if not chunks and now - quiet_since >= KEEPALIVE:
                chunks = [b": keep-alive\n\n"]
            if chunks:
                quiet_since = now
                await send(
                    {"type": "http.response.body", "body": b"".join(chunks), "more_body": True}
                )

    async def _audience(self, caller: Caller) -> event_feed.Audience | None:
        def read() -> event_feed.Audience | None:
            with self.db.read() as conn:
                try:
                    dispatch.still_a_user(conn, caller)
                except errors.ServiceError:
                    return None
                return event_feed.audience(conn, caller)

        return await self.db.run(read)


def _message(event: dict[str, Any]) -> bytes:
    data = orjson.dumps(event_store.document(event))
    return b"id: %d\nevent: %s\ndata: %s\n\n" % (event["seq"], event["type"].encode(), data)


async def _watch_disconnect(receive: Receive) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass


async def _respond(send: Send, status: int, headers: serialize.Headers, body: bytes) -> None:
    all_headers = [*headers, (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": all_headers})
    await send({"type": "http.response.body", "body": body})
