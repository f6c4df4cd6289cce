"""The reconciler's batched writes (``group_commit.Writes.batched``): the writes of concurrent
actions share one transaction, each still a compare-and-set with its lifecycle event in order,
and a write that fails gets its own error while the others are stored (on SQLite and on
PostgreSQL: ``OPENNIMBLE_TEST_DATABASE_URL``)."""

from __future__ import annotations

import asyncio
from typing import Any

import sqlalchemy as sa

from opennimble.store import database, events, group_commit, schema, sessions
from tests.support import rows


def ready(session_id: str, now: int) -> group_commit.Work:
    def work(conn: sa.Connection) -> bool:
        values: dict[str, Any] = {"state": "READY", "status_code": "STREAMING_SESSION_READY"}
        return sessions.transition(
            conn, session_id, ("CREATE_IN_PROGRESS",), **values, updated_at=now
        )

    return work


def test_batched_writes_share_a_transaction_and_fail_alone(db: database.Database) -> None:
    ids = [f"batch{i:03d}" for i in range(20)]
    with db.write() as conn:
        for session_id in ids:
            conn.execute(schema.sessions.insert(), rows.session(session_id=session_id))
    with db.write() as conn:  # one of them moved on meanwhile: its compare-and-set fails
        conn.execute(
            schema.sessions.update()
            .where(schema.sessions.c.session_id == ids[5])
            .values(state="DELETE_IN_PROGRESS")
        )

    def duplicate(conn: sa.Connection) -> None:
        conn.execute(schema.sessions.insert(), rows.session(session_id=ids[0]))

    async def run(writes: group_commit.Writes) -> list[Any]:
        works = [ready(session_id, 1_000 + i) for i, session_id in enumerate(ids)]
        works.insert(10, duplicate)  # fails: the batch is written again, each alone
        return await asyncio.gather(*(writes.batched(w) for w in works), return_exceptions=True)

    async def run_ok(writes: group_commit.Writes) -> list[Any]:
        more = [f"more{i:03d}" for i in range(10)]
        await writes(lambda conn: [sessions.insert(conn, rows.session(session_id=s)) for s in more])
        return await asyncio.gather(*(writes.batched(ready(s, 2_000)) for s in more))

    writes = group_commit.Writes(db)
    try:
        outcomes = asyncio.run(run(writes))
        assert isinstance(outcomes.pop(10), sa.exc.IntegrityError)
        assert outcomes == [i != 5 for i in range(20)]
        assert writes.batches == 0  # the batch failed: each was written alone

        assert asyncio.run(run_ok(writes)) == [True] * 10
        assert (writes.batches, writes.pieces) == (1, 10)  # one transaction for the ten
    finally:
        writes.close()

    with db.read() as conn:
        states = dict(
            conn.execute(sa.select(schema.sessions.c.session_id, schema.sessions.c.state)).all()
        )
        found = events.after(conn, 0, 1000)
    assert {s for s, state in states.items() if state == "READY"} == (
        {s for i, s in enumerate(ids) if i != 5} | {f"more{i:03d}" for i in range(10)}
    )
    # every change has its event, in the order the changes were made
    ready_events = [e["session_id"] for e in found if e["type"] == "session.ready"]
    assert ready_events == [s for i, s in enumerate(ids) if i != 5] + [
        f"more{i:03d}" for i in range(10)
    ]
    created = [e["session_id"] for e in found if e["type"] == "session.create_in_progress"]
    assert created == [f"more{i:03d}" for i in range(10)]
