"""The local desktops of one runtime directory: their records, their processes, their number.

Each desktop has a directory ``<runtime_dir>/<session id>`` (mode 0711: its accounts may open
the files given to them, nobody may list it) with ``desktop.json``, the record of its Xvnc and
account that lets any later process find it again. One lock, per process and per runtime
directory (a lock file, so also across processes), is held while desktops are counted and
started and while an owner's processes are swept, so that the count is exact and a sweep never
meets a desktop being born.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
import pathlib
import subprocess
import threading
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

from opennimble.providers import base, local_cgroups, local_confine, local_process, local_xvnc
from opennimble.providers.local_accounts import Account

DESKTOP_FILE = "desktop.json"
LOG_FILE = "xvnc.log"
LOCK_FILE = ".lock"
SESSION_LOCKS_DIR = ".sessions"  # in the runtime directory: one lock file per desktop
SESSION_LOCK_POLL = 0.02  # seconds between attempts to take a desktop's lock


class Host:
    def __init__(
        self,
        runtime_dir: pathlib.Path,
        *,
        max_desktops: int,
        max_per_owner: int = 4,
        ending: local_process.Ending,
        groups: local_cgroups.Hierarchy,
    ) -> None:
        self.runtime_dir = runtime_dir
        self.groups = groups
        self.max_desktops = max_desktops
        self.max_per_owner = max_per_owner
        self.ending = ending
        # The children of this process (Xvnc, sessions) by (pid, start time); each has a reaper.
        self.children: dict[tuple[int, int | None], subprocess.Popen[bytes]] = {}
        self._lock: tuple[asyncio.AbstractEventLoop, asyncio.Lock] | None = None

    # ---- records ----------------------------------------------------------------------------

    def session_dir(self, sid: str) -> pathlib.Path:
        return self.runtime_dir / sid

    def read(self, sid: str) -> dict[str, Any]:
        return local_xvnc.read_record(self.session_dir(sid) / DESKTOP_FILE)

    def write(self, sid: str, record: dict[str, Any]) -> None:
        local_xvnc.write_record(self.session_dir(sid) / DESKTOP_FILE, record)

    def records(self) -> list[tuple[str, dict[str, Any]]]:
        paths = sorted(self.runtime_dir.glob(f"*/{DESKTOP_FILE}"))
        return [(path.parent.name, local_xvnc.read_record(path)) for path in paths]

    def running(self, but: str) -> list[tuple[str, dict[str, Any]]]:
        """The records of the desktops whose Xvnc runs, except that of session ``but``."""
        return [
            (sid, record)
            for sid, record in self.records()
            if sid != but
            and local_process.desktop_alive(record.get("pid"), record.get("start_time"), sid)
        ]

    def log_tail(self, sid: str) -> str:
        return local_xvnc.log_tail(self.session_dir(sid) / LOG_FILE)

    def check_capacity(self, sid: str, owner: str) -> None:
        """PermanentFailure (INSUFFICIENT_CAPACITY) if ``max_desktops`` others run already, or
        ``max_per_owner`` others of ``owner`` (a user id, whatever the studio)."""
        running = self.running(but=sid)
        if len(running) >= self.max_desktops:
            raise base.PermanentFailure(
                f"This host already runs its maximum of {self.max_desktops} desktops "
                "(max_desktops): stop or delete a session and try again",
                "INSUFFICIENT_CAPACITY",
            )
        owned = sum(1 for _, record in running if record.get("owned_by") == owner)
        if owned >= self.max_per_owner:
            raise base.PermanentFailure(
                f"The owner already runs {owned} desktops on this host, its maximum "
                f"(max_desktops_per_owner {self.max_per_owner}): stop or delete one of their "
                "sessions and try again",
                "INSUFFICIENT_CAPACITY",
            )

    @contextlib.asynccontextmanager
    async def lock(self) -> AsyncIterator[None]:
        """Held while counting and starting desktops and while sweeping an owner's processes."""
        loop = asyncio.get_running_loop()
        if self._lock is None or self._lock[0] is not loop:
            self._lock = (loop, asyncio.Lock())
        async with self._lock[1]:
            self.runtime_dir.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.runtime_dir / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o600)
            try:
                await asyncio.to_thread(fcntl.flock, fd, fcntl.LOCK_EX)
                yield
            finally:
                os.close(fd)

    @contextlib.asynccontextmanager
    async def session_lock(self, sid: str) -> AsyncIterator[Callable[[], None]]:
        """Held while the desktop of ``sid`` is started, stopped or deleted, across the
        processes of this host (and between the tasks of one: each takes the file anew).
        ``forget()`` inside removes the lock file, for a desktop that is gone for good."""
        fd = await self._take(sid)
        forgotten = False

        def forget() -> None:
            nonlocal forgotten
            forgotten = True

        try:
            yield forget
        finally:
            if forgotten:  # unlinked while held: a waiter sees it and opens the path again
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(self._lock_path(sid))
            os.close(fd)

    def _lock_path(self, sid: str) -> pathlib.Path:
        return self.runtime_dir / SESSION_LOCKS_DIR / sid

    async def _take(self, sid: str) -> int:
        """An open descriptor of the lock file of ``sid``, locked. Polls rather than blocks in
        a thread: a cancelled waiter must not take the lock later."""
        path = self._lock_path(sid)
        while True:
            path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
            try:
                while True:
                    try:
                        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                        break
                    except BlockingIOError:
                        await asyncio.sleep(SESSION_LOCK_POLL)
                # the holder before us may have removed the file: then lock the path's new one
                try:
                    same = os.path.samestat(os.fstat(fd), os.stat(path))
                except FileNotFoundError:
                    same = False
            except BaseException:
                os.close(fd)
                raise
            if same:
                return fd
            os.close(fd)

    # ---- processes --------------------------------------------------------------------------

    def spawn(
        self,
        sid: str,
        argv: list[str],
        log_path: pathlib.Path,
        *,
        env: dict[str, str],
        account: Account,
        confinement: local_confine.Confinement,
        pass_fds: tuple[int, ...] = (),
        remember: bool = True,
    ) -> tuple[int, int | None]:
        """Start a detached process in ``account``'s home, in the control group and the
        ``confinement`` of the desktop of ``sid`` (as whom it says), its output in a private
        log file, and collect it whenever it exits, so that it never stays a zombie. Returns
        its pid and start time (None if it is gone already). ``remember``: keep it for
        :meth:`exit_status` (Xvnc's, until its desktop ends)."""
        with contextlib.suppress(FileNotFoundError):
            log_path.unlink()
        with open(os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "wb") as out:
            proc = local_confine.popen(
                self.groups.group(sid),
                confinement,
                argv,
                stdout=out,
                stderr=subprocess.STDOUT,
                pass_fds=pass_fds,
                start_new_session=True,
                cwd=account.home,
                env=env,
            )
        started = local_process.start_time_of(proc.pid)
        if remember:
            self.children[(proc.pid, started)] = proc
        threading.Thread(target=proc.wait, name=f"desktop-{proc.pid}-reaper", daemon=True).start()
        return proc.pid, started

    async def exit_status(self, pid: int, started: int | None) -> int | None:
        """The exit status of our child ``pid`` once it is gone; None if it is not ours."""
        deadline = time.monotonic() + self.ending.grace
        while started is not None and local_process.start_time_of(pid) == started:
            if time.monotonic() >= deadline:
                break
            await asyncio.sleep(0.05)
        child = self.children.pop((pid, started), None)
        while child is not None and child.returncode is None and time.monotonic() < deadline:
            await asyncio.sleep(0.025)  # the reaper thread collects it right after it exits
        return None if child is None else child.returncode

    async def end(self, state: base.ProviderState, sid: str) -> None:
        """End every process of the desktop of ``sid``: all of its control group, which is then
        removed, and the Xvnc named by ``state`` or the record should it be elsewhere."""
        record = self.read(sid)
        servers = [(d.get("pid"), d.get("start_time")) for d in (state, record)]
        group = self.groups.group(sid)
        left = await asyncio.to_thread(group.kill, self.ending.grace)
        if left:
            raise base.TemporaryFailure(f"processes of the desktop survived SIGKILL: {left}")

        def find() -> set[int]:
            alive = (p for p, t in servers if local_process.desktop_alive(p, t, sid))
            return {p for p in alive if isinstance(p, int)}

        left = await local_process.end_processes(find, self.ending)
        if left:
            raise base.TemporaryFailure(f"processes of the desktop survived SIGKILL: {left}")
        ended = {pid for pid, _ in servers}
        for key in [key for key in self.children if key[0] in ended]:
            self.children.pop(key, None)
