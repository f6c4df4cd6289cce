"""Keyset pagination: pages ordered by (created_at, id), resumed after the last key seen.

A keyset page costs the same whatever the size of the table (an index range scan), and a
listing paged while rows are added or removed never repeats or skips a row that existed for the
whole listing.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from typing import Any, Generic, TypeVar

import sqlalchemy as sa

Key = tuple[int, str]
R = TypeVar("R")
Row = dict[str, Any]


@dataclasses.dataclass(frozen=True)
class Page(Generic[R]):
    """A page's rows (dicts, or the driver's tuples) and the key of its last row when more
    follow."""

    rows: list[R]
    next_key: Key | None


def fetch(
    conn: sa.Connection,
    table: sa.Table,
    id_column: str,
    where: list[sa.ColumnElement[bool]],
    after: Key | None,
    limit: int,
    columns: Sequence[sa.ColumnElement[Any]] | None = None,
    *,
    newest_first: bool = False,
) -> Page[Row]:
    """A page of ``table``'s rows (``columns`` of them, or all) that match ``where``."""
    created, ident = table.c.created_at, table.c[id_column]
    conditions = list(where)
    if after is not None:
        key = sa.tuple_(created, ident)
        seen = sa.tuple_(sa.literal(after[0]), sa.literal(after[1]))
        conditions.append(key < seen if newest_first else key > seen)
    order = (created.desc(), ident.desc()) if newest_first else (created, ident)
    selected = sa.select(*columns) if columns is not None else sa.select(table)
    query = selected.where(*conditions).order_by(*order).limit(limit + 1)
    rows = [dict(r._mapping) for r in conn.execute(query)]
    return cut(rows, limit, lambda last: (int(last["created_at"]), str(last[id_column])))


def after_bound(table: sa.Table, id_column: str) -> sa.ColumnElement[bool]:
    """The keyset condition "after the key (``after_created``, ``after_id``)", as bind
    parameters (for statements built once)."""
    key = sa.tuple_(table.c.created_at, table.c[id_column])
    bound = sa.tuple_(
        sa.bindparam("after_created", type_=sa.BigInteger),
        sa.bindparam("after_id", type_=sa.String),
    )
    return key > bound


def cut(rows: list[R], limit: int, key_of: Callable[[R], Key]) -> Page[R]:
    """The page of ``rows`` (fetched with ``limit`` + 1, to know whether more follow); the next
    page starts after the key of its last row (``key_of``)."""
    if len(rows) <= limit:
        return Page(rows, None)
    rows = rows[:limit]
    return Page(rows, key_of(rows[-1]))
