"""Group commit: the write transactions of concurrent requests share one database commit.

SQLite makes a commit durable with an fsync of its write-ahead log (``synchronous=FULL``), a few
milliseconds on common disks, and it runs one write transaction at a time: with a transaction
per request, the disk's fsync rate caps the writes. Here one thread (the database has one
writer anyway) takes every piece of work that is waiting, runs each in a savepoint of one
transaction, commits once, and only then answers each caller, with its result or its own
error. A piece that fails is rolled back to its savepoint and leaves the others untouched, so
each caller sees what a transaction of its own would have given it: the pieces run one after
the other, each seeing the ones before it, and nothing is acknowledged before it is durable.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import queue
import threading
from collections.abc import Callable
from typing import Any, TypeVar

import sqlalchemy as sa

from opennimble.store import database, events

T = TypeVar("T")
Work = Callable[[sa.Connection], Any]
log = logging.getLogger("opennimble.store")

MAX_BATCH = 64  # pieces of work in one transaction at most


class GroupCommit:
    """Runs write work (``work(conn)``) in shared transactions on a thread of its own."""

    def __init__(self, db: database.Database, max_batch: int = MAX_BATCH) -> None:
        self.db = db
        self.max_batch = max_batch
        self._queue: queue.SimpleQueue[tuple[Work, concurrent.futures.Future[Any]] | None] = (
            queue.SimpleQueue()
        )
        self._thread: threading.Thread | None = None
        self._start_lock = threading.Lock()
        self.batches = 0  # transactions committed, and the work they held (for measurements)
        self.pieces = 0

    def run(self, work: Callable[[sa.Connection], T]) -> T:
        """Run ``work`` in a write transaction shared with other callers' work; return its
        result once the transaction is committed, or raise its error (its part rolled back)."""
        result: T = self.submit(work).result()
        return result

    def submit(self, work: Callable[[sa.Connection], T]) -> concurrent.futures.Future[T]:
        self._ensure_started()
        future: concurrent.futures.Future[T] = concurrent.futures.Future()
        self._queue.put((work, future))
        return future

    def close(self) -> None:
        """Finish the work already submitted and stop the thread."""
        with self._start_lock:
            thread, self._thread = self._thread, None
        if thread is not None:
            self._queue.put(None)
            thread.join()

    def _ensure_started(self) -> None:
        if self._thread is not None:
            return
        with self._start_lock:
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._serve, name="opennimble-group-commit", daemon=True
                )
                self._thread.start()

    def _serve(self) -> None:
        while True:
            first = self._queue.get()
            if first is None:
                return
            batch = [first]
            stop = False
            while len(batch) < self.max_batch:
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
                if item is None:
                    stop = True
                    break
                batch.append(item)
            self._run_batch(batch)
            if stop:
                return

    def _run_batch(self, batch: list[tuple[Work, concurrent.futures.Future[Any]]]) -> None:
        outcomes: list[tuple[concurrent.futures.Future[Any], Any, BaseException | None]] = []
        try:
            with self.db.write() as conn:
                for work, future in batch:
                    if not future.set_running_or_notify_cancel():
                        continue
                    outcomes.append((future, *_piece(conn, work)))
        except Exception as exc:  # the transaction itself failed: nothing of it was stored
            log.warning("a group of %d writes failed to commit: %s", len(batch), exc)
            for _, future in batch:
                if not future.done():
                    future.set_exception(exc)
            return
        self.batches += 1
        self.pieces += len(outcomes)
        for future, value, error in outcomes:
            if error is None:
                future.set_result(value)
            else:
                future.set_exception(error)


def _piece(conn: sa.Connection, work: Work) -> tuple[Any, Exception | None]:
    """Run ``work`` in a savepoint of the batch's transaction: (its result, None), or (None, its
    error) with its changes undone and the batch's others kept.

    The savepoint is the driver's own, not SQLAlchemy's ``begin_nested``: a piece's savepoint
    is taken and released for every write request, and SQLAlchemy's nested transaction (its
    statements built, run and tracked) cost ~13% of this thread's time, more than the SQL."""
    driver = conn.connection.driver_connection
    assert driver is not None
    driver.execute("SAVEPOINT opennimble_piece")
    try:
        value = work(conn)
    except Exception as exc:  # the caller's own error: only its part undone
        driver.execute("ROLLBACK TO opennimble_piece")
        driver.execute("RELEASE opennimble_piece")
        return None, exc
    driver.execute("RELEASE opennimble_piece")
    return value, None


class Writes:
    """Where a process's asynchronous code (the reconciler's actions) runs its write
    transactions, awaited without blocking the event loop: on SQLite through the process's
    group commit, sharing commits with the API's writes; otherwise each in a transaction of its
    own in the store's threads (``Database.run``), where concurrent transactions overlap their
    round trips and the server flushes their commits together.

    :meth:`batched` goes further: the work of every caller that comes while the previous batch
    is being written runs in one transaction (one piece of the group commit), one after the
    other, each seeing the ones before it. Should the batch fail, each work is run again on its
    own, so that a caller gets its own result or error exactly as with a transaction of its
    own, and the others are not held back by it."""

    def __init__(
        self, db: database.Database, group: GroupCommit | None = None, max_batch: int = 256
    ) -> None:
        self.db = db
        self.group = group if group is not None or not db.is_sqlite else GroupCommit(db)
        self.max_batch = max_batch
        self._pending: list[tuple[Work, asyncio.Future[Any]]] = []
        self._writing = False
        self.batches = 0  # transactions written by batched(), and the work they held
        self.pieces = 0

    async def __call__(self, work: Callable[[sa.Connection], T]) -> T:
        """Run ``work`` in a write transaction of its own (a piece of the group commit)."""
        if self.group is not None:
            return await asyncio.wrap_future(self.group.submit(work))
        return await self.db.run(self._transaction, work)

    async def batched(self, work: Callable[[sa.Connection], T]) -> T:
        """Run ``work`` in a write transaction shared with the batched work of other tasks of
        this event loop (see the class's doc)."""
        future: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        self._pending.append((work, future))
        if not self._writing:
            self._writing = True
            # the other tasks that are ready to run add theirs first
            asyncio.get_running_loop().call_soon(self._start_writing)
        return await future

    def _start_writing(self) -> None:
        asyncio.get_running_loop().create_task(self._write_batches())

    async def _write_batches(self) -> None:
        try:
            while self._pending:
                batch = self._pending[: self.max_batch]
                del self._pending[: len(batch)]
                await self._write(batch)
        finally:
            self._writing = False

    async def _write(self, batch: list[tuple[Work, asyncio.Future[Any]]]) -> None:
        batch = [(work, future) for work, future in batch if not future.done()]
        if len(batch) > 1:

            def all_of(conn: sa.Connection) -> list[Any]:
                events.serialize(conn)  # the events' lock before any row's (see events)
                return [work(conn) for work, _ in batch]

            try:
                results = await self(all_of)
            except Exception as exc:  # one of them failed: each on its own, for its outcome
                log.debug("a batch of %d writes failed (%s); writing each alone", len(batch), exc)
            else:
                self.batches += 1
                self.pieces += len(batch)
                for (_, future), value in zip(batch, results, strict=True):
                    if not future.done():
                        future.set_result(value)
                return
        for work, future in batch:
            try:
                value = await self(work)
            except Exception as exc:
                if not future.done():
                    future.set_exception(exc)
            else:
                if not future.done():
                    future.set_result(value)

    def _transaction(self, work: Callable[[sa.Connection], T]) -> T:
        with self.db.write() as conn:
            return work(conn)

    def close(self) -> None:
        if self.group is not None:
            self.group.close()
