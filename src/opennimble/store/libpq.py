"""Hot statements on PostgreSQL: run on psycopg's libpq connection, each prepared once per
connection.

psycopg's cursor costs ~60 us of a process's CPU per statement on top of libpq's own work
(its generators, its wait loop, its prepared-statement bookkeeping, the cursor object):
per statement 120-140 us against 68-80 us here, on the benchmark machine (bench/README.md).
A :mod:`opennimble.store.hot` statement has a fixed text, so it is prepared by name the first
time a connection runs it with given parameter types (as psycopg's own ``prepare=True`` does),
and then executed with one blocking libpq call, which releases the GIL while it waits.
Parameters are dumped, and rows loaded, by psycopg's own adapters (``psycopg.adapt``).

The names live as long as the connection: SQLAlchemy's ``conn.info`` (the driver
connection's) records them. psycopg deallocates every prepared statement of a connection
(``DEALLOCATE ALL``) after a rollback if it prepared any itself, so the engine turns psycopg's
automatic preparing off (``prepare_threshold=None``; see store/database.py): every statement
prepared on a connection is one of these.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import psycopg
import psycopg.adapt
import psycopg.errors
import psycopg.pq
import sqlalchemy as sa

# conn.info: (SQL, parameter types) -> the name it is prepared under on this connection
_PREPARED = "opennimble_prepared"
_TRANSFORMER = "opennimble_transformer"
_OK = (psycopg.pq.ExecStatus.TUPLES_OK, psycopg.pq.ExecStatus.COMMAND_OK)
_AUTO = psycopg.adapt.PyFormat.AUTO


def execute(
    conn: sa.Connection, sql: bytes, values: Sequence[Any]
) -> tuple[list[tuple[Any, ...]], int]:
    """Run ``sql`` (``$n`` placeholders) with ``values`` in ``conn``'s transaction (begun
    first if it is not yet, as psycopg's cursor does); raises psycopg's errors, as its cursor
    would. Returns the rows, as psycopg loads them, and how many rows it touched."""
    driver = conn.connection.driver_connection
    assert isinstance(driver, psycopg.Connection)
    info = conn.info
    transformer = info.get(_TRANSFORMER)
    if transformer is None:
        transformer = info[_TRANSFORMER] = psycopg.adapt.Transformer(driver)
    dumped = transformer.dump_sequence(values, [_AUTO] * len(values))
    types: tuple[int, ...] = tuple(transformer.types or ())
    formats = transformer.formats
    pgconn = driver.pgconn
    if not driver.autocommit and pgconn.transaction_status == psycopg.pq.TransactionStatus.IDLE:
        _checked(driver, pgconn.exec_(_begin(driver)))  # as psycopg's cursor starts one
    prepared: dict[tuple[bytes, tuple[int, ...]], bytes] = info.setdefault(_PREPARED, {})
    name = prepared.get((sql, types))
    if name is None:
        name = b"opennimble_%d" % len(prepared)
        _checked(driver, pgconn.prepare(name, sql, param_types=types))
        prepared[(sql, types)] = name
    sent: Any = dumped  # NULLs included, which libpq takes
    result = _checked(driver, pgconn.exec_prepared(name, sent, param_formats=formats))
    rows: list[tuple[Any, ...]] = []
    if result.ntuples:
        transformer.set_pgresult(result)
        rows = transformer.load_rows(0, result.ntuples, tuple)
        transformer.set_pgresult(None)
    return rows, result.command_tuples or 0


def _begin(driver: psycopg.Connection[Any]) -> bytes:
    """The BEGIN psycopg would send for the connection's transaction settings."""
    parts = [b"BEGIN"]
    if driver.isolation_level is not None:
        level = driver.isolation_level.name.replace("_", " ")
        parts.append(b"ISOLATION LEVEL " + level.encode())
    if driver.read_only is not None:
        parts.append(b"READ ONLY" if driver.read_only else b"READ WRITE")
    if driver.deferrable is not None:
        parts.append(b"DEFERRABLE" if driver.deferrable else b"NOT DEFERRABLE")
    return b" ".join(parts)


def _checked(driver: psycopg.Connection[Any], result: psycopg.pq.abc.PGresult) -> Any:
    if result.status not in _OK:
        raise psycopg.errors.error_from_result(result, encoding=driver.info.encoding)
    return result
