"""SQLite reads: a snapshot by default; with ``snapshot=False`` each statement sees what was
committed when it ran (as on PostgreSQL), and the kept connection's next read is a snapshot
again."""

from __future__ import annotations

import asyncio

import pytest
import sqlalchemy as sa

from opennimble.store import database, schema
from tests.support import rows

pytestmark = pytest.mark.sqlite


def count(conn: sa.Connection) -> int:
    return int(conn.execute(sa.select(sa.func.count()).select_from(schema.sessions)).scalar_one())


def insert_elsewhere(db: database.Database, session_id: str) -> None:
    """Commit a session through another connection (as another process would)."""
    with db.engine.begin() as other:
        other.execute(schema.sessions.insert(), rows.session(session_id=session_id))


async def _reads(db: database.Database) -> list[int]:
    def work() -> list[int]:
        seen = []
        with db.read(snapshot=False) as conn:
            seen.append(count(conn))
            insert_elsewhere(db, "s-1")
            seen.append(count(conn))  # its own snapshot: sees the commit
        with db.read() as conn:  # the same kept connection, a snapshot again
            seen.append(count(conn))
            insert_elsewhere(db, "s-2")
            seen.append(count(conn))  # the transaction's snapshot: does not
        return seen

    return await db.run(work)


def test_reads_without_snapshot_see_each_commit_and_the_next_read_is_a_snapshot(
    db: database.Database,
) -> None:
    assert asyncio.run(_reads(db)) == [0, 1, 1, 1]
