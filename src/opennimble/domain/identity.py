"""The installation's identity store: users, access keys, and who is calling."""

from __future__ import annotations

import dataclasses

import sqlalchemy as sa

from opennimble import clock
from opennimble.domain import ids
from opennimble.store import crypto, users

IDENTITY_STORE_KEY = "identity_store_id"


@dataclasses.dataclass(frozen=True)
class Caller:
    """An authenticated user."""

    user_id: str
    name: str
    operator: bool


class UserExists(Exception):
    pass


def identity_store_id(conn: sa.Connection) -> str:
    """The installation's identity store id, created on first use."""
    return users.set_meta_default(conn, IDENTITY_STORE_KEY, ids.identity_store_id())


def create_user(conn: sa.Connection, name: str, operator: bool, now: int) -> dict[str, object]:
    if not name or len(name) > 128:
        raise ValueError("a user name is 1 to 128 characters")
    if users.get_user_by_name(conn, name) is not None:
        raise UserExists(f"a user named {name!r} exists already")
    row = {"user_id": ids.user_id(), "name": name, "operator": operator, "created_at": now}
    users.insert_user(conn, row)
    return {
        "userId": row["user_id"],
        "name": name,
        "operator": operator,
        "identityStoreId": identity_store_id(conn),
        "createdAt": clock.iso(now),
    }


def create_access_key(
    conn: sa.Connection, cipher: crypto.Cipher, user_id: str, now: int
) -> dict[str, str]:
    if users.get_user(conn, user_id) is None:
        raise LookupError(f"no user with id {user_id!r}")
    key_id, secret = ids.access_key_id(), ids.secret_access_key()
    users.insert_key(
        conn,
        {
            "access_key_id": key_id,
            "user_id": user_id,
            "secret": cipher.encrypt(secret),
            "created_at": now,
        },
    )
    return {"accessKeyId": key_id, "secretAccessKey": secret, "userId": user_id}
