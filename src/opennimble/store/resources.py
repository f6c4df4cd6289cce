"""Studios, launch profiles, streaming images and studio components (one table, by kind)."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from opennimble.store import generations, hot, paging, schema

Row = dict[str, Any]
t = schema.resources


def insert(conn: sa.Connection, row: Row) -> None:
    conn.execute(t.insert().values(row))


# on the driver (store/hot.py): every create reads its launch profile and image this way
_BY_ID = sa.select(t).where(t.c.resource_id == sa.bindparam("id"), t.c.kind == sa.bindparam("kind"))
_GET = hot.Statement(_BY_ID)
_GET_IN_STUDIO = hot.Statement(_BY_ID.where(t.c.studio_id == sa.bindparam("studio_id")))


def get(
    conn: sa.Connection, kind: str, resource_id: str, studio_id: str | None = None
) -> Row | None:
    if studio_id is None:
        return _GET.first(conn, id=resource_id, kind=kind)
    return _GET_IN_STUDIO.first(conn, id=resource_id, kind=kind, studio_id=studio_id)


def find_live_by_name(conn: sa.Connection, kind: str, name: str) -> Row | None:
    query = sa.select(t).where(t.c.kind == kind, t.c.name == name, t.c.state != "DELETED")
    row = conn.execute(query).first()
    return dict(row._mapping) if row else None


def page(
    conn: sa.Connection,
    kind: str,
    studio_id: str | None,
    after: paging.Key | None,
    limit: int,
    only_ids: list[str] | None = None,
    states: list[str] | None = None,
) -> paging.Page[paging.Row]:
    where = [t.c.kind == kind]
    if states:
        where.append(t.c.state.in_(states))
    if studio_id is not None:
        where.append(t.c.studio_id == studio_id)
    if only_ids is not None:
        where.append(t.c.resource_id.in_(only_ids))
    return paging.fetch(conn, t, "resource_id", where, after, limit)


def count_live(conn: sa.Connection, kind: str, studio_id: str) -> int:
    query = sa.select(sa.func.count()).where(
        t.c.kind == kind, t.c.studio_id == studio_id, t.c.state != "DELETED"
    )
    return int(conn.execute(query).scalar_one())


def update(
    conn: sa.Connection, resource_id: str, expected_state: str | None, **values: Any
) -> bool:
    """Update a resource; with ``expected_state``, only if it is still in that state.

    A change bumps the access generation: servers remember studios, and the launch profiles and
    images that creates read (see :mod:`opennimble.store.generations`)."""
    query = t.update().where(t.c.resource_id == resource_id).values(**values)
    if expected_state is not None:
        query = query.where(t.c.state == expected_state)
    changed = conn.execute(query).rowcount
    if changed:
        generations.bump(conn)
    return bool(changed == 1)


def in_state(conn: sa.Connection, state: str, limit: int = 100) -> list[Row]:
    query = sa.select(t).where(t.c.state == state).order_by(t.c.created_at).limit(limit)
    return [dict(r._mapping) for r in conn.execute(query)]


def not_deleted(conn: sa.Connection, kind: str, studio_id: str) -> list[Row]:
    """Resources of a kind in a studio that are not DELETED yet, oldest first."""
    query = (
        sa.select(t)
        .where(t.c.kind == kind, t.c.studio_id == studio_id, t.c.state != "DELETED")
        .order_by(t.c.created_at, t.c.resource_id)
    )
    return [dict(r._mapping) for r in conn.execute(query)]


def lock_studio(conn: sa.Connection, studio_id: str) -> None:
    """Serialize writers that count a studio's resources against a quota (a row lock on
    databases that have them; SQLite's write transactions are serialized already)."""
    query = sa.select(t.c.resource_id).where(t.c.resource_id == studio_id).with_for_update()
    conn.execute(query)


def live_sessions(conn: sa.Connection, studio_id: str, **match: str) -> list[str]:
    """Ids of the studio's sessions, not DELETED, whose columns equal ``match``."""
    s = schema.sessions
    query = (
        sa.select(s.c.session_id)
        .where(s.c.studio_id == studio_id, s.c.state != "DELETED")
        .where(*(s.c[column] == value for column, value in match.items()))
        .order_by(s.c.created_at, s.c.session_id)
    )
    return [str(r[0]) for r in conn.execute(query)]


def purge_deleted(conn: sa.Connection, before: int) -> list[Row]:
    """Forget resources DELETED before ``before``; return them."""
    query = sa.select(t).where(t.c.state == "DELETED", t.c.updated_at < before)
    gone = [dict(r._mapping) for r in conn.execute(query)]
    if gone:
        conn.execute(t.delete().where(t.c.resource_id.in_([r["resource_id"] for r in gone])))
        generations.bump(conn)  # a remembered row of theirs goes too
    return gone
