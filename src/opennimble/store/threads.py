"""The store's threads: where ``Database.run`` runs store work, off the event loops.

A hop through ``loop.run_in_executor`` costs a ``concurrent.futures.Future``, an asyncio
future chained to it by callbacks under locks, and the executor's bookkeeping: 27 us of CPU
per hop one at a time, 12 us when requests queue (measured on the benchmark machine; see
bench/README.md). Here a hop is one queue put and one ``call_soon_threadsafe`` that sets the
loop's own future: 19 us one at a time, 3 us when requests queue. Every API read pays one.

Answers can be handed back in batches (``linger``). A thread that finishes a piece of work
while more is already queued keeps the answer and runs the next piece, for up to ``linger``
seconds, then hands every answer it kept to its loop at once; with nothing queued, at once.
Waking the loop for each answer made the threads take the GIL from each other at the calls
into the database that followed (each releases it): 3.7 context switches and ~100 us of CPU
per SQLite Get with 32 requests queued, and on PostgreSQL a third of the process's CPU spent
in the kernel's task switches. An answer is kept only behind *brief* work (:meth:`run_brief`:
work that cannot wait long, such as a read in autocommit mode, which waits on no lock); before
other work starts (a write may wait on a lock for seconds) the kept answers are handed over.
So an answer waits at most ``linger`` plus one brief piece of work.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import queue
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")

# (the waiting loop, or None for a caller outside any loop; its future; the work; its
# arguments; whether it is brief: answers may be kept behind it)
_Item = tuple[
    asyncio.AbstractEventLoop | None,
    "asyncio.Future[Any] | concurrent.futures.Future[Any]",
    Callable[..., Any],
    tuple[Any, ...],
    bool,
]


class StoreThreads:
    """``count`` threads taking work from one queue; each runs ``initializer`` first and
    hands its answers back in batches of up to ``linger`` seconds (0: each at once)."""

    def __init__(
        self,
        count: int,
        name: str,
        initializer: Callable[[], None] | None = None,
        *,
        linger: float = 0.0,
    ) -> None:
        self._queue: queue.SimpleQueue[_Item | None] = queue.SimpleQueue()
        self._initializer = initializer
        self._linger = linger
        # daemon threads: a process that exits without Database.dispose() does not wait for
        # them (dispose finishes the work queued before it, as an executor's shutdown did)
        self._threads = [
            threading.Thread(target=self._serve, name=f"{name}_{i}", daemon=True)
            for i in range(count)
        ]
        for thread in self._threads:
            thread.start()

    async def run(self, work: Callable[..., T], *args: Any) -> T:
        """``work(*args)`` in one of the threads; its result or its exception. The answers a
        thread keeps are handed over before it starts ``work``, which may wait long."""
        return await self._run(work, args, False)

    async def run_brief(self, work: Callable[..., T], *args: Any) -> T:
        """The same for work that cannot wait long (it takes no lock): answers of work before
        it may be kept while it runs, to wake their loop once for several."""
        return await self._run(work, args, True)

    async def _run(self, work: Callable[..., T], args: tuple[Any, ...], brief: bool) -> T:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        self._queue.put((loop, future, work, args, brief))
        return await future

    def call(self, work: Callable[..., T], *args: Any) -> T:
        """The same from a thread that runs no event loop (waits for the result)."""
        future: concurrent.futures.Future[T] = concurrent.futures.Future()
        self._queue.put((None, future, work, args, False))
        return future.result()

    def shutdown(self) -> None:
        """Finish the work queued so far, then end the threads."""
        for _ in self._threads:
            self._queue.put(None)
        for thread in self._threads:
            thread.join()

    def _serve(self) -> None:
        if self._initializer is not None:
            self._initializer()
        answers = _Answers(self._linger)
        while True:
            if answers and (answers.due() or self._queue.empty()):
                answers.hand_over()
            try:  # block only when no answer waits to be handed over
                item = self._queue.get_nowait() if answers else self._queue.get()
            except queue.Empty:  # another thread took it: hand over on the next turn
                continue
            if item is None:
                answers.hand_over()
                return
            loop, future, work, args, brief = item
            if future.cancelled():  # its caller stopped waiting before it started
                continue
            if answers and not brief:  # it may wait long: hold no answer back behind it
                answers.hand_over()
            try:
                result = work(*args)
            except BaseException as exc:  # handed to the caller, whatever it is
                answers.add(loop, future, _fail, exc)
            else:
                answers.add(loop, future, _succeed, result)


_Settle = tuple[Any, Callable[[Any, Any], None], Any]  # a future, how to settle it, the value


class _Answers:
    """A thread's answers not yet handed to their loops, per loop."""

    def __init__(self, linger: float) -> None:
        self._linger = linger
        self._waiting: dict[asyncio.AbstractEventLoop, list[_Settle]] = {}
        self._since = 0.0

    def __bool__(self) -> bool:
        return bool(self._waiting)

    def add(
        self,
        loop: asyncio.AbstractEventLoop | None,
        future: asyncio.Future[Any] | concurrent.futures.Future[Any],
        set_it: Callable[[Any, Any], None],
        value: Any,
    ) -> None:
        if loop is None:  # a thread waits on it: no loop to wake
            set_it(future, value)
            return
        if not self._waiting:
            self._since = time.monotonic()
        self._waiting.setdefault(loop, []).append((future, set_it, value))

    def due(self) -> bool:
        return time.monotonic() - self._since >= self._linger

    def hand_over(self) -> None:
        waiting, self._waiting = self._waiting, {}
        for loop, settles in waiting.items():
            with contextlib.suppress(RuntimeError):  # a loop closed meanwhile: nobody waits
                loop.call_soon_threadsafe(_settle, settles)


def _settle(settles: list[_Settle]) -> None:
    for future, set_it, value in settles:
        set_it(future, value)


def _succeed(future: asyncio.Future[Any] | concurrent.futures.Future[Any], value: Any) -> None:
    if not future.done():
        future.set_result(value)


def _fail(future: asyncio.Future[Any] | concurrent.futures.Future[Any], exc: Any) -> None:
    if not future.done():
        future.set_exception(exc)
