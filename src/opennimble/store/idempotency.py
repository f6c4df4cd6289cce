"""Idempotency records: (operation, caller, scope, client token) -> request fingerprint, response.

The record is written in the same transaction as the work it guards, under a primary key on the
four parts, so N identical requests racing on any number of servers create one resource: all but
one fail to insert and read the winner's record instead.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from opennimble.store import schema

Row = dict[str, Any]
t = schema.idempotency


def get(conn: sa.Connection, operation: str, caller: str, scope: str, token: str) -> Row | None:
    query = sa.select(t).where(
        t.c.operation == operation, t.c.caller == caller, t.c.scope == scope, t.c.token == token
    )
    row = conn.execute(query).first()
    return dict(row._mapping) if row else None


def insert(conn: sa.Connection, row: Row) -> None:
    conn.execute(t.insert().values(row))


def purge(conn: sa.Connection, before: int) -> int:
    return int(conn.execute(t.delete().where(t.c.created_at < before)).rowcount)
