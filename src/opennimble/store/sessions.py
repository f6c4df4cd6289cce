"""Streaming sessions: rows, filtered pages, compare-and-set transitions and work claims."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import sqlalchemy as sa

from opennimble.store import paging, schema

Row = dict[str, Any]
t = schema.sessions

# states in which the reconciler has something to do
WORK_STATES = ("CREATE_IN_PROGRESS", "DELETE_IN_PROGRESS", "STOP_IN_PROGRESS", "START_IN_PROGRESS")


def insert(conn: sa.Connection, row: Row) -> None:
    conn.execute(t.insert().values(row))


def get(conn: sa.Connection, session_id: str, studio_id: str | None = None) -> Row | None:
    query = sa.select(t).where(t.c.session_id == session_id)
    if studio_id is not None:
        query = query.where(t.c.studio_id == studio_id)
    row = conn.execute(query).first()
    return dict(row._mapping) if row else None


def page(
    conn: sa.Connection,
    studio_id: str,
    *,
    owned_by: str | None,
    created_by: str | None,
    session_ids: list[str] | None,
    after: paging.Key | None,
    limit: int,
) -> paging.Page:
    where = [t.c.studio_id == studio_id]
    if owned_by is not None:
        where.append(t.c.owned_by == owned_by)
    if created_by is not None:
        where.append(t.c.created_by == created_by)
    if session_ids is not None:
        where.append(t.c.session_id.in_(session_ids))
    return paging.fetch(conn, t, "session_id", where, after, limit)


def transition(
    conn: sa.Connection, session_id: str, from_states: Iterable[str], **values: Any
) -> bool:
    """Set ``values`` if the session is in one of ``from_states`` (compare and set)."""
    query = (
        t.update()
        .where(t.c.session_id == session_id, t.c.state.in_(tuple(from_states)))
        .values(**values)
    )
    return conn.execute(query).rowcount == 1


def update(conn: sa.Connection, session_id: str, **values: Any) -> None:
    conn.execute(t.update().where(t.c.session_id == session_id).values(**values))


def count_live(conn: sa.Connection, studio_id: str, owned_by: str | None = None) -> int:
    query = sa.select(sa.func.count()).where(t.c.studio_id == studio_id, t.c.state != "DELETED")
    if owned_by is not None:
        query = query.where(t.c.owned_by == owned_by)
    return int(conn.execute(query).scalar_one())


def due(conn: sa.Connection, now: int, limit: int) -> list[Row]:
    """Sessions with work to do and no live claim, oldest attempt first."""
    query = (
        sa.select(t)
        .where(
            t.c.state.in_(WORK_STATES),
            t.c.next_attempt_at <= now,
            sa.or_(t.c.claimed_by.is_(None), t.c.claim_expires_at < now),
        )
        .order_by(t.c.next_attempt_at, t.c.created_at)
        .limit(limit)
    )
    return [dict(r._mapping) for r in conn.execute(query)]


def claim(conn: sa.Connection, session_id: str, owner: str, now: int, lease: int) -> bool:
    """Take the session's work unless someone else holds a live claim on it."""
    query = (
        t.update()
        .where(
            t.c.session_id == session_id,
            sa.or_(t.c.claimed_by.is_(None), t.c.claim_expires_at < now, t.c.claimed_by == owner),
        )
        .values(claimed_by=owner, claim_expires_at=now + lease)
    )
    return conn.execute(query).rowcount == 1


def heartbeat(conn: sa.Connection, session_ids: list[str], owner: str, until: int) -> None:
    query = (
        t.update()
        .where(t.c.session_id.in_(session_ids), t.c.claimed_by == owner)
        .values(claim_expires_at=until)
    )
    conn.execute(query)


def release(conn: sa.Connection, session_id: str, owner: str) -> None:
    query = (
        t.update()
        .where(t.c.session_id == session_id, t.c.claimed_by == owner)
        .values(claimed_by=None, claim_expires_at=None)
    )
    conn.execute(query)


def release_all(conn: sa.Connection) -> None:
    conn.execute(t.update().values(claimed_by=None, claim_expires_at=None))


def expired_timers(conn: sa.Connection, now: int, limit: int) -> list[Row]:
    """READY or STOPPED sessions whose stop or termination time has come."""
    query = (
        sa.select(t)
        .where(
            sa.or_(
                sa.and_(t.c.state.in_(("READY", "STOPPED")), t.c.terminate_at <= now),
                sa.and_(t.c.state == "READY", t.c.stop_at <= now),
            )
        )
        .limit(limit)
    )
    return [dict(r._mapping) for r in conn.execute(query)]


def purge_deleted(conn: sa.Connection, before: int) -> list[str]:
    query = sa.select(t.c.session_id).where(t.c.state == "DELETED", t.c.deleted_at < before)
    ids = [str(r[0]) for r in conn.execute(query)]
    if ids:
        conn.execute(schema.streams.delete().where(schema.streams.c.session_id.in_(ids)))
        conn.execute(t.delete().where(t.c.session_id.in_(ids)))
    return ids


def ids_not_deleted(conn: sa.Connection) -> set[str]:
    query = sa.select(t.c.session_id).where(t.c.state != "DELETED")
    return {str(r[0]) for r in conn.execute(query)}


def in_states(conn: sa.Connection, states: Iterable[str]) -> list[Row]:
    query = sa.select(t).where(t.c.state.in_(tuple(states)))
    return [dict(r._mapping) for r in conn.execute(query)]
