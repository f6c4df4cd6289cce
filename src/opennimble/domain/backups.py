"""Streaming session backups: when they are taken, how many are kept, who may read and restore.

A launch profile whose ``streamConfiguration.sessionBackup.mode`` is AUTOMATIC gives its
sessions a backup of their storage each time they stop (a user's stop or the session's time
limit), taken by the reconciler after the desktop has ended and before the storage is
discarded (``volumeRetentionMode`` DELETE). Each session keeps its ``maxBackupsToRetain``
newest READY backups; older ones are deleted (0 keeps none, so none are taken).
StartStreamingSession with ``backupId`` puts one of the session's own READY backups back in
place of its storage before the desktop starts, and the session shows it as
``startedFromBackupId``. Deleting a session deletes its backups (they can only be restored
into it). Like sessions, DELETED backups stay readable for a day, then are purged.

Backups share the session's states and status codes (the model gives them no others):
CREATE_IN_PROGRESS, READY, CREATE_FAILED, DELETE_IN_PROGRESS, DELETED.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from opennimble import errors
from opennimble.domain import access, lifecycle
from opennimble.domain.identity import Caller
from opennimble.protocol import validate

Row = dict[str, Any]

STATUS = {
    "CREATE_IN_PROGRESS": ("STREAMING_SESSION_CREATE_IN_PROGRESS", "The backup is being taken"),
    "READY": ("STREAMING_SESSION_READY", "The backup is ready to be restored"),
    "DELETE_IN_PROGRESS": ("STREAMING_SESSION_DELETE_IN_PROGRESS", "The backup is being deleted"),
    "DELETED": ("STREAMING_SESSION_DELETED", "The backup is deleted"),
}
DELETED_RETENTION = lifecycle.DELETED_RETENTION


def enter(state: str, now: int) -> dict[str, Any]:
    code, message = STATUS[state]
    return {"state": state, "status_code": code, "status_message": message, "updated_at": now}


def wanted(attrs: dict[str, Any]) -> int:
    """How many backups a session of these settings keeps (0: it takes none)."""
    if attrs.get("backupMode") != "AUTOMATIC":
        return 0
    return int(attrs.get("maxBackupsToRetain") or 0)


def beyond_retention(ready_newest_first: list[Row], keep: int) -> list[Row]:
    """The READY backups to delete so that the ``keep`` newest remain."""
    return ready_newest_first[max(keep, 0) :]


def readable(
    conn: sa.Connection, caller: Caller, studio_id: str, backup: Row | None, backup_id: str
) -> Row:
    """A backup the caller may see: of a session it owns, or any for an admin."""
    access.studio(conn, caller, studio_id)
    if backup is None:
        raise errors.not_found("Streaming session backup", backup_id)
    action, who = f"read streaming session backup {backup_id}", "the owner of its session"
    access.require_owner_or_admin(conn, caller, studio_id, backup["owned_by"], action, who)
    return backup


def restorable(backup: Row | None, session: Row, backup_id: str) -> Row:
    """The backup to restore into ``session`` on its start: one of its own, READY."""
    if backup is None or backup["studio_id"] != session["studio_id"]:
        raise errors.not_found("Streaming session backup", backup_id)
    if backup["session_id"] != session["session_id"]:
        message = (
            f"Value '{backup_id}' at 'backupId' is a backup of streaming session "
            f"{backup['session_id']}, not of {session['session_id']}: a backup can only be "
            "restored into the session it was taken of"
        )
        raise validate.exception([("backupId", message)])
    if backup["state"] != "READY":
        raise errors.ConflictException(
            f"Streaming session backup {backup_id} is {backup['state']}, not READY",
            context={"resourceId": backup_id, "state": backup["state"]},
        )
    return backup
