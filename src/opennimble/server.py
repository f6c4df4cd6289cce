"""Assembly of a running installation from its settings: the root ASGI application.

The root application routes the stream paths (``/streams/``, ``/stream-client/``; HTTP and
websocket) to the stream gateway, ``/healthz``, ``/readyz`` and ``/metrics`` to :mod:`health` and
everything else to the
Nimble API, and runs the reconciler for the life of the server
(ASGI lifespan).
"""

from __future__ import annotations

import asyncio
import errno
import fcntl
import logging
import os
import pathlib
import socket
import stat
from typing import IO, Any

import sqlalchemy as sa

from opennimble import clock, config, health, installation, logs
from opennimble.api import app as api_app
from opennimble.domain import audit
from opennimble.gateway import app as gateway
from opennimble.portal import app as portal_app
from opennimble.reconciler import loop
from opennimble.store import changes, crypto, database, group_commit

log = logging.getLogger("opennimble.server")
reconciler_log = logging.getLogger("opennimble.reconciler")


def open_database(settings: config.Settings, *, create: bool = True) -> database.Database:
    """The installation's database, with its schema upgraded to the newest migration.

    Without ``create``, a data directory or database that holds no installation yet is
    refused (:class:`Problem`) instead of becoming a new installation.
    """
    sqlite = database.is_sqlite(settings.resolved_database_url)
    if not create and sqlite:
        installation.require_sqlite(settings)
    if create or sqlite:  # (an existing PostgreSQL installation needs no data directory here)
        installation.prepare_data_dir(settings.data_dir)
        private_data_dir(settings)
    db = database.Database(settings.resolved_database_url)
    try:
        if not create and not sqlite:
            installation.require_schema(db)
        db.upgrade()
    except sa.exc.OperationalError as exc:
        db.dispose()
        raise installation.Problem(
            f"cannot use the database {db.engine.url!r}: {exc.orig or exc} "
            "(check database_url, OPENNIMBLE_DATABASE_URL or --database-url)"
        ) from None
    except BaseException:
        db.dispose()
        raise
    return db


def listen(settings: config.Settings) -> tuple[socket.socket, config.Settings]:
    """The server's listening socket, bound before anything announces the endpoint, and the
    settings with the port it really has (``port = 0`` picks a free one).

    Raises :class:`installation.Problem` when the address cannot be had (a port taken,
    an address not of this machine), saying which and how to choose another.
    """
    family = socket.AF_INET6 if ":" in settings.host else socket.AF_INET
    try:
        sock = socket.create_server((settings.host, settings.port), family=family, backlog=2048)
    except OSError as exc:
        taken = exc.errno == errno.EADDRINUSE
        reason = "another program listens there" if taken else exc.strerror
        raise installation.Problem(
            f"cannot listen on {settings.host} port {settings.port}: {reason}; choose another "
            "with --port (or OPENNIMBLE_PORT; 0 picks a free one) or --host"
        ) from None
    port = sock.getsockname()[1]
    return sock, settings.model_copy(update={"port": port})


def private_data_dir(settings: config.Settings) -> None:
    """Make the data directory (mode 0700 under the commands' umask 077), or take away what
    other users could read or write in one that exists: only the server reads its files.
    (Desktop accounts may still need to *search* it: the local provider allows that.)"""
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    mode = stat.S_IMODE(settings.data_dir.stat().st_mode)
    if mode & 0o066:
        settings.data_dir.chmod(mode & ~0o066)


def cipher(settings: config.Settings, db: database.Database | None = None) -> crypto.Cipher:
    """The installation key; with ``db``, checked to be the key that database was set up with
    (:class:`crypto.KeyMismatch` otherwise)."""
    key = crypto.Cipher.from_file(settings.resolved_key_file)
    if db is not None:
        crypto.check_key(db, key, settings.resolved_key_file)
    return key


def exclusive_lock(settings: config.Settings, *, reconciler: bool = True) -> IO[str] | None:
    """Hold a lock file in the data directory when only one process may use it: on SQLite one
    server per database; on any database one reconciler per data directory (the runtime files
    of its host's desktops live there)."""
    sqlite = database.is_sqlite(settings.resolved_database_url)
    if not (sqlite or reconciler):
        return None
    installation.prepare_data_dir(settings.data_dir)
    private_data_dir(settings)
    path = pathlib.Path(settings.data_dir) / "serve.lock"
    # "a": a process refused the lock must not truncate the holder's pid away
    handle = open(path, "a")  # noqa: SIM115 - held for the life of the process
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.close()
        raise RuntimeError(
            f"another opennimble process uses {settings.data_dir} already (on SQLite one server "
            "runs per database; on PostgreSQL one server or worker with a reconciler runs per "
            "data directory)"
        ) from None
    handle.truncate(0)
    handle.write(f"{os.getpid()}\n")
    handle.flush()
    return handle


