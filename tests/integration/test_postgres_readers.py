"""The store threads' kept PostgreSQL readers: a reader whose connection the server ended is
replaced, and the reads that follow see the database as it is."""

from __future__ import annotations

import asyncio
import threading
import time

import psycopg
import pytest
import sqlalchemy as sa

from opennimble.store import database, generations
from tests.support import databases

pytestmark = pytest.mark.postgresql


def test_a_reader_ended_by_the_server_is_replaced(db: database.Database) -> None:
    db._store_thread()  # this thread reads as a store thread does: with a kept reader
    first = _read_pid(db)
    assert _read_pid(db) == first  # kept from one read to the next
    with psycopg.connect(databases.server_url() or "", autocommit=True) as admin:
        admin.execute("SELECT pg_terminate_backend(%s)", (first,))
    # the read on the ended connection fails (as one on a pooled connection does when the
    # server goes away in the middle of it); the next one connects afresh
    with pytest.raises((psycopg.OperationalError, sa.exc.OperationalError)):
        _read_pid(db)
    with db.write() as conn:
        generations.bump(conn)
    assert _read_pid(db) != first
    with db.read() as conn, db.engine.connect() as other:
        assert generations.read(conn) == generations.read(other)  # what was committed
    db.dispose()  # closes the kept reader


def test_an_idle_reader_is_pinged_and_replaced_without_a_failed_read(
    db: database.Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(database, "IDLE_PING", 0.0)  # every read finds it idle
    db._store_thread()
    first = _read_pid(db)
    with psycopg.connect(databases.server_url() or "", autocommit=True) as admin:
        admin.execute("SELECT pg_terminate_backend(%s)", (first,))
    assert _read_pid(db) != first  # the ping found it gone: no read failed
    db.dispose()


def test_an_idle_pooled_connection_is_pinged_and_replaced_without_a_failed_write(
    db: database.Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Write transactions take pooled connections: one that sat idle is pinged at checkout
    (not every checkout: a round trip of every write), and one the server ended is replaced."""
    monkeypatch.setattr(database, "IDLE_PING", 0.0)  # every checkout finds it idle
    first = _write_pid(db)
    assert _write_pid(db) == first  # the same pooled connection, it answered the ping
    with psycopg.connect(databases.server_url() or "", autocommit=True) as admin:
        admin.execute("SELECT pg_terminate_backend(%s)", (first,))
    assert _write_pid(db) != first  # the ping found it gone: no write failed
    db.dispose()


def test_after_a_broken_connection_the_pools_others_are_replaced(db: database.Database) -> None:
    """Connections in use a moment ago are not pinged; when one of them is found broken (the
    database went away), the rollback of its transaction makes SQLAlchemy drop the pool's other
    connections of before: one write fails, not one for every pooled connection."""
    with db.write() as one, db.write() as other:  # two pooled connections, both used just now
        pids = [
            int(c.exec_driver_sql("SELECT pg_backend_pid()").scalar_one()) for c in (one, other)
        ]
    with psycopg.connect(databases.server_url() or "", autocommit=True) as admin:
        for pid in pids:
            admin.execute("SELECT pg_terminate_backend(%s)", (pid,))
    with pytest.raises(sa.exc.OperationalError), db.write() as conn:
        generations.read(conn)  # a hot statement: the broken connection is found here
    assert _write_pid(db) not in pids  # the other one was replaced
    db.dispose()


def _write_pid(db: database.Database) -> int:
    with db.write() as conn:
        return int(conn.exec_driver_sql("SELECT pg_backend_pid()").scalar_one())


def _read_pid(db: database.Database) -> int:
    with db.read() as conn:
        return int(conn.exec_driver_sql("SELECT pg_backend_pid()").scalar_one())


def test_the_store_threads_are_as_many_as_configured(database_url: str) -> None:
    """``database_threads``: the threads that run the API's statements on PostgreSQL."""
    db = database.Database(database_url, threads=3)

    async def main() -> set[str]:
        def name() -> str:
            time.sleep(0.05)  # long enough that every thread takes a piece
            return threading.current_thread().name

        return set(await asyncio.gather(*(db.run(name) for _ in range(12))))

    try:
        assert len(asyncio.run(main())) == 3
    finally:
        db.dispose()
