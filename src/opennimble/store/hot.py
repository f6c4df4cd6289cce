"""Hot statements: the read path's few statements, and the rows every session's creation
writes (an audit entry, a lifecycle event, a state change), run without per-call statement
building.

A SQLAlchemy Core ``select`` costs 60-120 us per call to build, key for its compiled cache and
turn into rows, against under 10 us for the same query on the driver. A :class:`Statement` is
built once from the schema's tables (the one source of truth), compiled once per dialect by
SQLAlchemy itself, and run on the driver of the transaction's connection: SQLite's cursor,
or on PostgreSQL libpq's connection, prepared once per connection (store/libpq.py). Its
parameters are encoded by their types' bind processors (as SQLAlchemy's execution would), its
rows decoded by the column types where the driver did not: on SQLite JSON (orjson),
booleans as ``bool``.

Only statements whose shape never changes belong here (no ``IN`` lists, no optional filters:
each variant is a statement of its own; :class:`Insert` keeps one per set of columns given).
The driver's errors are raised as SQLAlchemy's (``sa.exc.IntegrityError`` and the others).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

from opennimble.store import database, libpq

Row = dict[str, Any]
Decoder = Callable[[Any], Any]  # a column's value to or from the driver's


def _json(value: Any) -> Any:
    # SQLite's JSON columns have numeric affinity: a top-level number comes back as one
    return database.json_value(value) if isinstance(value, (str, bytes)) else value


def _bool(value: Any) -> Any:
    return None if value is None else bool(value)


def _decoder(column: sa.ColumnElement[Any], dialect: sa.Dialect) -> Decoder | None:
    """How a column's value from the driver becomes SQLAlchemy's (None: as it is). psycopg
    loads JSON and booleans itself; SQLite gives JSON's text and booleans' integers."""
    if dialect.name == "postgresql":
        return None
    if isinstance(column.type, sa.JSON):
        return _json
    if isinstance(column.type, sa.Boolean):
        return _bool
    return None


# the SQL (``bytes`` on PostgreSQL: libpq's ``$n`` placeholders), the order of the
# parameters, the compiler's own values, the parameters' bind processors, the
# columns' decoders
Compiled = tuple[
    str | bytes,
    tuple[str, ...],
    dict[str, Any],
    dict[str, Decoder],
    list[tuple[int, Decoder]],
]
# PostgreSQL's statements are compiled for libpq's placeholders (store/libpq.py)
_DOLLAR = postgresql.psycopg.dialect(paramstyle="numeric_dollar")  # type: ignore[no-untyped-call]


class Statement:
    """A statement with named bind parameters (``sa.bindparam``), compiled once per dialect.

    Parameters are turned into the driver's values by their types' own bind processors (a JSON
    column's value is encoded as SQLAlchemy would); the rows of a SELECT, or of an INSERT's or
    UPDATE's RETURNING, are named after its columns."""

    def __init__(self, statement: sa.Select[Any] | sa.Insert | sa.Update | sa.Delete) -> None:
        self._statement = statement
        self._compiled: dict[str, Compiled] = {}  # per dialect
        self._columns = list(statement.exported_columns)  # a SELECT's, or a RETURNING's
        self.names: tuple[str, ...] = tuple(str(c.key) for c in self._columns)

    def _sql(self, dialect: sa.Dialect) -> Compiled:
        found = self._compiled.get(dialect.name)
        if found is None:
            found = self._compiled[dialect.name] = self._compile(dialect)
        return found

    def _compile(self, dialect: sa.Dialect) -> Compiled:
        postgres = dialect.name == "postgresql"
        compiled = self._statement.compile(dialect=_DOLLAR if postgres else dialect)
        # SQLite's qmark, and libpq's $n (the only dialects the store runs on): positional
        positions = tuple(compiled.positiontup or ())
        # values the compiler bound itself (e.g. SQLite's OFFSET 0 after a bound LIMIT)
        own = {k: v for k, v in compiled.params.items() if v is not None}
        processors: dict[str, Decoder] = {}
        for name, bind in compiled.binds.items():
            process = bind.type.dialect_impl(dialect).bind_processor(dialect)
            if process is not None:
                processors[name] = process
        decoders = [(i, _decoder(c, dialect)) for i, c in enumerate(self._columns)]
        sql = compiled.string.encode() if postgres else compiled.string
        return sql, positions, own, processors, [(i, d) for i, d in decoders if d is not None]

    def _values(
        self, conn: sa.Connection, params: dict[str, Any]
    ) -> tuple[Compiled, tuple[Any, ...]]:
        """The compiled statement, and the driver's parameters in their order."""
        compiled = self._sql(conn.dialect)
        _, positions, own, processors, _ = compiled
        if own:
            params = {**own, **params}
        if processors:  # as SQLAlchemy's execution does: None included (JSON's is "null")
            params = {k: processors[k](v) if k in processors else v for k, v in params.items()}
        return compiled, tuple(params[name] for name in positions)

    def _run(
        self, conn: sa.Connection, params: dict[str, Any]
    ) -> tuple[list[tuple[Any, ...]], int]:
        """The statement's rows, as the driver gives them, and how many rows it touched."""
        compiled, values = self._values(conn, params)
        sql = compiled[0]
        try:
            if isinstance(sql, bytes):
                return libpq.execute(conn, sql, values)
            cursor = conn.connection.driver_connection.cursor()  # type: ignore[union-attr]
            try:
                cursor.execute(sql, values)
                return cursor.fetchall(), cursor.rowcount
            finally:
                cursor.close()
        except conn.dialect.loaded_dbapi.Error as exc:
            # as SQLAlchemy's execution raises it: an IntegrityError tells a duplicate key
            raise sa.exc.DBAPIError.instance(
                sql.decode() if isinstance(sql, bytes) else sql,
                values,
                exc,
                conn.dialect.loaded_dbapi.Error,
            ) from exc

    def tuples(self, conn: sa.Connection, **params: Any) -> list[tuple[Any, ...]]:
        """The rows as the driver gave them (no decoding)."""
        return self._run(conn, params)[0]

    def rows(self, conn: sa.Connection, **params: Any) -> list[Row]:
        names = self.names
        decoders = self._sql(conn.dialect)[4]
        out = []
        for values in self._run(conn, params)[0]:
            row = dict(zip(names, values, strict=True))
            for index, decode in decoders:
                name = names[index]
                row[name] = decode(row[name])
            out.append(row)
        return out

    def first(self, conn: sa.Connection, **params: Any) -> Row | None:
        found = self.rows(conn, **params)
        return found[0] if found else None

    def scalar(self, conn: sa.Connection, **params: Any) -> Any:
        found = self.tuples(conn, **params)
        return found[0][0] if found else None

    def execute(self, conn: sa.Connection, **params: Any) -> int:
        """Run a statement that returns no rows; how many rows it changed."""
        return self._run(conn, params)[1]


class Insert:
    """A table's INSERT of the columns a row gives (the others left to their defaults): one
    :class:`Statement` per set of columns, built on first use."""

    def __init__(self, table: sa.Table) -> None:
        self._table = table
        self._statements: dict[tuple[str, ...], Statement] = {}

    def execute(self, conn: sa.Connection, row: Row) -> None:
        names = tuple(row)
        statement = self._statements.get(names)
        if statement is None:
            values: dict[str, Any] = {n: sa.bindparam(n) for n in names}  # typed as columns
            statement = self._statements[names] = Statement(self._table.insert().values(values))
        statement.execute(conn, **row)
