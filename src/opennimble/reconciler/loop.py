"""The reconciler: claims sessions with work to do and drives them to their desired state.

It runs as a task in the server process (``serve``) or on its own (``worker``). Each process
that runs one is a workstation *host* (``host_id``): the desktops it starts run there, and a
session stays bound to the host that claimed it first, so only that host's reconciler works on
it afterwards (the stream gateway of any server reaches the desktop through the endpoint the
provider reports). One reconciler runs per host: on PostgreSQL it holds an advisory lock named
after the host for its whole life, on SQLite there is one process per database anyway.

Each pass claims due sessions: first the work of sessions bound to this host (and deletions
of sessions that never got a desktop), then new sessions, as many as the host has capacity for
(``max_desktops`` minus the sessions whose desktop it runs); a new session that no host with
room took within the claim timeout is taken by a full host, whose provider refuses it
(INSUFFICIENT_CAPACITY). Then, while the claimed work runs, it does the quick database
housekeeping (one process at a time); what that moves on is claimed by the next pass.
A claim is a lease, renewed by heartbeats while the
work runs, so a claim whose holder died is taken over once it lapses; a restarted host drops
the claims of its previous process at once. Each claimed session's action runs as its own
task, at most ``max_concurrent`` at a time. API calls in this process wake it at once; on
PostgreSQL a NOTIFY (sent by a trigger when a session or resource gets work, see
:mod:`opennimble.store.schema`) wakes the reconcilers of every process; otherwise it polls.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import time
from collections.abc import Awaitable, Callable
from typing import Any

import sqlalchemy as sa

from opennimble import clock, config, metrics
from opennimble.domain import audit
from opennimble.providers import base, registry
from opennimble.reconciler import actions, housekeeping, webhooks
from opennimble.store import crypto, database, group_commit, sessions, streams

log = logging.getLogger("opennimble.reconciler")

PURGE_EVERY = 60 * clock.SECOND
CHECK_DESKTOPS_EVERY = 30 * clock.SECOND
WAKE_CHECK = 0.005  # seconds: how often the loop looks for wakes from other threads in a burst
# seconds from one pass to the next at least: a burst of wakes (on PostgreSQL a notification
# per session created) is a pass per PASS_GAP, each claiming what came meanwhile, instead of a
# pass (five statements) per wake
PASS_GAP = 0.005
LISTEN_RETRY_MAX = 30.0  # seconds between attempts to listen again after a connection failure


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
        host_id: str = "local",
        capacity: int = 1_000_000,
        lease: float = 30.0,
        cipher: crypto.Cipher,
        audit_retention_days: float = 90.0,
        writes: group_commit.Writes | None = None,
    ) -> None:
        """``writes``: where the actions' write transactions run; on SQLite the process's
        group commit, shared with the API (see :mod:`opennimble.store.group_commit`)."""
        self.db = db
        self.audit_retention_days = audit_retention_days
        self.provider = provider
        self.now = now
        self.max_concurrent = max_concurrent
        self.host_id = host_id
        self.capacity = capacity
        # how long a new session waits for a host with room before a full one takes it, for
        # its provider to refuse (INSUFFICIENT_CAPACITY); with SQLite there is no other host
        self.capacity_wait = 0 if db.is_sqlite else int(lease * clock.SECOND)
        self.lease = int(lease * clock.SECOND)
        # heartbeats must come well within the lease, also when nothing wakes the loop
        self.interval = min(interval, lease / 3)
        self.interval_micros = int(self.interval * clock.SECOND)
        self.owner = f"{host_id}/{os.getpid()}/{secrets.token_hex(4)}"
        self.actions = actions.Actions(
            db, provider, now=now, ready_timeout=ready_timeout, cipher=cipher, writes=writes
        )
        self.webhooks = webhooks.Deliverer(db, cipher, now=now, host_id=host_id)
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._event: asyncio.Event | None = None
        # a wake from another thread is on its way to the loop, or the loop looks for one soon
        self._wake_pending = False
        self._wanted = False  # a wake from another thread not yet seen by the loop
        self._loop: asyncio.AbstractEventLoop | None = None
        self._last_purge = 0
        self._last_check = 0
        self._last_housekeeping = 0
        self._last_heartbeat = 0
        # when the last pass began (time.monotonic), for the server's readiness
        self.last_tick = time.monotonic()
        self._housekeeping_due = True
        self._finished: list[str] = []  # sessions whose work ended, claims not yet released
        self._connection = contextlib.AsyncExitStack()  # the listener's (PostgreSQL)

    @classmethod
    def from_settings(
        cls,
        db: database.Database,
        settings: config.Settings,
        now: clock.Now = clock.system_now,
        cipher: crypto.Cipher | None = None,
        writes: group_commit.Writes | None = None,
    ) -> Reconciler:
        """The reconciler of the settings; it seals desktops' passwords with ``cipher``, by
        default the installation key (``key_file``), checked against the database's."""
        if cipher is None:
            cipher = crypto.Cipher.from_file(settings.resolved_key_file)
            crypto.check_key(db, cipher, settings.resolved_key_file)
        provider = registry.load(settings)
        return cls(
            db,
            provider,
            now=now,
            interval=settings.reconcile_interval,
            ready_timeout=provider.ready_timeout,
            max_concurrent=settings.max_concurrent_provisions,
            host_id=settings.resolved_host_id,
            capacity=provider.capacity,
            lease=settings.claim_timeout,
            cipher=cipher,
            audit_retention_days=settings.audit_retention_days,
            writes=writes,
        )

    def wake(self, housekeeping: bool = True) -> None:
        """Ask for a pass now (callable from any thread); ``housekeeping=False``: only
        claiming is needed (a session got work), not the housekeeping (a resource did)."""
        if housekeeping:
            self._housekeeping_due = True
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
            # every create of a burst calls this, from the thread that runs its transaction
            # (on SQLite the group commit's): a hand-over to the loop per call cost that thread
            # a fifth of its time (the loop's wake-up, then waiting for the GIL to come back),
            # so there is one hand-over at a time, and while it lasts the loop looks for more
            # wakes every WAKE_CHECK seconds itself
            self._wanted = True
            if not self._wake_pending:
                self._wake_pending = True
                loop.call_soon_threadsafe(self._woken)

    def _woken(self) -> None:
        """On the loop: wake the pass wanted, and look again in a moment (see :meth:`wake`)."""
        self._wake_pending = False  # first: a wake from now on hands over, or is seen below
        if not self._wanted or self._event is None or self._loop is None:
            return
        self._wanted = False
        self._event.set()
        self._wake_pending = True
        self._loop.call_later(WAKE_CHECK, self._woken)

    async def run(self, on_started: Callable[[], object] | None = None) -> None:
        """Reconcile (:meth:`reconcile`) and deliver webhooks until cancelled."""
        delivering = asyncio.create_task(self.webhooks.run())
        try:
            await self.reconcile(on_started)
        finally:
            delivering.cancel()
            await asyncio.gather(delivering, return_exceptions=True)

    async def reconcile(self, on_started: Callable[[], object] | None = None) -> None:
        """Recover, then reconcile until cancelled.

        On PostgreSQL first take this host's lock (:class:`database.LockTaken` if another
        reconciler runs as this host) and listen for work; stop if the lock is lost to another.
        ``on_started`` is called once the host is ours.
        """
        self._loop = asyncio.get_running_loop()
        self._event = asyncio.Event()
        if not self.db.is_postgresql:
            if on_started:
                on_started()
            await self._reconcile()
            return
        connection = contextlib.AsyncExitStack()  # the listener's; _watch replaces it
        listener = await connection.enter_async_context(self.db.listener(lock=self.lock_name))
        self._connection = connection
        if on_started:
            on_started()
        tasks = [
            asyncio.create_task(self._watch(listener)),
            asyncio.create_task(self._reconcile()),
        ]
        try:
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await self._connection.aclose()
        for task in done:
            task.result()

    @property
    def lock_name(self) -> str:
        return f"host:{self.host_id}"

    async def _reconcile(self) -> None:
        assert self._event is not None
        try:
            await self._recover_until_done()
            loop = asyncio.get_running_loop()
            while True:
                started = loop.time()
                await self.tick()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._event.wait(), self.interval)
                rest = PASS_GAP - (loop.time() - started)
                if rest > 0:
                    await asyncio.sleep(rest)
                self._event.clear()
        finally:
            await self._shutdown()

    async def _watch(self, listener: database.Listener) -> None:
        """Wake up on every notification; when the connection fails, close it (releasing the
        host lock if the server still holds it for us), poll meanwhile, and connect again. The
        lock held by someone else for longer than a lease means another reconciler took the
        host over: then stop."""
        delay = 1.0
        while True:
            try:
                async for table in listener.notifications():
                    delay = 1.0
                    self.wake(housekeeping=table != "sessions")
            except Exception as exc:
                log.warning("listening for work failed (%s); polling meanwhile", exc)
            with contextlib.suppress(Exception):
                await self._connection.aclose()
            listener, delay = await self._listen_again(delay)
            self.wake()

    async def _listen_again(self, delay: float) -> tuple[database.Listener, float]:
        taken_since: float | None = None
        while True:
            await asyncio.sleep(delay)
            delay = min(delay * 2, LISTEN_RETRY_MAX)
            connection = contextlib.AsyncExitStack()
            try:
                listener = await connection.enter_async_context(
                    self.db.listener(lock=self.lock_name)
                )
            except database.LockTaken:
                now = asyncio.get_running_loop().time()
                taken_since = now if taken_since is None else taken_since
                if now - taken_since > self.lease / clock.SECOND:
                    log.error("another reconciler took over host %s: stopping", self.host_id)
                    raise
                log.warning("the lock of host %s is still held; trying again", self.host_id)
                continue
            except Exception as exc:
                log.warning("listening for work failed again (%s)", exc)
                continue
            self._connection = connection
            return listener, delay

    async def _recover_until_done(self) -> None:
        """Recover; a failure (the database unreachable, say) is retried with back-off."""
        delay = 1.0
        while True:
            try:
                await self.recover()
                return
            except Exception:
                log.exception("recovering at start failed; trying again in %g s", delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, LISTEN_RETRY_MAX)

    async def recover(self) -> None:
        """After a restart: drop our dead claims and clean up desktops nobody knows."""
        known = await self.db.run(self._release_dead_claims)
        reaped = await self.provider.reap(known)
        if reaped:
            log.warning("cleaned up %d desktops of unknown sessions: %s", len(reaped), reaped)
        await self.check_desktops()

    def _release_dead_claims(self) -> set[str]:
        with self.db.write() as conn:
            if self.db.is_sqlite:  # one reconciler per SQLite database: every claim was ours
                sessions.release_all(conn)
                sessions.adopt_all(conn, self.host_id)
            else:  # we hold the host's lock: the holders of its claims are dead
                sessions.release_all(conn, self.host_id)
            return sessions.ids_not_deleted(conn, self.host_id)

    async def check_desktops(self) -> None:
        """Make sure the desktops of this host's READY sessions still run (after a restart,
        and now and then): a lost one is started again."""
        ready = await self.db.run(self._ready_here)
        for row in ready:
            if row["session_id"] not in self._tasks:
                try:
                    await self.actions.check_ready(row)
                except Exception:
                    log.exception("checking the desktop of %s failed", row["session_id"])
        self._last_check = self.now()

    def _ready_here(self) -> list[dict[str, Any]]:
        with self.db.read() as conn:
            return sessions.in_states(conn, ("READY",), self.host_id)

    async def tick(self) -> None:
        """One pass. Each step fails on its own (logged, tried again next pass): a bad row in
        the housekeeping must not stop heartbeats or claims."""
        now = self.now()
        self.last_tick = time.monotonic()
        # claiming first: the work it claims starts at once, and the housekeeping's transaction
        # (an API call asks for both) runs meanwhile instead of before it
        steps: list[tuple[str, Callable[[], Awaitable[object]]]] = [
            ("claiming", lambda: self._claim_and_start(now))
        ]
        if self._housekeeping_due or now - self._last_housekeeping >= self.interval_micros:
            steps.append(("housekeeping", lambda: self._housekeep(now)))
        if now - self._last_heartbeat >= self.lease // 4:
            busy = list(self._tasks)  # read on the loop that changes it, not in the store's thread
            steps.append(("heartbeat", lambda: self._heartbeat(now, busy)))
        for name, step in steps:
            try:
                await step()
            except Exception:
                log.exception("reconciler %s failed; trying again", name)
        if now - self._last_check >= CHECK_DESKTOPS_EVERY:
            try:
                await self.check_desktops()
            except Exception:
                log.exception("checking the desktops failed; trying again")

    async def _housekeep(self, now: int) -> None:
        """The housekeeping, in a write transaction of the actions' (on SQLite a piece of the
        group commit, sharing a commit with the API's writes, rather than one of its own that
        the group commit would queue behind)."""
        self._housekeeping_due, self._last_housekeeping = False, now
        if await self.actions.writes(lambda conn: self._housekeeping(conn, now)):
            self.wake()

    def _housekeeping(self, conn: sa.Connection, now: int) -> bool:
        """Whether it moved something on (a resource, a timer): another pass is due."""
        if not database.try_lock(conn, "housekeeping"):
            return False  # another process is at it
        moved = housekeeping.advance_resources(conn, now)
        streams.expire(conn, now)
        timed = housekeeping.enforce_timers(conn, now)
        if now - self._last_purge >= PURGE_EVERY:
            housekeeping.purge(conn, now)
            pruned = audit.prune(conn, now, self.audit_retention_days)
            if pruned:
                log.info("pruned %d audit trail entries past their retention", pruned)
            self._last_purge = now
        return bool(moved or timed)

    async def _heartbeat(self, now: int, busy: list[str]) -> None:
        self._last_heartbeat = now
        if busy:
            until = now + self.lease
            await self.actions.writes(
                lambda conn: sessions.heartbeat(conn, busy, self.owner, until)
            )

    async def _claim_and_start(self, now: int) -> None:
        """Release the claims of finished work and start the work claimed instead."""
        room = self.max_concurrent - len(self._tasks)
        finished, self._finished = self._finished, []
        if room <= 0 and not finished:
            return
        try:
            # read on the loop that changes them, not in the store's thread
            busy = list(self._tasks)
            claimed, specs = await self.actions.writes(
                lambda conn: self._release_and_claim(conn, now, finished, room, busy)
            )
        except Exception:
            self._finished += finished  # released at the next pass
            raise
        for row in claimed:
            work = self._work(row, specs.get(row["session_id"]))
            self._tasks[row["session_id"]] = asyncio.get_running_loop().create_task(work)

    def _release_and_claim(
        self, conn: sa.Connection, now: int, finished: list[str], room: int, busy: list[str]
    ) -> tuple[list[dict[str, Any]], dict[str, base.DesktopSpec]]:
        """Release the claims of ``finished`` and claim up to ``room`` due sessions other than
        ``busy`` (those at work here), in one transaction (on SQLite a piece of the group
        commit); with the desktops of those to bring up (``Actions.specs``)."""
        sessions.release(conn, finished, self.owner)
        if room <= 0:
            return [], {}
        claimed = self._claim(conn, now, busy, new=False, limit=room)
        room -= len(claimed)
        free = self.capacity - sessions.count_on_host(conn, self.host_id, self.capacity)
        if free > 0:
            claimed += self._claim(conn, now, busy, new=True, limit=min(room, free))
        else:  # full: only what no host took in time, for the provider to refuse
            before = now - self.capacity_wait
            claimed += self._claim(conn, now, busy, new=True, limit=room, created_before=before)
        return claimed, self.actions.specs(conn, claimed)

    def _claim(
        self,
        conn: sa.Connection,
        now: int,
        busy: list[str],
        *,
        new: bool,
        limit: int,
        created_before: int | None = None,
    ) -> list[dict[str, Any]]:
        return sessions.claim(
            conn,
            owner=self.owner,
            host_id=self.host_id,
            new=new,
            now=now,
            lease=self.lease,
            limit=limit,
            exclude=busy,
            created_before=created_before,
        )

    async def _work(self, row: dict[str, Any], spec: base.DesktopSpec | None) -> None:
        started = time.monotonic()
        try:
            await self.actions.run(row, spec)
            metrics.provisioned(row["state"], time.monotonic() - started)
        finally:
            # the next pass releases the claim, together with those of other finished work
            self._tasks.pop(row["session_id"], None)
            self._finished.append(row["session_id"])
            self.wake(housekeeping=False)

    async def _shutdown(self) -> None:
        """Cancel running work; its claims lapse or are released at the next start."""
        tasks = list(self._tasks.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await self.provider.close()
