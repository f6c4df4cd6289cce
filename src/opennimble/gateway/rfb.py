"""The RFB (VNC) handshake, bridged: the gateway authenticates to the desktop itself.

A desktop may require VNC authentication (RFB security type 2: the server sends a 16-byte
challenge, the client answers it DES-encrypted with the password as key). The browser never
learns that password: the gateway performs the desktop's handshake first, then offers the
browser security type None, since the browser has already proven itself with its stream
credential. Both sides speak RFB 3.8 (noVNC and TigerVNC do). After the two handshakes the
gateway relays bytes untouched, starting with the browser's ClientInit.

Reference: RFC 6143, sections 7.1 and 7.2.
"""

from __future__ import annotations

import re
import struct
from typing import Protocol

from cryptography.hazmat.decrepit.ciphers.algorithms import TripleDES
from cryptography.hazmat.primitives.ciphers import Cipher, modes

VERSION = b"RFB 003.008\n"
SECURITY_NONE = 1
SECURITY_VNC_AUTH = 2
_VERSION = re.compile(rb"RFB (\d{3})\.(\d{3})\n")
_MAX_REASON = 4096


class HandshakeError(Exception):
    """The handshake failed; the message says why, for the person at the browser."""


class Source(Protocol):
    async def readexactly(self, n: int) -> bytes: ...


class Sink(Protocol):
    async def send(self, data: bytes) -> None: ...


def vnc_auth_response(password: str, challenge: bytes) -> bytes:
    """The answer to a VNC authentication challenge: DES-ECB under the password.

    The key is the password's first 8 bytes (zero-padded) with each byte's bits mirrored, as
    every VNC implementation does. Single DES is TripleDES with the key repeated three times.
    """
    key = bytes(_mirror(b) for b in password.encode()[:8].ljust(8, b"\0"))
    encryptor = Cipher(TripleDES(key * 3), modes.ECB()).encryptor()
    return encryptor.update(challenge) + encryptor.finalize()


def _mirror(byte: int) -> int:
    return int(f"{byte:08b}"[::-1], 2)


def parse_version(greeting: bytes) -> tuple[int, int] | None:
    match = _VERSION.fullmatch(greeting)
    return (int(match[1]), int(match[2])) if match else None


async def authenticate_to_desktop(desktop: Source, out: Sink, password: str | None) -> None:
    """Run the desktop's side of the handshake up to a successful SecurityResult.

    With a password the gateway requires and performs VNC authentication; without one, it
    requires security type None.
    """
    version = parse_version(await desktop.readexactly(12))
    if version is None or version < (3, 8):
        raise HandshakeError("The desktop does not speak VNC (RFB 3.8).")
    await out.send(VERSION)
    count = (await desktop.readexactly(1))[0]
    if count == 0:
        raise HandshakeError(f"The desktop refused the connection: {await _reason(desktop)}")
    offered = set(await desktop.readexactly(count))
    wanted = SECURITY_NONE if password is None else SECURITY_VNC_AUTH
    if wanted not in offered:
        raise HandshakeError(
            f"The desktop offers VNC security types {sorted(offered)}, "
            f"the gateway needs type {wanted}."
        )
    await out.send(bytes([wanted]))
    if password is not None:
        challenge = await desktop.readexactly(16)
        await out.send(vnc_auth_response(password, challenge))
    (result,) = struct.unpack(">I", await desktop.readexactly(4))
    if result != 0:
        raise HandshakeError(f"The desktop refused the gateway: {await _reason(desktop)}")


async def greet_browser(browser: Source, out: Sink) -> None:
    """Run the browser's side of the handshake: RFB 3.8, security type None, accepted."""
    await out.send(VERSION)
    version = parse_version(await browser.readexactly(12))
    if version != (3, 8):
        raise HandshakeError("The VNC client must speak RFB 3.8.")
    await out.send(bytes([1, SECURITY_NONE]))
    chosen = (await browser.readexactly(1))[0]
    if chosen != SECURITY_NONE:
        raise HandshakeError(f"The VNC client chose security type {chosen}, not None (1).")
    await out.send(struct.pack(">I", 0))


async def _reason(source: Source) -> str:
    (length,) = struct.unpack(">I", await source.readexactly(4))
    text = await source.readexactly(min(length, _MAX_REASON))
    return text.decode("utf-8", errors="replace") or "no reason given"
