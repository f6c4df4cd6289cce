"""What the reconciler does for one session in each working state.

Each action calls the provider and records the outcome with a compare-and-set transition, so a
session that moved on meanwhile (another reconciler, an API call) is left alone. Temporary
failures are retried with exponential back-off until the state's deadline; permanent ones, and
a passed deadline, put the session in the state's *_FAILED state with a message for the user.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from typing import Any

import sqlalchemy as sa

from opennimble import clock
from opennimble.domain import backups as backup_rules
from opennimble.domain import endpoints, lifecycle, quotas
from opennimble.domain import sessions as rules
from opennimble.providers import base
from opennimble.reconciler import backups
from opennimble.store import crypto, database, group_commit, sessions, streams, users

log = logging.getLogger("opennimble.reconciler")

Row = dict[str, Any]
POLL_FIRST, POLL_MAX = 0.1, 1.0
# seconds a starting desktop is polled while its session stays claimed; a slower one (a job
# waiting in a scheduler's queue) is requeued, and its claim released, until it is due again
POLL_BUDGET, REQUEUE_DELAY = 3.0, 2.0
DELETE_ATTEMPTS = 5


@dataclasses.dataclass(frozen=True)
class Outcome:
    """How an action ended, for the failure bookkeeping."""

    done: bool
    retry_in: float = 0.0


class Actions:
    def __init__(
        self,
        db: database.Database,
        provider: base.Provider,
        *,
        now: clock.Now,
        ready_timeout: float,
        cipher: crypto.Cipher,
        writes: group_commit.Writes | None = None,
    ) -> None:
        """``writes``: where write transactions run (shared commits on SQLite)."""
        self.db = db
        self.writes = writes or group_commit.Writes(db)
        self.provider = provider
        self.now = now
        self.ready_timeout = provider.start_timeout(ready_timeout)
        self.cipher = cipher  # seals the desktops' VNC passwords (domain.endpoints)
        self.backups = backups.SessionBackups(db, provider, now)

    async def run(self, row: Row, spec: base.DesktopSpec | None = None) -> None:
        """Do the work of ``row``'s state; failures are recorded, never raised. ``spec``: the
        desktop of a session to bring up, if read already (see :meth:`specs`)."""
        state = row["state"]
        try:
            if state in ("CREATE_IN_PROGRESS", "START_IN_PROGRESS"):
                await self.bring_up(row, spec)
            elif state == "DELETE_IN_PROGRESS":
                await self.tear_down(row)
            elif state == "STOP_IN_PROGRESS":
                await self.stop(row)
        except base.PermanentFailure as exc:
            await self._fail(row, exc.status_code, exc.message)
        except Exception as exc:  # temporary: retry with back-off until the deadline
            await self._retry(row, exc)

    # ---- the actions ------------------------------------------------------------------------

    async def bring_up(self, row: Row, spec: base.DesktopSpec | None = None) -> None:
        if spec is None:
            spec = (await self.db.run(self._read_specs, [row]))[row["session_id"]]
        state = _state_of(row)
        if row["state"] == "START_IN_PROGRESS" and row["attrs"].get("restoreBackupId"):
            await self.backups.restore(row, spec, state)
        state = {**await self.provider.start(spec, state), "session_id": row["session_id"]}
        started = {"provider_state": state, "provider": self.provider.name}

        async def save() -> None:
            await self.writes.batched(
                lambda conn: sessions.update(conn, row["session_id"], **started)
            )

        try:
            result = await self.provider.poll(state)
        except BaseException:
            await save()
            raise
        if result.health is base.Health.READY:  # at once: the state and READY in one write
            await self._ready(row, result.endpoint, started)
            return
        await save()  # before waiting: a restarted reconciler finds the desktop by it
        deadline = row["work_started_at"] + int(self.ready_timeout * clock.SECOND)
        delay, budget = POLL_FIRST, asyncio.get_running_loop().time() + POLL_BUDGET
        while True:
            if result.health is base.Health.ENDED:
                raise base.PermanentFailure(result.message, result.status_code)
            if result.health is base.Health.GONE:
                raise base.TemporaryFailure(
                    f"the desktop went away while starting: {result.message}"
                )
            if self.now() >= deadline:
                raise base.PermanentFailure(
                    f"The desktop did not become ready within {self.ready_timeout:g} seconds"
                    f" ({result.message})",
                    "INTERNAL_ERROR",
                )
            if asyncio.get_running_loop().time() >= budget:
                await self._requeue(row)
                return
            await asyncio.sleep(delay)
            delay = min(delay * 2, POLL_MAX)
            result = await self.provider.poll(state)
            if result.health is base.Health.READY:
                await self._ready(row, result.endpoint)
                return

    async def tear_down(self, row: Row) -> None:
        await self.provider.delete(_state_of(row))
        await self.backups.delete(row, everything=True)  # only this session could use them
        now = self.now()

        def deleted(conn: sa.Connection) -> None:
            if sessions.transition(
                conn,
                row["session_id"],
                ("DELETE_IN_PROGRESS",),
                **lifecycle.enter("DELETED", now),
                deleted_at=now,
                provider_state={},
                endpoint={},
                terminate_at=None,
                stop_at=None,
            ):
                streams.delete_for_session(conn, row["session_id"])
                quotas.release_session(conn, row["studio_id"], row["owned_by"])

        await self.writes.batched(deleted)
        log.info("session %s deleted", row["session_id"])

    async def stop(self, row: Row) -> None:
        """End the desktop; with ``volumeRetentionMode`` DELETE also discard its storage."""
        discard = row["attrs"].get("volumeRetentionMode") == "DELETE"
        keep = backup_rules.wanted(row["attrs"])
        kept = await self.provider.stop(_state_of(row), discard_storage=discard and not keep)
        if keep:  # the backup comes before the storage is discarded
            await self.backups.take(row, {**kept, "session_id": row["session_id"]}, keep)
            if discard:
                kept = await self.provider.stop(kept, discard_storage=True)
        now = self.now()
        values = {
            **lifecycle.enter("STOPPED", now),
            "provider_state": {**kept, "session_id": row["session_id"]},
            "endpoint": {},
            "stop_at": None,
            "terminate_at": lifecycle.stopped_timer(row["attrs"], row["stopped_at"] or now),
        }
        await self._transition(row, ("STOP_IN_PROGRESS",), values, end_streams=True)
        log.info("session %s stopped", row["session_id"])

    async def check_ready(self, row: Row) -> None:
        """A READY session whose desktop is gone (a host restart) is started again; one whose
        desktop ended for good (its job was cancelled outside opennimble) is stopped."""
        result = await self.provider.poll(_state_of(row))
        if result.health is base.Health.ENDED:
            await self._ended(row, result.message)
            return
        if result.health is base.Health.READY and endpoints.SEALED not in row["endpoint"]:
            await self._reseal(row, result.endpoint)  # a session from before passwords were sealed
        if result.health is not base.Health.GONE:
            return
        now = self.now()
        values = {
            **lifecycle.enter("START_IN_PROGRESS", now),
            "endpoint": {},
            "status_message": "The desktop was lost and is being started again",
            "work_started_at": now,
            "attempts": 0,
            "next_attempt_at": 0,
        }
        await self._transition(row, ("READY",), values, end_streams=True)
        log.warning(
            "session %s: its desktop is gone (%s); starting it again",
            row["session_id"],
            result.message,
        )

    async def _requeue(self, row: Row) -> None:
        """Come back to a desktop that is slow to start later, without holding the claim (and
        a place among the concurrent provisions) meanwhile."""
        due = self.now() + int(REQUEUE_DELAY * clock.SECOND)
        await self.writes.batched(
            lambda conn: sessions.update(conn, row["session_id"], next_attempt_at=due)
        )

    async def _ended(self, row: Row, message: str) -> None:
        """STOPPED with the provider's reason: the owner may start it again."""
        now = self.now()
        values = {
            **lifecycle.enter("STOPPED", now),
            "status_message": message,
            "stopped_at": now,
            "endpoint": {},
            "stop_at": None,
            "terminate_at": lifecycle.stopped_timer(row["attrs"], now),
        }
        await self._transition(row, ("READY",), values, end_streams=True)
        log.warning("session %s: its desktop ended (%s); stopped", row["session_id"], message)

    # ---- outcomes ---------------------------------------------------------------------------

    async def _reseal(self, row: Row, endpoint: dict[str, Any]) -> None:
        """Give a READY session whose stored endpoint has no sealed password (the migration to
        sealed passwords removed the clear ones) its endpoint again, sealed."""
        sealed = endpoints.seal(endpoint, self.cipher)
        await self._transition(row, ("READY",), {"endpoint": sealed})

    async def _ready(
        self, row: Row, endpoint: dict[str, Any], started: dict[str, Any] | None = None
    ) -> None:
        """READY; a new session counts as started now, by its creator, a restarted one when
        StartStreamingSession was called, by its caller. ``started``: the provider's state, to
        save in the same transaction (whatever the session's state is by then)."""
        now = self.now()
        values = {
            **lifecycle.enter("READY", now),
            "endpoint": endpoints.seal(endpoint, self.cipher),
            "attempts": 0,
            **lifecycle.timers(row["attrs"], now),
        }
        if row["state"] == "CREATE_IN_PROGRESS" or row["started_at"] is None:
            values.update(started_at=now, started_by=row["created_by"])
        if "restoreBackupId" in row["attrs"]:  # restored: done
            values["attrs"] = {k: v for k, v in row["attrs"].items() if k != "restoreBackupId"}
        if started is None:
            await self._transition(row, (row["state"],), values)
        else:

            def save_and_move(conn: sa.Connection) -> None:
                # one statement when the session is still where it was (nearly always)
                moved = sessions.transition(
                    conn, row["session_id"], (row["state"],), **values, **started
                )
                if not moved:
                    sessions.update(conn, row["session_id"], **started)

            await self.writes.batched(save_and_move)
        where = f"{endpoint.get('host')}:{endpoint.get('port')}"
        log.info("session %s is READY at %s", row["session_id"], where)

    async def _fail(self, row: Row, code: str, message: str) -> None:
        failed = {
            "CREATE_IN_PROGRESS": "CREATE_FAILED",
            "START_IN_PROGRESS": "START_FAILED",
            "DELETE_IN_PROGRESS": "DELETE_FAILED",
            "STOP_IN_PROGRESS": "STOP_FAILED",
        }
        target = failed[row["state"]]
        log.warning("session %s: %s (%s): %s", row["session_id"], target, code, message)
        if target in ("CREATE_FAILED", "START_FAILED"):
            await self._clean_up_failed(row)
        if target == "STOP_FAILED":
            self.backups.fail_pending(
                row["session_id"], code, f"The session failed to stop: {message}"
            )
        values = {**lifecycle.fail(target, code, message, self.now()), "endpoint": {}}
        await self._transition(row, (row["state"],), values)

    async def _clean_up_failed(self, row: Row) -> None:
        """A desktop that failed to come up must not linger (storage is kept for a retry)."""
        try:
            current = await self.db.run(self._current, row["session_id"])
            await self.provider.stop(_state_of(current or row))
        except Exception:
            log.exception("session %s: cleaning up a failed desktop failed", row["session_id"])

    async def _retry(self, row: Row, exc: Exception) -> None:
        attempts = int(row["attempts"]) + 1
        delay = min(2.0**attempts * 0.25, 30.0)
        if isinstance(exc, base.TemporaryFailure) and exc.retry_in is not None:
            delay = exc.retry_in  # the provider knows when trying again makes sense
        now = self.now()
        deadline = row["work_started_at"] + int(self.ready_timeout * clock.SECOND)
        give_up = (row["state"] == "DELETE_IN_PROGRESS" and attempts >= DELETE_ATTEMPTS) or (
            row["state"] != "DELETE_IN_PROGRESS" and now >= deadline
        )
        log.warning(
            "session %s: attempt %d of %s failed: %s",
            row["session_id"],
            attempts,
            row["state"],
            exc,
            exc_info=not isinstance(exc, base.ProviderFailure),
        )
        if give_up:
            code = exc.status_code if isinstance(exc, base.ProviderFailure) else "INTERNAL_ERROR"
            await self._fail(row, code, f"Gave up after {attempts} attempts: {exc}")
            return
        values = {"attempts": attempts, "next_attempt_at": now + int(delay * clock.SECOND)}
        await self.writes.batched(lambda conn: sessions.update(conn, row["session_id"], **values))

    async def _transition(
        self,
        row: Row,
        from_states: tuple[str, ...],
        values: dict[str, Any],
        end_streams: bool = False,
    ) -> None:
        """Compare-and-set the session's state (see ``sessions.transition``); ``end_streams``:
        when it moved, its streams end too."""

        def move(conn: sa.Connection) -> None:
            moved = sessions.transition(conn, row["session_id"], from_states, **values)
            if moved and end_streams:
                streams.delete_for_session(conn, row["session_id"])

        await self.writes.batched(move)

    def _current(self, session_id: str) -> Row | None:
        with self.db.read() as conn:
            return sessions.get(conn, session_id)

    def _read_specs(self, rows: list[Row]) -> dict[str, base.DesktopSpec]:
        with self.db.read() as conn:
            return self.specs(conn, rows)

    def specs(self, conn: sa.Connection, rows: list[Row]) -> dict[str, base.DesktopSpec]:
        """The desktops of the sessions among ``rows`` that are to be brought up, by session
        id, read in ``conn`` (the claim's transaction): each owner and each launch profile's
        initialization scripts are read once for all of them."""
        owners: dict[str, str] = {}
        scripts: dict[tuple[str, str], tuple[base.InitScript, ...]] = {}
        found = {}
        for row in rows:
            if row["state"] not in ("CREATE_IN_PROGRESS", "START_IN_PROGRESS"):
                continue
            owned_by = row["owned_by"]
            if owned_by not in owners:
                owner = users.get_user(conn, owned_by)
                owners[owned_by] = owner["name"] if owner else owned_by
            profile = (row["studio_id"], row["launch_profile_id"])
            if profile not in scripts:
                scripts[profile] = tuple(
                    base.InitScript(
                        s.component, s.run_context, s.script, s.parameters, s.privileged
                    )
                    for s in rules.initialization_scripts(conn, row)
                )
            found[row["session_id"]] = base.DesktopSpec(
                session_id=row["session_id"],
                studio_id=row["studio_id"],
                owned_by=owned_by,
                owner_name=owners[owned_by],
                ec2_instance_type=row["ec2_instance_type"],
                ec2_image_id=str(row["attrs"].get("ec2ImageId", "")),
                launch_profile_id=row["launch_profile_id"],
                clipboard=row["attrs"].get("clipboardMode") != "DISABLED",
                max_session_minutes=int(
                    row["attrs"].get("maxSessionLengthInMinutes")
                    or lifecycle.DEFAULT_MAX_SESSION_MINUTES
                ),
                init_scripts=scripts[profile],
            )
        return found


def _state_of(row: Row) -> base.ProviderState:
    return {**(row["provider_state"] or {}), "session_id": row["session_id"]}
