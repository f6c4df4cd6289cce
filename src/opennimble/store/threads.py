"""The store's threads: where ``Database.run`` runs store work, off the event loops.

A hop through ``loop.run_in_executor`` costs a ``concurrent.futures.Future``, an asyncio
future chained to it by callbacks under locks, and the executor's bookkeeping: 27 us of CPU
per hop one at a time, 12 us when requests queue (measured on the benchmark machine; see
bench/README.md). Here a hop is one queue put and one ``call_soon_threadsafe`` that sets the
loop's own future: 19 us one at a time, 3 us when requests queue. Every API read pays one.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import queue
import threading
from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")

# (the waiting loop, or None for a caller outside any loop; its future; the work; its arguments)
_Item = tuple[
    asyncio.AbstractEventLoop | None,
    "asyncio.Future[Any] | concurrent.futures.Future[Any]",
    Callable[..., Any],
    tuple[Any, ...],
]


class StoreThreads:
    """``count`` threads taking work from one queue; each runs ``initializer`` first."""

    def __init__(
        self, count: int, name: str, initializer: Callable[[], None] | None = None
    ) -> None:
        self._queue: queue.SimpleQueue[_Item | None] = queue.SimpleQueue()
        self._initializer = initializer
        # daemon threads: a process that exits without Database.dispose() does not wait for
        # them (dispose finishes the work queued before it, as an executor's shutdown did)
        self._threads = [
            threading.Thread(target=self._serve, name=f"{name}_{i}", daemon=True)
            for i in range(count)
        ]
        for thread in self._threads:
            thread.start()

    async def run(self, work: Callable[..., T], *args: Any) -> T:
        """``work(*args)`` in one of the threads; its result or its exception."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        self._queue.put((loop, future, work, args))
        return await future

    def call(self, work: Callable[..., T], *args: Any) -> T:
        """The same from a thread that runs no event loop (waits for the result)."""
        future: concurrent.futures.Future[T] = concurrent.futures.Future()
        self._queue.put((None, future, work, args))
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
        while True:
            item = self._queue.get()
            if item is None:
                return
            loop, future, work, args = item
            if future.cancelled():  # its caller stopped waiting before it started
                continue
            try:
                result = work(*args)
            except BaseException as exc:  # handed to the caller, whatever it is
                _answer(loop, future, _fail, exc)
            else:
                _answer(loop, future, _succeed, result)


def _answer(
    loop: asyncio.AbstractEventLoop | None,
    future: asyncio.Future[Any] | concurrent.futures.Future[Any],
    set_it: Callable[[Any, Any], None],
    value: Any,
) -> None:
    if loop is None:
        set_it(future, value)
        return
    with contextlib.suppress(RuntimeError):  # a loop closed meanwhile: nobody waits any more
        loop.call_soon_threadsafe(set_it, future, value)


def _succeed(future: asyncio.Future[Any] | concurrent.futures.Future[Any], value: Any) -> None:
    if not future.done():
        future.set_result(value)


def _fail(future: asyncio.Future[Any] | concurrent.futures.Future[Any], exc: Any) -> None:
    if not future.done():
        future.set_exception(exc)
