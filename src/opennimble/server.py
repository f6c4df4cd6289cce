"""Assembly of a running installation from its settings: the root ASGI application.

The root application routes the stream paths (``/streams/``, ``/stream-client/``; HTTP and
websocket) to the stream gateway, ``/healthz``, ``/readyz`` and ``/metrics`` to :mod:`health` and
everything else to the
Nimble API, and runs the reconciler for the life of the server
(ASGI lifespan).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from opennimble import clock, config, health, installation, logs
from opennimble.api import app as api_app
from opennimble.api import context
from opennimble.domain import audit
from opennimble.gateway import app as gateway
from opennimble.portal import app as portal_app
from opennimble.reconciler import loop
from opennimble.store import changes, database, group_commit

log = logging.getLogger("opennimble.server")
reconciler_log = logging.getLogger("opennimble.reconciler")


class Root:
    """The root ASGI application."""

    def __init__(
        self, settings: config.Settings, db: database.Database, now: clock.Now = clock.system_now
    ) -> None:
        self.db = db
        key = installation.cipher(settings, db)
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
            wake_reconciler=self.reconciler.wake if self.reconciler else context.no_wake,
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
