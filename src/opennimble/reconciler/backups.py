"""What the reconciler does with session backups: take one when a session stops, keep the
newest, delete them through the provider, and restore one before a start (the rules are in
:mod:`opennimble.domain.backups`).

Backup rows move by compare-and-set on their state, like sessions; the provider's calls happen
between two short transactions.
"""

from __future__ import annotations

import logging
from typing import Any

import sqlalchemy as sa

from opennimble import clock
from opennimble.domain import backups as rules
from opennimble.domain import ids
from opennimble.providers import base
from opennimble.store import backups, database

log = logging.getLogger("opennimble.reconciler")

Row = dict[str, Any]
LIVE = ("CREATE_IN_PROGRESS", "READY", "CREATE_FAILED")


class SessionBackups:
    def __init__(self, db: database.Database, provider: base.Provider, now: clock.Now) -> None:
        self.db = db
        self.provider = provider
        self.now = now

    async def take(self, session: Row, kept: base.ProviderState, keep: int) -> None:
        """Back up the stopped session's storage, then delete the oldest beyond ``keep``. A
        permanent failure fails the backup, not the stop; a temporary one is retried with the
        stop (the same backup row is used again)."""
        sid = session["session_id"]
        with self.db.write() as conn:
            pending = backups.of_session(conn, sid, ("CREATE_IN_PROGRESS",))
            backup = pending[0] if pending else self._insert(conn, session)
        try:
            taken = await self.provider.back_up(kept, backup["backup_id"])
        except base.PermanentFailure as exc:
            self.fail_pending(sid, exc.status_code, exc.message)
            return
        now = self.now()
        with self.db.write() as conn:
            ready = rules.enter("READY", now)
            only = [backup["backup_id"]]
            backups.move(conn, sid, ("CREATE_IN_PROGRESS",), only, **ready, provider_state=taken)
            newest_first = backups.of_session(conn, sid, ("READY",))
            old = [b["backup_id"] for b in rules.beyond_retention(newest_first, keep)]
            backups.move(conn, sid, ("READY",), old, **rules.enter("DELETE_IN_PROGRESS", now))
        log.info("session %s: backup %s taken", sid, backup["backup_id"])
        try:  # the stop is done: a backup that fails to go is deleted at the next stop or delete
            await self.delete(session, everything=False)
        except Exception:
            log.exception("session %s: deleting its oldest backups failed", sid)

    def _insert(self, conn: sa.Connection, session: Row) -> Row:
        now = self.now()
        backup = {
            "backup_id": ids.resource_id(),
            "studio_id": session["studio_id"],
            "session_id": session["session_id"],
            "launch_profile_id": session["launch_profile_id"],
            "owned_by": session["owned_by"],
            "tags": session["tags"],
            "created_at": now,
            "deleted_at": None,
            "provider": self.provider.name,
            "provider_state": {},
            **rules.enter("CREATE_IN_PROGRESS", now),
        }
        backups.insert(conn, backup)
        return backup

    def fail_pending(self, session_id: str, code: str, message: str) -> None:
        """The backup being taken of the session failed: CREATE_FAILED, with the reason."""
        with self.db.write() as conn:
            failed = backups.move(
                conn,
                session_id,
                ("CREATE_IN_PROGRESS",),
                state="CREATE_FAILED",
                status_code=code,
                status_message=f"The backup failed: {message}",
                updated_at=self.now(),
            )
        if failed:
            log.warning("session %s: its backup failed: %s", session_id, message)

    async def delete(self, session: Row, *, everything: bool) -> None:
        """Delete the session's backups marked DELETE_IN_PROGRESS (``everything``: first
        mark all of them)."""
        sid = session["session_id"]
        if everything:
            with self.db.write() as conn:
                backups.move(conn, sid, LIVE, **rules.enter("DELETE_IN_PROGRESS", self.now()))
        with self.db.read() as conn:
            doomed = backups.of_session(conn, sid, ("DELETE_IN_PROGRESS",))
        for backup in doomed:
            if backup["provider_state"]:  # a backup that failed early has nothing to remove
                await self.provider.delete_backup(backup["provider_state"])
            now = self.now()
            with self.db.write() as conn:
                gone = {**rules.enter("DELETED", now), "deleted_at": now}
                backups.move(conn, sid, ("DELETE_IN_PROGRESS",), [backup["backup_id"]], **gone)

    async def restore(
        self, session: Row, spec: base.DesktopSpec, state: base.ProviderState
    ) -> None:
        """Put the backup StartStreamingSession named back in place of the session's storage."""
        backup_id = session["attrs"]["restoreBackupId"]
        with self.db.read() as conn:
            backup = backups.get(conn, backup_id)
        if backup is None or backup["state"] != "READY" or backup["session_id"] != spec.session_id:
            raise base.PermanentFailure(
                f"Backup {backup_id} can no longer be restored: it was deleted meanwhile"
            )
        await self.provider.restore(spec, state, backup["provider_state"])
        log.info("session %s: backup %s restored", spec.session_id, backup_id)
