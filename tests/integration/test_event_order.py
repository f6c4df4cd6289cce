"""Events numbered in commit order on PostgreSQL: writers in several processes (a handle each,
as several servers or workers have) record events at once while a client follows them as
``GET /events`` does, resuming "after the last number it saw"; it must miss none (an event
numbered below one it already saw would be skipped for good). Each event is queued for the
studio's webhook in its transaction."""

from __future__ import annotations

import threading

import pytest
import sqlalchemy as sa

from opennimble.store import database, events, schema, sessions, webhooks
from tests.support import rows

pytestmark = pytest.mark.postgresql

STUDIO = "us-west-2:stid-order"
WRITERS = 3
SESSIONS = 60  # per writer


def write(url: str, failures: list[BaseException]) -> None:
    handle = database.Database(url)
    try:
        for _ in range(SESSIONS):
            with handle.write() as conn:
                sessions.insert(conn, rows.session(studio_id=STUDIO))
    except BaseException as error:  # reported by the test
        failures.append(error)
    finally:
        handle.dispose()


def test_a_reader_resuming_after_n_misses_no_event_of_concurrent_writers(
    db: database.Database,
) -> None:
    with db.write() as conn:
        webhooks.insert(
            conn,
            {
                "webhook_id": "wh-order",
                "studio_id": STUDIO,
                "url": "http://127.0.0.1:9/",
                "event_types": ["session.*"],
                "secret": "s",
                "created_at": 0,
            },
        )
    failures: list[BaseException] = []
    writers = [threading.Thread(target=write, args=(db.url, failures)) for _ in range(WRITERS)]
    for writer in writers:
        writer.start()
    seen: list[int] = []
    after = 0
    while True:
        running = any(w.is_alive() for w in writers)
        with db.read() as conn:
            batch = events.after(conn, after, 1_000, STUDIO)
        seen += [int(e["seq"]) for e in batch]
        after = seen[-1] if seen else 0
        if not running and not batch:
            break
    for writer in writers:
        writer.join()
    assert not failures
    with db.read() as conn:
        stored = [int(e["seq"]) for e in events.after(conn, 0, 10_000, STUDIO)]
        queued = conn.execute(
            sa.select(schema.webhook_deliveries.c.seq).order_by(schema.webhook_deliveries.c.seq)
        ).scalars()
        queued_seqs = [int(s) for s in queued]
    assert len(stored) == WRITERS * SESSIONS
    assert seen == stored  # none found later below a number already seen
    assert queued_seqs == stored  # each queued, in its transaction, for the studio's webhook
