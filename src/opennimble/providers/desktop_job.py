#!/usr/bin/python3
"""The desktop launcher: one desktop, started from inside a batch job as its owner.

This module is a program of its own, with nothing but Python's standard library: the Slurm
provider sends its text as the job's batch script, with the desktop's description in place of
the empty ``DESCRIPTION``, so nodes need only ``python3``, Xvnc and the desktop recipe's
programs, not opennimble. Running as the owner on the node the scheduler picked, it:

1. limits the size of every file the desktop writes (``RLIMIT_FSIZE``, soft and hard, from
   ``max_file_size``), makes the desktop's runtime directory (mode 0700), the session's
   storage and, if the job's ``/tmp`` has none (a ``/tmp`` of its own, Slurm's
   ``job_container/tmpfs``), ``/tmp/.X11-unix``;
2. runs the ``SYSTEM_INITIALIZATION`` scripts (unprivileged: a batch job has no root);
3. starts Xvnc with the command line the provider built (the local provider's), on a free
   port of the node, with the VNC password file and ``Xauthority`` of the description;
4. runs the ``USER_INITIALIZATION`` scripts with the display, then the recipe's session: the
   window manager at once, the applications once it manages the screen (so their windows
   are managed);
5. waits until the desktop is *usable*, asking the display itself as an X client (a few core
   protocol requests over its socket, with the desktop's cookie): a window manager owns the
   screen (``WM_S0``, or EWMH's ``_NET_SUPPORTING_WM_CHECK``) and redirects the root window's
   children's requests to itself (Openbox takes the selection first: an application started
   in between maps before it is managed, and an xterm then waits seconds for its resize), and,
   unless the recipe opens no
   window, an application window of ``_NET_CLIENT_LIST`` is mapped and holds the keyboard
   focus, the same rule as the local provider's (``local_display``), so that a keystroke typed
   right after READY arrives;
6. reports ``{"port", "display", "password"}`` in ``endpoint.json`` of the runtime directory
   (when a step fails, ``{"status_code", "message"}`` in ``failure.json``), and lives as long
   as Xvnc.

Ending the job (``scancel``, its time limit) ends the desktop: SIGTERM is passed on.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import resource
import select
import signal
import socket
import struct
import subprocess
import sys
import time
from typing import Any

X11_SOCKETS = "/tmp/.X11-unix"
ENDPOINT_FILE = "endpoint.json"
FAILURE_FILE = "failure.json"
LAUNCH_ATTEMPTS = 5  # Xvnc starts that find their port or display taken, before giving up
DISPLAYS = 65536 - 6000  # the display numbers an X server may take: its TCP port is 6000 + n
DISPLAY_TAKEN = (  # Xvnc's last words when the display it was given is someone else's
    "Cannot establish any listening sockets",  # its name (or socket file) is held
    "Server is already active for display",  # its lock file is a running server's
)
GATE_FD = 9  # the session script's applications start once a line comes on it (dash: <= 9)
LOOK_AGAIN = 0.05  # seconds between looks at the display while it is not usable yet
TAIL = 300
EMPTY_DESCRIPTION = "DESCRIPTION: dict[str, Any] = {}"
DESCRIPTION: dict[str, Any] = {}  # the provider puts the desktop's description here


class Failure(Exception):
    def __init__(self, message: str, status_code: str = "INTERNAL_ERROR") -> None:
        super().__init__(message)
        self.message, self.status_code = message, status_code


class Launcher:
    def __init__(self, desc: dict[str, Any]) -> None:
        self.desc = desc
        self.runtime = str(desc["runtime_dir"])
        self.children: list[subprocess.Popen[bytes]] = []

    def path(self, name: str) -> str:
        return os.path.join(self.runtime, name)

    def environment(self, display: int | None = None) -> dict[str, str]:
        env = dict(self.desc["environment"])
        if display is not None:
            env.update(DISPLAY=f":{display}", XAUTHORITY=self.path("Xauthority"))
        return env

    def run(self) -> int:
        limit = self.desc.get("max_file_size")
        if limit:
            resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
        if not os.path.lexists(X11_SOCKETS):
            os.mkdir(X11_SOCKETS, 0o700)
            os.chmod(X11_SOCKETS, 0o1777)
        os.makedirs(self.runtime, mode=0o700, exist_ok=True)
        os.makedirs(self.desc["storage_dir"], mode=0o700, exist_ok=True)
        self.write("passwd", base64.b64decode(self.desc["password_file"]))
        self.write("Xauthority", base64.b64decode(self.desc["xauthority"]))
        self.scripts("SYSTEM_INITIALIZATION", self.environment())
        xvnc, port, display = self.start_xvnc()
        env = self.environment(display)
        self.scripts("USER_INITIALIZATION", env)
        self.write("session.sh", self.desc["session_script"].encode())
        gate = self.start_session(env)
        try:  # the applications wait for the window manager (see start_session)
            self.wait_usable(display, xvnc, want_window=False)
            with contextlib.suppress(BrokenPipeError):  # the session ended already
                os.write(gate, b"go\n")
        finally:
            os.close(gate)
        self.wait_usable(display, xvnc, bool(self.desc.get("wait_for_window", True)))
        endpoint = {"port": port, "display": display, "password": self.desc["password"]}
        self.write_json(ENDPOINT_FILE, endpoint)
        return xvnc.wait()

    def scripts(self, run_context: str, env: dict[str, str]) -> None:
        chosen = [s for s in self.desc["scripts"] if s["run_context"] == run_context]
        for number, script in enumerate(chosen, start=1):
            name = f"{run_context.lower()}-{number}"
            self.write(f"{name}.sh", script["script"].encode(), mode=0o700)
            shell = script["script"].startswith("#!")
            argv = [self.path(f"{name}.sh")] if shell else ["/bin/bash", self.path(f"{name}.sh")]
            with open(self.path(f"{name}.log"), "wb") as log:
                process = subprocess.Popen(
                    argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                    env={**env, **dict(script["parameters"])}, cwd=env["HOME"],
                    start_new_session=True,
                )  # fmt: skip
            try:
                status = process.wait(float(self.desc["timeout"]))
                what = "" if status == 0 else f"failed with exit status {status}"
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
                what = f"did not finish within {self.desc['timeout']:g} seconds"
            if what:
                output = _tail(self.path(f"{name}.log"))
                raise Failure(
                    f"Initialization script of studio component '{script['component']}' "
                    f"({run_context}) {what}" + (f": {output}" if output else ""),
                    "INITIALIZATION_SCRIPT_ERROR",
                )

    def start_xvnc(self) -> tuple[subprocess.Popen[bytes], int, int]:
        """Start Xvnc on a free port and the node's lowest free display number (not Xvnc's own
        search, which keeps a descriptor and logs lines for every taken number); another
        port or display when someone takes the chosen one first."""
        tried: set[int] = set()
        for _ in range(LAUNCH_ATTEMPTS):
            port = _free_port(self.desc["interface"])
            display = free_display(tried)
            if display is None:
                raise Failure("no X display name is free on the node")
            read_fd, write_fd = os.pipe()
            fill = {"port": str(port), "displayfd": str(write_fd)}
            xvnc, *args = [arg.format(**fill) for arg in self.desc["xvnc_command"]]
            process = self.spawn(
                [xvnc, f":{display}", *args], "xvnc.log", self.environment(), pass_fds=(write_fd,)
            )
            os.close(write_fd)
            try:
                return process, port, read_display(read_fd, float(self.desc["timeout"]))
            except (TimeoutError, EOFError):
                pass
            process.kill()
            process.wait()
            log = _tail(self.path("xvnc.log"))
            if any(taken in log for taken in DISPLAY_TAKEN):
                tried.add(display)
            elif "Address already in use" not in log:
                raise Failure(f"Xvnc did not start on the node: {log}")
        raise Failure(f"Xvnc found its port or display taken at each of {LAUNCH_ATTEMPTS} attempts")

    def start_session(self, env: dict[str, str]) -> int:
        """Start the session script, which starts the window manager at once and the
        applications once a line comes on its file descriptor GATE_FD (a window mapped before
        the window manager manages the screen stays unmanaged, without the focus); returns the
        gate's writing end."""
        try:
            os.fstat(GATE_FD)
        except OSError:
            pass
        else:
            raise Failure(f"file descriptor {GATE_FD} of the launcher is taken")
        read_fd, write_fd = os.pipe()
        os.dup2(read_fd, GATE_FD)
        os.close(read_fd)
        try:
            self.spawn(["/bin/sh", self.path("session.sh")], "session.log", env, (GATE_FD,))
        except BaseException:
            os.close(write_fd)
            raise
        finally:
            os.close(GATE_FD)
        return write_fd

    def wait_usable(self, display: int, xvnc: subprocess.Popen[bytes], want_window: bool) -> None:
        """Return once the desktop is usable (step 5 above; without ``want_window``, once its
        window manager runs); a Failure saying what it lacks if it is not within the timeout."""
        cookie = base64.b64decode(self.desc["x_cookie"])
        deadline = time.monotonic() + float(self.desc["timeout"])
        lacking = "the X display is not reachable yet"
        while time.monotonic() < deadline and xvnc.poll() is None:
            try:
                with XDisplay(display, cookie) as conn:
                    while time.monotonic() < deadline:
                        lacking = conn.missing(want_window) or ""
                        if not lacking:
                            return
                        time.sleep(LOOK_AGAIN)
            except (OSError, XError) as exc:
                lacking = f"the X display is not reachable ({exc})"
                time.sleep(LOOK_AGAIN)
        if xvnc.poll() is not None:
            raise Failure(
                f"Xvnc ended before the desktop was usable: {_tail(self.path('xvnc.log'))}"
            )
        raise Failure(
            f"the desktop was not usable within {self.desc['timeout']:g} seconds: {lacking}"
            + _log_note(self.path("session.log"))
        )

    def spawn(
        self, argv: list[str], log: str, env: dict[str, str], pass_fds: tuple[int, ...] = ()
    ) -> subprocess.Popen[bytes]:
        with open(self.path(log), "ab") as out:
            process = subprocess.Popen(
                argv, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                cwd=env["HOME"], env=env, pass_fds=pass_fds,
            )  # fmt: skip
        self.children.append(process)
        return process

    def write(self, name: str, data: bytes, mode: int = 0o600) -> None:
        path = self.path(name)
        if os.path.lexists(path):
            os.unlink(path)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
        with os.fdopen(fd, "wb") as out:
            out.write(data)

    def write_json(self, name: str, data: dict[str, Any]) -> None:
        self.write(name + ".tmp", json.dumps(data).encode())
        os.replace(self.path(name + ".tmp"), self.path(name))

    def end(self) -> None:
        for child in reversed(self.children):
            if child.poll() is None:
                child.terminate()


