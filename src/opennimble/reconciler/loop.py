"""The reconciler: claims sessions with work to do and drives them to their desired state.

It runs as a task in the server process. Each pass does the quick database housekeeping, then
claims due sessions (a claim is a lease, renewed by heartbeats while the work runs, so a claim
whose holder died is taken over once it lapses) and runs each one's action as its own task,
at most ``max_concurrent`` at a time. API calls wake it at once; otherwise it polls.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import socket
from typing import Any

from opennimble import clock
from opennimble.providers import base
from opennimble.reconciler import actions, housekeeping
from opennimble.store import database, sessions

log = logging.getLogger("opennimble.reconciler")

LEASE = 30 * clock.SECOND
PURGE_EVERY = 60 * clock.SECOND
CHECK_DESKTOPS_EVERY = 30 * clock.SECOND


class Reconciler:
    def __init__(
        self,
        db: database.Database,
        provider: base.Provider,
        *,
        now: clock.Now,
        interval: float,
        ready_timeout: float,
        max_concurrent: int,
    ) -> None:
        self.db = db
        self.provider = provider
        self.now = now
        self.interval = interval
        self.max_concurrent = max_concurrent
        self.owner = f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"
        self.actions = actions.Actions(db, provider, now=now, ready_timeout=ready_timeout)
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._event: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._last_purge = 0
        self._last_check = 0

    def wake(self) -> None:
        """Ask for a pass now (callable from any thread)."""
        loop, event = self._loop, self._event
        if loop is None or event is None:
            return
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is loop:
            event.set()
        else:
            loop.call_soon_threadsafe(event.set)

    async def run(self) -> None:
        """Recover, then reconcile until cancelled."""
        self._loop = asyncio.get_running_loop()
        self._event = asyncio.Event()
        await self.recover()
        try:
            while True:
                await self.tick()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._event.wait(), self.interval)
                self._event.clear()
        finally:
            await self._shutdown()

    async def recover(self) -> None:
        """After a restart: drop our dead claims and clean up desktops nobody knows."""
        with self.db.write() as conn:
            if self.db.is_sqlite:  # one reconciler per SQLite database: every claim was ours
                sessions.release_all(conn)
            known = sessions.ids_not_deleted(conn)
        reaped = await self.provider.reap(known)
        if reaped:
            log.warning("cleaned up %d desktops of unknown sessions: %s", len(reaped), reaped)
        await self.check_desktops()

    async def check_desktops(self) -> None:
        """Make sure the desktops of READY sessions still run (after a restart, and now and
        then): a lost one is started again."""
        with self.db.read() as conn:
            ready = sessions.in_states(conn, ("READY",))
        for row in ready:
            if row["session_id"] not in self._tasks:
                try:
                    await self.actions.check_ready(row)
                except Exception:
                    log.exception("checking the desktop of %s failed", row["session_id"])
        self._last_check = self.now()

    async def tick(self) -> None:
        now = self.now()
        try:
            self._housekeeping(now)
            self._heartbeat(now)
            self._claim_and_start(now)
            if now - self._last_check >= CHECK_DESKTOPS_EVERY:
                await self.check_desktops()
        except Exception:
            log.exception("reconciler pass failed; trying again")

    def _housekeeping(self, now: int) -> None:
        with self.db.write() as conn:
            moved = housekeeping.advance_resources(conn, now)
            housekeeping.expire_streams(conn, now)
            timed = housekeeping.enforce_timers(conn, now)
            if now - self._last_purge >= PURGE_EVERY:
                housekeeping.purge(conn, now)
                self._last_purge = now
        if moved or timed:
            self.wake()

    def _heartbeat(self, now: int) -> None:
        if self._tasks:
            with self.db.write() as conn:
                sessions.heartbeat(conn, list(self._tasks), self.owner, now + LEASE)

    def _claim_and_start(self, now: int) -> None:
        room = self.max_concurrent - len(self._tasks)
        if room <= 0:
            return
        with self.db.write() as conn:
            due = [
                r for r in sessions.due(conn, now, room * 2) if r["session_id"] not in self._tasks
            ]
            claimed = [
                r
                for r in due[:room]
                if sessions.claim(conn, r["session_id"], self.owner, now, LEASE)
            ]
        for row in claimed:
            task = asyncio.get_running_loop().create_task(self._work(row))
            self._tasks[row["session_id"]] = task

    async def _work(self, row: dict[str, Any]) -> None:
        try:
            await self.actions.run(row)
        finally:
            self._tasks.pop(row["session_id"], None)
            try:
                with self.db.write() as conn:
                    sessions.release(conn, row["session_id"], self.owner)
            except Exception:
                log.exception("could not release the claim on %s", row["session_id"])
            self.wake()

    async def _shutdown(self) -> None:
        """Cancel running work; its claims lapse or are released at the next start."""
        tasks = list(self._tasks.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await self.provider.close()
