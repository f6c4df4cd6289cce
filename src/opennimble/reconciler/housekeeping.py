"""The reconciler's quick database passes: resource readiness, stream expiry, timers, purges."""

from __future__ import annotations

import logging

import sqlalchemy as sa

from opennimble import clock
from opennimble.domain import backups, lifecycle, resources
from opennimble.store import backups as backup_store
from opennimble.store import events, idempotency, sessions
from opennimble.store import resources as resource_store

log = logging.getLogger("opennimble.reconciler")

IDEMPOTENCY_RETENTION = lifecycle.DELETED_RETENTION
# lifecycle events (and webhook deliveries that ended) are kept this long (docs/events.md)
EVENT_RETENTION = 7 * 24 * clock.HOUR


def advance_resources(conn: sa.Connection, now: int) -> int:
    """Complete the creates, updates and deletes of studios, launch profiles, images and
    components (see :mod:`opennimble.domain.resources`)."""
    moved = 0
    pending = [
        *resource_store.in_state(conn, "CREATE_IN_PROGRESS"),
        *resource_store.in_state(conn, "UPDATE_IN_PROGRESS"),
        *resource_store.in_state(conn, "DELETE_IN_PROGRESS"),
    ]
    for row in pending:
        if row["state"] == "DELETE_IN_PROGRESS":
            outcome: tuple[str, str, str] | None = resources.completion(row)
        else:
            outcome = resources.readiness(conn, row)
        if outcome is None:
            continue
        state, code, message = outcome
        if resource_store.update(
            conn,
            row["resource_id"],
            row["state"],
            state=state,
            status_code=code,
            status_message=message,
            updated_at=now,
        ):
            moved += 1
            log.info("%s %s is %s", row["kind"], row["resource_id"], state)
    return moved


def enforce_timers(conn: sa.Connection, now: int) -> int:
    """Stop or terminate sessions whose time has come (from the launch profile's limits)."""
    acted = 0
    for row in sessions.expired_timers(conn, now, limit=100):
        stop = row["state"] == "READY" and row["stop_at"] is not None and row["stop_at"] <= now
        target = "STOP_IN_PROGRESS" if stop else "DELETE_IN_PROGRESS"
        if stop:  # nobody asked to discard the session's storage
            values = lifecycle.stopping(now, None)
            values["attrs"] = {**row["attrs"], "volumeRetentionMode": "RETAIN"}
        else:
            values = {**lifecycle.enter(target, now), **lifecycle.work(now)}
        if sessions.transition(conn, row["session_id"], (row["state"],), **values):
            acted += 1
            log.info("session %s reached its time limit: %s", row["session_id"], target)
    return acted


def purge(conn: sa.Connection, now: int) -> None:
    """Forget DELETED sessions, backups and resources, and idempotency records, older than
    their retention."""
    gone = sessions.purge_deleted(conn, now - lifecycle.DELETED_RETENTION)
    if gone:
        log.info("purged %d deleted sessions", len(gone))
    backup_store.purge_deleted(conn, now - backups.DELETED_RETENTION)
    idempotency.purge(conn, now - IDEMPOTENCY_RETENTION)
    events.purge(conn, now - EVENT_RETENTION)
    for row in resource_store.purge_deleted(conn, now - resources.DELETED_RETENTION):
        resources.forget(conn, row)
