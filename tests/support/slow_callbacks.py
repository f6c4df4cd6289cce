"""Run the real ``opennimble`` command with asyncio's debug mode reporting slow callbacks.

Run as ``python -m tests.support.slow_callbacks serve ...`` (``SlowCallbackServer`` does): the
server's event loop runs in debug mode, and every callback that holds the loop longer than
:data:`SLOW` (a blocking database call, a file read, a long computation) is logged as
"Executing <callback> took N seconds", as asyncio's own report says it. Unlike asyncio's report,
the time the loop's thread waited for a CPU meanwhile (runnable, but the machine's other work
ran: its run-queue wait in /proc's schedstat) is not counted: on a loaded machine that is the
scheduler's doing, not a callback holding the loop.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import sys
import time
from typing import Any

import uvicorn

from opennimble import cli
from tests.support.server import Server

SLOW = 0.05  # seconds
REPORT = "Executing"  # how asyncio's report of a slow callback begins
ARMED = "slow-callback detection armed"

_serve = uvicorn.Server.serve


_run = asyncio.events.Handle._run
_log = logging.getLogger("asyncio")


def _cpu_wait() -> float:
    """Seconds this thread has waited for a CPU while runnable (Linux schedstat)."""
    with open("/proc/thread-self/schedstat", "rb") as stat:
        return int(stat.read().split()[1]) / 1e9


def _timed_run(self: asyncio.events.Handle) -> None:
    started, waited = time.perf_counter(), _cpu_wait()
    _run(self)
    took = time.perf_counter() - started
    if took > SLOW:
        held = took - (_cpu_wait() - waited)
        if held > SLOW:
            _log.warning("%s %r took %.3f seconds", REPORT, self, held)


async def _debug_serve(self: uvicorn.Server, sockets: Any = None) -> None:
    loop = asyncio.get_running_loop()
    loop.set_debug(True)
    loop.slow_callback_duration = 3600.0  # asyncio's own report counts time without a CPU
    asyncio.events.Handle._run = _timed_run  # type: ignore[method-assign]
    logging.getLogger("asyncio").warning("%s: callbacks over %.3f s are reported", ARMED, SLOW)
    await _serve(self, sockets)


@dataclasses.dataclass
class SlowCallbackServer(Server):
    """A real server whose event loop reports every callback that took over :data:`SLOW`."""

    def _command(self) -> list[str]:
        return [sys.executable, "-m", "tests.support.slow_callbacks"]

    def slow_callbacks(self) -> list[str]:
        return [line for line in self.log().splitlines() if REPORT in line and "took" in line]


def main() -> None:
    uvicorn.Server.serve = _debug_serve  # type: ignore[method-assign]
    cli.main()


if __name__ == "__main__":
    main()
