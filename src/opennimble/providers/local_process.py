"""Processes of local desktops, as ``/proc`` shows them: identity and ending.

A pid alone is never trusted: a desktop's Xvnc is recognised by its start time and its
``-desktop opennimble-<session id>`` argument, so a reused pid is never mistaken for (or killed
as) a desktop. Which processes belong to a desktop is its control group's to say
(:mod:`local_cgroups`), never anything the processes themselves carry.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import itertools
import os
import pathlib
import signal
import time
from collections.abc import Callable, Iterable

PROC = pathlib.Path("/proc")


def desktop_name(session_id: str) -> str:
    return f"opennimble-{session_id}"


def is_our_xvnc(argv: list[str], session_id: str) -> bool:
    """Whether a process command line is the Xvnc of ``session_id``."""
    wanted = desktop_name(session_id)
    return any(a == "-desktop" and b == wanted for a, b in itertools.pairwise(argv))


def parse_stat(text: str) -> tuple[str, int]:
    """(state letter, start time in clock ticks) from the text of ``/proc/<pid>/stat``."""
    fields = text.rpartition(")")[2].split()  # the command name may hold spaces and parens
    return fields[0], int(fields[19])  # fields 3 and 22 of proc(5)


def start_time_of(pid: int) -> int | None:
    """The start time of a live (not zombie) process, or None if there is none."""
    try:
        state, started = parse_stat((PROC / str(pid) / "stat").read_text())
    except (OSError, IndexError, ValueError):
        return None
    return None if state in "ZXx" else started


def cmdline_of(pid: int) -> list[str]:
    try:
        raw = (PROC / str(pid) / "cmdline").read_bytes()
    except OSError:
        return []
    return [part.decode(errors="replace") for part in raw.split(b"\0")[:-1]]


def desktop_alive(pid: object, start_time: object, session_id: str) -> bool:
    """Whether ``pid`` is still the Xvnc of ``session_id`` that started at ``start_time``."""
    if not isinstance(pid, int) or pid <= 0 or start_time is None:
        return False
    return start_time_of(pid) == start_time and is_our_xvnc(cmdline_of(pid), session_id)


def uid_of(pid: int) -> int | None:
    """The real user id of a process, or None if it is gone."""
    try:
        for line in (PROC / str(pid) / "status").read_text().splitlines():
            if line.startswith("Uid:"):
                return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        return None
    return None


def all_pids() -> list[int]:
    return [int(entry.name) for entry in PROC.iterdir() if entry.name.isdigit()]


def user_pids(uid: int) -> list[int]:
    """The live processes of user ``uid``."""
    return [pid for pid in all_pids() if uid_of(pid) == uid and start_time_of(pid) is not None]


@dataclasses.dataclass(frozen=True)
class Ending:
    """How processes are ended: SIGTERM, then SIGKILL to those left after ``grace`` seconds."""

    grace: float = 5.0
    kill_wait: float = 5.0


async def end_processes(find: Callable[[], Iterable[int]], ending: Ending) -> list[int]:
    """End every process ``find`` returns (asked again after each signal, as processes may
    fork meanwhile). Returns the pids still alive at the end (normally none)."""
    plan = ((signal.SIGTERM, ending.grace), (signal.SIGKILL, ending.kill_wait))

    async def listed() -> list[tuple[int, int]]:  # /proc scans: off the event loop
        return await asyncio.to_thread(lambda: _identities(find()))

    for sig, wait in plan:
        targets = await listed()
        if not targets:
            return []
        _signal_all(targets, sig)
        deadline = time.monotonic() + wait
        while _alive(targets) and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        if sig == signal.SIGKILL:  # catch children forked between the two passes
            for _ in range(3):
                late = await listed()
                if not late:
                    break
                _signal_all(late, signal.SIGKILL)
                await asyncio.sleep(0.05)
    return [pid for pid, _ in await listed()]


def _identities(pids: Iterable[int]) -> list[tuple[int, int]]:
    found = ((pid, start_time_of(pid)) for pid in pids)
    return [(pid, started) for pid, started in found if started is not None]


def _signal_all(targets: list[tuple[int, int]], sig: signal.Signals) -> None:
    for pid, started in targets:
        if start_time_of(pid) == started:  # still the same process
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, sig)


def _alive(targets: list[tuple[int, int]]) -> bool:
    return any(start_time_of(pid) == started for pid, started in targets)
