"""Run the real ``opennimble`` command with asyncio's debug mode reporting slow callbacks.

Run as ``python -m tests.support.slow_callbacks serve ...`` (``SlowCallbackServer`` does): the
server's event loop runs in debug mode with ``slow_callback_duration`` = :data:`SLOW`, so every
callback that holds the loop longer (a blocking database call, a file read, a long computation)
is logged as asyncio's warning "Executing <callback> took N seconds".
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import sys
from typing import Any

import uvicorn

from opennimble import cli
from tests.support.server import Server

SLOW = 0.05  # seconds
REPORT = "Executing"  # how asyncio's report of a slow callback begins
ARMED = "slow-callback detection armed"

_serve = uvicorn.Server.serve


async def _debug_serve(self: uvicorn.Server, sockets: Any = None) -> None:
    loop = asyncio.get_running_loop()
    loop.set_debug(True)
    loop.slow_callback_duration = SLOW
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
