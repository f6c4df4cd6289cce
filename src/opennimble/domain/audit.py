"""The audit trail: who (user, persona, access key) did what (operation) to which resource
(studio, resource id), when, from where (client address), with what outcome (status, error).

Every state-changing operation of the API is recorded, refused ones included, and every stream
opened through the gateway. An accepted change is recorded in the transaction of the change
(:func:`accepted`): both are kept or neither. A refusal changes nothing, so it is recorded on
its own, in batches written by a thread of the :class:`Trail` (:meth:`Trail.refused`): a flood
of refused requests (unsigned ones cost their sender nothing) costs one write per batch, not
one per request, and the memory it may take is bounded (beyond, refusals are counted and the
count logged, not kept).
"""

from __future__ import annotations

import dataclasses
import logging
import threading
from collections.abc import Mapping
from typing import Any

import sqlalchemy as sa

from opennimble import clock
from opennimble.domain import access
from opennimble.domain.identity import Caller
from opennimble.store import audit as store
from opennimble.store import database

log = logging.getLogger("opennimble.audit")

ACCEPTED, REFUSED = "accepted", "refused"
OUTCOMES = (ACCEPTED, REFUSED)
# the gateway's entry when a stream URL is opened (not an operation of the model)
OPEN_STREAM = "OpenStreamingSessionStream"
# the ids an operation's input names, most specific first: the first one present is the
# resource acted on (a member's principal id is added to it)
RESOURCE_MEMBERS = (
    "streamId",
    "backupId",
    "sessionId",
    "studioComponentId",
    "streamingImageId",
    "launchProfileId",
    "resourceArn",
)
BATCH_DELAY = 0.2  # seconds a refusal may wait to be written with others
MAX_PENDING = 10_000  # refusals kept in memory at most while they wait


@dataclasses.dataclass(frozen=True)
class Who:
    """The caller of a request, as far as it is known (a refused signature: only the key)."""

    user_id: str | None = None
    name: str | None = None
    operator: bool = False
    access_key_id: str | None = None
    client: str | None = None

    @classmethod
    def of(cls, caller: Caller) -> Who:
        return cls(
            caller.user_id,
            caller.name,
            caller.operator,
            caller.access_key_id or None,
            caller.client,
        )


def persona(conn: sa.Connection, who: Who, studio_id: str | None) -> str:
    """``operator``, the caller's persona in the studio (``ADMINISTRATOR``, ``USER`` for a
    member of one of its launch profiles, ``none``), ``user`` (no studio concerned) or
    ``anonymous`` (refused before the caller was known)."""
    if who.user_id is None:
        return "anonymous"
    if who.operator:
        return "operator"
    if not studio_id:
        return "user"
    found = "none"
    for member in access.memberships(conn, who.user_id):  # remembered, as access reads them
        if member["scope_id"] == studio_id and member["persona"] == "ADMINISTRATOR":
            return "ADMINISTRATOR"
        if member["studio_id"] == studio_id:
            found = "USER"
    return found


def resource_of(operation: str, params: Mapping[str, Any], result: Mapping[str, Any]) -> str | None:
    """The resource an operation acted on: a created one's new id, else the most specific id
    of its input (with the member's principal id for membership operations)."""
    if operation.startswith("Create"):
        for name, value in result.items():
            if isinstance(value, dict) and isinstance(value.get(f"{name}Id"), str):
                return str(value[f"{name}Id"])
    resource = next((str(params[m]) for m in RESOURCE_MEMBERS if m in params), None)
    principal = params.get("principalId")
    if principal is not None:
        return f"{resource or params.get('studioId', '')}/{principal}"
    return resource


def studio_of(params: Mapping[str, Any], result: Mapping[str, Any]) -> str | None:
    studio = params.get("studioId")
    if studio is None and isinstance(result.get("studio"), dict):
        studio = result["studio"].get("studioId")
    return None if studio is None else str(studio)


@dataclasses.dataclass(frozen=True)
class Event:
    """Something to record: an operation (accepted or refused) or a stream opened."""

    at: int
    operation: str
    who: Who
    studio_id: str | None
    resource_id: str | None
    status: int
    error_code: str | None = None
    message: str | None = None


