"""Admission to a stream: the stream URL's token for the page, the credential for the socket.

The token of ``{public_url}/streams/{streamId}?token=...`` admits one use, only before the
stream's ``expiresAt``, only for that stream's session, only while the session is READY and
only while the stream's creator may still watch the session (a user of the identity store,
owner or administrator, with a role in the studio: see
:func:`opennimble.domain.access.stream_access_lost`); it is consumed (the first use is
recorded) when it admits. The admitted browser then holds the stream's credential (see
:mod:`.credentials`), which the websocket endpoint checks by the same rules for every
connection it starts. Every refusal says why, as a page or as a websocket close reason.
"""

from __future__ import annotations

import dataclasses
import enum
import urllib.parse
from typing import Any

import sqlalchemy as sa

from opennimble import clock
from opennimble.domain import access, audit, endpoints, stream_tokens
from opennimble.gateway import credentials
from opennimble.store import crypto, database, sessions, streams, users

Row = dict[str, Any]

INVALID = "This stream link is not valid."
EXPIRED = "This stream link has expired: ask for a new stream."
USED = "This stream link was used already: ask for a new stream."
NOT_RUNNING = "The session of this stream is not running."
NO_CREDENTIAL = "No valid credential for this stream: open its URL."


class Close(enum.IntEnum):
    """Websocket close codes of the gateway (4000-4999 are the application's)."""

    INVALID = 4001  # no valid credential for this stream
    EXPIRED = 4002  # the stream expired before this connection started
    NOT_RUNNING = 4003  # the session is not READY (or has no desktop)
    UNREACHABLE = 4004  # the desktop did not answer or refused the gateway
    PROTOCOL = 4005  # the client did not speak RFB 3.8 as expected
    REVOKED = 4006  # the stream's user was removed or lost access to the session
    SESSION_ENDED = 4010  # the session was stopped or deleted while connected
    SHUTDOWN = 1001  # the server is going away


@dataclasses.dataclass(frozen=True)
class Answer:
    """The outcome of opening a stream URL: a refusal, or the admitted stream and session."""

    status: int
    title: str
    text: str
    stream: Row | None = None
    session: Row | None = None


@dataclasses.dataclass(frozen=True)
class Refusal:
    code: Close
    reason: str


@dataclasses.dataclass(frozen=True)
class Admission:
    """A websocket connection admitted into a session's desktop."""

    session_id: str
    user_id: str  # the stream's creator, whose access the connection lives on
    endpoint: dict[str, Any]  # {"host", "port"} and, if the desktop asks for one, "password"
    # (unsealed: the database keeps it sealed, see domain.endpoints)


