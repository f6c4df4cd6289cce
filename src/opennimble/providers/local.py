"""The ``local`` provider: each session's desktop is a TigerVNC ``Xvnc`` on this machine.

One X display and one loopback-only VNC (RFB) port per session. Xvnc runs detached in its own
session, so it outlives the server process that started it; everything needed to find it again
is in the provider state and in ``<runtime_dir>/<session_id>/desktop.json``. A pid is only
trusted if ``/proc`` still shows the same start time and our ``-desktop opennimble-<id>``
argument, so a reused pid is never mistaken for (or killed as) a desktop.

Xvnc picks its own display number (``-displayfd``: X lock files make that safe against other
X servers and concurrent starts) and reports it once it is ready to accept connections. The
RFB port is a free loopback port; if another process takes it before Xvnc binds it, Xvnc
exits at once and the start is retried with another port.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import os
import pathlib
import re
import secrets
import select
import shutil
import signal
import socket
import struct
import subprocess
import threading
import time
from typing import Any

from opennimble import config
from opennimble.providers import base

HOST = "127.0.0.1"
DESKTOP_FILE = "desktop.json"
LOG_FILE = "xvnc.log"
XAUTHORITY_FILE = "Xauthority"
INSTALL_HINT = (
    "install Debian's tigervnc-standalone-server package (apt-get install "
    "tigervnc-standalone-server) or set the xvnc setting to the path of Xvnc"
)
PORT_ATTEMPTS = 5
PROBE_TIMEOUT = 1.0
STOP_GRACE = 5.0
_SESSION_ID = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9_.-]{0,127}")
_RFB_GREETING = re.compile(rb"RFB \d{3}\.\d{3}\n")
_STATE_KEYS = ("pid", "display", "port", "host", "start_time", "runtime_dir", "session_id")


def is_rfb_greeting(data: bytes) -> bool:
    """Whether ``data`` is an RFB ProtocolVersion message (``RFB 003.008\\n``)."""
    return _RFB_GREETING.fullmatch(data) is not None


def desktop_environment() -> dict[str, str]:
    """A minimal environment for desktop processes: none of the server's settings or secrets."""
    keep = ("PATH", "LANG", "LC_ALL", "TZ")
    env = {name: os.environ[name] for name in keep if name in os.environ}
    env.setdefault("PATH", "/usr/local/bin:/usr/bin:/bin")
    return env


def desktop_name(session_id: str) -> str:
    return f"opennimble-{session_id}"


def xvnc_command(
    xvnc: str, *, session_id: str, port: int, geometry: str, displayfd: int, xauthority: str
) -> list[str]:
    """The command line of a session's Xvnc: loopback-only RFB, no TCP X11, no VNC auth."""
    return [
        xvnc, "-displayfd", str(displayfd), "-rfbport", str(port), "-interface", HOST,
        "-SecurityTypes", "None", "-geometry", geometry, "-desktop", desktop_name(session_id),
        "-nolisten", "tcp", "-auth", xauthority,
    ]  # fmt: skip


def is_our_xvnc(argv: list[str], session_id: str) -> bool:
    """Whether a process command line is the Xvnc of ``session_id``."""
    wanted = desktop_name(session_id)
    return any(a == "-desktop" and b == wanted for a, b in itertools.pairwise(argv))


def parse_stat(text: str) -> tuple[str, int]:
    """(state letter, start time in clock ticks) from the text of ``/proc/<pid>/stat``."""
    fields = text.rpartition(")")[2].split()  # the command name may hold spaces and parens
    return fields[0], int(fields[19])  # fields 3 and 22 of proc(5)


def xauthority_entry(cookie: bytes) -> bytes:
    """An Xauthority entry granting MIT-MAGIC-COOKIE-1 ``cookie`` for any display."""

    def counted(value: bytes) -> bytes:
        return struct.pack(">H", len(value)) + value

    family_wild = struct.pack(">H", 0xFFFF)  # no address, no display number: any display
    fields = (b"", b"", b"MIT-MAGIC-COOKIE-1", cookie)
    return family_wild + b"".join(counted(field) for field in fields)


def describe_exit(status: int | None) -> str:
    if status is None:
        return "Xvnc exited"
    if status < 0:
        return f"Xvnc was killed by signal {-status}"
    return f"Xvnc exited with status {status}"


