"""The ASGI application of the Nimble API.

A request to the API goes: route (from the model) -> SigV4 -> parse (by member location) ->
validate -> handler in a transaction -> serialize (by the output shape). Once its body is read,
all of that runs in the store's threads (``Database.run``, one hop per request), so no database
call blocks the event loop; on SQLite, a write operation's transaction runs instead as a piece
of a commit shared with other requests' (store/group_commit.py), which the loop awaits.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

import sqlalchemy as sa

from opennimble import clock, config, errors
from opennimble.api import auth, dispatch, events, telemetry, throttle
from opennimble.api.context import Installation, Wake
from opennimble.domain import audit, eulas, paging, quotas, stream_tokens
from opennimble.domain.identity import Caller
from opennimble.protocol import model, parse, routing, serialize, sigv4
from opennimble.store import changes as changes_hub
from opennimble.store import crypto, database, group_commit

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

log = logging.getLogger("opennimble.access")
MAX_BODY = 1024 * 1024


class BodyTooLarge(Exception):
    pass


class ClientGone(Exception):
    """The client closed the connection (or it was closed for being slow) before the body
    ended: a partial body is never handled as a request."""


class App:
    def __init__(
        self,
        *,
        db: database.Database,
        cipher: crypto.Cipher,
        region: str,
        account_id: str,
        public_url: str,
        wake_reconciler: Wake,
        now: clock.Now = clock.system_now,
        page_size: int = 100,
        settings: config.Settings | None = None,
        trail: audit.Trail | None = None,
        group: group_commit.GroupCommit | None = None,
        changes: changes_hub.Hub,
    ) -> None:
        """``settings``, when given, bring the quotas, the request rate and the EULA catalogue
        (which is mirrored into the database here, at start); ``trail`` records the
        state-changing requests (the audit trail). ``group``: the process's group commit
        (SQLite), shared with the reconciler; by default the API makes its own. ``changes``:
        the process's change hub (run by the server), which ``GET /events`` waits on."""
        self.db = db
        self.trail = trail
        settings = settings or config.Settings.model_construct()
        self.router = routing.Router(model.operations())
        tokens = stream_tokens.StreamTokens(cipher.key)
        install = Installation(
            region=region,
            account_id=account_id,
            public_url=public_url,
            page_size=page_size,
            codec=paging.TokenCodec(cipher.key),
            stream_tokens=tokens,
            wake_reconciler=wake_reconciler,
            quotas=quotas.Quotas.from_settings(settings),
        )
        self.count = settings.metrics  # whether requests are counted in the metrics
        limiter = throttle.Throttle(settings.throttle_rate, settings.throttle_burst)
        # SQLite: one fsync per commit caps writes at the disk's fsync rate, so concurrent
        # requests' writes share commits (store/group_commit.py); the loop awaits each (no
        # thread waits for a commit: see _handle_on_loop).
        self.group = group or (group_commit.GroupCommit(db) if db.is_sqlite else None)
        self.dispatcher = dispatch.Dispatcher(db, install, now, limiter, trail, self.group)
        _sync_eulas(db, settings, now())
        self.auth = auth.Authenticator(db, cipher, region, now)
        self.events = events.EventStream(
            db,
            self.auth,
            lambda exc: _as_service_error(exc, "GET", events.PATH, events.OPERATION),
            changes,
        )

    def close(self) -> None:
        """Finish the writes in progress (at shutdown)."""
        if self.group is not None:
            self.group.close()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["path"] == events.PATH:  # server-sent events, not an operation of the model
            await self.events(scope, receive, send)
            return
        started = time.perf_counter()
        path = scope.get("raw_path") or scope["path"].encode()
        raw_path = path.decode("utf-8", "surrogateescape")
        query = scope.get("query_string", b"").decode("utf-8", "surrogateescape")
        request_id = telemetry.new_request_id()
        status, headers, body, name, _ = await self._api(scope, receive, raw_path, query)
        headers = [*headers, (telemetry.REQUEST_ID_HEADER, request_id.encode())]
        await respond(send, status, headers, body)
        telemetry.finished(scope, request_id, name, status, started, count=self.count)

    async def _api(
        self, scope: Scope, receive: Receive, raw_path: str, query: str
    ) -> tuple[int, serialize.Headers, bytes, str, str]:
        name = "-"
        op: model.Operation | None = None
        path_params: dict[str, Any] = {}
        try:
            match = self.router.match(scope["method"], raw_path)
            name, op, path_params = match.operation.name, match.operation, match.path_params
            body = await _read_body(receive)
        except Exception as exc:  # every failure becomes a modelled error
            error = _as_service_error(exc, scope["method"], raw_path, name)
            if op is not None and op.method != "GET" and self.trail is not None:
                self._refused(scope, op, path_params, error)
            return (*serialize.error_response(error), name, "-")
        if self._on_loop(op):
            return await self._handle_on_loop(scope, match, raw_path, query, body)
        return await self.db.run(self._handle, scope, match, raw_path, query, body)

    def _on_loop(self, op: model.Operation) -> bool:
        """Whether ``op`` is answered on the loop: SQLite's writes (their group commit) and
        PostgreSQL's reads (see :meth:`_handle_on_loop`)."""
        if op.method == "GET":
            return not self.db.is_sqlite
        return self.group is not None

    async def _handle_on_loop(
        self, scope: Scope, match: routing.Match, raw_path: str, query: str, body: bytes
    ) -> tuple[int, serialize.Headers, bytes, str, str]:
        """A request authenticated, parsed and answered on the event loop (in a store thread
        if its access key must be read), only its transaction's work awaited elsewhere.

        A write with a group commit (SQLite): its work awaited from the group commit. Writes
        used to wait for their commit in threads of their own, 16 of them taking the GIL from
        the group commit's thread at each of its calls into SQLite (~11 context switches per
        create) and bounding a commit's batch to 16; and the hop to the store's thread to
        authenticate, whose answers wait for the others it batches, held creates back ~20%.

        A read on PostgreSQL: its work in a store thread as brief work (Database.run_read).
        With the whole request in the store threads, four threads ran Python and took the GIL
        from each other and from the loop at every call into libpq: a third of the process's
        CPU went to the kernel's task switches (on SQLite one thread does all the work: the
        whole request stays there, 20% cheaper than split)."""
        prepared = self._prepared(scope, match, raw_path, query, body, remembered_only=True)
        if prepared is None:
            prepared = await self.db.run(self._prepare, scope, match, raw_path, query, body)
        if not isinstance(prepared, _Prepared):
            return prepared
        op, caller, params = match.operation, prepared.caller, prepared.params
        try:
            if op.method == "GET":
                result = await self.db.run_read(self.dispatcher.invoke, op, caller, params)
            else:
                result = await self.dispatcher.invoke_grouped(op, caller, params)
        except Exception as exc:
            return _answer(scope, op, raw_path, caller, exc)
        return _answer(scope, op, raw_path, caller, result)

    def _handle(
        self, scope: Scope, match: routing.Match, raw_path: str, query: str, body: bytes
    ) -> tuple[int, serialize.Headers, bytes, str, str]:
        """Authenticate, parse, run and serialize a request (in a store thread)."""
        prepared = self._prepare(scope, match, raw_path, query, body)
        if not isinstance(prepared, _Prepared):
            return prepared
        op = match.operation
        try:  # the dispatcher records what it accepts and refuses
            result = self.dispatcher.invoke(op, prepared.caller, prepared.params)
        except Exception as exc:
            return _answer(scope, op, raw_path, prepared.caller, exc)
        return _answer(scope, op, raw_path, prepared.caller, result)

    def _prepare(
        self, scope: Scope, match: routing.Match, raw_path: str, query: str, body: bytes
    ) -> _Prepared | tuple[int, serialize.Headers, bytes, str, str]:
        """:meth:`_prepared`, reading an access key not seen yet (in a store thread)."""
        prepared = self._prepared(scope, match, raw_path, query, body)
        assert prepared is not None
        return prepared

    def _prepared(
        self,
        scope: Scope,
        match: routing.Match,
        raw_path: str,
        query: str,
        body: bytes,
        remembered_only: bool = False,
    ) -> _Prepared | tuple[int, serialize.Headers, bytes, str, str] | None:
        """The request's caller (its signature checked) and parameters, or the error response.
        An access key not seen yet is read from the database (in a store thread), unless
        ``remembered_only`` (on the event loop): then None."""
        op, name, who = match.operation, match.operation.name, "-"
        try:
            # as the client signed them: its UTF-8 bytes (others kept as surrogates, refused
            # where a value is read)
            headers = [(k.decode("latin-1"), _text(v)) for k, v in scope["headers"]]
            client = scope.get("client")
            caller = self.auth.authenticate(
                sigv4.SignedRequest(scope["method"], raw_path, query, headers, body),
                client[0] if client else None,
                remembered_only=remembered_only,
            )
            who = caller.name
            scope[telemetry.CALLER] = caller  # for the request's log event and metrics
            params = parse.parse_input(
                op, match.path_params, query, {k.lower(): v for k, v in headers}, body
            )
        except auth.NotRemembered:
            return None
        except Exception as exc:  # every failure becomes a modelled error
            error = _as_service_error(exc, scope["method"], raw_path, name)
            if op.method != "GET" and self.trail is not None:
                self._refused(scope, op, match.path_params, error)
            return (*serialize.error_response(error), name, who)
        return _Prepared(caller, params)

    def _refused(
        self, scope: Scope, op: model.Operation, params: dict[str, Any], error: errors.ServiceError
    ) -> None:
        """Record a request refused before it reached the dispatcher (its signature, its
        input): by the caller if known, else by the access key it named."""
        assert self.trail is not None
        caller = scope.get(telemetry.CALLER)
        client = scope.get("client")
        who = (
            audit.Who.of(caller)
            if caller is not None
            else audit.Who(
                access_key_id=telemetry.access_key_id(scope),
                client=client[0] if client else None,
            )
        )
        self.trail.refused_request(
            op.name, who, params, error.status, error.error_type, error.message
        )


