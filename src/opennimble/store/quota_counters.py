"""Quota counters: how many of a studio's sessions count against its quotas, per studio (owner
``""``) and per (studio, owner).

A counter is taken with one conditional UPDATE (``used < limit``) in the transaction that makes
the session, and given back in the transaction that makes it DELETED. The check costs the same
whatever the studio's size, and concurrent creates wait only for each other's counter rows, and
only until their transactions end, never on a count of the studio's sessions.

The statements are built once, with bound parameters: building one costs ten times its execution
on SQLite.
"""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from opennimble.store import schema

t = schema.quota_counters
STUDIO = ""  # the owner under which a studio's total is counted

# (bound parameters of an UPDATE may not take its columns' names)
_KEY = (t.c.studio_id == sa.bindparam("studio"), t.c.owned_by == sa.bindparam("owner"))
_INCREMENT = t.update().where(*_KEY, t.c.used < sa.bindparam("limit")).values(used=t.c.used + 1)
_USED = sa.select(t.c.used).where(*_KEY)
# (RETURNING says whether the row was made: the driver's rowcount of such an insert is not
# reliable on every database)
_FIRST = {
    "postgresql": postgresql.insert(t).on_conflict_do_nothing().returning(t.c.used),
    "sqlite": sqlite.insert(t).on_conflict_do_nothing().returning(t.c.used),
}
_GIVE_BACK = (
    t.update()
    .where(
        t.c.studio_id == sa.bindparam("studio"),
        t.c.owned_by.in_((STUDIO, sa.bindparam("owner"))),
        t.c.used > 0,
    )
    .values(used=t.c.used - 1)
)


def take(conn: sa.Connection, studio_id: str, owned_by: str, limit: int) -> bool:
    """Count one more against the counter if it is under ``limit``; whether it was."""
    key = {"studio": studio_id, "owner": owned_by}
    if conn.execute(_INCREMENT, {**key, "limit": limit}).rowcount == 1:
        return True
    if limit <= 0:
        return False
    # no row, or a full one, or one that a concurrent transaction made after this one's update
    # looked: make the row with this session counted unless it is there (on PostgreSQL the
    # insert waits for a concurrent maker to end); if it is, count again, on what is committed
    row = {"studio_id": studio_id, "owned_by": owned_by, "used": 1}
    if conn.execute(_FIRST[conn.dialect.name], row).first() is not None:
        return True
    return conn.execute(_INCREMENT, {**key, "limit": limit}).rowcount == 1


def used(conn: sa.Connection, studio_id: str, owned_by: str) -> int | None:
    """The counter's value; None when nothing was ever counted on it."""
    value = conn.execute(_USED, {"studio": studio_id, "owner": owned_by}).scalar()
    return None if value is None else int(value)


def give_back(conn: sa.Connection, studio_id: str, owned_by: str) -> None:
    """One session of ``owned_by`` in the studio no longer counts (both counters)."""
    conn.execute(_GIVE_BACK, {"studio": studio_id, "owner": owned_by})