class XError(Exception):
    """The display refused the connection or answered a request with an error."""


class XDisplay:
    """Just enough of an X11 client (core protocol, little-endian, MIT-MAGIC-COOKIE-1) to ask
    a display whether it is usable; the launcher has only Python's standard library."""

    IS_VIEWABLE = 2
    NONE = 0
    SUBSTRUCTURE_REDIRECT = 1 << 20  # an event mask bit: a window manager's

    def __init__(self, display: int, cookie: bytes) -> None:
        self.display, self.cookie = display, cookie
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.atoms: dict[str, int] = {}
        self.root = 0

    def __enter__(self) -> XDisplay:
        try:
            self._connect()
        except BaseException:
            self.sock.close()
            raise
        return self

    def __exit__(self, *_: object) -> None:
        self.sock.close()

    def _connect(self) -> None:
        self.sock.settimeout(5)
        # The display's socket file if it is this account's (Xvnc made it); otherwise its
        # abstract name: another account may hold the one and not the other (a squatter of
        # display names), and Xvnc, which listens where it can, holds the other.
        name = f"{X11_SOCKETS}/X{self.display}"
        try:
            ours = os.lstat(name).st_uid == os.getuid()
        except OSError:
            ours = False
        self.sock.connect(name if ours else "\0" + name)
        auth = b"MIT-MAGIC-COOKIE-1"
        self.sock.sendall(
            struct.pack("<BxHHHHxx", ord("l"), 11, 0, len(auth), len(self.cookie))
            + _padded(auth)
            + _padded(self.cookie)
        )
        head = self._read(8)
        body = self._read(struct.unpack_from("<H", head, 6)[0] * 4)
        if head[0] != 1:
            reason = body[: head[1]].decode(errors="replace")
            raise XError(f"display :{self.display} refused the connection: {reason}")
        vendor_length, formats = struct.unpack_from("<H", body, 16)[0], body[21]
        screens = 32 + len(_padded(b"x" * vendor_length)) + 8 * formats
        self.root = struct.unpack_from("<I", body, screens)[0]

    def _read(self, size: int) -> bytes:
        data = b""
        while len(data) < size:
            chunk = self.sock.recv(size - len(data))
            if not chunk:
                raise XError("the display closed the connection")
            data += chunk
        return data

    def request(self, opcode: int, data: int, body: bytes = b"") -> bytes:
        """Send one request and return its reply (the whole of it)."""
        body = _padded(body)
        self.sock.sendall(struct.pack("<BBH", opcode, data, 1 + len(body) // 4) + body)
        reply = self._read(32)
        if reply[0] == 0:
            raise XError(f"request {opcode} failed with X error {reply[1]}")
        return reply + self._read(struct.unpack_from("<I", reply, 4)[0] * 4)

    def atom(self, name: str) -> int:
        if name not in self.atoms:
            encoded = name.encode()
            reply = self.request(16, 0, struct.pack("<Hxx", len(encoded)) + encoded)
            self.atoms[name] = struct.unpack_from("<I", reply, 8)[0]
        return self.atoms[name]

    def windows(self, window: int, name: str) -> list[int]:
        """The window ids in property ``name`` of ``window`` (a list of WINDOWs)."""
        reply = self.request(20, 0, struct.pack("<IIIII", window, self.atom(name), 0, 0, 4096))
        fmt, count = reply[1], struct.unpack_from("<I", reply, 16)[0]
        if fmt != 32:
            return []
        return list(struct.unpack_from(f"<{count}I", reply, 32))

    def missing(self, want_window: bool) -> str | None:
        """What the display still lacks to be usable (None: nothing)."""
        owner = struct.unpack_from(
            "<I", self.request(23, 0, struct.pack("<I", self.atom("WM_S0"))), 8
        )[0]
        if owner == self.NONE and not self.windows(self.root, "_NET_SUPPORTING_WM_CHECK"):
            return "the window manager is not running yet"
        if not self.redirected():
            return "the window manager does not manage the screen yet"
        if not want_window:
            return None
        clients = [w for w in self.windows(self.root, "_NET_CLIENT_LIST") if self.viewable(w)]
        if not clients:
            return "no application window is mapped yet"
        focus = struct.unpack_from("<I", self.request(43, 0), 8)[0]
        if not any(self.within(focus, client) for client in clients):
            return "no application window has the keyboard focus yet"
        return None

    def redirected(self) -> bool:
        """Whether a client selected SubstructureRedirect on the root (GetWindowAttributes'
        all-event-masks), as a window manager does once it manages the screen."""
        reply = self.request(3, 0, struct.pack("<I", self.root))
        return bool(struct.unpack_from("<I", reply, 32)[0] & self.SUBSTRUCTURE_REDIRECT)

    def viewable(self, window: int) -> bool:
        try:
            reply = self.request(3, 0, struct.pack("<I", window))
        except XError:  # destroyed meanwhile
            return False
        return reply[26] == self.IS_VIEWABLE

    def within(self, window: int, ancestor: int) -> bool:
        """Whether ``window`` is ``ancestor`` or inside it."""
        for _ in range(64):
            if window == ancestor:
                return True
            if window < 2 or window == self.root:  # None (0), PointerRoot (1), the root
                return False
            try:
                window = struct.unpack_from(
                    "<I", self.request(15, 0, struct.pack("<I", window)), 12
                )[0]
            except XError:
                return False
        return False


def _padded(data: bytes) -> bytes:
    return data + b"\0" * (-len(data) % 4)


def _log_note(path: str) -> str:
    tail = _tail(path)
    return f" (the desktop session's log: {tail})" if tail else ""


def _free_port(interface: str) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((interface, 0))
        port: int = sock.getsockname()[1]
        return port


def wait_readable(fd: int, timeout: float) -> bool:
    """Whether ``fd`` has something to read (or its end was closed) within ``timeout``
    seconds. poll(), not select(): a busy server's descriptors pass 1023, which select()
    cannot watch (the local provider uses this too)."""
    poller = select.poll()
    poller.register(fd, select.POLLIN)
    return bool(poller.poll(max(0.0, timeout) * 1000))


def display_sockets(table: str) -> dict[int, int]:
    """The sockets bound to an X display's abstract name (``@/tmp/.X11-unix/X<n>``, what X
    clients try first) in ``table``, the text of ``/proc/net/unix``: inode -> display number."""
    found = {}
    for line in table.splitlines()[1:]:
        fields = line.split()
        path = fields[7] if len(fields) >= 8 else ""
        if path.startswith("@/tmp/.X11-unix/X") and path[17:].isdigit():
            found[int(fields[6])] = int(path[17:])
    return found


def free_display(avoid: set[int], sockets: str = "/proc/net/unix") -> int | None:
    """The lowest display number whose abstract name is free in this network namespace
    (``sockets``: its table of unix sockets) and not in ``avoid``."""
    with open(sockets) as table:
        taken = set(display_sockets(table.read()).values())
    return next((n for n in range(DISPLAYS) if n not in taken and n not in avoid), None)


def read_display(fd: int, timeout: float) -> int:
    """Read the display number Xvnc writes to ``-displayfd`` once it accepts connections;
    closes ``fd``. Raises EOFError if Xvnc closed the pipe (it exited), TimeoutError after
    ``timeout`` seconds."""
    deadline, data = time.monotonic() + timeout, b""
    try:
        while not data.endswith(b"\n"):
            left = deadline - time.monotonic()
            if left <= 0 or not wait_readable(fd, left):
                raise TimeoutError
            chunk = os.read(fd, 64)
            if not chunk:
                raise EOFError
            data += chunk
        return int(data)
    finally:
        os.close(fd)


def _tail(path: str) -> str:
    try:
        with open(path, "rb") as log:
            log.seek(max(0, log.seek(0, os.SEEK_END) - 16384))
            text = log.read().decode(errors="replace")
    except OSError:
        return ""
    return " / ".join(line.strip() for line in text.splitlines() if line.strip())[-TAIL:]


def main(desc: dict[str, Any]) -> int:
    os.umask(0o077)
    launcher = Launcher(desc)
    signal.signal(signal.SIGTERM, lambda *_: launcher.end())
    try:
        status = launcher.run()
    except Failure as exc:
        launcher.write_json(FAILURE_FILE, {"status_code": exc.status_code, "message": exc.message})
        print(f"opennimble: {exc.message}", file=sys.stderr)
        return 1
    finally:
        launcher.end()
    return 0 if status in (0, -signal.SIGTERM) else 1


if __name__ == "__main__":
    sys.exit(main(DESCRIPTION))
