"""The audit trail's rows: written one at a time or in batches, read with filters, pruned."""

from __future__ import annotations

import dataclasses
from typing import Any

import sqlalchemy as sa

from opennimble.store import hot, schema

Row = dict[str, Any]
t = schema.audit


# one entry: a statement built and compiled once (see store/hot.py), the API's common case
_INSERT_ONE = hot.Statement(
    t.insert().values({c.name: sa.bindparam(c.name) for c in t.columns if c.name != "entry_id"})
)


# the text columns' lengths (None: unbounded)
_TEXT = {c.name: c.type.length for c in t.columns if isinstance(c.type, sa.String)}


def insert(conn: sa.Connection, rows: list[Row]) -> None:
    """Write entries; their text made to fit (see :func:`fit`)."""
    fitted = [fit(row) for row in rows]
    if len(fitted) == 1:
        _INSERT_ONE.execute(conn, **fitted[0])
    elif fitted:
        conn.execute(t.insert(), fitted)


def fit(row: Row) -> Row:
    """``row`` as every database stores it: a refused request's values are the client's
    (a studio id of any length, NUL characters, which PostgreSQL's text refuses), so NUL
    becomes U+FFFD and a value longer than its column is cut to the column's length."""
    fitted = dict(row)
    for name, length in _TEXT.items():
        value = fitted.get(name)
        if not isinstance(value, str):
            continue
        if "\x00" in value:
            value = value.replace("\x00", "\ufffd")
        if length is not None and len(value) > length:
            value = value[:length]
        fitted[name] = value
    return fitted


@dataclasses.dataclass(frozen=True)
class Filters:
    """What to read of the trail; every field given narrows it (None: no condition)."""

    studio_id: str | None = None
    user: str | None = None  # a user id or name
    operation: str | None = None
    outcome: str | None = None
    since: int | None = None  # microseconds, inclusive
    until: int | None = None  # microseconds, exclusive
    limit: int | None = None  # the newest N (still returned oldest first)


def read(conn: sa.Connection, filters: Filters) -> list[Row]:
    """Entries matching ``filters``, oldest first."""
    query = sa.select(t)
    if filters.studio_id is not None:
        query = query.where(t.c.studio_id == filters.studio_id)
    if filters.user is not None:
        query = query.where(sa.or_(t.c.user_id == filters.user, t.c.user_name == filters.user))
    if filters.operation is not None:
        query = query.where(t.c.operation == filters.operation)
    if filters.outcome is not None:
        query = query.where(t.c.outcome == filters.outcome)
    if filters.since is not None:
        query = query.where(t.c.at >= filters.since)
    if filters.until is not None:
        query = query.where(t.c.at < filters.until)
    if filters.limit is not None:
        newest = query.order_by(t.c.at.desc(), t.c.entry_id.desc()).limit(filters.limit)
        rows = [dict(r._mapping) for r in conn.execute(newest)]
        return rows[::-1]
    return [dict(r._mapping) for r in conn.execute(query.order_by(t.c.at, t.c.entry_id))]


def prune(conn: sa.Connection, before: int) -> int:
    """Forget the entries older than ``before``; how many there were."""
    return int(conn.execute(t.delete().where(t.c.at < before)).rowcount)
