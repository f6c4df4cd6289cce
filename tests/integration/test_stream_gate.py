"""The stream gateway's token rules, on a real database, with a clock the test controls."""

from __future__ import annotations

import base64
import dataclasses
import pathlib
import urllib.parse
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from opennimble import clock
from opennimble.domain.stream_tokens import StreamTokens
from opennimble.gateway.credentials import StreamCredentials
from opennimble.gateway.streams import StreamGate
from opennimble.store import crypto, database, members, sessions, streams, users

KEY = base64.urlsafe_b64encode(b"k" * 32)  # an installation key (Fernet)
OWNER = "user-1"
STUDIO = "us-west-2:stid-000000000000"
LAUNCH_PROFILE = "lp" * 11
T0 = 1_700_000_000 * clock.SECOND
LIFETIME = 120 * clock.SECOND


@dataclasses.dataclass
class Clock:
    now: int = T0

    def __call__(self) -> int:
        return self.now


@dataclasses.dataclass
class Gate:
    db: database.Database
    tokens: StreamTokens
    clock: Clock
    gate: StreamGate

    def session(self, state: str = "READY") -> str:
        session_id = uuid.uuid4().hex[:22]
        with self.db.write() as conn:
            sessions.insert(conn, session_row(session_id, state))
        return session_id

    def stream(self, session_id: str, expires_at: int = T0 + LIFETIME) -> str:
        row = stream_row(session_id, expires_at)
        with self.db.write() as conn:
            streams.insert(conn, row)
        return str(row["stream_id"])

    def token(self, stream_id: str) -> str:
        with self.db.read() as conn:
            row = streams.get(conn, stream_id)
        assert row is not None
        return self.tokens.token(stream_id, row["session_id"], row["expires_at"])

    def admit(self, stream_id: str, token: str, at: int | None = None) -> tuple[int, str]:
        if at is not None:
            self.clock.now = at
        answer = self.gate.admit(stream_id, urllib.parse.urlencode({"token": token}))
        return answer.status, answer.text

    def used_at(self, stream_id: str) -> int | None:
        with self.db.read() as conn:
            row = streams.get(conn, stream_id)
        assert row is not None
        return row["used_at"]  # type: ignore[no-any-return]


def seed_owner(db: database.Database) -> None:
    """The owner of every session and stream here: a user of the identity store and a member
    of the sessions' launch profile, as the API makes them."""
    with db.write() as conn:
        users.insert_user(
            conn, {"user_id": OWNER, "name": "owner", "operator": False, "created_at": T0}
        )
        members.put(conn, membership(OWNER))


def membership(user_id: str) -> dict[str, Any]:
    return {
        "scope_id": LAUNCH_PROFILE,
        "principal_id": user_id,
        "studio_id": STUDIO,
        "persona": "USER",
        "identity_store_id": "d-0000000000",
        "sid": "S-1-5-21-1-2-3-1001",
        "created_at": T0,
    }


def stream_row(session_id: str, expires_at: int = T0 + LIFETIME) -> dict[str, Any]:
    """A READY stream of ``session_id`` (a new id), created at T0."""
    return {
        "stream_id": uuid.uuid4().hex[:22],
        "session_id": session_id,
        "studio_id": STUDIO,
        "created_by": OWNER,
        "owned_by": OWNER,
        "created_at": T0,
        "expires_at": expires_at,
        "state": "READY",
        "status_code": "STREAM_READY",
    }


def session_row(session_id: str, state: str) -> dict[str, Any]:
    return {
        "session_id": session_id,
        "studio_id": STUDIO,
        "launch_profile_id": LAUNCH_PROFILE,
        "streaming_image_id": "im" * 11,
        "ec2_instance_type": "g4dn.xlarge",
        "owned_by": OWNER,
        "created_by": OWNER,
        "updated_by": OWNER,
        "state": state,
        "status_code": f"STREAMING_SESSION_{state}",
        "status_message": "",
        "tags": {},
        "attrs": {},
        "created_at": T0 - clock.MINUTE,
        "updated_at": T0 - clock.MINUTE,
        "provider": "local",
        "provider_state": {},
        "endpoint": {"host": "127.0.0.1", "port": 5901},
    }


@pytest.fixture
def gate(tmp_path: pathlib.Path) -> Iterator[Gate]:
    db = database.Database(f"sqlite:///{tmp_path / 'gate.db'}")
    db.upgrade()
    seed_owner(db)
    tokens = StreamTokens(KEY)
    now = Clock()
    try:
        gate = StreamGate(db, tokens, StreamCredentials(KEY), now, crypto.Cipher(KEY))
        yield Gate(db, tokens, now, gate)
    finally:
        db.dispose()


def test_valid_token_before_expiry_is_admitted_once(gate: Gate) -> None:
    stream_id = gate.stream(gate.session())
    token = gate.token(stream_id)
    gate.clock.now = T0 + LIFETIME - 1
    answer = gate.gate.admit(stream_id, urllib.parse.urlencode({"token": token}))
    assert answer.status == 200
    assert answer.session is not None and answer.session["endpoint"]["port"] == 5901
    assert answer.stream is not None and answer.stream["used_at"] == T0 + LIFETIME - 1
    assert gate.used_at(stream_id) == T0 + LIFETIME - 1
    status, text = gate.admit(stream_id, token, at=T0 + LIFETIME - 1)
    assert status == 403
    assert "used already" in text


def test_token_is_refused_at_and_after_expiry(gate: Gate) -> None:
    session_id = gate.session()
    for at in (T0 + LIFETIME, T0 + LIFETIME + 1, T0 + 2 * LIFETIME):
        stream_id = gate.stream(session_id)
        status, text = gate.admit(stream_id, gate.token(stream_id), at=at)
        assert status == 403
        assert "expired" in text
        assert gate.used_at(stream_id) is None


