"""Memberships: studio members (scope = studio id) and launch profile members (scope = its id)."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from opennimble.store import generations, paging, schema

Row = dict[str, Any]
t = schema.members


def put(conn: sa.Connection, row: Row) -> None:
    """Add a member, or update the persona of an existing one."""
    generations.bump(conn)
    key = (t.c.scope_id == row["scope_id"], t.c.principal_id == row["principal_id"])
    done = conn.execute(t.update().where(*key).values(persona=row["persona"])).rowcount
    if not done:
        conn.execute(t.insert().values(row))


_GET = sa.select(t).where(
    t.c.scope_id == sa.bindparam("scope_id"), t.c.principal_id == sa.bindparam("principal_id")
)


def get(conn: sa.Connection, scope_id: str, principal_id: str) -> Row | None:
    # built once: building a select per call costs several times running it
    row = conn.execute(_GET, {"scope_id": scope_id, "principal_id": principal_id}).first()
    return dict(row._mapping) if row else None


def page(
    conn: sa.Connection, scope_id: str, after: paging.Key | None, limit: int
) -> paging.Page[paging.Row]:
    return paging.fetch(conn, t, "principal_id", [t.c.scope_id == scope_id], after, limit)


def scopes_of(conn: sa.Connection, principal_id: str) -> list[Row]:
    """Every membership of a user (studios and launch profiles)."""
    query = sa.select(t).where(t.c.principal_id == principal_id)
    return [dict(r._mapping) for r in conn.execute(query)]


def delete(conn: sa.Connection, scope_id: str, principal_id: str) -> bool:
    generations.bump(conn)
    query = t.delete().where(t.c.scope_id == scope_id, t.c.principal_id == principal_id)
    return conn.execute(query).rowcount == 1


def of_studio(conn: sa.Connection, studio_id: str) -> list[Row]:
    """Every membership in a studio: of the studio itself and of its launch profiles."""
    query = sa.select(t).where(t.c.studio_id == studio_id).order_by(t.c.created_at)
    return [dict(r._mapping) for r in conn.execute(query)]


def forget_scope(conn: sa.Connection, scope_id: str) -> None:
    generations.bump(conn)
    conn.execute(t.delete().where(t.c.scope_id == scope_id))


def set_identity_store(conn: sa.Connection, scope_id: str, principal_id: str, value: str) -> None:
    generations.bump(conn)
    query = (
        t.update()
        .where(t.c.scope_id == scope_id, t.c.principal_id == principal_id)
        .values(identity_store_id=value)
    )
    conn.execute(query)
