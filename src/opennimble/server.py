"""Assembly of a running installation from its settings: the root ASGI application.

The root application routes ``/streams/`` to the stream gateway, ``/healthz`` to a health check
and everything else to the Nimble API, and runs the reconciler for the life of the server
(ASGI lifespan).
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import logging
import os
import pathlib
from typing import IO, Any

import orjson

from opennimble import clock, config
from opennimble.api import app as api_app
from opennimble.domain import stream_tokens
from opennimble.gateway import streams as gateway
from opennimble.providers import registry
from opennimble.reconciler import loop
from opennimble.store import crypto, database

log = logging.getLogger("opennimble.access")


def open_database(settings: config.Settings) -> database.Database:
    """The installation's database, with its schema upgraded to the newest migration."""
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    db = database.Database(settings.resolved_database_url)
    db.upgrade()
    return db


def cipher(settings: config.Settings) -> crypto.Cipher:
    return crypto.Cipher.from_file(settings.key_file)


def exclusive_lock(settings: config.Settings) -> IO[str] | None:
    """On SQLite only one server may run per database: hold a lock file next to it."""
    if not database.normalize_url(settings.resolved_database_url).startswith("sqlite"):
        return None
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    path = pathlib.Path(settings.data_dir) / "serve.lock"
    handle = open(path, "w")  # noqa: SIM115 - held for the life of the process
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.close()
        raise RuntimeError(f"another opennimble server uses {settings.data_dir} already") from None
    handle.write(f"{os.getpid()}\n")
    handle.flush()
    return handle


class Root:
    """The root ASGI application."""

    def __init__(
        self, settings: config.Settings, db: database.Database, now: clock.Now = clock.system_now
    ) -> None:
        self.db = db
        key = cipher(settings)
        self.reconciler = loop.Reconciler(
            db,
            registry.load(settings),
            now=now,
            interval=settings.reconcile_interval,
            ready_timeout=settings.desktop_ready_timeout,
            max_concurrent=settings.max_concurrent_provisions,
        )
        self.api = api_app.App(
            db=db,
            cipher=key,
            region=settings.region,
            account_id=settings.account_id,
            public_url=settings.resolved_public_url,
            wake_reconciler=self.reconciler.wake,
            now=now,
            page_size=settings.page_size,
        )
        self.gate = gateway.StreamGate(db, stream_tokens.StreamTokens(key.key), now)
        self._reconciling: asyncio.Task[None] | None = None

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
        elif scope["type"] != "http":
            return
        elif scope["path"].startswith(gateway.PREFIX):
            await self.gate(scope, receive, send)
        elif scope["path"] == "/healthz":
            await api_app.respond(
                send, 200, [(b"content-type", b"application/json")], orjson.dumps({"status": "ok"})
            )
        else:
            await self.api(scope, receive, send)

    async def _lifespan(self, receive: Any, send: Any) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                self._reconciling = asyncio.get_running_loop().create_task(self.reconciler.run())
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                if self._reconciling is not None:
                    self._reconciling.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await self._reconciling
                self.db.dispose()
                await send({"type": "lifespan.shutdown.complete"})
                return
