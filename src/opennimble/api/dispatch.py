"""Running one operation: validation, idempotency, the handler, in one database transaction."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Callable
from typing import Any

import orjson
import sqlalchemy as sa

from opennimble import clock, errors
from opennimble.api import operations, registry, throttle
from opennimble.api.context import Context, Installation
from opennimble.domain import access, audit
from opennimble.domain.identity import Caller
from opennimble.protocol import model, validate
from opennimble.store import database, group_commit, idempotency, users

assert operations  # importing the package registers the handlers

PENDING = "pending"


class Dispatcher:
    def __init__(
        self,
        db: database.Database,
        install: Installation,
        now: clock.Now,
        limiter: throttle.Throttle | None = None,
        trail: audit.Trail | None = None,
        group: group_commit.GroupCommit | None = None,
    ) -> None:
        """``trail``: where state-changing operations are recorded (None: nowhere).
        ``group``: write operations share commits with other requests' (SQLite)."""
        self.db = db
        self.trail = trail
        self.group = group
        self.install = install
        self.now = now
        self.limiter = limiter or throttle.Throttle(rate=0, burst=1)
        self.remembered = access.Remembered()

    def invoke(self, op: model.Operation, caller: Caller, params: dict[str, Any]) -> dict[str, Any]:
        """Run ``op`` for ``caller``; return the handler's result or raise a ServiceError."""
        if self.trail is None or op.method == "GET":
            return self._invoke(op, caller, params)
        try:
            return self._invoke(op, caller, params)
        except errors.ServiceError as exc:
            self._refused(op, caller, params, exc)
            raise

    async def invoke_grouped(
        self, op: model.Operation, caller: Caller, params: dict[str, Any]
    ) -> dict[str, Any]:
        """:meth:`invoke` for a write operation with a group commit (SQLite), awaited on the
        event loop: the checks that need no database run here, the transaction's work in the
        group commit's thread, and no thread waits for the commit."""
        assert self.group is not None and op.method != "GET"
        try:
            handler, token = self._checked(op, caller, params)
            for attempt in range(3):
                work = self._work(op, handler, caller, params, token)
                try:
                    return await asyncio.wrap_future(self.group.submit(work))
                except sa.exc.IntegrityError:
                    if token is None or attempt == 2:  # see _invoke
                        raise
            raise AssertionError("unreachable")
        except errors.ServiceError as exc:
            self._refused(op, caller, params, exc)
            raise

    def _refused(
        self, op: model.Operation, caller: Caller, params: dict[str, Any], exc: errors.ServiceError
    ) -> None:
        """Record a refusal of the dispatcher in the audit trail, if there is one."""
        if self.trail is not None:
            who = audit.Who.of(caller)
            self.trail.refused_request(
                op.name, who, params, exc.status, exc.error_type, exc.message
            )

    def _invoke(
        self, op: model.Operation, caller: Caller, params: dict[str, Any]
    ) -> dict[str, Any]:
        handler, token = self._checked(op, caller, params)
        for attempt in range(3):
            try:
                return self._run(op, self._work(op, handler, caller, params, token))
            except sa.exc.IntegrityError:
                # another server committed the same idempotent request first: read its record
                if token is None or attempt == 2:
                    raise
        raise AssertionError("unreachable")

    def _checked(
        self, op: model.Operation, caller: Caller, params: dict[str, Any]
    ) -> tuple[registry.Handler, str | None]:
        """What needs no database: the caller's rate, the input, the handler; the request's
        idempotency token, if the operation has one."""
        self.limiter.admit(caller)
        validate.validate(op.input, params)
        handler = registry.HANDLERS.get(op.name)
        if handler is None:
            raise errors.ValidationException(
                f"The operation {op.name} is not supported yet by this opennimble server",
                code="OperationNotSupported",
                context={"operation": op.name},
            )
        token_member = op.idempotency_member
        token = params.get(token_member.name) if token_member else None
        return handler, token

    def _run(
        self, op: model.Operation, work: Callable[[sa.Connection], dict[str, Any]]
    ) -> dict[str, Any]:
        if op.method == "GET":  # each statement its own snapshot, on every database
            with self.db.read(snapshot=False) as conn:
                return work(conn)
        if self.group is not None:
            return self.group.run(work)
        with self.db.write() as conn:
            return work(conn)

    def _work(
        self,
        op: model.Operation,
        handler: registry.Handler,
        caller: Caller,
        params: dict[str, Any],
        token: str | None,
    ) -> Callable[[sa.Connection], dict[str, Any]]:
        """The operation's work in a transaction: the caller still a user, the handler, and
        for a change its audit entry."""
        now = self.now()

        def work(conn: sa.Connection) -> dict[str, Any]:
            if op.method == "GET":
                return read(conn)
            with self.remembered.using(conn):
                still_a_user(conn, caller)
                ctx = Context(conn, caller, now, self.install)
                if self.trail is None:
                    return _call(ctx, op, handler, params, token)
                who = audit.Who.of(caller)
                role = audit.persona(conn, who, params.get("studioId"))
                result = _call(ctx, op, handler, params, token)
                audit.accepted(conn, ctx.now, op.name, who, role, params, result)
                return result

        def read(conn: sa.Connection) -> dict[str, Any]:
            # the generation is read by the first statement that needs it, or with the row a
            # Get reads (one statement); the caller is checked after the handler, which
            # changes nothing, and that check's refusal comes before the handler's
            with self.remembered.using(conn, lazy=True):
                try:
                    result = _call(
                        Context(conn, caller, now, self.install), op, handler, params, token
                    )
                except errors.ServiceError:
                    still_a_user(conn, caller)
                    raise
                still_a_user(conn, caller)
                return result

        return work


