"""X display names in the host's abstract socket namespace: choosing a free one for a new
desktop, and the processes that squat them.

X clients (libxcb) connect to a display's abstract socket, ``@/tmp/.X11-unix/X<n>``, before
its socket file, so every desktop's Xvnc holds its own abstract name (:mod:`local_confine`):
nobody can stand in front of a running desktop's X server. Abstract names belong to the network
namespace, which desktops share with the host, so an artist can bind names too; one that is
taken only moves the next desktop to another number. The provider chooses the number
(:func:`choose`: the lowest whose name is free, read from ``/proc/net/unix``) and gives it to
Xvnc, which binds it or exits at once if someone took it meanwhile; the provider then chooses
again. Xvnc's own search (``-displayfd`` without a display) is not used: it tries every number
from 0 up, logs a few lines for each taken one and keeps a file descriptor of each, so a few
thousand taken names fill its log with megabytes and its file table, and it fails.

Turning the abstract listener off (``-nolisten local``, which TigerVNC's Xvnc accepts) is no
answer: the clients of the desktop would still try the abstract name first and connect to the
squatter's socket (sending it their cookie and drawing their windows there); libxcb (before
1.16) has no display name that skips it, and a Landlock scope that refused the connection
would make the clients fail, not fall back to the file.

So when no name is free, or the one chosen was taken before Xvnc could bind it, the provider
*evicts the squatters*: it ends every process of another user than root and itself that holds
two or more X display names (an X server holds one: an artist's own Xvfb is left alone; a
squatter of every name would need a process per name, and each desktop's ``max_processes``
caps that far below the ~59,500 names), then chooses again. The processes are found by their
file descriptors (``/proc/<pid>/fd``); what holds a socket outside any file table (in flight in
another socket's queue) is not found.
"""

from __future__ import annotations

import asyncio
import logging
import os
import pathlib
import re
from collections.abc import Collection

from opennimble.providers import desktop_job, local_process

log = logging.getLogger("opennimble.providers.local")

DISPLAYS = desktop_job.DISPLAYS  # the display numbers an X server may take
PROC = pathlib.Path("/proc")
_SOCKET = re.compile(r"socket:\[(\d+)\]")


def free_name(avoid: Collection[int] = ()) -> int | None:
    """The lowest display number whose name is free in this network namespace and not in
    ``avoid``; None if there is none."""
    return desktop_job.free_display(set(avoid), str(PROC / "net" / "unix"))


def holders() -> dict[int, set[int]]:
    """The processes holding X display names in this network namespace: pid -> displays."""
    sockets = desktop_job.display_sockets((PROC / "net" / "unix").read_text())
    held: dict[int, set[int]] = {}
    for pid in local_process.all_pids():
        try:
            links = [os.readlink(fd) for fd in (PROC / str(pid) / "fd").iterdir()]
        except OSError:  # gone, or no longer readable
            continue
        for link in links:
            inode = _SOCKET.fullmatch(link)
            if inode and int(inode[1]) in sockets:
                held.setdefault(pid, set()).add(sockets[int(inode[1])])
    return held


def squatters() -> dict[int, int]:
    """The processes of users other than root and this process's that hold more than one X
    display name: pid -> how many."""
    own = {0, os.geteuid()}
    return {
        pid: len(displays)
        for pid, displays in holders().items()
        if len(displays) > 1 and local_process.uid_of(pid) not in own
    }


async def choose(ending: local_process.Ending, avoid: Collection[int] = ()) -> int | None:
    """A display number for a new X server (:func:`free_name`), evicting the squatters first
    if no name is free; None if none is free even then."""
    display = await asyncio.to_thread(free_name, avoid)
    if display is None and await evict_squatters(ending):
        display = await asyncio.to_thread(free_name, avoid)
    return display


async def evict_squatters(ending: local_process.Ending) -> int:
    """End the squatters (:func:`squatters`); returns how many names they held. Logs who."""
    found = await asyncio.to_thread(squatters)
    for pid, count in sorted(found.items()):
        log.warning(
            "ending process %d of uid %s: it held %d X display names, which new desktops need",
            pid,
            local_process.uid_of(pid),
            count,
        )
    if found:
        await local_process.end_processes(lambda: list(squatters()), ending)
    return sum(found.values())
