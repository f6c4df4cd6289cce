"""VNC for tests: a real Xvnc started by the test, and a small RFB client over a websocket.

The RFB client speaks just what a test needs: the 3.8 handshake with security type None (what
the gateway offers browsers), ClientInit/ServerInit, cut text, and reading messages until one
of a kind arrives. Xvnc runs with its own Xauthority and loopback-only port, like a session's.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import pathlib
import secrets
import select
import signal
import socket
import struct
import subprocess
import time
from collections.abc import Iterator

import websockets.sync.client

from tests.support.server import free_port


@dataclasses.dataclass
class Xvnc:
    port: int
    display: int
    xauthority: pathlib.Path
    process: subprocess.Popen[bytes]

    def env(self, **extra: str) -> dict[str, str]:
        """The environment of a program that runs on this display."""
        return {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "DISPLAY": f":{self.display}",
            "XAUTHORITY": str(self.xauthority),
            **extra,
        }


@contextlib.contextmanager
def xvnc(
    directory: pathlib.Path, password: str | None = None, geometry: str = "800x600"
) -> Iterator[Xvnc]:
    """A real Xvnc on a free loopback port; VNC authentication with ``password`` if given."""
    directory.mkdir(parents=True, exist_ok=True)
    xauthority = directory / "Xauthority"
    xauthority.touch(mode=0o600)
    xauthority.write_bytes(_xauthority_entry(secrets.token_bytes(16)))
    security = ["-SecurityTypes", "None"]
    if password is not None:
        password_file = directory / "passwd"
        obfuscated = subprocess.run(
            ["vncpasswd", "-f"], input=password.encode(), capture_output=True, check=True
        ).stdout
        password_file.write_bytes(obfuscated)
        password_file.chmod(0o600)
        security = ["-SecurityTypes", "VncAuth", "-PasswordFile", str(password_file)]
    port = free_port()
    read_fd, write_fd = os.pipe()
    process = subprocess.Popen(
        ["Xvnc", "-displayfd", str(write_fd), "-rfbport", str(port), "-interface", "127.0.0.1",
         "-geometry", geometry, "-desktop", "opennimble-test", "-nolisten", "tcp",
         "-auth", str(xauthority), *security],
        pass_fds=(write_fd,),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )  # fmt: skip
    os.close(write_fd)
    try:
        yield Xvnc(port, _read_display(read_fd), xauthority, process)
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _xauthority_entry(cookie: bytes) -> bytes:
    """An MIT-MAGIC-COOKIE-1 entry valid for any display (family FamilyWild)."""
    fields = (b"", b"", b"MIT-MAGIC-COOKIE-1", cookie)
    return b"\xff\xff" + b"".join(struct.pack(">H", len(f)) + f for f in fields)


def _read_display(fd: int, timeout: float = 20) -> int:
    deadline, data = time.monotonic() + timeout, b""
    try:
        while not data.endswith(b"\n"):
            if not select.select([fd], [], [], max(0, deadline - time.monotonic()))[0]:
                raise TimeoutError("Xvnc did not report its display")
            chunk = os.read(fd, 64)
            if not chunk:
                raise RuntimeError("Xvnc exited at start")
            data += chunk
        return int(data)
    finally:
        os.close(fd)


@dataclasses.dataclass
class ServerInit:
    width: int
    height: int
    bits_per_pixel: int
    name: str


class RfbClient:
    """An RFB client over a websocket, as the browser's noVNC would be."""

    def __init__(self, ws: websockets.sync.client.ClientConnection) -> None:
        self.ws = ws
        self.buffer = b""

    def read(self, n: int, timeout: float = 10) -> bytes:
        while len(self.buffer) < n:
            message = self.ws.recv(timeout=timeout)
            self.buffer += message if isinstance(message, bytes) else message.encode()
        head, self.buffer = self.buffer[:n], self.buffer[n:]
        return head

    def send(self, data: bytes) -> None:
        self.ws.send(data)

    def handshake(self) -> ServerInit:
        """RFB 3.8 with security None (all the gateway offers), then the init messages."""
        assert self.read(12) == b"RFB 003.008\n"
        self.send(b"RFB 003.008\n")
        count = self.read(1)[0]
        assert list(self.read(count)) == [1], "the gateway offers security type None only"
        self.send(b"\x01")
        assert self.read(4) == b"\0\0\0\0"
        self.send(b"\x01")  # ClientInit: shared
        width, height = struct.unpack(">HH", self.read(4))
        pixel_format = self.read(16)
        (length,) = struct.unpack(">I", self.read(4))
        return ServerInit(width, height, pixel_format[0], self.read(length).decode())

    def set_encodings(self, *encodings: int) -> None:
        self.send(struct.pack(f">BxH{len(encodings)}i", 2, len(encodings), *encodings))

    def request_update(self, width: int, height: int, incremental: bool = False) -> None:
        self.send(struct.pack(">BBHHHH", 3, int(incremental), 0, 0, width, height))

    def cut_text(self, text: str) -> None:
        data = text.encode("latin-1")
        self.send(struct.pack(">BxxxI", 6, len(data)) + data)


def connect(
    url: str, cookie: str | None = None, origin: str | None = None
) -> websockets.sync.client.ClientConnection:
    headers = {"Cookie": cookie} if cookie else {}
    return websockets.sync.client.connect(
        url,
        additional_headers=headers,
        origin=origin,  # type: ignore[arg-type]
        compression=None,
        proxy=None,
        max_size=None,
        open_timeout=10,
    )


def wait_port_closed(port: int, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) != 0:
                return
        time.sleep(0.05)
    raise AssertionError(f"port {port} still open")
