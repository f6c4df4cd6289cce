"""A list of ids as one bound parameter: ``column IN (the list)`` in a statement whose text
does not change with the list's length; and lists of constants written into the SQL.

SQLAlchemy's expanding ``IN`` writes one placeholder per item, so every length is a statement
of its own: PostgreSQL parses and plans it on every call, and it cannot be a hot statement
(store/hot.py), prepared once per connection. Here the list is one parameter: an array on
PostgreSQL (``= ANY(CAST($1 AS VARCHAR[]))``), its JSON text on SQLite, whose rows
``json_each`` gives (``IN (SELECT value FROM json_each(?))``).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import orjson
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql
from sqlalchemy.ext import compiler
from sqlalchemy.sql import visitors


class Ids(sa.types.TypeDecorator[list[str]]):
    """A parameter holding a list of ids: the list on PostgreSQL (psycopg sends an array), its
    JSON text on SQLite."""

    impl = sa.String
    cache_ok = True

    def load_dialect_impl(self, dialect: sa.Dialect) -> sa.types.TypeEngine[Any]:
        if dialect.name == "postgresql":
            return dialect.type_descriptor(postgresql.ARRAY(sa.String()))
        return dialect.type_descriptor(sa.String())

    def process_bind_param(self, value: Iterable[str] | None, dialect: sa.Dialect) -> Any:
        ids = list(value or ())
        return orjson.dumps(ids).decode() if dialect.name == "sqlite" else ids


class _Among(sa.ColumnElement[bool]):
    """``column IN (the ids of a parameter)``, or NOT IN."""

    inherit_cache = True
    type = sa.Boolean()
    _is_implicitly_boolean = True  # a test, as ``IN`` is: no "= 1" on SQLite
    # SQLAlchemy's own attribute (a list): what the statement cache's key is made of
    _traverse_internals = [  # noqa: RUF012
        ("column", visitors.InternalTraversal.dp_clauseelement),
        ("param", visitors.InternalTraversal.dp_clauseelement),
        ("negated", visitors.InternalTraversal.dp_boolean),
    ]

    def __init__(self, column: sa.ColumnElement[Any], name: str, negated: bool) -> None:
        self.column = column
        self.param = sa.bindparam(name, type_=Ids())
        self.negated = negated


def among(column: sa.ColumnElement[Any], name: str) -> sa.ColumnElement[bool]:
    """``column`` is one of the ids given as the parameter ``name`` (a list)."""
    return _Among(column, name, negated=False)


def not_among(column: sa.ColumnElement[Any], name: str) -> sa.ColumnElement[bool]:
    """``column`` is none of the ids given as the parameter ``name`` (a list; may be empty)."""
    return _Among(column, name, negated=True)


@compiler.compiles(_Among, "postgresql")
def _postgresql(element: _Among, sql: Any, **kw: Any) -> str:
    column, param = sql.process(element.column, **kw), sql.process(element.param, **kw)
    test = "<> ALL" if element.negated else "= ANY"
    return f"{column} {test}(CAST({param} AS VARCHAR[]))"


@compiler.compiles(_Among, "sqlite")
def _sqlite(element: _Among, sql: Any, **kw: Any) -> str:
    column, param = sql.process(element.column, **kw), sql.process(element.param, **kw)
    test = "NOT IN" if element.negated else "IN"
    return f"{column} {test} (SELECT value FROM json_each({param}))"


def constant(value: str) -> sa.ColumnElement[Any]:
    """``'value'`` written into the SQL, not bound: a state, say, that a partial index's
    condition names (the planner can only match it against a constant)."""
    if not value.replace("_", "").isalnum():
        raise ValueError(f"not a plain constant: {value!r}")
    return sa.literal_column(f"'{value}'")


def is_one_of(column: sa.ColumnElement[Any], constants: Iterable[str]) -> sa.ColumnElement[bool]:
    """``column IN ('A', 'B')``, the constants written into the SQL: SQLAlchemy binds a tuple
    as one expanding parameter, which a hot statement cannot hold."""
    return column.in_([constant(value) for value in constants])
