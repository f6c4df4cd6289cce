"""Lifecycle events: recorded in the transaction of the change they describe, numbered in
commit order, and queued for the studio's webhooks in the same transaction.

The schema of an event is documented in docs/events.md. Every state change of a session goes
through :func:`opennimble.store.sessions.insert` or :func:`~opennimble.store.sessions.transition`,
a stream's creation through :func:`opennimble.store.streams.insert`, and a backup's completion
through :func:`opennimble.store.backups.move`: those call :func:`record`, so no change goes
unrecorded and a rolled-back change records nothing.

Numbering: a reader that has seen event N must never later find an event below N. On SQLite
write transactions are serialized, so numbers come in commit order by themselves. On
PostgreSQL two transactions could take numbers 10 and 11 and commit as 11, 10; so a
transaction that records events takes a transaction-scoped advisory lock, which makes number
order commit order. In a transaction of ``Database.write`` its events are written at its end
(:func:`record`): the lock is the last one it takes, held for those inserts and the commit
only. Elsewhere :func:`serialize` takes it before the row a change locks, so that no lock
order is reversed.

At a transaction's end the first event is one statement (``_FIRST``): it takes the lock,
inserts the event and reads the studio's webhooks. ``seq`` is a sequence (``nextval``, the
column's default), evaluated for the row the INSERT gets from the lock's CTE, so only once the
lock is held: numbers still follow commit order, with one round trip instead of three. The
webhooks it reads are those committed when that statement began (one snapshot per statement):
a webhook gets the events recorded after it was added.

Benchmarks only: :func:`paused` runs changes without their events (see its doc).
"""

from __future__ import annotations

import contextlib
import fnmatch
from collections.abc import Iterator
from typing import Any

import orjson
import sqlalchemy as sa

from opennimble import clock
from opennimble.store import database, hot, schema

Row = dict[str, Any]
t = schema.events
hooks = schema.webhooks
deliveries = schema.webhook_deliveries

LOCK = "events"
# an event's statements, built and compiled once and run on the driver (store/hot.py): through
# SQLAlchemy's execution they cost more than half of a READY transition's own CPU
_INSERT = hot.Statement(
    t.insert()
    .values({c.name: sa.bindparam(c.name) for c in t.columns if c.name != "seq"})
    .returning(t.c.seq)
)
_HOOKS = hot.Statement(
    sa.select(hooks.c.webhook_id, hooks.c.event_types).where(
        hooks.c.studio_id == sa.bindparam("studio_id")
    )
)
_QUEUED = ("webhook_id", "seq", "session_id", "type", "body", "state", "attempts")
_QUEUE = hot.Statement(  # a delivery, queued for a webhook
    deliveries.insert().values(
        {c: sa.bindparam(c) for c in (*_QUEUED, "next_attempt_at", "created_at", "updated_at")}
    )
)
_LOCK = hot.Statement(sa.select(sa.func.pg_advisory_xact_lock(database.lock_key(LOCK))))


def _first() -> hot.Statement:
    """PostgreSQL: take the lock, insert an event, and read its studio's webhooks, in one
    statement. The INSERT's only row comes from the lock's CTE, so the row's ``seq`` (the
    sequence's ``nextval``, its default) is drawn after the lock was granted: as when the lock
    was a statement of its own, no transaction numbers an event before every earlier one
    committed. Its columns: ``seq``, and ``webhooks``: [[webhook_id, event_types], ...]."""
    locked = sa.select(sa.func.pg_advisory_xact_lock(database.lock_key(LOCK)).label("locked")).cte(
        "locked"
    )
    names = [c.name for c in t.columns if c.name != "seq"]
    inserted = (
        t.insert()
        .from_select(
            names,
            sa.select(*(sa.bindparam(n, type_=t.c[n].type) for n in names)).select_from(locked),
        )
        .returning(t.c.seq)
        .cte("inserted")
    )
    webhooks = (
        sa.select(
            sa.func.coalesce(
                sa.func.json_agg(sa.func.json_build_array(hooks.c.webhook_id, hooks.c.event_types)),
                sa.literal_column("'[]'::json"),
                type_=sa.JSON,
            )
        )
        .where(hooks.c.studio_id == sa.bindparam("studio_id"))
        .scalar_subquery()
    )
    return hot.Statement(sa.select(inserted.c.seq, webhooks.label("webhooks")))


_FIRST = _first()


_recording = True  # False only inside paused()


