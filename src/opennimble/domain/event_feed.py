"""Following the lifecycle events as they are recorded (docs/events.md): who may see which,
and an async iterator over the new ones. The API's ``GET /events`` is built on it; any other
live view (the portal's) can be too.

Because events are numbered in commit order (:mod:`opennimble.store.events`), "the events
after N" read again and again loses nothing and repeats nothing.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator
from typing import Any

import sqlalchemy as sa

from opennimble.domain.identity import Caller
from opennimble.store import database, events, members

Row = dict[str, Any]
POLL = 0.25  # seconds between reads when nothing new came
BATCH = 200  # events read at once


@dataclasses.dataclass(frozen=True)
class Audience:
    """Whose events a caller may see: an operator every one, a studio's ADMINISTRATOR that
    studio's, anyone the events of their own sessions in studios where they have standing."""

    everything: bool
    admin_of: frozenset[str]
    member_of: frozenset[str]
    user_id: str

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
    db: database.Database, after: int, *, studio_id: str | None = None, poll: float = POLL
) -> AsyncIterator[list[Row]]:
    """The events recorded after ``after`` (of one studio if given), in order, in batches;
    an empty batch every ``poll`` seconds while nothing happens (a chance to send a keep-alive
    or to notice that the client went away). Never ends by itself. The reads run in the
    store's threads (:meth:`~opennimble.store.database.Database.run`)."""

    def read(seq: int) -> list[Row]:
        with db.read() as conn:
            return events.after(conn, seq, BATCH, studio_id)

    while True:
        batch = await db.run(read, after)
        if batch:
            after = int(batch[-1]["seq"])
        yield batch
        if len(batch) < BATCH:
            await asyncio.sleep(poll)