class StreamGate:
    def __init__(
        self,
        db: database.Database,
        tokens: stream_tokens.StreamTokens,
        creds: credentials.StreamCredentials,
        now: clock.Now,
        cipher: crypto.Cipher,
        trail: audit.Trail | None = None,
    ) -> None:
        """``trail``: where every opening of a stream URL is recorded (None: nowhere)."""
        self.trail = trail
        self.db = db
        self.tokens = tokens
        self.credentials = creds
        self.now = now
        self.cipher = cipher

    def admit(self, stream_id: str, query_string: str, client: str | None = None) -> Answer:
        """Check the token of a stream URL; consume it if it admits the visitor. The audit
        trail records the opening (an admission in the transaction that consumes the token)
        by the stream's creator, from ``client``."""
        token = urllib.parse.parse_qs(query_string).get("token", [""])[-1]
        now = self.now()
        who = audit.Who(client=client)
        with self.db.write() as conn:
            stream = streams.get(conn, stream_id)
            if stream is None or not self.tokens.check(
                token, stream_id, stream["session_id"], stream["expires_at"]
            ):
                return self._refused(now, who, None, stream_id, INVALID)
            who = _creator(conn, stream["created_by"], client)
            session = sessions.get(conn, stream["session_id"])
            refusal = _refusal(conn, stream, session, now)
            if refusal is None and not streams.use(conn, stream_id, now):
                refusal = USED
            if refusal is None and self.trail is not None:
                resource = f"{stream['session_id']}/{stream_id}"
                opened = audit.Event(
                    now, audit.OPEN_STREAM, who, stream["studio_id"], resource, 200
                )
                audit.record(conn, opened)
        if refusal is not None:
            return self._refused(now, who, stream, stream_id, refusal)
        assert session is not None
        used = {**stream, "used_at": now}
        text = f"Session {session['session_id']} is READY."
        return Answer(200, "Stream admitted", text, used, session)

    def _refused(
        self, now: int, who: audit.Who, stream: Row | None, stream_id: str, reason: str
    ) -> Answer:
        if self.trail is not None:
            self.trail.refused(
                audit.Event(
                    now,
                    audit.OPEN_STREAM,
                    who,
                    stream["studio_id"] if stream else None,
                    f"{stream['session_id']}/{stream_id}" if stream else stream_id,
                    403,
                    "StreamRefused",
                    reason,
                )
            )
        return _refused(reason)

    def readmit(self, stream_id: str, credential: str) -> Answer:
        """The page of a stream opened again by a browser that was admitted to it (a reload:
        the page keeps no token), by its credential and the rules of its websocket. A refusal
        carries the stream where it exists."""
        with self.db.read() as conn:
            stream = streams.get(conn, stream_id)
            if stream is None or not self.credentials.check(credential, stream):
                return _refused(NO_CREDENTIAL)
            session = sessions.get(conn, stream["session_id"])
            refusal = _refusal(conn, stream, session, self.now())
        if refusal is not None:
            return Answer(403, "Stream refused", refusal, stream, None)
        assert session is not None
        text = f"Session {session['session_id']} is READY."
        return Answer(200, "Stream admitted", text, stream, session)

    def admit_connection(self, stream_id: str, credential: str) -> Admission | Refusal:
        """Check a websocket connection's credential against the stream, at its start."""
        answer = self.readmit(stream_id, credential)
        if answer.text == NO_CREDENTIAL:
            return Refusal(Close.INVALID, NO_CREDENTIAL)
        stream, session = answer.stream, answer.session
        if session is None or stream is None:
            return Refusal(CLOSE_CODES.get(answer.text, Close.NOT_RUNNING), answer.text)
        try:
            endpoint = endpoints.unseal(session["endpoint"], self.cipher)
        except ValueError:
            return Refusal(Close.NOT_RUNNING, "The desktop's password cannot be unsealed here.")
        return Admission(session["session_id"], stream["created_by"], endpoint)


def _creator(conn: sa.Connection, user_id: str, client: str | None) -> audit.Who:
    """The stream's creator, to whom its URL was given."""
    user = users.get_user(conn, user_id)
    return audit.Who(
        user_id,
        user["name"] if user else None,
        bool(user and user["operator"]),
        client=client,
    )


def _refused(reason: str) -> Answer:
    return Answer(403, "Stream refused", reason)


CLOSE_CODES = {
    EXPIRED: Close.EXPIRED,
    access.USER_GONE: Close.REVOKED,
    access.ACCESS_GONE: Close.REVOKED,
}


def _refusal(conn: sa.Connection, stream: Row, session: Row | None, now: int) -> str | None:
    """Why a stream admits nothing now: its session first (a deleted session's streams read
    DELETED before their expiry), then the stream's own expiry, then its creator's access."""
    if session is None or session["state"] != "READY" or not _reachable(session["endpoint"]):
        return NOT_RUNNING
    if stream["state"] != "READY" or stream["expires_at"] <= now:
        return EXPIRED
    return access.stream_access_lost(conn, stream["created_by"], session)


def _reachable(endpoint: Any) -> bool:
    return isinstance(endpoint, dict) and bool(endpoint.get("host")) and bool(endpoint.get("port"))
