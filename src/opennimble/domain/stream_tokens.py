"""Stream URL tokens: unguessable, bound to one stream of one session, expiring at expiresAt.

A token is an HMAC-SHA256, under the installation key, of the stream id, the session id and the
expiry. Nothing secret is stored: the server recomputes the token to check it, so a token for one
stream is worthless for any other, and changing the expiry breaks it. Single use is enforced by
the gateway, which records the first use in the database.
"""

from __future__ import annotations

import base64
import hashlib
import hmac


class StreamTokens:
    def __init__(self, key: bytes) -> None:
        self._key = hashlib.sha256(b"opennimble/stream-token/" + key).digest()

    def token(self, stream_id: str, session_id: str, expires_at: int) -> str:
        message = f"{stream_id}\n{session_id}\n{expires_at}".encode()
        digest = hmac.new(self._key, message, hashlib.sha256).digest()
        return base64.urlsafe_b64encode(digest).decode().rstrip("=")

    def check(self, token: str, stream_id: str, session_id: str, expires_at: int) -> bool:
        return hmac.compare_digest(token, self.token(stream_id, session_id, expires_at))

    def url(self, public_url: str, stream_id: str, session_id: str, expires_at: int) -> str:
        token = self.token(stream_id, session_id, expires_at)
        return f"{public_url}/streams/{stream_id}?token={token}"
