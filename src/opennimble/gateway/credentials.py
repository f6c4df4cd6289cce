"""The browser's credential for a stream, handed out when the stream's token is used.

The stream URL's token is single use: the page it opens must still connect its websocket (and
may reconnect after a network hiccup). So on admission the browser gets a cookie that names
nothing secret and is worthless elsewhere: an HMAC-SHA256, under a key derived from the
installation key, of the stream id, its session id, the moment the token was used and the
stream's expiry. Only the browser that used the token has it (the cookie is HttpOnly, scoped to
the stream's path and SameSite=Strict), it admits only that stream's session, and it stops
admitting new connections at the stream's ``expiresAt``, like the token. Nothing is stored: the
gateway recomputes it from the stream's row.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Mapping
from typing import Any

from opennimble import clock

COOKIE = "opennimble_stream"


class StreamCredentials:
    def __init__(self, key: bytes) -> None:
        self._key = hashlib.sha256(b"opennimble/stream-credential/" + key).digest()

    def value(self, stream: Mapping[str, Any]) -> str:
        """The credential of a stream whose token was used (``used_at`` is set)."""
        message = "\n".join(
            str(stream[name]) for name in ("stream_id", "session_id", "used_at", "expires_at")
        )
        digest = hmac.new(self._key, message.encode(), hashlib.sha256).digest()
        return base64.urlsafe_b64encode(digest).decode().rstrip("=")

    def check(self, value: str, stream: Mapping[str, Any]) -> bool:
        if not value or stream.get("used_at") is None:
            return False
        return hmac.compare_digest(value, self.value(stream))

    def cookie(self, stream: Mapping[str, Any], path: str, now: int, secure: bool) -> str:
        """A ``Set-Cookie`` value carrying the credential until the stream expires."""
        max_age = max(0, -(-(stream["expires_at"] - now) // clock.SECOND))
        attributes = [
            f"{COOKIE}={self.value(stream)}",
            f"Path={path}",
            f"Max-Age={max_age}",
            "HttpOnly",
            "SameSite=Strict",
        ]
        if secure:
            attributes.append("Secure")
        return "; ".join(attributes)
