"""A state change and its lifecycle event, as the store writes them (the UPDATE ... RETURNING and
the event's INSERT run on the driver, store/hot.py), and ``events.paused``, the seam of the
events' cost benchmark (on SQLite and on PostgreSQL: ``OPENNIMBLE_TEST_DATABASE_URL``)."""

from __future__ import annotations

import sqlalchemy as sa

from opennimble.store import database, events, schema, sessions
from tests.support import rows


def test_a_transition_stores_its_values_and_records_its_event(db: database.Database) -> None:
    row = rows.session(studio_id="us-west-2:stid-a", owned_by="artist", launch_profile_id="lp-1")
    with db.write() as conn:
        sessions.insert(conn, row)
    endpoint = {"host": "127.0.0.1", "port": 5901, "labels": ["a", "é"]}
    with db.write() as conn:
        moved = sessions.transition(
            conn,
            row["session_id"],
            ("CREATE_IN_PROGRESS",),
            state="READY",
            status_code="STREAMING_SESSION_READY",
            endpoint=endpoint,
            provider_state=None,  # a JSON column's None, as SQLAlchemy stores it
            attrs={"restored": True, "n": 2},
            updated_at=7,
            updated_by="operator",
        )
        assert moved
        # a compare-and-set from a state the session is no longer in changes nothing
        assert not sessions.transition(
            conn, row["session_id"], ("CREATE_IN_PROGRESS",), state="DELETED", updated_at=8
        )
    with db.read() as conn:
        stored = sessions.get(conn, row["session_id"])
        found = events.after(conn, 0, 10)
        raw = conn.execute(
            sa.select(schema.sessions.c.provider_state.is_(None)).where(
                schema.sessions.c.session_id == row["session_id"]
            )
        ).scalar_one()
    assert stored is not None
    assert (stored["state"], stored["endpoint"], stored["attrs"]) == (
        "READY",
        endpoint,
        {"restored": True, "n": 2},
    )
    assert stored["provider_state"] is None and not raw  # JSON null, not SQL NULL
    assert [(e["type"], e["session_id"], e["time"]) for e in found] == [
        ("session.create_in_progress", row["session_id"], 1),
        ("session.ready", row["session_id"], 7),
    ]
    assert found[1]["seq"] > found[0]["seq"]
    assert (found[1]["studio_id"], found[1]["owned_by"]) == ("us-west-2:stid-a", "artist")
    assert found[1]["detail"] == {
        "state": "READY",
        "previousState": "CREATE_IN_PROGRESS",
        "statusCode": "STREAMING_SESSION_READY",
        "launchProfileId": "lp-1",
        "updatedBy": "operator",
    }


def test_paused_changes_record_no_event_and_recording_resumes(db: database.Database) -> None:
    first, second = rows.session(), rows.session()
    with events.paused():
        assert not events.recording()
        with db.write() as conn:
            sessions.insert(conn, first)
            assert sessions.transition(
                conn, first["session_id"], ("CREATE_IN_PROGRESS",), state="READY", updated_at=2
            )
            assert not sessions.transition(  # still a compare-and-set
                conn, first["session_id"], ("CREATE_IN_PROGRESS",), state="DELETED", updated_at=3
            )
    assert events.recording()
    with db.write() as conn:
        sessions.insert(conn, second)
        assert sessions.transition(
            conn, first["session_id"], ("READY",), state="DELETE_IN_PROGRESS", updated_at=4
        )
    with db.read() as conn:
        found = [(e["type"], e["session_id"]) for e in events.after(conn, 0, 10)]
        stored = sessions.get(conn, first["session_id"])
    assert stored is not None and stored["state"] == "DELETE_IN_PROGRESS"
    assert found == [
        ("session.create_in_progress", second["session_id"]),
        ("session.delete_in_progress", first["session_id"]),
    ]