def start_time_of(pid: int) -> int | None:
    """The start time of a live (not zombie) process, or None if there is none."""
    try:
        state, started = parse_stat(pathlib.Path(f"/proc/{pid}/stat").read_text())
    except (OSError, IndexError, ValueError):
        return None
    return None if state in "ZXx" else started


def cmdline_of(pid: int) -> list[str]:
    try:
        raw = pathlib.Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return []
    return [part.decode(errors="replace") for part in raw.split(b"\0")[:-1]]


def desktop_alive(pid: Any, start_time: Any, session_id: str) -> bool:
    """Whether ``pid`` is still the Xvnc of ``session_id`` that started at ``start_time``."""
    if not isinstance(pid, int) or pid <= 0 or start_time is None:
        return False
    return start_time_of(pid) == start_time and is_our_xvnc(cmdline_of(pid), session_id)


async def rfb_ready(host: str, port: int, timeout: float = PROBE_TIMEOUT) -> bool:
    """Whether ``host:port`` answers with an RFB ProtocolVersion within ``timeout``."""
    writer = None
    try:
        async with asyncio.timeout(timeout):
            reader, writer = await asyncio.open_connection(host, port)
            return is_rfb_greeting(await reader.readexactly(12))
    except (OSError, TimeoutError, asyncio.IncompleteReadError):
        return False
    finally:
        if writer is not None:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()


def free_loopback_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        port: int = sock.getsockname()[1]
        return port


def log_tail(path: pathlib.Path, lines: int = 6, limit: int = 600) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return f"(no log at {path})"
    stripped = (line.strip().removeprefix("(EE)").strip() for line in text.splitlines())
    kept = [line for line in stripped if line]
    return " / ".join(kept[-lines:])[-limit:] or f"(no output in {path})"


def read_record(path: pathlib.Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def write_record(path: pathlib.Path, record: dict[str, Any]) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(record, sort_keys=True))
    os.replace(tmp, path)


def read_display(fd: int, timeout: float) -> int:
    """Read the display number Xvnc writes to ``-displayfd``; closes ``fd``.

    Raises EOFError if Xvnc closed the pipe (it exited) and TimeoutError after ``timeout``.
    """
    deadline, data = time.monotonic() + timeout, b""
    try:
        while not data.endswith(b"\n"):
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([fd], [], [], left)[0]:
                raise TimeoutError
            chunk = os.read(fd, 64)
            if not chunk:
                raise EOFError
            data += chunk
        return int(data)
    finally:
        os.close(fd)


class _PortTaken(Exception):
    """Xvnc could not bind the RFB port chosen for it."""


