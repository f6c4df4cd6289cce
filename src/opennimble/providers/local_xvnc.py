"""TigerVNC's ``Xvnc`` as a local desktop's X and VNC server: its command line, credentials,
readiness and the records of the desktops it serves.

Xvnc listens for VNC (RFB) clients on one port of the desktop interface (loopback by default)
and asks every client for VNC authentication with a random per-desktop password, which only the
stream gateway is told: the port is useless without the gateway. X clients need the desktop's
own ``Xauthority`` cookie, and X does not listen on TCP; its socket file in ``/tmp/.X11-unix``
is in the desktop's own directory, and its abstract socket's name is its own while it runs
(:mod:`local_confine`). With the
clipboard disabled, Xvnc takes no clipboard from clients and sends none, and nobody may change
that through the VNC extension.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import pathlib
import re
import secrets
import shutil
import string
import struct
import subprocess
from typing import Any

from opennimble.providers import base, desktop_job, local_process

INSTALL_HINT = (
    "install Debian's tigervnc-standalone-server and tigervnc-tools packages (make setup) or "
    "set the xvnc setting to the path of Xvnc"
)
PASSWORD_LENGTH = 8  # all that VNC authentication uses
PROBE_TIMEOUT = 1.0
_PASSWORD_ALPHABET = string.ascii_letters + string.digits
_RFB_GREETING = re.compile(rb"RFB \d{3}\.\d{3}\n")
DISPLAY_TAKEN = desktop_job.DISPLAY_TAKEN  # Xvnc's last words when its display is taken
CLIPBOARD_OFF = [
    "-AcceptCutText=0",
    "-SendCutText=0",
    "-SetPrimary=0",
    "-SendPrimary=0",
    "-AllowOverride=desktop",  # the clipboard parameters cannot be turned on again from inside
]


def xvnc_command(
    xvnc: str,
    *,
    session_id: str,
    port: int,
    geometry: str,
    displayfd: int,
    xauthority: str,
    password_file: str,
    interface: str = "127.0.0.1",
    clipboard: bool = True,
    display: int | None = None,
) -> list[str]:
    """The command line of a session's Xvnc: on ``display`` if given (it exits at once if
    that is taken, saying one of :data:`DISPLAY_TAKEN`), else on the first free number it
    finds; either way it writes the number to ``displayfd`` once it accepts connections."""
    argv = [
        xvnc, *([] if display is None else [f":{display}"]),
        "-displayfd", str(displayfd), "-rfbport", str(port), "-interface", interface,
        "-SecurityTypes", "VncAuth", "-PasswordFile", password_file,
        # failed logins must not lock the gateway (which connects from the same address) out
        "-UseBlacklist=0",
        "-geometry", geometry, "-desktop", local_process.desktop_name(session_id),
        "-nolisten", "tcp", "-auth", xauthority,
    ]  # fmt: skip
    return argv if clipboard else argv + CLIPBOARD_OFF


def new_password() -> str:
    return "".join(secrets.choice(_PASSWORD_ALPHABET) for _ in range(PASSWORD_LENGTH))


def password_file_content(password: str) -> bytes:
    """The obfuscated form of ``password`` that Xvnc's ``-PasswordFile`` reads."""
    vncpasswd = shutil.which("vncpasswd") or shutil.which("tigervncpasswd")
    if vncpasswd is None:
        raise base.PermanentFailure(f"vncpasswd is not installed: {INSTALL_HINT}")
    done = subprocess.run(
        [vncpasswd, "-f"], input=password.encode(), capture_output=True, check=False
    )
    if done.returncode != 0 or len(done.stdout) != PASSWORD_LENGTH:
        raise base.PermanentFailure(f"vncpasswd failed: {done.stderr.decode(errors='replace')}")
    return done.stdout


def xauthority_entry(cookie: bytes) -> bytes:
    """An Xauthority entry granting MIT-MAGIC-COOKIE-1 ``cookie`` for any display."""

    def counted(value: bytes) -> bytes:
        return struct.pack(">H", len(value)) + value

    family_wild = struct.pack(">H", 0xFFFF)  # no address, no display number: any display
    fields = (b"", b"", b"MIT-MAGIC-COOKIE-1", cookie)
    return family_wild + b"".join(counted(field) for field in fields)


def is_rfb_greeting(data: bytes) -> bool:
    """Whether ``data`` is an RFB ProtocolVersion message (``RFB 003.008\\n``)."""
    return _RFB_GREETING.fullmatch(data) is not None


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


def describe_exit(status: int | None) -> str:
    if status is None:
        return "Xvnc exited"
    if status < 0:
        return f"Xvnc was killed by signal {-status}"
    return f"Xvnc exited with status {status}"


def read_end(path: pathlib.Path, size: int = 16384) -> str:
    """The last ``size`` bytes of a file as text (desktop processes write these logs: a log
    may be as large as its writer makes it). Raises OSError."""
    with open(path, "rb") as log:
        log.seek(max(0, log.seek(0, os.SEEK_END) - size))
        return log.read(size).decode(errors="replace")


def log_tail(path: pathlib.Path, lines: int = 6, limit: int = 600) -> str:
    try:
        text = read_end(path)
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
    """Replace the record atomically; it holds the VNC password, so only we may read it."""
    tmp = path.with_suffix(".tmp")
    write_private(tmp, json.dumps(record, sort_keys=True).encode())
    os.replace(tmp, path)


def write_private(path: pathlib.Path, data: bytes, owner: tuple[int, int] | None = None) -> None:
    """Write a fresh file of mode 0600, given to ``owner`` (uid, gid) if one is named."""
    with contextlib.suppress(FileNotFoundError):
        path.unlink()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    if owner is not None:
        os.fchown(fd, *owner)
    with os.fdopen(fd, "wb") as out:
        out.write(data)
