"""The gateway's pure parts: VNC authentication, the RFB handshakes, credentials, close reasons."""

from __future__ import annotations

import asyncio
import struct

import pytest

from opennimble import clock
from opennimble.gateway import credentials, live, rfb

# TigerVNC's vncpasswd stores a password DES-encrypted under this fixed key; `printf secret |
# vncpasswd -f` prints 2e2dbf576eb06c9e. The same DES (with VNC's mirrored key bits) answers
# VNC authentication challenges, so it must reproduce that.
VNCPASSWD_KEY = bytes([23, 82, 107, 6, 35, 78, 88, 7]).decode()


class Wire:
    """A scripted peer: what it will say, and what it was told."""

    def __init__(self, script: bytes) -> None:
        self.script = script
        self.told = b""

    async def readexactly(self, n: int) -> bytes:
        if len(self.script) < n:
            raise rfb.HandshakeError("The desktop closed the connection.")
        head, self.script = self.script[:n], self.script[n:]
        return head

    async def send(self, data: bytes) -> None:
        self.told += data


def reason(text: str) -> bytes:
    return struct.pack(">I", len(text)) + text.encode()


def test_vnc_authentication_uses_vnc_des() -> None:
    response = rfb.vnc_auth_response(VNCPASSWD_KEY, b"secret\0\0" * 2)
    assert response.hex() == "2e2dbf576eb06c9e" * 2


def test_only_the_first_eight_bytes_of_a_password_count() -> None:
    challenge = bytes(range(16))
    long = rfb.vnc_auth_response("12345678-and-more", challenge)
    assert long == rfb.vnc_auth_response("12345678", challenge)
    assert long != rfb.vnc_auth_response("1234567", challenge)


def test_desktop_handshake_with_a_password() -> None:
    challenge = bytes(range(16))
    desktop = Wire(b"RFB 003.008\n" + bytes([2, 1, 2]) + challenge + b"\0\0\0\0")
    asyncio.run(rfb.authenticate_to_desktop(desktop, desktop, "pw"))
    answer = rfb.vnc_auth_response("pw", challenge)
    assert desktop.told == b"RFB 003.008\n" + b"\x02" + answer
    assert desktop.script == b""


def test_desktop_handshake_without_a_password_picks_none() -> None:
    desktop = Wire(b"RFB 003.008\n" + bytes([2, 2, 1]) + b"\0\0\0\0")
    asyncio.run(rfb.authenticate_to_desktop(desktop, desktop, None))
    assert desktop.told == b"RFB 003.008\n\x01"


@pytest.mark.parametrize(
    ("script", "password", "message"),
    [
        (b"SSH-2.0-OpenSSH\n", None, "does not speak VNC"),
        (b"RFB 003.003\n", None, "does not speak VNC"),
        (b"RFB 003.008\n\x00" + reason("too many attempts"), None, "too many attempts"),
        (b"RFB 003.008\n\x01\x02", None, "offers VNC security types [2]"),
        (b"RFB 003.008\n\x01\x01", "pw", "needs type 2"),
        (
            b"RFB 003.008\n\x01\x02" + bytes(16) + b"\0\0\0\1" + reason("Authentication failure"),
            "pw",
            "refused the gateway: Authentication failure",
        ),
        (b"RFB 003.008\n\x01", None, "closed the connection"),
    ],
)
def test_desktop_handshake_failures_say_why(
    script: bytes, password: str | None, message: str
) -> None:
    desktop = Wire(script)
    with pytest.raises(rfb.HandshakeError, match=message.replace("[", r"\[")):
        asyncio.run(rfb.authenticate_to_desktop(desktop, desktop, password))


def test_browser_is_offered_security_none() -> None:
    browser = Wire(b"RFB 003.008\n\x01")
    asyncio.run(rfb.greet_browser(browser, browser))
    assert browser.told == b"RFB 003.008\n" + bytes([1, 1]) + b"\0\0\0\0"


@pytest.mark.parametrize(
    ("script", "message"),
    [(b"RFB 003.007\n", "must speak RFB 3.8"), (b"RFB 003.008\n\x02", "chose security type 2")],
)
def test_browser_handshake_failures_say_why(script: bytes, message: str) -> None:
    browser = Wire(script)
    with pytest.raises(rfb.HandshakeError, match=message):
        asyncio.run(rfb.greet_browser(browser, browser))


STREAM = {
    "stream_id": "stream-1",
    "session_id": "session-1",
    "used_at": 10 * clock.SECOND,
    "expires_at": 130 * clock.SECOND,
}


def test_credential_is_bound_to_the_stream_its_session_and_its_admission() -> None:
    creds = credentials.StreamCredentials(b"k" * 32)
    value = creds.value(STREAM)
    assert creds.check(value, STREAM)
    for change in (
        {"stream_id": "stream-2"},
        {"session_id": "session-2"},
        {"used_at": 11 * clock.SECOND},
        {"expires_at": 131 * clock.SECOND},
    ):
        assert not creds.check(value, {**STREAM, **change})
    assert not creds.check(value, {**STREAM, "used_at": None})  # token never used: none valid
    assert not creds.check("", STREAM)
    assert not credentials.StreamCredentials(b"x" * 32).check(value, STREAM)


def test_credential_cookie_is_private_to_the_stream_path_until_expiry() -> None:
    creds = credentials.StreamCredentials(b"k" * 32)
    cookie = creds.cookie(STREAM, "/streams/stream-1/", 20 * clock.SECOND + 1, secure=True)
    name_value, *attributes = cookie.split("; ")
    assert name_value == f"opennimble_stream={creds.value(STREAM)}"
    assert attributes == [
        "Path=/streams/stream-1/",
        "Max-Age=110",
        "HttpOnly",
        "SameSite=Strict",
        "Secure",
    ]
    late = creds.cookie(STREAM, "/", 200 * clock.SECOND, secure=False)
    assert "Max-Age=0" in late and "Secure" not in late


@pytest.mark.parametrize(
    ("state", "reason"),
    [
        ("READY", None),
        ("STOP_IN_PROGRESS", "The session was stopped."),
        ("STOPPED", "The session was stopped."),
        ("DELETE_IN_PROGRESS", "The session was deleted."),
        ("DELETED", "The session was deleted."),
        (None, "The session was deleted."),
        ("START_IN_PROGRESS", "The session is START_IN_PROGRESS."),
    ],
)
def test_connections_end_when_the_session_leaves_ready(state: str | None, reason: str) -> None:
    assert live.ended_reason(state) == reason
