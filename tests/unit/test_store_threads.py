"""The store threads behind Database.run: results, errors, waiting callers, shutdown."""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

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


def _counting_wakes(loop: asyncio.AbstractEventLoop) -> list[int]:
    """Count the store threads' wakes of ``loop`` (its call_soon_threadsafe)."""
    wakes = [0]
    original = loop.call_soon_threadsafe

    def counted(*args: Any, **kwargs: Any) -> Any:
        wakes[0] += 1
        return original(*args, **kwargs)

    loop.call_soon_threadsafe = counted  # type: ignore[method-assign,assignment]
    return wakes


@pytest.mark.parametrize(("linger", "most_wakes"), [(1.0, 2), (0.0, 21)])
def test_answers_of_queued_work_reach_the_loop_together(linger: float, most_wakes: int) -> None:
    """Work queued behind other work: with ``linger``, its answers wake the loop once."""
    threads = StoreThreads(1, "test-store", linger=linger)
    gate = threading.Event()

    async def main() -> tuple[list[int], int]:
        wakes = _counting_wakes(asyncio.get_running_loop())
        first = asyncio.ensure_future(threads.run(gate.wait))
        await asyncio.sleep(0.05)  # the thread waits at the gate
        rest = [asyncio.ensure_future(threads.run_brief(abs, -n)) for n in range(20)]
        await asyncio.sleep(0)
        gate.set()
        await first
        return list(await asyncio.gather(*rest)), wakes[0]

    try:
        answers, wakes = asyncio.run(main())
    finally:
        threads.shutdown()
    assert answers == list(range(20))
    assert 1 <= wakes <= most_wakes
    if linger == 0.0:
        assert wakes == 21  # each answer at once


def test_a_kept_answer_waits_no_longer_than_the_linger_and_one_piece_of_work() -> None:
    threads = StoreThreads(1, "test-store", linger=0.05)
    gate = threading.Event()

    async def main() -> float:
        first = asyncio.ensure_future(threads.run(gate.wait))
        await asyncio.sleep(0.05)
        quick = asyncio.ensure_future(threads.run_brief(abs, -1))
        slow = [asyncio.ensure_future(threads.run_brief(time.sleep, 0.1)) for _ in range(10)]
        await asyncio.sleep(0)
        started = time.monotonic()
        gate.set()
        await first
        assert await quick == 1
        waited = time.monotonic() - started
        await asyncio.gather(*slow)  # a second of work queued behind the quick answer
        return waited

    try:
        waited = asyncio.run(main())
    finally:
        threads.shutdown()
    assert waited < 0.5  # the linger (0.05 s) and at most one slow piece (0.1 s), not all ten


def test_no_answer_is_kept_behind_work_that_may_wait_long() -> None:
    """A write may wait on a lock for seconds: the answers kept so far go to their loop
    before it starts, however long the linger."""
    threads = StoreThreads(1, "test-store", linger=60.0)
    gate, write_started = threading.Event(), threading.Event()

    def write() -> str:
        write_started.set()
        gate.wait(10)
        return "written"

    async def main() -> None:
        first = asyncio.ensure_future(threads.run_brief(time.sleep, 0.05))
        reads = [asyncio.ensure_future(threads.run_brief(abs, -n)) for n in range(5)]
        waiting = asyncio.ensure_future(threads.run(write))
        done, _ = await asyncio.wait([first, *reads], timeout=5)
        assert write_started.is_set()
        assert len(done) == 6  # answered while the write still waits
        assert [r.result() for r in reads] == list(range(5))
        gate.set()
        assert await waiting == "written"

    try:
        asyncio.run(main())
    finally:
        gate.set()
        threads.shutdown()
