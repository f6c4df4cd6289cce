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
4. runs the ``USER_INITIALIZATION`` scripts with the display, then the recipe's session (the
   window manager and applications);
5. reports ``{"port", "display", "password"}`` in ``endpoint.json`` of the runtime directory
   (when a step fails, ``{"status_code", "message"}`` in ``failure.json``), and lives as long
   as Xvnc.

Ending the job (``scancel``, its time limit) ends the desktop: SIGTERM is passed on.
"""

from __future__ import annotations

import base64
import json
import os
import resource
import select
import signal
import socket
import subprocess
import sys
import time
from typing import Any

X11_SOCKETS = "/tmp/.X11-unix"
ENDPOINT_FILE = "endpoint.json"
FAILURE_FILE = "failure.json"
PORT_ATTEMPTS = 5
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
        self.spawn(["/bin/sh", self.path("session.sh")], "session.log", env)
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
        for _ in range(PORT_ATTEMPTS):
            port = _free_port(self.desc["interface"])
            read_fd, write_fd = os.pipe()
            fill = {"port": str(port), "displayfd": str(write_fd)}
            argv = [arg.format(**fill) for arg in self.desc["xvnc_command"]]
            process = self.spawn(argv, "xvnc.log", self.environment(), pass_fds=(write_fd,))
            os.close(write_fd)
            display = _read_display(read_fd, float(self.desc["timeout"]))
            if display is not None:
                return process, port, display
            process.kill()
            process.wait()
            if "Address already in use" not in _tail(self.path("xvnc.log")):
                raise Failure(f"Xvnc did not start on the node: {_tail(self.path('xvnc.log'))}")
        raise Failure(f"no free VNC port on the node after {PORT_ATTEMPTS} attempts")

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


def _free_port(interface: str) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((interface, 0))
        port: int = sock.getsockname()[1]
        return port


def _read_display(fd: int, timeout: float) -> int | None:
    """The display number Xvnc writes once it accepts connections (None if it exited)."""
    deadline, data = time.monotonic() + timeout, b""
    try:
        while not data.endswith(b"\n"):
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([fd], [], [], left)[0]:
                return None
            chunk = os.read(fd, 64)
            if not chunk:
                return None
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