@dataclasses.dataclass(frozen=True, slots=True)
class _Prepared:
    """A request's authenticated caller and its parsed parameters."""

    caller: Caller
    params: dict[str, Any]


def _answer(
    scope: Scope,
    op: model.Operation,
    raw_path: str,
    caller: Caller,
    outcome: dict[str, Any] | Exception,
) -> tuple[int, serialize.Headers, bytes, str, str]:
    """The response to an operation the dispatcher ran: its result, or its error."""
    if isinstance(outcome, Exception):
        error = _as_service_error(outcome, scope["method"], raw_path, op.name)
        return (*serialize.error_response(error), op.name, caller.name)
    return (*serialize.response(op, outcome), op.name, caller.name)


def _sync_eulas(db: database.Database, settings: config.Settings, now: int) -> None:
    """Mirror the configured EULA catalogue; servers starting together may race on a new EULA:
    the loser reads the winner's rows and tries once more."""
    for attempt in range(2):
        try:
            with db.write() as conn:
                eulas.sync_catalogue(conn, settings.eulas, now)
            return
        except sa.exc.IntegrityError:
            if attempt:
                raise


def _as_service_error(exc: Exception, method: str, path: str, name: str) -> errors.ServiceError:
    if isinstance(exc, errors.ServiceError):
        if exc.detail:
            log.info("%s refused: %s", name, exc.detail)
        return exc
    if isinstance(exc, routing.NoRoute):
        return _no_route(method, path, exc)
    if isinstance(exc, ClientGone):  # nobody reads the answer; the log says what happened
        return errors.ValidationException("The connection closed before the request body ended")
    if isinstance(exc, BodyTooLarge):
        return errors.ValidationException(f"The request body exceeds {MAX_BODY} bytes")
    log.exception("%s failed", name, exc_info=exc)
    return errors.InternalServerErrorException(
        "The server failed to handle the request; the error is logged"
    )


def _no_route(method: str, path: str, exc: routing.NoRoute) -> errors.ServiceError:
    if exc.allowed:
        return errors.ValidationException(
            f"{method} is not allowed on {path}; allowed: {', '.join(exc.allowed)}"
        )
    return errors.ResourceNotFoundException(
        f"No operation of the nimble API matches {method} {path}"
    )


async def _read_body(receive: Receive) -> bytes:
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientGone
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > MAX_BODY:
            raise BodyTooLarge
        chunks.append(chunk)
        if not message.get("more_body"):
            return b"".join(chunks)


def _text(value: bytes) -> str:
    return value.decode("utf-8", "surrogateescape")


async def respond(send: Send, status: int, headers: serialize.Headers, body: bytes) -> None:
    all_headers = [*headers, (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": all_headers})
    await send({"type": "http.response.body", "body": body})
