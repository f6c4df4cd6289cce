"""Keyset pages of a studio's sessions as the portal's All sessions page asks for them (newest
first, filtered by owner, state and launch profile), on the test database (SQLite, or
PostgreSQL with OPENNIMBLE_TEST_DATABASE_URL): every session exactly once, in order, however
the filters combine."""

from __future__ import annotations

import pathlib
from collections.abc import Iterator
from typing import Any

import pytest

from opennimble.store import database, paging
from opennimble.store import sessions as store
from tests.support import rows

STATES = ("READY", "STOPPED", "DELETED")


@pytest.fixture
def db(tmp_path: pathlib.Path, database_url: str) -> Iterator[database.Database]:
    handle = database.Database(database_url)
    handle.upgrade()
    try:
        yield handle
    finally:
        handle.dispose()


def made(db: database.Database, count: int) -> list[dict[str, Any]]:
    """``count`` sessions of studio "s1": owners, states and launch profiles in turn, some
    created at the same microsecond (the id breaks the tie)."""
    found = [
        rows.session(
            session_id=f"sess{i:04d}",
            studio_id="s1",
            owned_by=f"user{i % 3}",
            created_by="admin",
            state=STATES[i % len(STATES)],
            launch_profile_id=f"lp{i % 2}",
            created_at=1_000 + i // 4,
        )
        for i in range(count)
    ]
    found.append(rows.session(session_id="elsewhere", studio_id="s2", created_at=5_000))
    with db.write() as conn:
        for row in found:
            store.insert(conn, row)
    return found[:-1]


def walk(db: database.Database, limit: int, **filters: Any) -> list[str]:
    """Every page, each resumed after the last key of the one before."""
    seen: list[str] = []
    after: paging.Key | None = None
    while True:
        with db.read() as conn:
            page = store.page(
                conn,
                "s1",
                created_by=None,
                session_ids=None,
                after=after,
                limit=limit,
                newest_first=True,
                **filters,
            )
        assert len(page.rows) <= limit
        seen += [r["session_id"] for r in page.rows]
        if page.next_key is None:
            return seen
        after = page.next_key


@pytest.mark.parametrize(
    "filters",
    [
        {"owned_by": None},
        {"owned_by": "user1"},
        {"owned_by": None, "states": ["READY", "STOPPED"]},
        {"owned_by": "user2", "states": ["DELETED"], "launch_profile_id": "lp1"},
        {"owned_by": None, "launch_profile_id": "lp0"},
    ],
)
def test_pages_newest_first_hold_each_session_once(
    db: database.Database, filters: dict[str, Any]
) -> None:
    sessions = made(db, 203)
    wanted = [
        s
        for s in sessions
        if filters["owned_by"] in (None, s["owned_by"])
        and s["state"] in filters.get("states", STATES)
        and filters.get("launch_profile_id") in (None, s["launch_profile_id"])
    ]
    expected = [
        s["session_id"]
        for s in sorted(wanted, key=lambda s: (s["created_at"], s["session_id"]), reverse=True)
    ]
    assert expected  # the filters leave something to page through
    for limit in (1, 7, 50, 500):
        assert walk(db, limit, **filters) == expected
