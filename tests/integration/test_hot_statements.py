"""Hot statements (store/hot.py) on the driver: JSON read back as it was stored, prepared
statements (PostgreSQL: store/libpq.py) that outlive rollbacks on their connection, and the
driver's errors raised as SQLAlchemy's; on SQLite and on PostgreSQL
(``OPENNIMBLE_TEST_DATABASE_URL``)."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from opennimble.store import database, hot, idempotency, schema, sessions
from tests.support import rows

_RECORD = {
    "operation": "CreateStreamingSession",
    "caller": "u-1",
    "scope": "us-west-2:stid-a",
    "token": "t-1",
    "fingerprint": "f",
    "created_at": 1,
}


@pytest.mark.parametrize(
    "response",
    [
        "pending",
        None,
        [1, "two"],
        {"a": "b"},
        3,
        {"big": 2**70 + 1, "small": -(2**63), "u64": 2**64 - 1, "digits": "1" * 30},
    ],
)
def test_a_json_column_reads_back_what_was_stored(db: database.Database, response: object) -> None:
    # a JSON string was decoded twice on PostgreSQL (psycopg decodes JSON itself) and failed;
    # an integer past 64 bits must not come back as a float (as orjson would read it)
    with db.write() as conn:
        assert idempotency.claim(conn, {**_RECORD, "response": response})
        kept = idempotency.get(conn, "CreateStreamingSession", "u-1", "us-west-2:stid-a", "t-1")
        through_sqlalchemy = conn.execute(sa.select(schema.idempotency.c.response)).scalar_one()
    assert kept is not None
    assert kept["response"] == response
    assert through_sqlalchemy == response
    if isinstance(response, dict) and "big" in response:
        assert type(kept["response"]["big"]) is int
        assert type(through_sqlalchemy["big"]) is int


def test_hot_statements_run_on_a_connection_after_its_rollbacks(db: database.Database) -> None:
    row = rows.session()
    with db.write() as conn:
        sessions.insert(conn, row)
    session_id = row["session_id"]
    with db.engine.connect() as conn:  # one connection throughout
        for _ in range(3):
            with conn.begin() as transaction:
                assert sessions.get(conn, session_id) is not None  # hot
                for _ in range(6):  # statements through SQLAlchemy, often enough to be prepared
                    conn.execute(sa.select(schema.sessions.c.state).limit(1)).all()
                conn.execute(sa.text("SAVEPOINT s1"))
                conn.execute(sa.text("ROLLBACK TO SAVEPOINT s1"))
                assert sessions.get(conn, session_id) is not None
                transaction.rollback()
            found = sessions.get(conn, session_id)  # after the rollback, on the same connection
            assert found is not None and found["owned_by"] == row["owned_by"]
            conn.rollback()


def test_a_parameter_of_another_width_runs_the_same_statement(db: database.Database) -> None:
    t = schema.sessions
    after = hot.Statement(
        sa.select(sa.func.count()).select_from(t).where(t.c.created_at > sa.bindparam("at"))
    )
    row = rows.session(created_at=5)
    with db.write() as conn:
        sessions.insert(conn, row)
    with db.read() as conn:
        # the driver gives 1 and 2**40 different types: each its prepared statement
        assert after.scalar(conn, at=1) == 1
        assert after.scalar(conn, at=2**40) == 0
        assert after.scalar(conn, at=-(2**40)) == 1


def test_an_error_is_sqlalchemys_and_the_connection_goes_on(db: database.Database) -> None:
    row = rows.session()
    with db.write() as conn:
        sessions.insert(conn, row)
    with db.engine.connect() as conn:
        with pytest.raises(sa.exc.IntegrityError), conn.begin():
            sessions.insert(conn, row)
        with conn.begin():
            assert sessions.get(conn, row["session_id"]) is not None


class _Abandoned(Exception):
    pass


def test_a_transaction_begun_by_a_hot_statement_is_rolled_back_whole(
    db: database.Database,
) -> None:
    row = rows.session()
    with pytest.raises(_Abandoned), db.write() as conn:
        sessions.insert(conn, row)  # the transaction's first statement
        raise _Abandoned
    with db.read() as conn:
        assert sessions.get(conn, row["session_id"]) is None


def test_a_hot_statement_runs_in_the_transactions_isolation(db: database.Database) -> None:
    row = rows.session()
    with db.write() as conn:
        sessions.insert(conn, row)
    with db.engine.connect() as conn:
        if db.is_postgresql:  # SQLite's transactions are serializable whatever is asked
            conn = conn.execution_options(isolation_level="REPEATABLE READ")
        with conn.begin():
            assert sessions.get(conn, row["session_id"])["state"] == "CREATE_IN_PROGRESS"
            with db.write() as other:  # another connection's committed change
                other.execute(
                    schema.sessions.update()
                    .where(schema.sessions.c.session_id == row["session_id"])
                    .values(state="READY")
                )
            level = (
                conn.execute(sa.text("SHOW transaction_isolation")).scalar()
                if (db.is_postgresql)
                else None
            )
            seen = sessions.get(conn, row["session_id"])
        assert seen is not None
        if db.is_postgresql:
            assert level == "repeatable read"
            assert seen["state"] == "CREATE_IN_PROGRESS"  # the transaction's snapshot
