"""The reconciler's claims, heartbeats and releases take their lists of sessions as one
parameter (store/id_lists.py): the same statement whatever the list's length, prepared once
per connection on PostgreSQL; on SQLite and on PostgreSQL (``OPENNIMBLE_TEST_DATABASE_URL``)."""

from __future__ import annotations

from typing import Any

import pytest
import sqlalchemy as sa

from opennimble import clock
from opennimble.store import database, schema, sessions, stats
from tests.support import rows

SECOND = clock.SECOND


def insert(db: database.Database, count: int) -> list[str]:
    """``count`` new sessions, sorted by id: the oldest first, so claimed first."""
    made = [rows.session(created_at=i + 1) for i in range(count)]
    made.sort(key=lambda r: r["session_id"])
    for i, row in enumerate(made):
        row["created_at"] = i + 1
    with db.write() as conn:
        conn.execute(sessions.t.insert(), made)
    return [r["session_id"] for r in made]


def claim(conn: sa.Connection, owner: str, **kw: Any) -> list[str]:
    args = {"host_id": "h", "new": True, "now": 100, "lease": 10 * SECOND, "limit": 50, **kw}
    # in no particular order (an UPDATE's RETURNING)
    return sorted(r["session_id"] for r in sessions.claim(conn, owner=owner, **args))


def claims(db: database.Database) -> dict[str, tuple[str | None, int | None]]:
    t = sessions.t
    with db.read() as conn:
        found = conn.execute(sa.select(t.c.session_id, t.c.claimed_by, t.c.claim_expires_at))
        return {r.session_id: (r.claimed_by, r.claim_expires_at) for r in found}


def test_a_claim_leaves_out_the_sessions_it_is_told_to(db: database.Database) -> None:
    ids = insert(db, 6)
    with db.write() as conn:
        assert claim(conn, "a", exclude=[*ids[:2], "not-a-session"], limit=3) == ids[2:5]
    with db.write() as conn:  # the claimed ones are held; of the others, one left out
        assert claim(conn, "b", exclude=[ids[0]]) == [ids[1], ids[5]]
    with db.write() as conn:
        assert claim(conn, "c", exclude=[]) == [ids[0]]
        assert claim(conn, "c", exclude=[]) == []


def test_heartbeats_and_releases_touch_the_listed_claims_of_their_owner(
    db: database.Database,
) -> None:
    ids = insert(db, 5)
    with db.write() as conn:
        mine = claim(conn, "a", limit=3)
        theirs = claim(conn, "b")
    assert mine == ids[:3] and theirs == ids[3:]
    with db.write() as conn:
        sessions.heartbeat(conn, [ids[0], ids[1], ids[3]], "a", until=999 * SECOND)
        sessions.heartbeat(conn, [], "a", until=1)
    held = claims(db)
    assert held[ids[0]] == held[ids[1]] == ("a", 999 * SECOND)
    assert held[ids[2]] == ("a", 100 + 10 * SECOND)  # not listed
    assert held[ids[3]] == ("b", 100 + 10 * SECOND)  # listed, but another owner's
    with db.write() as conn:
        sessions.release(conn, [ids[0], ids[2], ids[4]], "a")
    held = claims(db)
    assert held[ids[0]] == held[ids[2]] == (None, None)
    assert held[ids[1]][0] == "a" and held[ids[4]][0] == "b"


def test_a_claim_is_one_prepared_statement_whatever_it_leaves_out(
    db: database.Database,
) -> None:
    if db.engine.dialect.name != "postgresql":
        return  # SQLite prepares nothing across calls; the shape is what matters there
    ids = insert(db, 60)
    with db.engine.connect() as conn:  # one connection throughout
        for count in (1, 3, 50):
            with conn.begin():
                claim(conn, f"owner-{count}", exclude=ids[:count], limit=1)
        with conn.begin():
            statements = conn.execute(
                sa.text("SELECT statement FROM pg_prepared_statements")
            ).scalars()
            found = [s for s in statements if "claimed_by" in s and "SKIP LOCKED" in s]
    assert len(found) == 1, found


def test_the_work_queues_name_the_work_states() -> None:
    # the partial indexes' condition, written as constants, is the claims' own
    def listed(states: tuple[str, ...]) -> str:
        return "state IN (" + ", ".join(f"'{state}'" for state in states) + ")"

    assert listed(sessions.WORK_STATES) == schema.SESSION_WORK
    assert f"host_id IS NULL AND {listed(sessions.NEW_WORK_STATES)}" == schema.NEW_WORK


