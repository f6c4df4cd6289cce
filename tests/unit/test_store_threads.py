"""The store threads behind Database.run: results, errors, waiting callers, shutdown."""

from __future__ import annotations

import asyncio
import threading

import pytest

from opennimble.store.threads import StoreThreads


def test_work_runs_in_the_threads_and_answers_the_loop() -> None:
    started: list[str] = []
    threads = StoreThreads(2, "test-store", initializer=lambda: started.append("x"))

    async def main() -> list[tuple[int, str]]:
        def work(n: int) -> tuple[int, str]:
            return n * n, threading.current_thread().name

        return await asyncio.gather(*[threads.run(work, n) for n in range(50)])

    try:
        answers = asyncio.run(main())
    finally:
        threads.shutdown()
    assert [square for square, _ in answers] == [n * n for n in range(50)]
    assert {name for _, name in answers} <= {"test-store_0", "test-store_1"}
    assert started == ["x", "x"]  # each thread ran the initializer once


def test_an_error_reaches_its_caller_only() -> None:
    threads = StoreThreads(1, "test-store")

    def fail() -> None:
        raise LookupError("no such row")

    async def main() -> int:
        with pytest.raises(LookupError, match="no such row"):
            await threads.run(fail)
        return await threads.run(len, "abc")  # the thread goes on serving

    try:
        assert asyncio.run(main()) == 3
        with pytest.raises(LookupError):
            threads.call(fail)
        assert threads.call(len, "ab") == 2
    finally:
        threads.shutdown()


def test_work_whose_caller_stopped_waiting_before_it_started_does_not_run() -> None:
    threads = StoreThreads(1, "test-store")
    gate = threading.Event()
    ran: list[str] = []

    async def main() -> None:
        blocker = asyncio.ensure_future(threads.run(gate.wait))
        await asyncio.sleep(0.05)  # the one thread is busy with the blocker
        queued = asyncio.ensure_future(threads.run(ran.append, "late"))
        await asyncio.sleep(0)
        queued.cancel()
        gate.set()
        await blocker
        await threads.run(ran.append, "next")

    try:
        asyncio.run(main())
    finally:
        threads.shutdown()
    assert ran == ["next"]


def test_shutdown_finishes_the_work_queued_before_it() -> None:
    threads = StoreThreads(1, "test-store")
    gate = threading.Event()

    def slow(n: int) -> int:
        gate.wait()
        return n

    async def main() -> list[int]:
        answers = [asyncio.ensure_future(threads.run(slow, n)) for n in range(3)]
        await asyncio.sleep(0.05)  # all three queued, the first waiting at the gate
        stopping = asyncio.ensure_future(asyncio.to_thread(threads.shutdown))
        await asyncio.sleep(0.05)
        assert not stopping.done()  # shutdown waits for the work queued before it
        gate.set()
        await stopping
        return list(await asyncio.gather(*answers))

    assert asyncio.run(main()) == [0, 1, 2]
