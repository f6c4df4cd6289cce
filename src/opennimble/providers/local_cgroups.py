"""Control groups of local desktops: every process of a desktop in one group, ended together.

Each desktop has a control group of its own, ``<installation>/<session id>``, made directly in
the cgroup filesystem (cgroup v2 where ``/sys/fs/cgroup`` is the unified hierarchy, the v1
``cpu``, ``cpuacct``, ``memory``, ``pids`` and ``freezer`` hierarchies otherwise). A process
joins the group *before it runs anything of its own*: it is started behind a gate (a shell that
waits on a pipe), the provider (root) writes its pid into the group, then opens the gate. Its
children inherit the group, and nothing an artist does (``setsid``, a double fork, a cleared
environment) takes a process out of it: only root may write the group files.

Ending a desktop freezes its group, kills every process in it, thaws it (the kills are
delivered), waits until it is empty and removes it. A restarted server finds a desktop's group
again by its name. Limits (CPU quota, memory, number of processes) are those of the session's
instance type (:mod:`opennimble.domain.instance_types`).
"""

from __future__ import annotations

import abc
import contextlib
import dataclasses
import errno
import functools
import hashlib
import os
import pathlib
import signal
import subprocess
import time
from collections.abc import Callable
from typing import Any

ROOT = pathlib.Path("/sys/fs/cgroup")
V1_CONTROLLERS = ("cpu", "cpuacct", "memory", "pids", "freezer")
CPU_PERIOD_US = 100_000
# a process started behind the gate waits for this line on its standard input, then runs
_GATE = 'read -r _ || exit 1; exec "$@" </dev/null'


@dataclasses.dataclass(frozen=True)
class Limits:
    """What a desktop's group may use: vCPUs (a CFS quota), memory in bytes, processes."""

    cpus: float | None = None
    memory: int | None = None
    pids: int | None = None


class Group(abc.ABC):
    """One desktop's control group."""

    def __init__(self, name: str) -> None:
        self.name = name

    @abc.abstractmethod
    def create(self) -> None: ...

    @abc.abstractmethod
    def exists(self) -> bool: ...

    @abc.abstractmethod
    def add(self, pid: int) -> None:
        """Move process ``pid`` into the group."""

    @abc.abstractmethod
    def pids(self) -> list[int]: ...

    @abc.abstractmethod
    def limit(self, limits: Limits) -> None: ...

    @abc.abstractmethod
    def freeze(self, frozen: bool) -> None:
        """Freeze (or thaw) every process of the group; returns once they are."""

    @abc.abstractmethod
    def remove(self) -> None:
        """Remove the (empty) group; nothing if it is gone."""

    @abc.abstractmethod
    def cpu_seconds(self) -> float:
        """CPU time used by the group's processes so far."""

    @abc.abstractmethod
    def oom_kills(self) -> int:
        """How many of its processes the kernel killed for lack of memory in the group."""

    @abc.abstractmethod
    def memory_bytes(self) -> int:
        """The memory the group's processes use now, as its limit counts it (page cache
        included); 0 if the group is gone."""

    def kill(self, grace: float = 0.0, timeout: float = 10.0) -> list[int]:
        """End every process of the group (SIGTERM and up to ``grace`` seconds to leave, then
        frozen, SIGKILL, thawed) and remove it. Blocking. Returns the pids left (none)."""
        if not self.exists():
            return []
        deadline = time.monotonic() + grace
        if grace > 0 and _signal(self.pids(), signal.SIGTERM):
            while self.pids() and time.monotonic() < deadline:
                time.sleep(0.02)
        deadline = time.monotonic() + timeout
        while self.pids() and time.monotonic() < deadline:
            self.freeze(True)  # nothing forks while the kills go out
            try:
                _signal(self.pids(), signal.SIGKILL)
            finally:
                self.freeze(False)
            settle = time.monotonic() + 1.0
            while self.pids() and time.monotonic() < min(settle, deadline):
                time.sleep(0.01)
        left = self.pids()
        if not left:
            self.remove()
        return left


class Hierarchy(abc.ABC):
    """Where the groups of one installation live (``parent`` names the installation)."""

    version: int

    def __init__(self, parent: str) -> None:
        self.parent = parent

    @abc.abstractmethod
    def group(self, name: str) -> Group:
        """The group ``name`` (whether or not it exists yet)."""

    @abc.abstractmethod
    def names(self) -> list[str]:
        """The names of the installation's existing groups."""

    @abc.abstractmethod
    def usable(self) -> str | None:
        """None if groups can be made here, otherwise why not."""


# ---- cgroup v1 ------------------------------------------------------------------------------


