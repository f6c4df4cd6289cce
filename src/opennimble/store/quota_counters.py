"""Quota counters: how many of a studio's sessions count against its quotas, per studio (owner
``""``) and per (studio, owner), each counter striped over ``STRIPES`` rows.

Each stripe holds its share of the limit (:func:`share`: the limit divided as evenly as it
goes), so the stripes of a counter never hold more than the limit together. A create takes one
place on one stripe, picked at random, with one conditional UPDATE (``used < share``) in the
transaction that makes the session; if that stripe is full, on another that has room. The
check costs the same whatever the studio's size, and concurrent creates of one studio (or one
owner) lock different rows: they queue on each other only when they pick the same stripe. A
session that becomes DELETED gives its place back, on a stripe that holds one.

No over-admission: a place is only taken under the stripe's share, whose sum is the limit. A
refusal reads every stripe full at one moment (one statement): the counter was at the limit
then. (A place given back on a stripe already tried during that one create is seen by the
next.) When the limit changes, the shares change with it; a stripe above its new share takes
nothing until it is back under.

Locks, on PostgreSQL (SQLite serializes write transactions): a create holds at most one stripe
of each counter, the studio's before the owner's; places given back in a transaction are
given back at its end (``database.before_commit``), the studios' counters before the
owners', each in the order of its key and its stripes: every transaction takes these rows in
one order, so none waits for another in a cycle.

The statements are built once, with bound parameters: building one costs ten times its execution
on SQLite.
"""

from __future__ import annotations

import collections
import random

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from opennimble.store import database, hot, schema

t = schema.quota_counters
STUDIO = ""  # the owner under which a studio's total is counted
STRIPES = 8  # rows per counter (a migration spreads the counts when this changes)

# on the driver (store/hot.py), built once: every create runs two of them, each cost several
# times its execution through SQLAlchemy's (bound parameters of an UPDATE may not take its
# columns' names)
_COUNTER = (t.c.studio_id == sa.bindparam("studio"), t.c.owned_by == sa.bindparam("owner"))
_KEY = (*_COUNTER, t.c.stripe == sa.bindparam("at"))
_INCREMENT = hot.Statement(
    t.update().where(*_KEY, t.c.used < sa.bindparam("limit")).values(used=t.c.used + 1)
)
_STRIPES = hot.Statement(sa.select(t.c.stripe, t.c.used).where(*_COUNTER))
_USED = hot.Statement(sa.select(sa.func.sum(t.c.used)).where(*_COUNTER))
# (RETURNING says whether the row was made: the driver's rowcount of such an insert is not
# reliable on every database)
_FIRST = {
    "postgresql": hot.Statement(postgresql.insert(t).on_conflict_do_nothing().returning(t.c.used)),
    "sqlite": hot.Statement(sqlite.insert(t).on_conflict_do_nothing().returning(t.c.used)),
}
_DECREMENT = hot.Statement(t.update().where(*_KEY, t.c.used > 0).values(used=t.c.used - 1))


def share(limit: int, stripe: int) -> int:
    """The places of a counter whose limit is ``limit`` that stripe ``stripe`` holds."""
    return limit // STRIPES + (1 if stripe < limit % STRIPES else 0)


def take(conn: sa.Connection, studio_id: str, owned_by: str, limit: int) -> bool:
    """Count one more against the counter if it is under ``limit``; whether it was."""
    key = {"studio": studio_id, "owner": owned_by}
    first = random.randrange(STRIPES)
    if share(limit, first) > 0 and _take_on(conn, key, first, limit):
        return True
    # that stripe was full (or has no share of a small limit): those that have room now (that
    # one too, should a place have been given back on it meanwhile)
    held = {int(stripe): int(used) for stripe, used in _STRIPES.tuples(conn, **key)}
    for offset in range(STRIPES):
        stripe = (first + offset) % STRIPES
        if held.get(stripe, 0) < share(limit, stripe) and _take_on(conn, key, stripe, limit):
            return True
    return False


def _take_on(conn: sa.Connection, key: dict[str, str], stripe: int, limit: int) -> bool:
    """One more on ``stripe`` if it is under its share; whether it was."""
    at = {**key, "at": stripe, "limit": share(limit, stripe)}
    if _INCREMENT.execute(conn, **at) == 1:
        return True
    # no row, or a full one, or one that a concurrent transaction made after this one's update
    # looked: make the row with this session counted unless it is there (on PostgreSQL the
    # insert waits for a concurrent maker to end); if it is, count again, on what is committed
    row = {"studio_id": key["studio"], "owned_by": key["owner"], "stripe": stripe, "used": 1}
    if _FIRST[conn.dialect.name].tuples(conn, **row):
        return True
    return _INCREMENT.execute(conn, **at) == 1


def used(conn: sa.Connection, studio_id: str, owned_by: str) -> int | None:
    """The counter's value (all its stripes); None when nothing was ever counted on it."""
    value = _USED.scalar(conn, studio=studio_id, owner=owned_by)
    return None if value is None else int(value)


_GIVEN = "opennimble_quota_given_back"
GIVE_BACK_ORDER = 50  # among the work at a transaction's end: with the quotas, before events


def give_back(conn: sa.Connection, studio_id: str, owned_by: str) -> None:
    """One session of ``owned_by`` in the studio no longer counts (both counters): at the end
    of the transaction on PostgreSQL (see the module's doc), at once on SQLite."""
    pending = _given_back(conn)
    if pending is None:
        if not database.before_commit(conn, _GIVEN, _give_back_all, GIVE_BACK_ORDER):
            _give_back_places(conn, {(studio_id, STUDIO): 1, (studio_id, owned_by): 1})
            return
        pending = collections.Counter()
        conn.info[_GIVEN] = (conn.get_transaction(), pending)
    pending[(studio_id, STUDIO)] += 1
    pending[(studio_id, owned_by)] += 1


def _given_back(conn: sa.Connection) -> collections.Counter[tuple[str, str]] | None:
    found = conn.info.get(_GIVEN)
    if found is None or found[0] is not conn.get_transaction():
        return None
    pending: collections.Counter[tuple[str, str]] = found[1]
    return pending


def _give_back_all(conn: sa.Connection) -> None:
    pending = _given_back(conn)
    conn.info.pop(_GIVEN, None)
    if pending:
        _give_back_places(conn, pending)


def _give_back_places(conn: sa.Connection, places: dict[tuple[str, str], int]) -> None:
    """Give back ``places[(studio, owner)]`` places of each counter: the studios' counters
    first, then the owners', each in key order, from its lowest stripe that holds one up."""
    order = sorted(places, key=lambda counter: (counter[1] != STUDIO, counter))
    for studio_id, owned_by in order:
        key = {"studio": studio_id, "owner": owned_by}
        left = places[(studio_id, owned_by)]
        held = sorted((int(s), int(u)) for s, u in _STRIPES.tuples(conn, **key) if u > 0)
        for stripe, count in held:
            while left and count and _DECREMENT.execute(conn, **key, at=stripe):
                left, count = left - 1, count - 1
            if not left:
                break
