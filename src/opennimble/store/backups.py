"""Backups of streaming sessions: rows, filtered pages and compare-and-set transitions."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import sqlalchemy as sa

from opennimble.store import events, paging, schema

Row = dict[str, Any]
t = schema.backups


def insert(conn: sa.Connection, row: Row) -> None:
    conn.execute(t.insert().values(row))


def get(conn: sa.Connection, backup_id: str, studio_id: str | None = None) -> Row | None:
    query = sa.select(t).where(t.c.backup_id == backup_id)
    if studio_id is not None:
        query = query.where(t.c.studio_id == studio_id)
    row = conn.execute(query).first()
    return dict(row._mapping) if row else None


def page(
    conn: sa.Connection,
    studio_id: str,
    *,
    owned_by: str | None,
    after: paging.Key | None,
    limit: int,
) -> paging.Page[paging.Row]:
    where = [t.c.studio_id == studio_id]
    if owned_by is not None:
        where.append(t.c.owned_by == owned_by)
    return paging.fetch(conn, t, "backup_id", where, after, limit)


def of_session(conn: sa.Connection, session_id: str, states: Iterable[str]) -> list[Row]:
    """The session's backups in ``states``, newest first."""
    query = (
        sa.select(t)
        .where(t.c.session_id == session_id, t.c.state.in_(tuple(states)))
        .order_by(t.c.created_at.desc(), t.c.backup_id.desc())
    )
    return [dict(r._mapping) for r in conn.execute(query)]


def transition(
    conn: sa.Connection, backup_id: str, from_states: Iterable[str], **values: Any
) -> bool:
    """Set ``values`` if the backup is in one of ``from_states`` (compare and set)."""
    query = (
        t.update()
        .where(t.c.backup_id == backup_id, t.c.state.in_(tuple(from_states)))
        .values(**values)
    )
    return conn.execute(query).rowcount == 1


def move(
    conn: sa.Connection,
    session_id: str,
    from_states: Iterable[str],
    only: Iterable[str] | None = None,
    **values: Any,
) -> int:
    """Set ``values`` on the session's backups in one of ``from_states`` (of ``only`` those,
    if given); returns how many moved. A change of ``state`` records a ``backup.<state>``
    event per backup (:mod:`opennimble.store.events`)."""
    query = t.update().where(t.c.session_id == session_id, t.c.state.in_(tuple(from_states)))
    if only is not None:
        query = query.where(t.c.backup_id.in_(tuple(only)))
    if "state" not in values:
        return int(conn.execute(query.values(**values)).rowcount)
    events.serialize(conn)
    moved = conn.execute(
        query.values(**values).returning(t.c.backup_id, t.c.studio_id, t.c.owned_by)
    ).all()
    for backup in sorted(moved, key=lambda r: str(r.backup_id)):
        detail = {
            "backupId": backup.backup_id,
            "state": values["state"],
            "statusCode": values.get("status_code"),
            "statusMessage": values.get("status_message"),
        }
        events.record(
            conn,
            "backup." + str(values["state"]).lower(),
            time=int(values.get("updated_at") or 0),
            studio_id=backup.studio_id,
            session_id=session_id,
            owned_by=backup.owned_by,
            detail={k: v for k, v in detail.items() if v is not None},
        )
    return len(moved)


def set_tags(conn: sa.Connection, backup_id: str, tags: dict[str, str]) -> None:
    conn.execute(t.update().where(t.c.backup_id == backup_id).values(tags=tags))


def purge_deleted(conn: sa.Connection, before: int) -> int:
    state = sa.func.coalesce(t.c.state, "")  # by the deleted_at index, as for sessions
    query = t.delete().where(t.c.deleted_at < before, state == "DELETED")
    return int(conn.execute(query).rowcount)