def entry(conn: sa.Connection, event: Event, role: str | None = None) -> dict[str, Any]:
    """The trail's row of ``event`` (``role``: the caller's persona, if found already)."""
    who = event.who
    return {
        "at": event.at,
        "operation": event.operation,
        "outcome": ACCEPTED if event.status < 400 else REFUSED,
        "status": event.status,
        "error_code": event.error_code,
        "user_id": who.user_id,
        "user_name": who.name,
        "persona": role or persona(conn, who, event.studio_id),
        "access_key_id": who.access_key_id,
        "client": who.client,
        "studio_id": event.studio_id,
        "resource_id": event.resource_id,
        "message": None if event.message is None else event.message[:2000],
    }


def record(conn: sa.Connection, event: Event, role: str | None = None) -> None:
    """Record ``event`` in the transaction of ``conn`` (its change's)."""
    store.insert(conn, [entry(conn, event, role)])


def accepted(
    conn: sa.Connection,
    at: int,
    operation: str,
    who: Who,
    role: str,
    params: Mapping[str, Any],
    result: Mapping[str, Any],
) -> None:
    """Record an accepted operation, in the transaction of ``conn`` (its change's)."""
    studio, resource = studio_of(params, result), resource_of(operation, params, result)
    record(conn, Event(at, operation, who, studio, resource, 200), role)


class Trail:
    """An installation's audit trail as one process writes it (see the module's doc)."""

    def __init__(
        self, db: database.Database, now: clock.Now = clock.system_now, delay: float = BATCH_DELAY
    ) -> None:
        self.db = db
        self.now = now
        self.delay = delay
        self._pending: list[Event] = []
        self._dropped = 0
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._closed = False
        self._thread: threading.Thread | None = None

    def refused(self, refusal: Event) -> None:
        """Record a refusal (written within ``delay``, with others)."""
        with self._lock:
            if len(self._pending) >= MAX_PENDING:
                self._dropped += 1
                return
            self._pending.append(refusal)
            if self._thread is None and not self._closed:
                self._thread = threading.Thread(
                    target=self._run, name="opennimble-audit", daemon=True
                )
                self._thread.start()
        self._wake.set()

    def refused_request(
        self,
        operation: str,
        who: Who,
        params: Mapping[str, Any],
        status: int,
        error_code: str,
        message: str,
    ) -> None:
        self.refused(
            Event(
                self.now(),
                operation,
                who,
                studio_of(params, {}),
                resource_of(operation, params, {}),
                status,
                error_code,
                message,
            )
        )

    def _run(self) -> None:
        while not self._closed:
            self._wake.wait()
            self._wake.clear()
            if not self._closed:
                threading.Event().wait(self.delay)  # gather the refusals of a flood
            self.flush()

    def flush(self) -> None:
        """Write the refusals waiting now."""
        with self._lock:
            pending, self._pending = self._pending, []
            dropped, self._dropped = self._dropped, 0
        if dropped:
            log.warning("the audit trail dropped %d refusals: too many at once", dropped)
        if not pending:
            return
        try:
            with self.db.write() as conn:
                store.insert(conn, [entry(conn, event) for event in pending])
            return
        except Exception:  # the trail must not take the server down; the log says why
            if len(pending) == 1:
                log.exception("could not write a refusal to the audit trail")
                return
        # one entry the database refuses must not lose the others: each on its own
        log.warning("a batch of %d refusals failed to be written: writing each", len(pending))
        for event in pending:
            try:
                with self.db.write() as conn:
                    store.insert(conn, [entry(conn, event)])
            except Exception:
                log.exception("could not write a refusal to the audit trail")

    def close(self) -> None:
        """Write what waits and stop the writer (at shutdown)."""
        with self._lock:
            self._closed = True
            thread = self._thread
        self._wake.set()
        if thread is not None:
            thread.join(timeout=10)
        self.flush()


def prune(conn: sa.Connection, now: int, retention_days: float) -> int:
    """Forget the entries older than the retention."""
    return store.prune(conn, now - int(retention_days * 86400 * clock.SECOND))
