"""Inserts on the driver (store/hot.py's ``Insert``): a session's row stored as SQLAlchemy
stored it, the columns it leaves out given their defaults, a duplicate key raised as
SQLAlchemy's IntegrityError; and an idempotency record claimed once (``ON CONFLICT DO
NOTHING``); on SQLite and on PostgreSQL (``OPENNIMBLE_TEST_DATABASE_URL``)."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from opennimble.store import database, idempotency, schema, sessions
from tests.support import rows


def test_a_session_is_stored_with_its_json_and_the_defaults_of_what_it_leaves_out(
    db: database.Database,
) -> None:
    row = rows.session(
        tags={"shot": "sq010/é", "n": "1"},
        attrs={"ec2ImageId": "ami-1", "nested": {"list": [1, 2.5, None]}, "big": 2**70},
        provider_state={},
        endpoint={"host": "127.0.0.1", "port": 5901},
    )
    for name in ("attempts", "next_attempt_at"):
        row.pop(name, None)
    with db.write() as conn:
        sessions.insert(conn, row)
    with db.read() as conn:
        stored = sessions.get(conn, row["session_id"])
        started_null = conn.execute(
            sa.select(schema.sessions.c.started_at.is_(None)).where(
                schema.sessions.c.session_id == row["session_id"]
            )
        ).scalar_one()
    assert stored is not None
    assert stored["tags"] == {"shot": "sq010/é", "n": "1"}
    assert stored["attrs"] == {
        "ec2ImageId": "ami-1",
        "nested": {"list": [1, 2.5, None]},
        "big": 2**70,
    }
    assert stored["provider_state"] == {}
    assert stored["endpoint"] == {"host": "127.0.0.1", "port": 5901}
    assert (stored["attempts"], stored["next_attempt_at"]) == (0, 0)  # the server's defaults
    assert started_null  # left out, nullable: NULL


def test_a_duplicate_key_is_sqlalchemys_integrity_error_and_stores_nothing(
    db: database.Database,
) -> None:
    row = rows.session()
    with db.write() as conn:
        sessions.insert(conn, row)
    with pytest.raises(sa.exc.IntegrityError), db.write() as conn:
        sessions.insert(conn, {**row, "owned_by": "someone else"})
    with db.read() as conn:
        stored = sessions.get(conn, row["session_id"])
    assert stored is not None and stored["owned_by"] == "owner"


def test_an_idempotency_record_is_claimed_once(db: database.Database) -> None:
    record = {
        "operation": "CreateStreamingSession",
        "caller": "u-1",
        "scope": "us-west-2:stid-a",
        "token": "t-1",
        "fingerprint": "f",
        "response": {"session": {"sessionId": "s-1"}},
        "created_at": 1,
    }
    with db.write() as conn:
        assert idempotency.claim(conn, record)
    with db.write() as conn:
        assert not idempotency.claim(conn, {**record, "fingerprint": "other"})
        assert idempotency.claim(conn, {**record, "token": "t-2"})  # another key
    with db.read() as conn:
        kept = idempotency.get(conn, "CreateStreamingSession", "u-1", "us-west-2:stid-a", "t-1")
    assert kept is not None and kept["fingerprint"] == "f"
