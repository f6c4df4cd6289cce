"""The EULA catalogue and the acceptances of its EULAs (per studio, per user)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import sqlalchemy as sa

from opennimble.store import generations, hot, paging, schema

Row = dict[str, Any]
t = schema.eulas
acceptances = schema.eula_acceptances


def all_eulas(conn: sa.Connection) -> list[Row]:
    return [dict(r._mapping) for r in conn.execute(sa.select(t).order_by(t.c.eula_id))]


# read by every create (store/hot.py: on the driver, built once)
_REQUIREMENTS = hot.Statement(sa.select(t.c.eula_id, t.c.ec2_image_ids).order_by(t.c.eula_id))


def requirements(conn: sa.Connection) -> list[tuple[str, list[str]]]:
    """(eula id, the ec2ImageIds that require it) for the whole catalogue, without the texts."""
    return [(str(r["eula_id"]), list(r["ec2_image_ids"])) for r in _REQUIREMENTS.rows(conn)]


def get(conn: sa.Connection, eula_id: str) -> Row | None:
    row = conn.execute(sa.select(t).where(t.c.eula_id == eula_id)).first()
    return dict(row._mapping) if row else None


# a change of the catalogue bumps the access generation: servers remember its requirements
# (see opennimble.store.generations)


def insert(conn: sa.Connection, row: Row) -> None:
    conn.execute(t.insert().values(row))
    generations.bump(conn)


def update(conn: sa.Connection, eula_id: str, **values: Any) -> None:
    conn.execute(t.update().where(t.c.eula_id == eula_id).values(**values))
    generations.bump(conn)


def delete(conn: sa.Connection, eula_ids: Iterable[str]) -> None:
    conn.execute(t.delete().where(t.c.eula_id.in_(tuple(eula_ids))))
    generations.bump(conn)


def page(
    conn: sa.Connection, eula_ids: list[str] | None, after: paging.Key | None, limit: int
) -> paging.Page[paging.Row]:
    where: list[sa.ColumnElement[bool]] = []
    if eula_ids is not None:
        where.append(t.c.eula_id.in_(eula_ids))
    return paging.fetch(conn, t, "eula_id", where, after, limit)


def accepted(conn: sa.Connection, studio_id: str, user_id: str) -> dict[str, Row]:
    """The acceptances of a user in a studio, by EULA id."""
    query = sa.select(acceptances).where(
        acceptances.c.studio_id == studio_id, acceptances.c.accepted_by == user_id
    )
    return {r.eula_id: dict(r._mapping) for r in conn.execute(query)}


def accept(conn: sa.Connection, row: Row) -> None:
    conn.execute(acceptances.insert().values(row))


def page_acceptances(
    conn: sa.Connection,
    studio_id: str,
    *,
    accepted_by: str | None,
    eula_ids: list[str] | None,
    after: paging.Key | None,
    limit: int,
) -> paging.Page[paging.Row]:
    where: list[sa.ColumnElement[bool]] = [acceptances.c.studio_id == studio_id]
    if accepted_by is not None:
        where.append(acceptances.c.accepted_by == accepted_by)
    if eula_ids is not None:
        where.append(acceptances.c.eula_id.in_(eula_ids))
    return paging.fetch(conn, acceptances, "eula_acceptance_id", where, after, limit)


def forget_studio(conn: sa.Connection, studio_id: str) -> None:
    conn.execute(acceptances.delete().where(acceptances.c.studio_id == studio_id))
