"""What a process remembers under the access generation (``domain/access.Remembered``) when a
transaction that moved the generation is rolled back: nothing read under the value that was
never committed survives it (on SQLite, a group commit whose commit fails; on any database, a
transaction that fails after its change)."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import sqlalchemy as sa

from opennimble.domain import access
from opennimble.store import database, generations


class Undone(Exception):
    pass


def _value(loads: list[str]) -> Callable[[sa.Connection, str], str]:
    """What is remembered under one key, ``text`` loaded (and noted in ``loads``) if nothing."""

    def value(conn: sa.Connection, text: str) -> str:
        def load() -> str:
            loads.append(text)
            return text

        return access.remembered(conn, ("test", "key"), load)

    return value


def test_what_was_read_under_a_rolled_back_generation_is_forgotten(
    db: database.Database,
) -> None:
    memory = access.Remembered()
    loads: list[str] = []
    value = _value(loads)

    with db.write() as conn:  # the generation exists, committed
        generations.bump(conn)
    with pytest.raises(Undone), db.write() as conn:
        generations.bump(conn)  # a change, and a read after it, in a transaction...
        with memory.using(conn):
            assert value(conn, "uncommitted") == "uncommitted"
        raise Undone  # ... that is rolled back
    with db.write() as conn:
        with memory.using(conn):
            assert value(conn, "committed") == "committed"  # not the rolled-back one
        generations.bump(conn)  # another change commits the same generation number
    with db.write() as conn, memory.using(conn):
        assert value(conn, "after") == "after"
    assert loads == ["uncommitted", "committed", "after"]


def test_a_lazy_use_reads_the_generation_when_first_needed_or_takes_the_one_seen(
    db: database.Database,
) -> None:
    memory = access.Remembered()
    loads: list[str] = []
    value = _value(loads)

    with db.write() as conn:
        generations.bump(conn)
    with db.read() as conn, memory.using(conn, lazy=True):
        assert value(conn, "first") == "first"  # the generation read here
    with db.read() as conn, memory.using(conn, lazy=True):
        access.seen(conn, generations.read(conn))  # as a statement read it with its rows
        assert value(conn, "second") == "first"  # remembered under the same generation
    with db.write() as conn:
        generations.bump(conn)
    with db.read() as conn, memory.using(conn, lazy=True):
        assert value(conn, "third") == "third"  # moved on: forgotten
        access.seen(conn, 0)  # too late: the transaction's generation is the one it read
        assert value(conn, "fourth") == "third"
    assert loads == ["first", "third"]
