"""Streams into sessions."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from opennimble import clock
from opennimble.store import events, schema

Row = dict[str, Any]
t = schema.streams


def insert(conn: sa.Connection, row: Row) -> None:
    """Insert a new stream, and record its ``stream.created`` event."""
    events.serialize(conn)
    conn.execute(t.insert().values(row))
    events.record(
        conn,
        "stream.created",
        time=row["created_at"],
        studio_id=row["studio_id"],
        session_id=row["session_id"],
        owned_by=row["owned_by"],
        detail={
            "streamId": row["stream_id"],
            "createdBy": row["created_by"],
            "expiresAt": clock.iso(row["expires_at"]),
        },
    )


def get(conn: sa.Connection, stream_id: str, session_id: str | None = None) -> Row | None:
    query = sa.select(t).where(t.c.stream_id == stream_id)
    if session_id is not None:
        query = query.where(t.c.session_id == session_id)
    row = conn.execute(query).first()
    return dict(row._mapping) if row else None


def use(conn: sa.Connection, stream_id: str, now: int) -> bool:
    """Mark a READY stream's token as used; False if it was used already or is not READY."""
    query = (
        t.update()
        .where(t.c.stream_id == stream_id, t.c.used_at.is_(None), t.c.state == "READY")
        .values(used_at=now)
    )
    return conn.execute(query).rowcount == 1


def expire(conn: sa.Connection, now: int) -> int:
    """Streams past their expiry read DELETED from now on."""
    query = (
        t.update()
        .where(t.c.state == "READY", t.c.expires_at <= now)
        .values(state="DELETED", status_code="STREAM_DELETED")
    )
    return int(conn.execute(query).rowcount)


def delete_for_session(conn: sa.Connection, session_id: str) -> None:
    query = (
        t.update()
        .where(t.c.session_id == session_id, t.c.state != "DELETED")
        .values(state="DELETED", status_code="STREAM_DELETED")
    )
    conn.execute(query)
