"""Keyset pagination: pages ordered by (created_at, id), resumed after the last key seen.

A keyset page costs the same whatever the size of the table (an index range scan), and a
listing paged while rows are added or removed never repeats or skips a row that existed for the
whole listing.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import sqlalchemy as sa

Key = tuple[int, str]


@dataclasses.dataclass(frozen=True)
class Page:
    rows: list[dict[str, Any]]
    next_key: Key | None


def fetch(
    conn: sa.Connection,
    table: sa.Table,
    id_column: str,
    where: list[sa.ColumnElement[bool]],
    after: Key | None,
    limit: int,
    *,
    newest_first: bool = False,
) -> Page:
    created, ident = table.c.created_at, table.c[id_column]
    conditions = list(where)
    if after is not None:
        key = sa.tuple_(created, ident)
        seen = sa.tuple_(sa.literal(after[0]), sa.literal(after[1]))
        conditions.append(key < seen if newest_first else key > seen)
    order = (created.desc(), ident.desc()) if newest_first else (created, ident)
    query = sa.select(table).where(*conditions).order_by(*order).limit(limit + 1)
    rows = [dict(r._mapping) for r in conn.execute(query)]
    if len(rows) <= limit:
        return Page(rows, None)
    rows = rows[:limit]
    last = rows[-1]
    return Page(rows, (int(last["created_at"]), str(last[id_column])))