class Root:
    """The root ASGI application."""

    def __init__(
        self, settings: config.Settings, db: database.Database, now: clock.Now = clock.system_now
    ) -> None:
        self.db = db
        key = cipher(settings, db)
        # SQLite: the API's and the reconciler's writes share commits (store/group_commit.py)
        group = group_commit.GroupCommit(db) if db.is_sqlite else None
        writes = group_commit.Writes(db, group)
        self.trail = audit.Trail(db, now) if settings.audit else None
        # what the live views (the portal's pages, GET /events) wait on (store/changes.py)
        self.changes = changes.Hub(db)
        # `serve --no-reconciler` (PostgreSQL): the workers reconcile; NOTIFY wakes them
        self.reconciler = (
            loop.Reconciler.from_settings(db, settings, now, key, writes)
            if settings.reconciler
            else None
        )
        self.api = api_app.App(
            db=db,
            cipher=key,
            region=settings.region,
            account_id=settings.account_id,
            public_url=settings.resolved_public_url,
            wake_reconciler=self.reconciler.wake if self.reconciler else _no_wake,
            now=now,
            page_size=settings.page_size,
            settings=settings,
            trail=self.trail,
            group=group,
            changes=self.changes,
        )
        self.gateway = gateway.Gateway(
            db,
            key.key,
            public_url=settings.resolved_public_url,
            novnc_dir=settings.resolved_novnc_dir,
            now=now,
            trail=self.trail,
        )
        self.health = health.Health(
            db,
            self.reconciler,
            lambda: len(self.gateway.connections),
            now=now,
            serve_metrics=settings.metrics,
        )
        self.portal = portal_app.Portal(
            db,
            self.api.dispatcher.invoke,
            secret=key.key,
            public_url=settings.resolved_public_url,
            now=now,
            changes=self.changes,
            oidc_settings=settings.oidc,
        )
        self._reconciling: asyncio.Task[None] | None = None
        self._hearing: asyncio.Task[None] | None = None

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
        elif scope["path"].startswith(gateway.PREFIXES):
            await self.gateway(scope, receive, send)
        elif scope["type"] != "http":
            await _refuse_websocket(receive, send)
        elif scope["path"] == "/portal" or scope["path"].startswith("/portal/"):
            await self.portal(scope, receive, send)
        elif scope["path"] in health.PATHS:
            await self.health(scope, receive, send)
        else:
            await self.api(scope, receive, send)

    async def _lifespan(self, receive: Any, send: Any) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                self._hearing = asyncio.get_running_loop().create_task(self.changes.run())
                failure = await self._start_reconciler()
                if failure:
                    await send({"type": "lifespan.startup.failed", "message": failure})
                    return
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                log.info(
                    "shutting down: ending %d stream connections and the reconciler",
                    len(self.gateway.connections),
                    extra=logs.fields(event="shutdown"),
                )
                await self.gateway.close()
                if self._hearing is not None:
                    self._hearing.cancel()
                    await asyncio.gather(self._hearing, return_exceptions=True)
                if self._reconciling is not None:
                    self._reconciling.cancel()
                    try:
                        await self._reconciling
                    except asyncio.CancelledError:
                        pass
                    except Exception:  # it failed earlier (and said so): shut down all the same
                        reconciler_log.debug("the reconciler had stopped with an error")
                await asyncio.to_thread(self.api.close)  # the writes under way end first
                if self.trail is not None:
                    self.trail.close()
                self.db.dispose()
                log.info("stopped", extra=logs.fields(event="stopped"))
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def _start_reconciler(self) -> str:
        """Start the reconciler; once it holds its host, or why it could not ("" if none)."""
        if self.reconciler is None:
            return ""
        started: asyncio.Future[None] = asyncio.get_running_loop().create_future()

        def on_started() -> None:
            if not started.done():
                started.set_result(None)

        self._reconciling = asyncio.get_running_loop().create_task(self.reconciler.run(on_started))
        self._reconciling.add_done_callback(_report_end)
        await asyncio.wait((started, self._reconciling), return_when=asyncio.FIRST_COMPLETED)
        if not self._reconciling.done():
            return ""
        error = self._reconciling.exception()
        return f"the reconciler could not start: {error}"


def _report_end(task: asyncio.Task[None]) -> None:
    """The reconciler ends only when cancelled at shutdown: anything else is said at once."""
    if not task.cancelled() and task.exception() is not None:
        reconciler_log.error(
            "the reconciler stopped: sessions will not progress until the server restarts",
            exc_info=task.exception(),
        )


async def _refuse_websocket(receive: Any, send: Any) -> None:
    """Websockets exist only under the stream paths."""
    if (await receive())["type"] == "websocket.connect":
        await send({"type": "websocket.close", "code": 1008})


def _no_wake() -> None:
    """Without a reconciler in this process: the database's NOTIFY wakes the workers."""
