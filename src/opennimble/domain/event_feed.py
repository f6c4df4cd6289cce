"""Following the lifecycle events as they are recorded (docs/events.md): who may see which,
and an async iterator over the new ones. The API's ``GET /events`` is built on it; any other
live view (the portal's) can be too.

Because events are numbered in commit order (:mod:`opennimble.store.events`), "the events
after N" read again and again loses nothing and repeats nothing. They are read again only
when the process's change hub (:mod:`opennimble.store.changes`) heard of a change, so an idle
follower costs the database nothing.
"""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator, Callable, Collection
from typing import Any

import sqlalchemy as sa

from opennimble.domain.identity import Caller
from opennimble.store import changes as changes_hub
from opennimble.store import database, events, members

Row = dict[str, Any]
QUIET = 15.0  # seconds without a change after which an empty batch comes
BATCH = 200  # events read at once


@dataclasses.dataclass(frozen=True)
class Audience:
    """Whose events a caller may see: an operator every one, a studio's ADMINISTRATOR that
    studio's, anyone the events of their own sessions in studios where they have standing."""

    everything: bool
    admin_of: frozenset[str]
    member_of: frozenset[str]
    user_id: str

    @property
    def topics(self) -> Collection[str] | None:
        """The change hub's topics of the events this audience sees (``None``: all)."""
        if self.everything:
            return None
        return self.admin_of | self.member_of | {changes_hub.ACCESS}

    def sees(self, event: Row) -> bool:
        if self.everything or event["studio_id"] in self.admin_of:
            return True
        return event["owned_by"] == self.user_id and event["studio_id"] in self.member_of


def audience(conn: sa.Connection, caller: Caller) -> Audience:
    scopes = members.scopes_of(conn, caller.user_id)
    admin_of = {
        m["studio_id"]
        for m in scopes
        if m["scope_id"] == m["studio_id"] and m["persona"] == "ADMINISTRATOR"
    }
    return Audience(
        caller.operator,
        frozenset(admin_of),
        frozenset(m["studio_id"] for m in scopes),
        caller.user_id,
    )


def start(conn: sa.Connection, after: int | None) -> int:
    """Where a feed begins: after the event a client saw last, or (``None``) after the newest
    one, so that only what happens from now on comes."""
    return events.last(conn) if after is None else after


async def follow(
    db: database.Database,
    changes: changes_hub.Hub,
    after: int,
    *,
    studio_id: str | None = None,
    topics: Callable[[], Collection[str] | None] = lambda: None,
    quiet: float = QUIET,
) -> AsyncIterator[list[Row]]:
    """The events recorded after ``after`` (of one studio if given), in order, in batches.

    After the first read, the events are read again only when ``changes`` heard of a change
    of one of ``topics()`` (``None``: of any), and that batch comes even when it is empty (a
    change of access, say: a chance to check who sees what again); an empty batch comes too
    when nothing changed for ``quiet`` seconds (a chance to send a keep-alive). Never ends by
    itself. The reads run in the store's threads
    (:meth:`~opennimble.store.database.Database.run`)."""

    def read(seq: int) -> list[Row]:
        with db.read() as conn:
            return events.after(conn, seq, BATCH, studio_id)

    seen = changes.mark()  # before reading: a change committed during the read is not missed
    while True:
        batch = await db.run(read, after)
        if batch:
            after = int(batch[-1]["seq"])
        yield batch
        if len(batch) == BATCH:
            continue  # more are waiting
        while True:
            moved = await changes.wait(seen, topics(), quiet)
            if moved != seen:
                seen = moved
                break
            yield []