def test_stream_that_reads_deleted_is_refused(gate: Gate) -> None:
    stream_id = gate.stream(gate.session())
    with gate.db.write() as conn:
        assert streams.expire(conn, T0 + LIFETIME) == 1
    status, text = gate.admit(stream_id, gate.token(stream_id), at=T0 + 1)
    assert status == 403
    assert "expired" in text


def test_token_of_another_stream_is_refused(gate: Gate) -> None:
    session_id = gate.session()
    mine, other = gate.stream(session_id), gate.stream(session_id)
    elsewhere = gate.stream(gate.session())
    for token in (gate.token(other), gate.token(elsewhere)):
        status, text = gate.admit(mine, token, at=T0 + 1)
        assert status == 403
        assert "not valid" in text
    assert gate.used_at(mine) is None
    assert gate.admit(mine, gate.token(mine))[0] == 200


@pytest.mark.parametrize(
    "token",
    ["", "garbage", "forged-by-another-key", "altered-expiry", "mangled"],
)
def test_bad_tokens_are_refused(gate: Gate, token: str) -> None:
    session_id = gate.session()
    stream_id = gate.stream(session_id)
    good = gate.token(stream_id)
    bad = {
        "": "",
        "garbage": "garbage",
        "forged-by-another-key": StreamTokens(b"x" * 32).token(
            stream_id, session_id, T0 + LIFETIME
        ),
        "altered-expiry": gate.tokens.token(stream_id, session_id, T0 + 10 * LIFETIME),
        "mangled": good[:-3] + ("AAA" if good[-3:] != "AAA" else "BBB"),
    }[token]
    status, text = gate.admit(stream_id, bad, at=T0 + 1)
    assert status == 403
    assert "not valid" in text
    assert gate.used_at(stream_id) is None


def test_unknown_stream_and_missing_token_are_refused(gate: Gate) -> None:
    stream_id = gate.stream(gate.session())
    assert gate.admit("no-such-stream", gate.token(stream_id), at=T0 + 1)[0] == 403
    assert gate.gate.admit(stream_id, "").status == 403
    assert gate.used_at(stream_id) is None


@pytest.mark.parametrize(
    "state", ["CREATE_IN_PROGRESS", "STOP_IN_PROGRESS", "STOPPED", "DELETE_IN_PROGRESS", "DELETED"]
)
def test_session_not_ready_is_refused(gate: Gate, state: str) -> None:
    session_id = gate.session(state)
    stream_id = gate.stream(session_id)
    status, text = gate.admit(stream_id, gate.token(stream_id), at=T0 + 1)
    assert status == 403
    assert "not running" in text
    assert gate.used_at(stream_id) is None


def test_refusal_for_a_session_not_ready_does_not_use_the_token(gate: Gate) -> None:
    session_id = gate.session("CREATE_IN_PROGRESS")
    stream_id = gate.stream(session_id)
    token = gate.token(stream_id)
    assert gate.admit(stream_id, token, at=T0 + 1)[0] == 403
    with gate.db.write() as conn:
        sessions.update(conn, session_id, state="READY", status_code="STREAMING_SESSION_READY")
    assert gate.admit(stream_id, token, at=T0 + 2)[0] == 200
    assert gate.admit(stream_id, token, at=T0 + 3)[0] == 403


def test_missing_session_is_refused(gate: Gate) -> None:
    stream_id = gate.stream("gone-session-000000000")
    status, text = gate.admit(stream_id, gate.token(stream_id), at=T0 + 1)
    assert status == 403
    assert "not running" in text


@pytest.mark.parametrize(
    ("loss", "reason"),
    [
        ("user deleted", "The user of this stream was removed."),
        ("membership removed", "The user of this stream no longer has access to its session."),
    ],
)
def test_a_stream_of_a_user_who_lost_access_is_refused(gate: Gate, loss: str, reason: str) -> None:
    stream_id = gate.stream(gate.session())
    token = gate.token(stream_id)
    with gate.db.write() as conn:
        if loss == "user deleted":
            users.delete_user(conn, OWNER)
        else:
            members.delete(conn, LAUNCH_PROFILE, OWNER)
    assert gate.admit(stream_id, token, at=T0 + 1) == (403, reason)
    assert gate.used_at(stream_id) is None
    with gate.db.write() as conn:  # given back their standing, the same link admits again
        if loss == "user deleted":
            users.insert_user(
                conn, {"user_id": OWNER, "name": "owner", "operator": False, "created_at": T0}
            )
        members.put(conn, membership(OWNER))
    assert gate.admit(stream_id, token, at=T0 + 2)[0] == 200


def test_a_stream_created_by_a_former_administrator_is_refused(gate: Gate) -> None:
    """An administrator's stream into someone else's session lives on their administration."""
    stream_id = gate.stream(gate.session())
    admin = {**membership("admin-1"), "scope_id": STUDIO, "persona": "ADMINISTRATOR"}
    with gate.db.write() as conn:
        users.insert_user(
            conn, {"user_id": "admin-1", "name": "admin", "operator": False, "created_at": T0}
        )
        members.put(conn, admin)
        by_admin = streams.t.update().where(streams.t.c.stream_id == stream_id)
        conn.execute(by_admin.values(created_by="admin-1"))
        members.delete(conn, STUDIO, "admin-1")
        members.put(conn, membership("admin-1"))  # still a member of the launch profile
    status, text = gate.admit(stream_id, gate.token(stream_id), at=T0 + 1)
    assert (status, text) == (403, "The user of this stream no longer has access to its session.")
