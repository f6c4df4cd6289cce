"""The stream URL: where a browser arrives with a stream's token.

The token admits one use, only before the stream's ``expiresAt``, only for that stream's session
and only while the session is READY. Every refusal is a clear page with the reason. (The
in-browser VNC client and the websocket proxy to the desktop are served from here in a later
version; today an admitted visitor is shown where the desktop runs.)
"""

from __future__ import annotations

import dataclasses
import html
import urllib.parse
from typing import Any

from opennimble import clock
from opennimble.domain import stream_tokens
from opennimble.store import database, sessions, streams


@dataclasses.dataclass(frozen=True)
class Answer:
    status: int
    title: str
    text: str

    def page(self) -> bytes:
        return (
            "<!doctype html><html><head><meta charset='utf-8'><title>"
            f"{html.escape(self.title)}</title></head><body><h1>{html.escape(self.title)}</h1>"
            f"<p>{html.escape(self.text)}</p></body></html>"
        ).encode()


PREFIX = "/streams/"


class StreamGate:
    def __init__(
        self, db: database.Database, tokens: stream_tokens.StreamTokens, now: clock.Now
    ) -> None:
        self.db = db
        self.tokens = tokens
        self.now = now

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        """ASGI: answer ``GET /streams/{streamId}?token=...``."""
        stream_id = scope["path"][len(PREFIX) :]
        answer = self.admit(stream_id, scope.get("query_string", b"").decode("latin-1"))
        body = answer.page()
        headers = [
            (b"content-type", b"text/html; charset=utf-8"),
            (b"cache-control", b"no-store"),
            (b"content-length", str(len(body)).encode()),
        ]
        await send({"type": "http.response.start", "status": answer.status, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    def admit(self, stream_id: str, query_string: str) -> Answer:
        """Check the token of a stream URL; consume it if it admits the visitor."""
        token = urllib.parse.parse_qs(query_string).get("token", [""])[-1]
        now = self.now()
        with self.db.write() as conn:
            stream = streams.get(conn, stream_id)
            if stream is None or not self.tokens.check(
                token, stream_id, stream["session_id"], stream["expires_at"]
            ):
                return Answer(403, "Stream refused", "This stream link is not valid.")
            refusal = _refusal(stream, now)
            session = sessions.get(conn, stream["session_id"])
            if refusal is None and (session is None or session["state"] != "READY"):
                refusal = "The session of this stream is not running."
            if refusal is None and not streams.use(conn, stream_id, now):
                refusal = "This stream link was used already: ask for a new stream."
        if refusal is not None:
            return Answer(403, "Stream refused", refusal)
        assert session is not None
        return _admitted(session)


def _refusal(stream: dict[str, Any], now: int) -> str | None:
    if stream["state"] != "READY" or stream["expires_at"] <= now:
        return "This stream link has expired: ask for a new stream."
    return None


def _admitted(session: dict[str, Any]) -> Answer:
    endpoint = session["endpoint"] or {}
    where = f"{endpoint.get('host', '?')}:{endpoint.get('port', '?')}"
    return Answer(
        200,
        "Stream admitted",
        f"Session {session['session_id']} is READY; its desktop serves VNC on {where} "
        "on the workstation host. This server has no in-browser client yet.",
    )