class V1Group(Group):
    def __init__(self, root: pathlib.Path, parent: str, name: str) -> None:
        super().__init__(name)
        self.dirs = {c: root / c / parent / name for c in V1_CONTROLLERS}

    def create(self) -> None:
        for directory in self.dirs.values():
            _retrying(functools.partial(directory.mkdir, 0o755, parents=True, exist_ok=True))

    def exists(self) -> bool:
        return any(d.is_dir() for d in self.dirs.values())

    def add(self, pid: int) -> None:
        for directory in self.dirs.values():
            _write(directory / "cgroup.procs", str(pid))

    def pids(self) -> list[int]:
        return sorted({p for d in self.dirs.values() for p in _procs(d)})

    def limit(self, limits: Limits) -> None:
        cpu, memory = self.dirs["cpu"], self.dirs["memory"]
        if limits.cpus is not None:
            _write(cpu / "cpu.cfs_period_us", str(CPU_PERIOD_US))
            _write(cpu / "cpu.cfs_quota_us", str(max(1000, int(limits.cpus * CPU_PERIOD_US))))
        if limits.memory is not None:
            _write(memory / "memory.limit_in_bytes", str(limits.memory))
            with contextlib.suppress(FileNotFoundError):  # swap may not be accounted
                _write(memory / "memory.memsw.limit_in_bytes", str(limits.memory))
        if limits.pids is not None:
            _write(self.dirs["pids"] / "pids.max", str(limits.pids))

    def freeze(self, frozen: bool) -> None:
        state = self.dirs["freezer"] / "freezer.state"
        wanted = "FROZEN" if frozen else "THAWED"
        with contextlib.suppress(FileNotFoundError):
            _write(state, wanted)
            deadline = time.monotonic() + 5.0
            while state.read_text().strip() != wanted and time.monotonic() < deadline:
                time.sleep(0.005)

    def remove(self) -> None:
        for directory in self.dirs.values():
            _rmdir(directory)
            _rmdir_if_empty(directory.parent)

    def cpu_seconds(self) -> float:
        return int((self.dirs["cpuacct"] / "cpuacct.usage").read_text()) / 1e9

    def oom_kills(self) -> int:
        return _field(self.dirs["memory"] / "memory.oom_control", "oom_kill")

    def memory_bytes(self) -> int:
        return _number(self.dirs["memory"] / "memory.usage_in_bytes")


class V1(Hierarchy):
    version = 1

    def __init__(self, parent: str, root: pathlib.Path = ROOT) -> None:
        super().__init__(parent)
        self.root = root

    def group(self, name: str) -> Group:
        return V1Group(self.root, self.parent, name)

    def names(self) -> list[str]:
        return _subdirectories(self.root / "freezer" / self.parent)

    def usable(self) -> str | None:
        missing = [c for c in V1_CONTROLLERS if not (self.root / c / "cgroup.procs").exists()]
        if missing:
            names = ", ".join(missing)
            return f"the cgroup v1 controllers {names} are not mounted under {self.root}"
        return _writable([self.root / c for c in V1_CONTROLLERS])


# ---- cgroup v2 ------------------------------------------------------------------------------

V2_CONTROLLERS = ("cpu", "memory", "pids")


class V2Group(Group):
    def __init__(self, root: pathlib.Path, parent: str, name: str) -> None:
        super().__init__(name)
        self.root, self.parent = root, root / parent
        self.dir = self.parent / name

    def create(self) -> None:
        _retrying(self._create)

    def _create(self) -> None:
        self.parent.mkdir(mode=0o755, exist_ok=True)
        for directory in (self.root, self.parent):  # the controllers reach the desktop's group
            available = set((directory / "cgroup.controllers").read_text().split())
            wanted = " ".join(f"+{c}" for c in V2_CONTROLLERS if c in available)
            if wanted:
                _write(directory / "cgroup.subtree_control", wanted)
        self.dir.mkdir(mode=0o755, exist_ok=True)

    def exists(self) -> bool:
        return self.dir.is_dir()

    def add(self, pid: int) -> None:
        _write(self.dir / "cgroup.procs", str(pid))

    def pids(self) -> list[int]:
        return _procs(self.dir)

    def limit(self, limits: Limits) -> None:
        if limits.cpus is not None:
            quota = max(1000, int(limits.cpus * CPU_PERIOD_US))
            _write(self.dir / "cpu.max", f"{quota} {CPU_PERIOD_US}")
        if limits.memory is not None:
            _write(self.dir / "memory.max", str(limits.memory))
            with contextlib.suppress(FileNotFoundError):
                _write(self.dir / "memory.swap.max", "0")
        if limits.pids is not None:
            _write(self.dir / "pids.max", str(limits.pids))

    def freeze(self, frozen: bool) -> None:
        _write(self.dir / "cgroup.freeze", "1" if frozen else "0")
        wanted = 1 if frozen else 0
        deadline = time.monotonic() + 5.0
        while _field(self.dir / "cgroup.events", "frozen") != wanted:
            if time.monotonic() >= deadline or not self.dir.is_dir():
                break
            time.sleep(0.005)

    def kill(self, grace: float = 0.0, timeout: float = 10.0) -> list[int]:
        if self.exists() and grace <= 0 and (self.dir / "cgroup.kill").exists():
            _write(self.dir / "cgroup.kill", "1")  # the kernel kills all, forks included
        return super().kill(grace, timeout)

    def remove(self) -> None:
        _rmdir(self.dir)
        _rmdir_if_empty(self.parent)

    def cpu_seconds(self) -> float:
        return _field(self.dir / "cpu.stat", "usage_usec") / 1e6

    def oom_kills(self) -> int:
        return _field(self.dir / "memory.events", "oom_kill")

    def memory_bytes(self) -> int:
        return _number(self.dir / "memory.current")


