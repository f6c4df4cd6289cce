"""Session rows made directly in the store (for tests of claiming and for benchmarks that fill
a table with a million sessions): every column that needs a value gets one of its type."""

from __future__ import annotations

import uuid
from typing import Any

import sqlalchemy as sa

from opennimble.store import schema

_FILL: list[tuple[type[Any], Any]] = [
    (sa.JSON, {}),
    (sa.Boolean, False),
    (sa.Integer, 0),  # also BigInteger
    (sa.String, "x"),  # also Text
]


def _filler(column: sa.Column[Any]) -> Any:
    for kind, value in _FILL:
        if isinstance(column.type, kind):
            return value
    raise TypeError(f"no test value for {column.name} ({column.type})")


REQUIRED = {
    c.name: _filler(c)
    for c in schema.sessions.columns
    if not c.nullable and c.server_default is None and not c.primary_key
}


def session(**values: Any) -> dict[str, Any]:
    """A sessions row: a new id, CREATE_IN_PROGRESS, and ``values`` over the defaults."""
    row = {
        **REQUIRED,
        "session_id": uuid.uuid4().hex[:22],
        "state": "CREATE_IN_PROGRESS",
        "status_code": "STREAMING_SESSION_CREATE_IN_PROGRESS",
        "studio_id": "us-west-2:stid-test",
        "owned_by": "owner",
        "created_by": "owner",
        "created_at": 1,
        "updated_at": 1,
    }
    row.update(values)
    return row