@pytest.mark.parametrize("queue", ["host", "deletions", "new"])
def test_a_claim_reads_the_sessions_it_takes_not_all_that_wait(
    db: database.Database, queue: str
) -> None:
    """500 sessions wait in each queue, which the planner's statistics do not know of (taken
    when the table held finished sessions only, as they mostly are); a claim of 8 reads about
    8 rows, on the plan its prepared statement gets (PostgreSQL's generic plan), in its
    queue's order (no sort on SQLite)."""
    done = [rows.session(state="READY", host_id="h", created_at=i) for i in range(1000)]
    waiting = [
        [rows.session(created_at=2000 + i) for i in range(500)],  # new
        [rows.session(host_id="h", created_at=3000 + i) for i in range(500)],
        [rows.session(state="DELETE_IN_PROGRESS", created_at=4000 + i) for i in range(500)],
    ]
    with db.write() as conn:
        conn.execute(sessions.t.insert(), done)
    if db.engine.dialect.name == "postgresql":
        with db.write() as conn:
            conn.exec_driver_sql("ANALYZE sessions")
    with db.write() as conn:
        for made in waiting:  # one INSERT each: an INSERT has the columns of its first row
            conn.execute(sessions.t.insert(), made)
    statement = sessions._claims[(queue, False)]
    if db.engine.dialect.name == "sqlite":
        with db.read() as conn:
            sql = str(statement._sql(conn.dialect)[0])
            plan = conn.exec_driver_sql(f"EXPLAIN QUERY PLAN {sql}", (1,) * sql.count("?"))
            steps = [row[3] for row in plan]
        assert not any("TEMP B-TREE" in step for step in steps), steps
        return
    sql = bytes(statement._sql(db.engine.dialect)[0]).decode()
    with db.engine.connect() as conn, conn.begin():
        conn.exec_driver_sql("SET LOCAL plan_cache_mode = force_generic_plan")
        conn.exec_driver_sql(f"PREPARE probe AS {sql}")
        args = "('probe', 999999999, 'h', 1000000, '{}', 8)"
        plan = conn.exec_driver_sql(f"EXPLAIN (ANALYZE, FORMAT JSON) EXECUTE probe{args}")
        found = plan.scalar_one()[0]["Plan"]
        conn.exec_driver_sql("DEALLOCATE probe")
    assert 0 < _rows_read(found, "sessions_1") <= 16, _scans(found)


def _rows_read(node: dict[str, Any], alias: str) -> int:
    """The rows the plan's scans of ``alias`` gave."""
    own = node.get("Actual Rows", 0) if node.get("Alias") == alias else 0
    return int(own) + sum(_rows_read(child, alias) for child in node.get("Plans", []))


def _scans(node: dict[str, Any]) -> list[tuple[str, str, int]]:
    """The plan's scans: type, index, rows."""
    own = [(node["Node Type"], node.get("Index Name", ""), node.get("Actual Rows", 0))]
    if "Scan" not in node["Node Type"]:
        own = []
    return own + [scan for child in node.get("Plans", []) for scan in _scans(child)]


def test_the_queue_counts_the_due_unclaimed_work_of_every_queue(db: database.Database) -> None:
    made = [
        [rows.session(created_at=1, work_started_at=1) for _ in range(2)],  # new
        [rows.session(host_id="h", created_at=2, work_started_at=2) for _ in range(3)],
        [rows.session(state="DELETE_IN_PROGRESS", created_at=3) for _ in range(1)],
        [rows.session(created_at=4, next_attempt_at=999 * SECOND)],  # not due yet
        [rows.session(state="READY", host_id="h", created_at=5)],  # no work
    ]
    with db.write() as conn:
        for group in made:  # one INSERT each: an INSERT has the columns of its first row
            conn.execute(sessions.t.insert(), group)
    with db.read() as conn:
        assert stats.queue(conn, now=100) == (6, None)
    with db.write() as conn:  # a claim of one bound session's work: 5 wait, its work began at 2
        assert len(claim(conn, "a", new=False, limit=1)) == 1
    with db.read() as conn:
        assert stats.queue(conn, now=100) == (5, 2)