class LocalProvider(base.Provider):
    """Desktops as TigerVNC Xvnc servers on this machine."""

    name = "local"

    def __init__(
        self,
        *,
        runtime_dir: pathlib.Path,
        xvnc: str = "Xvnc",
        geometry: str = "1280x800",
        ready_timeout: float = 30.0,
        stop_grace: float = STOP_GRACE,
    ) -> None:
        self._runtime_dir = pathlib.Path(runtime_dir)
        self._xvnc = xvnc
        self._geometry = geometry
        self._ready_timeout = ready_timeout
        self._stop_grace = stop_grace
        self._reserved_ports: set[int] = set()
        # The Xvnc children of this process, by (pid, start time); each has a reaper thread.
        self._children: dict[tuple[int, int | None], subprocess.Popen[bytes]] = {}

    @classmethod
    def from_settings(cls, settings: config.Settings) -> LocalProvider:
        return cls(
            runtime_dir=settings.runtime_dir,
            xvnc=settings.xvnc,
            geometry=settings.desktop_geometry,
            ready_timeout=settings.desktop_ready_timeout,
        )

    async def start(self, spec: base.DesktopSpec, state: base.ProviderState) -> base.ProviderState:
        sid = _session_id(spec.session_id)
        for candidate in (state, read_record(self._record_path(sid))):
            if self._attachable(candidate, sid):
                return {key: candidate.get(key) for key in _STATE_KEYS}
        await self._end(state, sid)  # what state or record name is unusable: it must not linger
        exe = shutil.which(self._xvnc)
        if exe is None:
            raise base.PermanentFailure(f"Xvnc ({self._xvnc}) is not installed: {INSTALL_HINT}")
        self._session_dir(sid).mkdir(parents=True, exist_ok=True)
        for _ in range(PORT_ATTEMPTS):
            port = self._reserve_port()
            try:
                return await self._launch(exe, sid, port)
            except _PortTaken:
                continue
            finally:
                self._reserved_ports.discard(port)
        raise base.TemporaryFailure(f"no free VNC port after {PORT_ATTEMPTS} attempts")

    async def poll(self, state: base.ProviderState) -> base.PollResult:
        sid = state.get("session_id")
        if not isinstance(sid, str) or not _SESSION_ID.fullmatch(sid):
            return base.PollResult(base.Health.GONE, message="no session id in the state")
        if not state.get("pid"):  # a state lost before it was stored: the record still knows
            state = read_record(self._record_path(sid))
        pid = state.get("pid")
        if not pid:
            return base.PollResult(base.Health.GONE, message="no desktop process")
        if not desktop_alive(pid, state.get("start_time"), sid):
            return self._gone(state, sid)
        port = state.get("port")
        if not isinstance(port, int) or not await rfb_ready(HOST, port):
            return base.PollResult(base.Health.STARTING, message="VNC port not answering yet")
        self._mark_ready(state, sid)
        return base.PollResult(base.Health.READY, endpoint={"host": HOST, "port": port})

    async def stop(self, state: base.ProviderState) -> base.ProviderState:
        sid = state.get("session_id")
        if not isinstance(sid, str):
            return {}
        await self._end(state, _session_id(sid))
        kept = {"session_id": sid, "runtime_dir": str(self._session_dir(sid))}
        if self._session_dir(sid).is_dir():
            write_record(self._record_path(sid), {**kept, "pid": None})
        return kept

    async def delete(self, state: base.ProviderState) -> None:
        kept = await self.stop(state)
        if kept:
            directory = self._session_dir(kept["session_id"])
            await asyncio.to_thread(shutil.rmtree, directory, ignore_errors=True)

    async def reap(self, known: set[str]) -> list[str]:
        reaped = []
        for path in sorted(self._runtime_dir.glob(f"*/{DESKTOP_FILE}")):
            sid = path.parent.name
            if sid in known or not _SESSION_ID.fullmatch(sid):
                continue
            await self.delete({"session_id": sid})
            reaped.append(sid)
        return reaped

    def _attachable(self, candidate: dict[str, Any], sid: str) -> bool:
        return (
            candidate.get("session_id") == sid
            and isinstance(candidate.get("display"), int)
            and isinstance(candidate.get("port"), int)
            and desktop_alive(candidate.get("pid"), candidate.get("start_time"), sid)
        )

    def _reserve_port(self) -> int:
        port = free_loopback_port()
        while port in self._reserved_ports:  # another start of this process holds it
            port = free_loopback_port()
        self._reserved_ports.add(port)
        return port

    async def _launch(self, exe: str, sid: str, port: int) -> base.ProviderState:
        """Start one Xvnc on ``port`` and return its state once it accepts connections."""
        directory = self._session_dir(sid)
        state: dict[str, Any] = {"display": None, "port": port, "host": HOST}
        state.update(runtime_dir=str(directory), session_id=sid)
        xauthority = directory / XAUTHORITY_FILE
        _write_private(xauthority, xauthority_entry(secrets.token_bytes(16)))
        read_fd, write_fd = os.pipe()
        argv = xvnc_command(
            exe,
            session_id=sid,
            port=port,
            geometry=self._geometry,
            displayfd=write_fd,
            xauthority=str(xauthority),
        )
        try:
            await asyncio.to_thread(self._spawn, argv, state, write_fd)
        except BaseException:
            os.close(read_fd)
            raise
        state["display"] = await self._wait_display(state, read_fd)
        write_record(self._record_path(sid), state)
        return state

    async def _wait_display(self, state: dict[str, Any], read_fd: int) -> int:
        """The display number Xvnc reports once it accepts connections."""
        try:
            return await asyncio.to_thread(read_display, read_fd, self._ready_timeout)
        except EOFError:
            raise await self._launch_failure(state) from None
        except TimeoutError:
            await self._terminate(state, state["session_id"])
            tail = self._log_tail(state["session_id"])
            message = f"Xvnc did not get ready within {self._ready_timeout} s: {tail}"
            raise base.TemporaryFailure(message) from None
        except BaseException:  # cancellation: do not leave a half-started desktop
            await asyncio.shield(self._terminate(state, state["session_id"]))
            raise

    def _spawn(self, argv: list[str], state: dict[str, Any], displayfd: int) -> None:
        """Run Xvnc detached, reap it when it exits, and record it at once (also if the caller
        is cancelled meanwhile: a later start, stop or reap then finds and ends it)."""
        sid = state["session_id"]
        try:
            with open(self._session_dir(sid) / LOG_FILE, "wb") as out:
                proc = subprocess.Popen(
                    argv,
                    stdin=subprocess.DEVNULL,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    pass_fds=(displayfd,),
                    start_new_session=True,
                    env=desktop_environment(),
                )
        except OSError as exc:
            raise base.PermanentFailure(f"cannot run {argv[0]}: {exc}; {INSTALL_HINT}") from exc
        finally:
            os.close(displayfd)
        state.update(pid=proc.pid, start_time=start_time_of(proc.pid))
        self._children[(proc.pid, state["start_time"])] = proc
        # The child is ours: collect it whenever it exits, so that it never stays a zombie.
        threading.Thread(target=proc.wait, name=f"xvnc-{proc.pid}-reaper", daemon=True).start()
        write_record(self._record_path(sid), state)

    async def _launch_failure(self, state: dict[str, Any]) -> Exception:
        status = await self._exit_status(state["pid"], state["start_time"])
        tail = self._log_tail(state["session_id"])
        if status is not None and status > 0 and "Address already in use" in tail:
            return _PortTaken()
        return base.PermanentFailure(f"{describe_exit(status)}: {tail}")

    def _gone(self, state: base.ProviderState, sid: str) -> base.PollResult:
        record = read_record(self._record_path(sid))
        pid, started = state.get("pid"), state.get("start_time")
        child = self._children.get((pid, started)) if isinstance(pid, int) else None
        status = None if child is None else child.returncode
        message = f"{describe_exit(status)}: {self._log_tail(sid)}"
        same = record.get("pid") == pid and record.get("start_time") == started
        if same and not record.get("ready"):
            raise base.PermanentFailure(message)  # died before it ever became ready
        return base.PollResult(base.Health.GONE, message=message)

    def _mark_ready(self, state: base.ProviderState, sid: str) -> None:
        """Note in the record that this desktop came up: from now on its end is not a failure."""
        record = read_record(self._record_path(sid))
        same = (record.get("pid"), record.get("start_time")) == (state["pid"], state["start_time"])
        if same and not record.get("ready"):
            write_record(self._record_path(sid), {**record, "ready": True})

    async def _exit_status(self, pid: int, started: int | None) -> int | None:
        """The exit status of our child ``pid`` once it is gone; None if it is not ours."""
        await self._wait_gone(pid, started, self._stop_grace)
        child = self._children.pop((pid, started), None)
        for _ in range(40):  # the reaper thread collects it right after it exits
            if child is None or child.returncode is not None:
                break
            await asyncio.sleep(0.025)
        return None if child is None else child.returncode

    async def _end(self, state: base.ProviderState, sid: str) -> None:
        """End the desktop named by ``state`` and the one in the session's record."""
        await self._terminate(state, sid)
        await self._terminate(read_record(self._record_path(sid)), sid)

    async def _terminate(self, desktop: dict[str, Any], sid: str) -> None:
        """SIGTERM the desktop, SIGKILL it after the grace period, wait until it is gone."""
        pid, started = desktop.get("pid"), desktop.get("start_time")
        for sig, wait in ((signal.SIGTERM, self._stop_grace), (signal.SIGKILL, 5.0)):
            if not isinstance(pid, int) or not desktop_alive(pid, started, sid):
                break
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)
            await self._wait_gone(pid, started, wait)
        else:
            if desktop_alive(pid, started, sid):
                raise base.TemporaryFailure(f"Xvnc (pid {pid}) survived SIGKILL")
        if isinstance(pid, int):
            self._children.pop((pid, started), None)

    @staticmethod
    async def _wait_gone(pid: int, started: int | None, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while started is not None and start_time_of(pid) == started:
            if time.monotonic() >= deadline:
                return
            await asyncio.sleep(0.05)

    def _session_dir(self, sid: str) -> pathlib.Path:
        return self._runtime_dir / sid

    def _record_path(self, sid: str) -> pathlib.Path:
        return self._session_dir(sid) / DESKTOP_FILE

    def _log_tail(self, sid: str) -> str:
        return log_tail(self._session_dir(sid) / LOG_FILE)


def _session_id(value: str) -> str:
    if not _SESSION_ID.fullmatch(value):
        raise base.PermanentFailure(f"unusable session id for a desktop: {value!r}")
    return value


def _write_private(path: pathlib.Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(data)
