"""Group commit (SQLite): concurrent writers share commits, each sees only its own error, and
nothing is answered before it is committed."""

from __future__ import annotations

import pathlib

import pytest
import sqlalchemy as sa

from opennimble.store import database, group_commit, schema
from tests.support import rows

pytestmark = pytest.mark.sqlite


def insert(session_id: str) -> group_commit.Work:
    def work(conn: sa.Connection) -> str:
        conn.execute(schema.sessions.insert(), rows.session(session_id=session_id))
        return session_id

    return work


def stored(db: database.Database) -> set[str]:
    with db.read() as conn:
        return {str(r[0]) for r in conn.execute(sa.select(schema.sessions.c.session_id))}


@pytest.fixture
def db(tmp_path: pathlib.Path) -> database.Database:
    made = database.Database(f"sqlite:///{tmp_path / 'db.sqlite'}")
    made.upgrade()
    return made


def test_concurrent_writes_share_commits_and_fail_alone(db: database.Database) -> None:
    group = group_commit.GroupCommit(db)
    # hold the writer on the database's write lock so that the writes queue up behind it
    with db.write():
        futures = [group.submit(insert(f"s{i}")) for i in range(40)]
        futures.append(group.submit(insert("s7")))  # a duplicate key: fails, alone
        futures += [group.submit(insert(f"t{i}")) for i in range(10)]
        assert not any(f.done() for f in futures)  # nothing answered before its commit
    values = [f.exception() or f.result() for f in futures]
    group.close()
    assert values[:40] == [f"s{i}" for i in range(40)]
    assert isinstance(values[40], sa.exc.IntegrityError)
    assert values[41:] == [f"t{i}" for i in range(10)]
    assert stored(db) == {f"s{i}" for i in range(40)} | {f"t{i}" for i in range(10)}
    assert group.pieces == 51
    assert group.batches < 51 / 4  # shared: far fewer commits than writes
    db.dispose()


def test_a_failed_commit_fails_every_write_of_it(db: database.Database) -> None:
    """A commit that fails (here a foreign key checked at commit time) answers every write of
    its transaction with the error, and stores none of them."""

    def dangling_key(conn: sa.Connection) -> None:
        conn.exec_driver_sql("PRAGMA defer_foreign_keys=ON")
        key = {"access_key_id": "AKIA1", "user_id": "nobody", "secret": "x", "created_at": 1}
        conn.execute(schema.access_keys.insert(), key)

    group = group_commit.GroupCommit(db)
    with db.write():
        futures = [group.submit(insert("a1")), group.submit(dangling_key)]
        futures.append(group.submit(insert("c1")))
    errors = [f.exception(10) for f in futures]
    group.close()
    assert all(isinstance(e, sa.exc.IntegrityError) for e in errors), errors
    assert stored(db) == set()
    db.dispose()


def test_a_write_that_fails_after_writing_leaves_nothing_of_its_own(db: database.Database) -> None:
    """A piece's savepoint undoes what it wrote before it failed, and nothing of the pieces
    before and after it; a piece may take savepoints of its own inside."""

    def half_done(conn: sa.Connection) -> None:
        insert("half")(conn)
        raise ValueError("refused after writing")

    def nested(conn: sa.Connection) -> str:
        with conn.begin_nested():
            insert("inner")(conn)
        try:
            with conn.begin_nested():
                insert("inner-undone")(conn)
                raise KeyError("undone by its own savepoint")
        except KeyError:
            pass
        return "nested"

    group = group_commit.GroupCommit(db)
    with db.write():  # queue them up: one batch
        futures = [
            group.submit(insert("before")),
            group.submit(half_done),
            group.submit(nested),
            group.submit(insert("after")),
        ]
    outcomes = [f.exception(10) or f.result() for f in futures]
    group.close()
    assert outcomes[0] == "before" and outcomes[2:] == ["nested", "after"]
    assert isinstance(outcomes[1], ValueError)
    assert stored(db) == {"before", "inner", "after"}
    assert group.batches == 1
    db.dispose()
