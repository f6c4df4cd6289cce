"""The installation's identity store: users, access keys, and who is calling."""

from __future__ import annotations

import dataclasses
from typing import Any

import sqlalchemy as sa

from opennimble import clock
from opennimble.domain import ids
from opennimble.store import crypto, members, users

IDENTITY_STORE_KEY = "identity_store_id"


@dataclasses.dataclass(frozen=True)
class Caller:
    """An authenticated user."""

    user_id: str
    name: str
    operator: bool
    # the access key the request was signed with ("" when invoked in-process)
    access_key_id: str = ""
    # where the request came from (the client's address), when known
    client: str | None = None


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


def delete_user(conn: sa.Connection, user_id: str) -> dict[str, object]:
    """Remove a user and their access keys from the identity store. Their memberships stay
    behind until a studio's SSO configuration repair drops them; their sessions are kept."""
    user = users.get_user(conn, user_id)
    if user is None:
        raise LookupError(f"no user with id {user_id!r}")
    keys = users.delete_user(conn, user_id)
    return {"userId": user_id, "name": user["name"], "accessKeysDeleted": keys}


def find_user(conn: sa.Connection, name_or_id: str) -> dict[str, Any]:
    """A user named by their userId or their name (LookupError if neither)."""
    user = users.get_user(conn, name_or_id) or users.get_user_by_name(conn, name_or_id)
    if user is None:
        raise LookupError(f"no user with id or name {name_or_id!r}")
    return user


def describe_user(conn: sa.Connection, user: dict[str, Any]) -> dict[str, object]:
    return {
        "userId": user["user_id"],
        "name": user["name"],
        "operator": user["operator"],
        "disabled": user["disabled"],
        "identityStoreId": identity_store_id(conn),
        "createdAt": clock.iso(user["created_at"]),
    }


def list_users(conn: sa.Connection) -> list[dict[str, object]]:
    return [
        {**describe_user(conn, user), "accessKeys": user["access_keys"]}
        for user in users.list_users(conn)
    ]


def set_disabled(conn: sa.Connection, name_or_id: str, disabled: bool) -> dict[str, object]:
    """Disable a user (their requests are refused as if they were deleted; their keys,
    memberships and sessions stay) or enable them again."""
    user = find_user(conn, name_or_id)
    users.set_disabled(conn, user["user_id"], disabled)
    return describe_user(conn, {**user, "disabled": disabled})


def list_keys(conn: sa.Connection, name_or_id: str | None = None) -> list[dict[str, object]]:
    user_id = None if name_or_id is None else find_user(conn, name_or_id)["user_id"]
    return [
        {
            "accessKeyId": key["access_key_id"],
            "userId": key["user_id"],
            "name": key["name"],
            "createdAt": clock.iso(key["created_at"]),
        }
        for key in users.list_keys(conn, user_id)
    ]


def delete_access_key(conn: sa.Connection, access_key_id: str) -> dict[str, object]:
    """Revoke one access key: requests signed with it are refused at once, on every server."""
    key = users.delete_key(conn, access_key_id)
    if key is None:
        raise LookupError(f"no access key {access_key_id!r}")
    return {"accessKeyId": access_key_id, "userId": key["user_id"], "deleted": True}


@dataclasses.dataclass(frozen=True)
class MembershipRepair:
    """What a studio's memberships need to match the identity store again."""

    unknown: list[dict[str, Any]]  # memberships of users no longer in the identity store
    relinked: list[dict[str, Any]]  # memberships recorded under another identity store id

    def __bool__(self) -> bool:
        return bool(self.unknown or self.relinked)

    def report(self) -> str:
        parts = []
        if self.unknown:
            who = ", ".join(sorted({m["principal_id"] for m in self.unknown}))
            parts.append(
                f"removed {len(self.unknown)} memberships of users no longer in the identity "
                f"store ({who})"
            )
        if self.relinked:
            who = ", ".join(sorted({m["principal_id"] for m in self.relinked}))
            parts.append(
                f"linked {len(self.relinked)} memberships to this installation's identity "
                f"store ({who})"
            )
        return "; ".join(parts)


def check_memberships(conn: sa.Connection, studio_id: str) -> MembershipRepair:
    """Compare the memberships of a studio (and its launch profiles) with the identity store."""
    store_id = identity_store_id(conn)
    unknown, relinked = [], []
    for member in members.of_studio(conn, studio_id):
        if users.get_user(conn, member["principal_id"]) is None:
            unknown.append(member)
        elif member["identity_store_id"] != store_id:
            relinked.append(member)
    return MembershipRepair(unknown, relinked)


def repair_memberships(conn: sa.Connection, repair: MembershipRepair) -> None:
    store_id = identity_store_id(conn)
    for member in repair.unknown:
        members.delete(conn, member["scope_id"], member["principal_id"])
    for member in repair.relinked:
        members.set_identity_store(conn, member["scope_id"], member["principal_id"], store_id)
