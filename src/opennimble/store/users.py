"""Users and access keys of the installation's identity store."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from opennimble.store import generations, schema

Row = dict[str, Any]


def insert_user(conn: sa.Connection, row: Row) -> None:
    conn.execute(schema.users.insert().values(row))


# built once: building a select per call costs several times running it
_GET_USER = sa.select(schema.users).where(schema.users.c.user_id == sa.bindparam("user_id"))


def get_user(conn: sa.Connection, user_id: str) -> Row | None:
    row = conn.execute(_GET_USER, {"user_id": user_id}).first()
    return dict(row._mapping) if row else None


def get_user_by_name(conn: sa.Connection, name: str) -> Row | None:
    row = conn.execute(sa.select(schema.users).where(schema.users.c.name == name)).first()
    return dict(row._mapping) if row else None


def count_users(conn: sa.Connection) -> int:
    return int(conn.execute(sa.select(sa.func.count()).select_from(schema.users)).scalar_one())


def insert_key(conn: sa.Connection, row: Row) -> None:
    conn.execute(schema.access_keys.insert().values(row))


_k, _u = schema.access_keys, schema.users
_GET_KEY = (
    sa.select(_k.c.access_key_id, _k.c.secret, _u.c.user_id, _u.c.name, _u.c.operator)
    .join(_u, _u.c.user_id == _k.c.user_id)
    .where(_k.c.access_key_id == sa.bindparam("access_key_id"), _u.c.disabled.is_(False))
)


def get_key(conn: sa.Connection, access_key_id: str) -> Row | None:
    """The key with its user's fields (user_id, name, operator), or None."""
    row = conn.execute(_GET_KEY, {"access_key_id": access_key_id}).first()
    return dict(row._mapping) if row else None


def get_meta(conn: sa.Connection, key: str) -> str | None:
    query = sa.select(schema.meta.c.value).where(schema.meta.c.key == key)
    value = conn.execute(query).scalar_one_or_none()
    return str(value) if value is not None else None


# (ON CONFLICT DO NOTHING: a value another transaction stored first stays)
_INSERT_META = {
    "postgresql": postgresql.insert(schema.meta).on_conflict_do_nothing(),
    "sqlite": sqlite.insert(schema.meta).on_conflict_do_nothing(),
}


def set_meta_default(conn: sa.Connection, key: str, value: str) -> str:
    """Store ``value`` under ``key`` unless a value is there already; return what is stored.

    Safe when several processes do it at once (two CLI runs making the first users of an
    installation, say): the insert does nothing if another transaction stored a value first (on
    PostgreSQL it waits for that one to end), and the value read after it is the one stored."""
    current = get_meta(conn, key)
    if current is not None:
        return current
    conn.execute(_INSERT_META[conn.dialect.name], {"key": key, "value": value})
    stored = get_meta(conn, key)
    assert stored is not None  # inserted, or committed by another transaction before
    return stored


def delete_user(conn: sa.Connection, user_id: str) -> int:
    """Delete a user and their access keys; return how many keys went."""
    generations.bump(conn)
    keys = conn.execute(
        schema.access_keys.delete().where(schema.access_keys.c.user_id == user_id)
    ).rowcount
    conn.execute(schema.users.delete().where(schema.users.c.user_id == user_id))
    return int(keys)


def list_users(conn: sa.Connection) -> list[Row]:
    """Every user with how many access keys they have, by name."""
    u, k = schema.users, schema.access_keys
    keys = (
        sa.select(sa.func.count())
        .where(k.c.user_id == u.c.user_id)
        .correlate(u)
        .scalar_subquery()
        .label("access_keys")
    )
    rows = conn.execute(sa.select(u, keys).order_by(u.c.name))
    return [dict(row._mapping) for row in rows]


def list_keys(conn: sa.Connection, user_id: str | None = None) -> list[Row]:
    """Access keys (never their secrets) with their user's name, oldest first."""
    k, u = schema.access_keys, schema.users
    query = sa.select(k.c.access_key_id, k.c.user_id, u.c.name, k.c.created_at).join(
        u, u.c.user_id == k.c.user_id
    )
    if user_id is not None:
        query = query.where(k.c.user_id == user_id)
    rows = conn.execute(query.order_by(k.c.created_at, k.c.access_key_id))
    return [dict(row._mapping) for row in rows]


def set_disabled(conn: sa.Connection, user_id: str, disabled: bool) -> None:
    generations.bump(conn)
    conn.execute(
        schema.users.update().where(schema.users.c.user_id == user_id).values(disabled=disabled)
    )


def delete_key(conn: sa.Connection, access_key_id: str) -> Row | None:
    """Delete one access key; the deleted key's row (without its secret), or None."""
    generations.bump(conn)
    k = schema.access_keys
    row = conn.execute(
        k.delete()
        .where(k.c.access_key_id == access_key_id)
        .returning(k.c.access_key_id, k.c.user_id, k.c.created_at)
    ).first()
    return dict(row._mapping) if row else None


def first_operator(conn: sa.Connection) -> Row | None:
    u = schema.users
    query = sa.select(u).where(u.c.operator.is_(True), u.c.disabled.is_(False))
    row = conn.execute(query.order_by(u.c.created_at, u.c.user_id).limit(1)).first()
    return dict(row._mapping) if row else None


def set_password_hash(conn: sa.Connection, user_id: str, password_hash: str | None) -> bool:
    """Set (or clear) a user's password hash and lift any lock-out; False if no such user."""
    result = conn.execute(
        schema.users.update()
        .where(schema.users.c.user_id == user_id)
        .values(password_hash=password_hash, failed_signins=0, locked_until=0)
    )
    return bool(result.rowcount)


def record_signin(
    conn: sa.Connection, user_id: str, failed_signins: int, locked_until: int
) -> None:
    conn.execute(
        schema.users.update()
        .where(schema.users.c.user_id == user_id)
        .values(failed_signins=failed_signins, locked_until=locked_until)
    )
