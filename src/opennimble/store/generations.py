"""Generation counters: a cheap "has anything I remember changed?" for every server at once.

``access`` is bumped in the same transaction as every change to what the access rules read:
users (deleted, disabled), access keys (deleted), memberships, studios (state, attributes);
and to what every CreateStreamingSession reads besides: the other resources (launch profiles,
streaming images) and the EULA catalogue. All of them change seldom next to the requests that
read them.
A server that read the counter at the start of a transaction knows that what it remembered
under the same value is still what the database says; any change commits a new value, which
every server's next transaction reads (no time window, no message to miss).
"""

from __future__ import annotations

import sqlalchemy as sa

from opennimble.store import database, hot, schema

ACCESS = "access"
t = schema.generations


def _value(name: str | sa.BindParameter[str]) -> sa.Select[tuple[int]]:
    return sa.select(t.c.value).where(t.c.name == name)


_read = hot.Statement(_value(sa.bindparam("name")))


def column(name: str = ACCESS) -> sa.ScalarSelect[int]:
    """The counter as a column of another statement (its value: :func:`counted`): read with
    a row, it saves a statement."""
    return _value(name).scalar_subquery()


def counted(value: int | None) -> int:
    """The counter's value as read (a database made before the counter lacks its row: 0)."""
    return int(value) if value is not None else 0


def read(conn: sa.Connection, name: str = ACCESS) -> int:
    return counted(_read.scalar(conn, name=name))


def bump(conn: sa.Connection, name: str = ACCESS) -> None:
    """Make every server forget what it remembers under ``name`` once this transaction
    commits (the row is made if a database created before the counter lacks it)."""
    done = conn.execute(t.update().where(t.c.name == name).values(value=t.c.value + 1)).rowcount
    database.changed(conn, database.ACCESS_TOPIC)  # live views re-check their callers' access
    if not done:
        conn.execute(t.insert().values(name=name, value=2))
