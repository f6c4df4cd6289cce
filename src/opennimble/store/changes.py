"""The process's change hub: where the live views of a process (the portal's pages,
``GET /events``) wait for "something changed", so that none of them reads the database while
nothing changes, however many are open.

A change has a *topic*: a studio's id (a session of that studio changed: an event was
recorded, see :mod:`opennimble.store.events`) or :data:`ACCESS` (what the access rules read
changed: users, keys, memberships, studios; see :mod:`opennimble.store.generations`). The hub
hears of changes from

* this process's write transactions, once they commit: the store notes the topics in the
  transaction (:func:`database.changed`) and :meth:`Database.write` announces them after the
  commit (:attr:`Database.on_commit`), whoever wrote (the API, the reconciler, the portal);
* on PostgreSQL, every process's: a trigger NOTIFYs :data:`database.CHANGE_CHANNEL` with the
  topic when the transaction commits (``schema.CHANGE_DDL``), and the hub LISTENs on a
  connection of its own (connecting again with back-off, reading the fallback meanwhile);
* where nothing else would tell, a slow fallback read (the newest event's number and the
  access generation: one statement) every :data:`FALLBACK` seconds, for the whole process: on
  SQLite for the writes of other processes (the CLI), on PostgreSQL while not listening.

A subscriber takes the hub's version (:meth:`Hub.mark`) *before* it reads what it shows, then
awaits :meth:`Hub.wait`, which returns as soon as a change of one of its topics came after
that version (so a change committed during its read is never missed, at worst read twice).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Collection, Iterable

import sqlalchemy as sa

from opennimble.store import database, generations, schema

log = logging.getLogger("opennimble.store")

ACCESS = database.ACCESS_TOPIC
FALLBACK = 1.0  # seconds between fallback reads
RETRY_MAX = 30.0  # seconds between attempts to listen again, at most

# the fallback's one statement: the newest event's number and the access generation
_MARKS = sa.select(
    sa.select(sa.func.max(schema.events.c.seq)).scalar_subquery(),
    sa.select(schema.generations.c.value)
    .where(schema.generations.c.name == generations.ACCESS)
    .scalar_subquery(),
)


class Hub:
    """The change hub of a process (one per :class:`~opennimble.store.database.Database`)."""

    def __init__(self, db: database.Database, *, fallback: float = FALLBACK) -> None:
        self.db = db
        self.fallback = fallback
        self.version = 0  # how many changes were heard (on the event loop)
        self.listening = False  # PostgreSQL: whether the LISTEN connection is up
        self.fallback_reads = 0
        self._latest: dict[str, int] = {}  # topic -> version of its last change
        self._everything = 0  # version of the last change of unknown topics (all of them)
        self._moved: asyncio.Event | None = None  # set (and replaced) at the next change
        self._loop: asyncio.AbstractEventLoop | None = None
        db.on_commit.append(self.notify)

    # ---- hearing of changes

    def notify(self, topics: Iterable[str] | None = None) -> None:
        """A change of ``topics`` (``None``: of every topic) was committed. Callable from any
        thread; before anything waits (no event loop yet) there is nobody to tell."""
        loop = self._loop
        if loop is None:
            return
        heard = None if topics is None else frozenset(topics)
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is loop:
            self._changed(heard)
            return
        with contextlib.suppress(RuntimeError):  # a closed loop: the process is ending
            loop.call_soon_threadsafe(self._changed, heard)

    def _changed(self, topics: Collection[str] | None) -> None:
        self.version += 1
        if topics is None:
            self._everything = self.version
        else:
            for topic in topics:
                self._latest[topic] = self.version
        moved, self._moved = self._moved, None
        if moved is not None:
            moved.set()

    async def run(self) -> None:
        """Hear the changes of other processes until cancelled: LISTEN on PostgreSQL, the
        fallback read on SQLite."""
        self._bind()
        if self.db.is_postgresql:
            await self._listen()
        else:
            await self._fall_back(None)

    async def _listen(self) -> None:
        delay = 1.0
        while True:
            try:
                async with self.db.listener(lock=None, channel=database.CHANGE_CHANNEL) as listener:
                    self.listening, delay = True, 1.0
                    self._changed(None)  # whatever happened while nobody listened
                    async for topic in listener.notifications():
                        self._changed((topic,))
            except Exception as exc:
                log.warning("listening for changes failed (%s); reading them meanwhile", exc)
            finally:
                self.listening = False
            await self._fall_back(delay)
            delay = min(delay * 2, RETRY_MAX)

    async def _fall_back(self, duration: float | None) -> None:
        """Read the marks every :attr:`fallback` seconds (for ``duration`` seconds, or until
        cancelled); announce a change to every topic when they moved."""
        loop = asyncio.get_running_loop()
        end = None if duration is None else loop.time() + duration
        last: tuple[object, object] | None = None
        while end is None or loop.time() < end:
            try:
                marks = await self.db.run(self._read_marks)
            except Exception as exc:
                log.debug("reading the change marks failed: %s", exc)
            else:
                if last is not None and marks != last:
                    self._changed(None)
                last = marks
            pause = self.fallback if end is None else min(self.fallback, end - loop.time())
            await asyncio.sleep(max(pause, 0.0))

    def _read_marks(self) -> tuple[object, object]:
        self.fallback_reads += 1
        with self.db.read() as conn:
            newest, access = conn.execute(_MARKS).one()
        return newest, access

    # ---- waiting for changes

    def mark(self) -> int:
        """The version to wait from: take it before reading what the change would alter."""
        self._bind()
        return self.version

    def moved(self, seen: int, topics: Collection[str] | None = None) -> bool:
        """Whether a change of one of ``topics`` (``None``: any) came after version ``seen``."""
        if topics is None or self._everything > seen:
            return self.version > seen
        return any(self._latest.get(topic, 0) > seen for topic in topics)

    async def wait(
        self, seen: int, topics: Collection[str] | None = None, timeout: float | None = None
    ) -> int:
        """Once a change of one of ``topics`` (``None``: any) came after version ``seen``, the
        hub's version (to wait from next); ``seen`` itself if ``timeout`` seconds passed
        first. Reads nothing."""
        self._bind()
        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + timeout
        while not self.moved(seen, topics):
            if self._moved is None:
                self._moved = asyncio.Event()
            moved = self._moved
            remaining = None if deadline is None else deadline - loop.time()
            if remaining is not None and remaining <= 0:
                return seen
            try:
                async with asyncio.timeout(remaining):
                    await moved.wait()
            except TimeoutError:
                return seen
        return self.version

    def _bind(self) -> None:
        """The hub lives on the event loop of the first one to use it (the server's)."""
        if self._loop is None:
            self._loop = asyncio.get_running_loop()
