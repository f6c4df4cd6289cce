"""Hot statements: the read path's few statements, and the rows every session's creation
writes (an audit entry, a lifecycle event, a state change), run without per-call statement
building.

A SQLAlchemy Core ``select`` costs 60-120 us per call to build, key for its compiled cache and
turn into rows, against under 10 us for the same query on the driver. A :class:`Statement` is
built once from the schema's tables (the one source of truth), compiled once per dialect by
SQLAlchemy itself, and run on the driver's cursor of the transaction's connection (prepared
on the server by psycopg); its parameters are encoded by their types' bind processors (as
SQLAlchemy's execution would), its rows decoded by the column types: JSON with orjson (if
the driver did not already), booleans as ``bool``.

Only statements whose shape never changes belong here (no ``IN`` lists, no optional filters:
each variant is a statement of its own; :class:`Insert` keeps one per set of columns given).
The driver's errors are raised as SQLAlchemy's (``sa.exc.IntegrityError`` and the others).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import orjson
import sqlalchemy as sa

Row = dict[str, Any]
Decoder = Callable[[Any], Any]  # a column's value to or from the driver's


def _json(value: Any) -> Any:
    return orjson.loads(value) if isinstance(value, (str, bytes)) else value


def _bool(value: Any) -> Any:
    return None if value is None else bool(value)


def _decoder(column: sa.ColumnElement[Any]) -> Decoder | None:
    if isinstance(column.type, sa.JSON):
        return _json
    if isinstance(column.type, sa.Boolean):
        return _bool
    return None


Compiled = tuple[str, tuple[str, ...] | None, dict[str, Any], dict[str, Decoder]]


class Statement:
    """A statement with named bind parameters (``sa.bindparam``), compiled once per dialect.

    Parameters are turned into the driver's values by their types' own bind processors (a JSON
    column's value is encoded as SQLAlchemy would); the rows of a SELECT, or of an INSERT's or
    UPDATE's RETURNING, are named after its columns."""

    def __init__(self, statement: sa.Select[Any] | sa.Insert | sa.Update | sa.Delete) -> None:
        self._statement = statement
        # per dialect: the SQL, the order of positional parameters, the compiler's own values,
        # the parameters' bind processors
        self._compiled: dict[str, Compiled] = {}
        columns = list(statement.exported_columns)  # a SELECT's, or a RETURNING's
        self.names: tuple[str, ...] = tuple(str(c.key) for c in columns)
        decoders = [(i, _decoder(c)) for i, c in enumerate(columns)]
        self._decoders = [(i, d) for i, d in decoders if d is not None]

    def _sql(self, dialect: sa.Dialect) -> Compiled:
        found = self._compiled.get(dialect.name)
        if found is None:
            compiled = self._statement.compile(dialect=dialect)
            positions = tuple(compiled.positiontup or ()) if dialect.positional else None
            # values the compiler bound itself (e.g. SQLite's OFFSET 0 after a bound LIMIT)
            own = {k: v for k, v in compiled.params.items() if v is not None}
            processors: dict[str, Decoder] = {}
            for name, bind in compiled.binds.items():
                process = bind.type.dialect_impl(dialect).bind_processor(dialect)
                if process is not None:
                    processors[name] = process
            found = (compiled.string, positions, own, processors)
            self._compiled[dialect.name] = found
        return found

    def _cursor(self, conn: sa.Connection, params: dict[str, Any]) -> Any:
        sql, positions, own, processors = self._sql(conn.dialect)
        if own:
            params = {**own, **params}
        if processors:  # as SQLAlchemy's execution does: None included (JSON's is "null")
            params = {k: processors[k](v) if k in processors else v for k, v in params.items()}
        driver = conn.connection.driver_connection
        assert driver is not None
        cursor = driver.cursor()
        try:
            if positions is not None:
                cursor.execute(sql, tuple(params[name] for name in positions))
            elif conn.dialect.name == "postgresql":
                cursor.execute(sql, params, prepare=True)
            else:
                cursor.execute(sql, params)
        except conn.dialect.loaded_dbapi.Error as exc:
            cursor.close()
            # as SQLAlchemy's execution raises it: an IntegrityError tells a duplicate key
            raise sa.exc.DBAPIError.instance(
                sql, params, exc, conn.dialect.loaded_dbapi.Error
            ) from exc
        return cursor

    def tuples(self, conn: sa.Connection, **params: Any) -> list[tuple[Any, ...]]:
        """The rows as the driver gave them (no decoding)."""
        cursor = self._cursor(conn, params)
        try:
            return list(cursor.fetchall())
        finally:
            cursor.close()

    def rows(self, conn: sa.Connection, **params: Any) -> list[Row]:
        names, decoders = self.names, self._decoders
        out = []
        for values in self.tuples(conn, **params):
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
        cursor = self._cursor(conn, params)
        try:
            return int(cursor.rowcount)
        finally:
            cursor.close()


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