def _call(
    ctx: Context,
    op: model.Operation,
    handler: registry.Handler,
    params: dict[str, Any],
    token: str | None,
) -> dict[str, Any]:
    if token is None:
        return handler(ctx, params)
    return _idempotent(ctx, op, handler, params, token)


def still_a_user(conn: sa.Connection, caller: Caller) -> None:
    """A user deleted from the identity store or disabled, or an access key deleted, loses
    access at once, on every server (whatever a server remembers of the key)."""
    if caller.access_key_id:
        key = caller.access_key_id
        valid = access.remembered(conn, ("key", key), lambda: _key_valid(conn, key))
    else:
        valid = access.remembered(conn, ("user", caller.user_id), lambda: _user_valid(conn, caller))
    if not valid:
        raise errors.UnrecognizedClientException(
            f"The security token included in the request is invalid: user {caller.name} "
            f"({caller.user_id}) or their access key is no longer in the identity store "
            "(deleted or disabled)",
            context={"principalId": caller.user_id},
        )


def _key_valid(conn: sa.Connection, access_key_id: str) -> bool | None:
    return users.get_key(conn, access_key_id) is not None or None  # None: not remembered


def _user_valid(conn: sa.Connection, caller: Caller) -> bool | None:
    user = users.get_user(conn, caller.user_id)
    return (user is not None and not user["disabled"]) or None


def _idempotent(
    ctx: Context, op: model.Operation, handler: registry.Handler, params: dict[str, Any], token: str
) -> dict[str, Any]:
    assert op.idempotency_member is not None
    scope = idempotency.scope_of(str(params.get("studioId", "")))
    key = (op.name, ctx.caller.user_id, scope, token)
    fingerprint = _fingerprint({k: v for k, v in params.items() if k != op.idempotency_member.name})
    pending = {
        "operation": key[0],
        "caller": key[1],
        "scope": key[2],
        "token": key[3],
        "fingerprint": fingerprint,
        "response": PENDING,
        "created_at": ctx.now,
    }
    for _ in range(2):
        if idempotency.claim(ctx.conn, pending):
            result = handler(ctx, params)
            idempotency.respond(ctx.conn, *key, result)
            return result
        record = idempotency.get(ctx.conn, *key)
        if record is not None:
            break
    else:  # the record was there, then gone (purged) twice in a row
        raise errors.ConflictException(
            f"The client token '{token}' is being used by another request at this moment; "
            "try again",
            context={"fields": "clientToken"},
        )
    if record["fingerprint"] != fingerprint:
        raise errors.ValidationException(
            f"The client token '{token}' was already used with different parameters for "
            f"{op.name}; use a new token for a different request",
            context={"fields": "clientToken"},
        )
    response: dict[str, Any] = record["response"]
    return response


def _fingerprint(params: dict[str, Any]) -> str:
    return hashlib.sha256(orjson.dumps(params, option=orjson.OPT_SORT_KEYS)).hexdigest()
