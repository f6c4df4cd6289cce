"""Personas and permissions.

* operator: the installation's administrator; may do everything.
* studio ADMINISTRATOR: may do everything inside that studio.
* launch profile USER: may read the launch profile and its studio, create sessions from it for
  themselves, and act on the sessions they own.
* anyone else: AccessDeniedException.

A user has *standing* in a studio while they are a member of it or of one of its launch
profiles. Only an operator brings a user into a studio (their first membership there); the
studio's administrators manage the memberships of users with standing, so that the admin of
one studio cannot pull another studio's artists (or any user of the identity store) into it.
"""

from __future__ import annotations

import contextlib
import contextvars
import threading
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import sqlalchemy as sa

from opennimble import errors
from opennimble.domain.identity import Caller
from opennimble.store import generations, members, resources, users

Row = dict[str, Any]
T = TypeVar("T")

STUDIO = "studio"
LAUNCH_PROFILE = "launch_profile"


class Remembered:
    """What the access rules read (users' validity, memberships, studios), and a create's
    launch profile, image and EULA requirements, remembered by a process for as long as the
    database's access generation stays the same.

    Every change to those rows bumps the generation in its own transaction
    (:mod:`opennimble.store.generations`); a transaction that reads the generation first
    (:meth:`using`) gets what was remembered under the same value, and remembers what it reads
    only while that value is still the one this process saw last. So a change made through
    any server or the CLI holds for the next request on every server: no time window.
    """

    LIMIT = 100_000  # entries; all are forgotten when there would be more

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._generation = 0
        self._entries: dict[tuple[str, str], Any] = {}

    @contextlib.contextmanager
    def using(self, conn: sa.Connection, *, lazy: bool = False) -> Iterator[None]:
        """Read the access generation in ``conn``'s transaction, and let the access rules
        that run on ``conn`` meanwhile use what is remembered under it.

        ``lazy``: read it only when a rule first needs it, unless a statement read it first
        with its own rows (:func:`seen`): a GET whose row carries it makes one statement."""
        use = _Use(conn, self)
        if not lazy:
            self.settle(use, generations.read(conn))
        token = _current.set(use)
        try:
            yield
        finally:
            _current.reset(token)

    def settle(self, use: _Use, generation: int) -> None:
        with self._lock:
            # moved on; or back: a transaction that bumped it was rolled back after reads
            # under its value, which must not be taken for the next change's
            if generation != self._generation:
                self._generation, self._entries = generation, {}
        use.generation = generation

    def get(self, generation: int, key: tuple[str, str], load: Callable[[], T]) -> T:
        if generation == self._generation:
            found = self._entries.get(key, _MISSING)
            if found is not _MISSING:
                return found  # type: ignore[no-any-return]
        value = load()
        if value is not None:  # what does not exist (yet) is asked again
            with self._lock:
                if generation == self._generation:
                    if len(self._entries) >= self.LIMIT:
                        self._entries = {}
                    self._entries[key] = value
        return value


_MISSING = object()


class _Use:
    """A transaction's use of the memory: its connection, and the generation it read (None:
    not yet)."""

    __slots__ = ("conn", "generation", "memory")

    def __init__(self, conn: sa.Connection, memory: Remembered) -> None:
        self.conn = conn
        self.memory = memory
        self.generation: int | None = None


_current: contextvars.ContextVar[_Use | None] = contextvars.ContextVar(
    "opennimble_access", default=None
)


def remembered(conn: sa.Connection, key: tuple[str, str], load: Callable[[], T]) -> T:
    """``load()``, or what was remembered for ``key`` if ``conn``'s transaction read the
    access generation (:meth:`Remembered.using`)."""
    use = _current.get()
    if use is None or use.conn is not conn:
        return load()
    if use.generation is None:
        use.memory.settle(use, generations.read(conn))
    assert use.generation is not None
    return use.memory.get(use.generation, key, load)


def seen(conn: sa.Connection, generation: int) -> None:
    """The access generation as a statement of ``conn`` read it with its own rows: the
    transaction's, if it has not read one yet (:meth:`Remembered.using`'s ``lazy``)."""
    use = _current.get()
    if use is not None and use.conn is conn and use.generation is None:
        use.memory.settle(use, generation)


def memberships(conn: sa.Connection, user_id: str) -> list[Row]:
    """Every membership of the user (studios and launch profiles); do not modify."""
    return remembered(conn, ("members", user_id), lambda: members.scopes_of(conn, user_id))


def is_admin(conn: sa.Connection, caller: Caller, studio_id: str) -> bool:
    if caller.operator:
        return True
    return any(
        m["scope_id"] == studio_id and m["persona"] == "ADMINISTRATOR"
        for m in memberships(conn, caller.user_id)
    )


def is_launch_profile_user(conn: sa.Connection, user_id: str, launch_profile_id: str) -> bool:
    return any(m["scope_id"] == launch_profile_id for m in memberships(conn, user_id))