class V2(Hierarchy):
    version = 2

    def __init__(self, parent: str, root: pathlib.Path = ROOT) -> None:
        super().__init__(parent)
        self.root = root

    def group(self, name: str) -> Group:
        return V2Group(self.root, self.parent, name)

    def names(self) -> list[str]:
        return _subdirectories(self.root / self.parent)

    def usable(self) -> str | None:
        if not (self.root / "cgroup.procs").exists():
            return f"no cgroup v2 hierarchy is mounted at {self.root}"
        return _writable([self.root])


def hierarchy(installation: pathlib.Path, root: pathlib.Path = ROOT) -> Hierarchy:
    """The hierarchy this machine has (v2 if ``root`` is the unified one, v1 otherwise), with
    the groups of the installation whose data directory is ``installation``."""
    digest = hashlib.sha256(str(pathlib.Path(installation).absolute()).encode()).hexdigest()
    parent = f"opennimble-{digest[:10]}"
    if (root / "cgroup.controllers").exists():
        return V2(parent, root)
    return V1(parent, root)


def popen(into: Group | None, argv: list[str], **options: Any) -> subprocess.Popen[bytes]:
    """``subprocess.Popen(argv, **options)`` with the process in group ``into`` before it runs
    ``argv`` (its standard input is then ``/dev/null``). Desktop processes get the usual umask
    (022), not the server's private one."""
    options.setdefault("umask", 0o022)
    if into is None:
        return subprocess.Popen(argv, **options)
    read_fd, write_fd = os.pipe()
    try:
        options = {**options, "stdin": read_fd}
        process = subprocess.Popen(["/bin/sh", "-c", _GATE, "sh", *argv], **options)
    except BaseException:
        os.close(write_fd)
        raise
    finally:
        os.close(read_fd)
    try:
        into.add(process.pid)
        os.write(write_fd, b"go\n")
    except BaseException:
        with contextlib.suppress(ProcessLookupError):
            process.kill()
        process.wait()
        raise
    finally:
        os.close(write_fd)
    return process


# ---- files ----------------------------------------------------------------------------------


def _write(path: pathlib.Path, text: str) -> None:
    fd = os.open(path, os.O_WRONLY)
    try:
        os.write(fd, text.encode())
    finally:
        os.close(fd)


def _procs(directory: pathlib.Path) -> list[int]:
    try:
        text = (directory / "cgroup.procs").read_text()
    except (FileNotFoundError, ProcessLookupError, OSError):
        return []
    return [int(line) for line in text.split()]


def _field(path: pathlib.Path, key: str) -> int:
    """The number after ``key`` in a flat keyed cgroup file (0 if it is not there)."""
    try:
        lines = path.read_text().splitlines()
    except FileNotFoundError:
        return 0
    for line in lines:
        name, _, value = line.partition(" ")
        if name == key:
            return int(value)
    return 0


def _number(path: pathlib.Path) -> int:
    """The number a single-value cgroup file holds (0 if the file is gone)."""
    try:
        return int(path.read_text())
    except FileNotFoundError:
        return 0


def _rmdir(directory: pathlib.Path) -> None:
    deadline = time.monotonic() + 5.0
    while True:
        try:
            directory.rmdir()
            return
        except FileNotFoundError:
            return
        except OSError as exc:  # EBUSY: the last processes are still leaving
            if exc.errno != errno.EBUSY or time.monotonic() >= deadline:
                raise
            time.sleep(0.01)


def _rmdir_if_empty(directory: pathlib.Path) -> None:
    """Remove the installation's group once its last desktop's is gone."""
    with contextlib.suppress(OSError):  # another desktop's group is in it (EBUSY), or gone
        directory.rmdir()


def _retrying(make: Callable[[], None]) -> None:
    """Make a group; again if its installation's group vanished meanwhile (its last desktop
    ended at that moment)."""
    for _ in range(3):
        try:
            make()
            return
        except FileNotFoundError:
            continue
    make()


def _subdirectories(directory: pathlib.Path) -> list[str]:
    try:
        return sorted(entry.name for entry in directory.iterdir() if entry.is_dir())
    except FileNotFoundError:
        return []


def _writable(directories: list[pathlib.Path]) -> str | None:
    closed = [str(d) for d in directories if not os.access(d, os.W_OK)]
    if closed:
        return f"this server's user may not create control groups in {', '.join(closed)}"
    return None


def _signal(pids: list[int], sig: signal.Signals) -> bool:
    sent = False
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)
            sent = True
    return sent