def recording() -> bool:
    """Whether changes record their events (always, but inside :func:`paused`)."""
    return _recording


@contextlib.contextmanager
def paused() -> Iterator[None]:
    """Record no event in this process while inside: the changes made meanwhile (by any
    thread) are neither numbered, nor fed to ``GET /events``, the webhooks or the live views.

    Not a feature: the seam that lets ``bench.events_inprocess`` measure what events cost a
    change, against the same change without them, in one process. Nothing else uses it."""
    global _recording
    _recording = False
    try:
        yield
    finally:
        _recording = True


def serialize(conn: sa.Connection) -> None:
    """Make this transaction's events numbered in commit order (see the module's doc). Once
    per transaction: a batch of changes takes the lock for all of them. Nothing to do in a
    transaction whose events are written at its end (:func:`record`): they take it then."""
    if (
        not _recording
        or conn.dialect.name != "postgresql"
        or database.before_commit(conn, PENDING, _write_deferred, LAST)
    ):
        return
    _lock(conn)


def _lock(conn: sa.Connection) -> None:
    if not _locked(conn):
        _LOCK.tuples(conn)
        _mark_locked(conn)


_LOCKED = "opennimble_events_locked"


def _locked(conn: sa.Connection) -> bool:
    """Whether this transaction holds the events' lock."""
    transaction = conn.get_transaction()
    return transaction is not None and conn.info.get(_LOCKED) is transaction


def _mark_locked(conn: sa.Connection) -> None:
    conn.info[_LOCKED] = conn.get_transaction()


def webhooks_changed(conn: sa.Connection) -> None:
    """Forget the webhooks read in this transaction (one was made or removed)."""
    conn.info.pop("opennimble_webhooks", None)


Webhooks = list[tuple[str, list[str]]]  # a studio's: (id, event types)


def _known_webhooks(conn: sa.Connection) -> dict[str, Webhooks]:
    """The webhooks read in this transaction, by studio."""
    transaction = conn.get_transaction()
    cached = conn.info.get("opennimble_webhooks")
    if cached is None or cached[0] is not transaction:
        cached = conn.info["opennimble_webhooks"] = (transaction, {})
    by_studio: dict[str, Webhooks] = cached[1]
    return by_studio


def _webhooks(conn: sa.Connection, studio_id: str) -> Webhooks:
    """The studio's webhooks, read once per transaction (a batch of changes of one studio
    reads them once)."""
    by_studio = _known_webhooks(conn)
    found = by_studio.get(studio_id)
    if found is None:
        found = [
            (r["webhook_id"], r["event_types"]) for r in _HOOKS.rows(conn, studio_id=studio_id)
        ]
        by_studio[studio_id] = found
    return found


def record(
    conn: sa.Connection,
    type_: str,
    *,
    time: int,
    studio_id: str,
    session_id: str,
    owned_by: str,
    detail: dict[str, Any],
) -> None:
    """Record an event (the caller called :func:`serialize` first) and queue it for every
    webhook of the studio that wants its type.

    On PostgreSQL the events of a transaction are written at its end, just before its commit
    (``database.before_commit``), in the order they were recorded: the lock that numbers them
    in commit order is then held for those inserts and the commit only, not for the rest of
    the transaction (the other statements of a CreateStreamingSession, say), and it is always
    the last lock a transaction takes (no lock order to reverse)."""
    if not _recording:
        return
    values = {
        "type": type_,
        "time": time,
        "studio_id": studio_id,
        "session_id": session_id,
        "owned_by": owned_by,
        "detail": detail,
    }
    if conn.dialect.name == "postgresql":
        pending = _deferred(conn)
        if pending is None and database.before_commit(conn, PENDING, _write_deferred, LAST):
            pending = []
            conn.info[PENDING] = (conn.get_transaction(), pending)
        if pending is not None:
            pending.append(values)
            return
    _write(conn, values)


PENDING = "opennimble_events_pending"
LAST = 100  # the events' place among the work at a transaction's end: after everything else


def _deferred(conn: sa.Connection) -> list[dict[str, Any]] | None:
    """The events of this transaction waiting for its end, if it defers them."""
    found = conn.info.get(PENDING)
    if found is None or found[0] is not conn.get_transaction():
        return None
    pending: list[dict[str, Any]] = found[1]
    return pending


def _write_deferred(conn: sa.Connection) -> None:
    pending = _deferred(conn)
    conn.info.pop(PENDING, None)
    if not pending:
        return
    first, *rest = pending
    if _locked(conn):
        _write(conn, first)
    else:
        _write_first(conn, first)
    for values in rest:
        _write(conn, values)