def has_standing(conn: sa.Connection, user_id: str, studio_id: str) -> bool:
    """Whether the user is a member of the studio or of one of its launch profiles."""
    return any(m["studio_id"] == studio_id for m in memberships(conn, user_id))


def belongs_to_studio(conn: sa.Connection, caller: Caller, studio_id: str) -> bool:
    """Whether the caller has any role in the studio."""
    return caller.operator or has_standing(conn, caller.user_id, studio_id)


def components_used_by(conn: sa.Connection, user_id: str, studio_id: str) -> set[str]:
    """The studio components of the launch profiles (not deleted) the user is a member of."""
    used: set[str] = set()
    for m in memberships(conn, user_id):
        if m["studio_id"] != studio_id or m["scope_id"] == studio_id:
            continue
        profile = resources.get(conn, LAUNCH_PROFILE, m["scope_id"], studio_id)
        if profile is not None and profile["state"] != "DELETED":
            used.update(profile["attrs"].get("studioComponentIds", []))
    return used


def require_standing(
    conn: sa.Connection, caller: Caller, studio_id: str, principals: list[tuple[str, str]]
) -> None:
    """Refuse to let a studio administrator add (field, user id) ``principals`` that have no
    standing in the studio; an operator may add anyone."""
    if caller.operator:
        return
    strangers = [(f, p) for f, p in principals if not has_standing(conn, p, studio_id)]
    if not strangers:
        return
    named = ", ".join(f"'{p}' at '{f}'" for f, p in strangers)
    raise errors.AccessDeniedException(
        f"User {caller.name} ({caller.user_id}) is not allowed to add {named}: "
        f"a studio administrator may add only users who already have standing in studio "
        f"{studio_id} (a membership of the studio or of one of its launch profiles); "
        "an operator brings a user into a studio",
        context={"principalId": caller.user_id},
    )


def studio(conn: sa.Connection, caller: Caller, studio_id: str, deleted_ok: bool = False) -> Row:
    """The studio, if it exists and the caller has a role in it. A DELETED studio stays
    readable (``deleted_ok``, for GetStudio) until it is purged."""
    row = remembered(conn, ("studio", studio_id), lambda: resources.get(conn, STUDIO, studio_id))
    if row is None or (row["state"] == "DELETED" and not deleted_ok):
        raise errors.not_found("Studio", studio_id)
    if not belongs_to_studio(conn, caller, studio_id):
        raise denied(caller, f"use studio {studio_id}")
    return dict(row)


def require_admin(conn: sa.Connection, caller: Caller, studio_id: str, action: str) -> None:
    if not is_admin(conn, caller, studio_id):
        raise denied(caller, action, "only the operator or a studio ADMINISTRATOR may")


def require_owner_or_admin(
    conn: sa.Connection, caller: Caller, studio_id: str, owner: str, action: str, who: str
) -> None:
    """Only ``owner`` (a session's owner) and the studio's administrators may do ``action``."""
    if owner != caller.user_id and not is_admin(conn, caller, studio_id):
        raise denied(caller, action, f"only {who} and studio administrators may")


def listed_owner(
    conn: sa.Connection, caller: Caller, studio_id: str, owned_by: str | None, what: str
) -> str | None:
    """The ``ownedBy`` filter a listing of ``what`` really applies: an administrator's as
    asked; a non-admin lists only what it owns, and asking for another owner's is denied."""
    if is_admin(conn, caller, studio_id):
        return owned_by
    if owned_by not in (None, caller.user_id):
        raise denied(
            caller, f"list the {what} owned by {owned_by}", "only studio administrators may"
        )
    return caller.user_id


USER_GONE = "The user of this stream was removed."
ACCESS_GONE = "The user of this stream no longer has access to its session."


def stream_access_lost(conn: sa.Connection, user_id: str, session: Row) -> str | None:
    """Why ``user_id`` (a stream's creator) may no longer watch ``session``, or None while they
    still may: by the API's own rule, a user of the identity store with a role in the studio
    who owns the session or administers the studio."""
    user = users.get_user(conn, user_id)
    if user is None:
        return USER_GONE
    caller = Caller(user_id, str(user["name"]), bool(user["operator"]))
    studio_id = session["studio_id"]
    if not belongs_to_studio(conn, caller, studio_id):
        return ACCESS_GONE
    if session["owned_by"] != user_id and not is_admin(conn, caller, studio_id):
        return ACCESS_GONE
    return None


def require_operator(caller: Caller, action: str) -> None:
    if not caller.operator:
        raise denied(caller, action, "only an operator may")


def denied(caller: Caller, action: str, why: str = "") -> errors.AccessDeniedException:
    reason = f": {why} do this" if why else ""
    return errors.AccessDeniedException(
        f"User {caller.name} ({caller.user_id}) is not allowed to {action}{reason}",
        context={"principalId": caller.user_id},
    )
