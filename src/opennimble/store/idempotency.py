"""Idempotency records: (operation, caller, scope, client token) -> request fingerprint, response.

The record is written in the same transaction as the work it guards, under a primary key on the
four parts, so N identical requests racing on any number of servers create one resource: all but
one fail to insert and read the winner's record instead. The insert comes first
(:func:`claim`: ``ON CONFLICT DO NOTHING``, which on PostgreSQL waits for a racing insert of the
same key to commit or roll back), so a new request costs one statement, not a read and an insert.
"""

from __future__ import annotations

import hashlib
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from opennimble.store import hot, schema

Row = dict[str, Any]
t = schema.idempotency


# built once with bound parameters (an UPDATE's may not take its columns' names)
_KEY = (
    t.c.operation == sa.bindparam("k_operation"),
    t.c.caller == sa.bindparam("k_caller"),
    t.c.scope == sa.bindparam("k_scope"),
    t.c.token == sa.bindparam("k_token"),
)
# on the driver (store/hot.py)
_GET = hot.Statement(sa.select(t).where(*_KEY))
# the record, unless one with its key exists (RETURNING says whether it was made)
_CLAIM = {
    "postgresql": hot.Statement(
        postgresql.insert(t).on_conflict_do_nothing().returning(t.c.created_at)
    ),
    "sqlite": hot.Statement(sqlite.insert(t).on_conflict_do_nothing().returning(t.c.created_at)),
}
_RESPOND = hot.Statement(t.update().where(*_KEY).values(response=sa.bindparam("response")))


_SCOPE_LENGTH = schema.Id.length or 64  # the scope column is an Id


def scope_of(studio_id: str) -> str:
    """The record's scope for a request naming ``studio_id`` (as the client sent it): the
    id itself, or a digest of it when it is longer than the column (such an id names no
    studio; its request fails in the transaction that holds its record)."""
    if len(studio_id) <= _SCOPE_LENGTH:
        return studio_id
    digest = hashlib.sha256(studio_id.encode("utf-8", "surrogatepass")).hexdigest()
    return ("sha256:" + digest)[:_SCOPE_LENGTH]


def _key(operation: str, caller: str, scope: str, token: str) -> dict[str, str]:
    return {"k_operation": operation, "k_caller": caller, "k_scope": scope, "k_token": token}


def get(conn: sa.Connection, operation: str, caller: str, scope: str, token: str) -> Row | None:
    return _GET.first(conn, **_key(operation, caller, scope, token))


def claim(conn: sa.Connection, row: Row) -> bool:
    """Insert the record ``row`` unless one with its key exists; whether it was inserted."""
    return bool(_CLAIM[conn.dialect.name].tuples(conn, **row))


def respond(
    conn: sa.Connection, operation: str, caller: str, scope: str, token: str, response: Any
) -> None:
    """Record the response of the request the record was inserted for."""
    _RESPOND.execute(conn, **_key(operation, caller, scope, token), response=response)


def purge(conn: sa.Connection, before: int) -> int:
    return int(conn.execute(t.delete().where(t.c.created_at < before)).rowcount)
