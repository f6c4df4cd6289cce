"""The live stream connections, and the watch that ends them when their session stops or
their user loses access.

An established connection lives until its session stops or is deleted, or until the user who
created its stream is removed from the identity store or loses access to the session (their
memberships). The API server that records such a change may be another process than the one
holding the connection, so the gateway watches the database: while connections are open, one
task reads their sessions and their users' access every ``interval`` seconds (primary-key reads
per watched session and user) and ends every connection that may not go on, with a close
reason that says what happened.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

import sqlalchemy as sa

from opennimble.domain import access
from opennimble.gateway.streams import Close
from opennimble.store import database, sessions

log = logging.getLogger("opennimble.gateway")


def ended_reason(state: str | None) -> str | None:
    """Why a connection into a session in ``state`` must end (None: it may go on)."""
    if state == "READY":
        return None
    if state is None or state.startswith("DELETE"):
        return "The session was deleted."
    if state.startswith("STOP"):
        return "The session was stopped."
    return f"The session is {state}."


class Connection:
    """One browser connected to one session's desktop; ``ended`` fires when it must close."""

    def __init__(self, session_id: str, user_id: str) -> None:
        self.session_id = session_id
        self.user_id = user_id
        self.ended = asyncio.Event()
        self.code = Close.SESSION_ENDED
        self.reason = ""

    def end(self, code: Close, reason: str) -> None:
        if not self.ended.is_set():
            self.code, self.reason = code, reason
            self.ended.set()


class LiveConnections:
    def __init__(self, db: database.Database, interval: float = 1.0) -> None:
        self.db = db
        self.interval = interval
        self._open: set[Connection] = set()
        self._watch: asyncio.Task[None] | None = None

    def __len__(self) -> int:
        return len(self._open)

    def add(self, connection: Connection) -> None:
        self._open.add(connection)
        if self._watch is None or self._watch.done():
            self._watch = asyncio.get_running_loop().create_task(self._watching())

    def discard(self, connection: Connection) -> None:
        self._open.discard(connection)

    async def check(self) -> None:
        """End the connections whose session is no longer READY, or whose user has lost
        access to it (the database is read in the store's threads)."""
        by_session: dict[str, list[Connection]] = {}
        for connection in self._open:
            by_session.setdefault(connection.session_id, []).append(connection)
        for connection, code, reason in await self.db.run(self._ends, by_session):
            connection.end(code, reason)

    def _ends(self, by_session: dict[str, list[Connection]]) -> list[End]:
        ends: list[End] = []
        with self.db.read() as conn:
            for session_id, connections in by_session.items():
                ends += _check_session(conn, session_id, connections)
        return ends

    async def close(self) -> None:
        """End every connection (the server is shutting down) and stop watching."""
        for connection in list(self._open):
            connection.end(Close.SHUTDOWN, "The server is shutting down.")
        if self._watch is not None:
            self._watch.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watch

    async def _watching(self) -> None:
        while self._open:
            await asyncio.sleep(self.interval)
            try:
                await self.check()
            except Exception:  # a database hiccup must not end the watch
                log.exception("cannot read the sessions of live stream connections")


End = tuple["Connection", Close, str]


def _check_session(
    conn: sa.Connection, session_id: str, connections: list[Connection]
) -> list[End]:
    session = sessions.get(conn, session_id)
    reason = ended_reason(None if session is None else str(session["state"]))
    if reason is not None or session is None:
        return [(connection, Close.SESSION_ENDED, reason or "") for connection in connections]
    ends: list[End] = []
    for user_id in {c.user_id for c in connections}:
        lost = access.stream_access_lost(conn, user_id, session)
        if lost is not None:
            ends += [(c, Close.REVOKED, lost) for c in connections if c.user_id == user_id]
    return ends