def _write_first(conn: sa.Connection, values: dict[str, Any]) -> None:
    """Take the lock, insert the transaction's first event and read its studio's webhooks (one
    statement, ``_FIRST``), then queue its deliveries."""
    row = _FIRST.rows(conn, **values)[0]
    _mark_locked(conn)
    found = [(str(w), list(types)) for w, types in row["webhooks"]]
    _known_webhooks(conn)[values["studio_id"]] = found
    _queue(conn, values, int(row["seq"]))


def _write(conn: sa.Connection, values: dict[str, Any]) -> None:
    """Insert an event (the transaction holds the lock on PostgreSQL) and queue its webhook
    deliveries."""
    _queue(conn, values, int(_INSERT.scalar(conn, **values)))


def _queue(conn: sa.Connection, values: dict[str, Any], seq: int) -> None:
    """Queue the deliveries of the event ``seq`` for the webhooks of its studio that want it."""
    type_, studio_id, session_id, time = (
        values["type"],
        values["studio_id"],
        values["session_id"],
        values["time"],
    )
    database.changed(conn, studio_id)  # the live views of this process hear of it at commit
    wanted = [w for w, types in _webhooks(conn, studio_id) if matches(types, type_)]
    if wanted:
        body = orjson.dumps(document({"seq": seq, **values})).decode()
        queued = {
            "seq": seq,
            "session_id": session_id,
            "type": type_,
            "body": body,
            "state": "PENDING",
            "attempts": 0,
            "next_attempt_at": 0,
            "created_at": time,
            "updated_at": time,
        }
        for webhook_id in wanted:
            _QUEUE.execute(conn, **queued, webhook_id=webhook_id)


def session_changed(
    conn: sa.Connection, session: Row, previous: str | None, values: dict[str, Any]
) -> None:
    """Record the event of a session entering ``values["state"]`` from ``previous``."""
    state = str(values["state"])
    detail = {
        "state": state,
        "previousState": previous,
        "statusCode": values.get("status_code"),
        "statusMessage": values.get("status_message"),
        "launchProfileId": session["launch_profile_id"],
        "updatedBy": values.get("updated_by"),
    }
    record(
        conn,
        "session." + state.lower(),
        time=int(values.get("updated_at") or session.get("updated_at") or 0),
        studio_id=session["studio_id"],
        session_id=session["session_id"],
        owned_by=session["owned_by"],
        detail={k: v for k, v in detail.items() if v is not None},
    )


def matches(patterns: list[str], type_: str) -> bool:
    """Whether an event type is one of ``patterns`` (shell-style: ``session.*``, ``*``)."""
    return any(fnmatch.fnmatchcase(type_, p) for p in patterns)


def document(row: Row) -> dict[str, Any]:
    """The event as clients receive it (a webhook's body, an SSE message's data)."""
    return {
        "id": str(row["seq"]),
        "sequence": int(row["seq"]),
        "type": row["type"],
        "time": clock.iso(int(row["time"])),
        "studioId": row["studio_id"],
        "sessionId": row["session_id"],
        "ownedBy": row["owned_by"],
        "detail": row["detail"],
    }


def after(conn: sa.Connection, seq: int, limit: int, studio_id: str | None = None) -> list[Row]:
    """Events numbered above ``seq`` (of one studio if given), oldest first."""
    query = sa.select(t).where(t.c.seq > seq)
    if studio_id is not None:
        query = query.where(t.c.studio_id == studio_id)
    return [dict(r._mapping) for r in conn.execute(query.order_by(t.c.seq).limit(limit))]


def last(conn: sa.Connection) -> int:
    """The newest event's number (0 without events)."""
    return int(conn.execute(sa.select(sa.func.coalesce(sa.func.max(t.c.seq), 0))).scalar_one())


def first(conn: sa.Connection) -> int:
    """The oldest kept event's number (0 without events)."""
    return int(conn.execute(sa.select(sa.func.coalesce(sa.func.min(t.c.seq), 0))).scalar_one())


def purge(conn: sa.Connection, before: int) -> int:
    """Forget events older than ``before``, and deliveries that ended before it."""
    conn.execute(
        deliveries.delete().where(deliveries.c.updated_at < before, deliveries.c.state != "PENDING")
    )
    return int(conn.execute(t.delete().where(t.c.time < before)).rowcount)
