"""Assembly of a running installation from its settings (used by the CLI)."""

from __future__ import annotations

import fcntl
import os
import pathlib
from typing import IO

from opennimble import clock, config
from opennimble.api import app as api_app
from opennimble.providers import registry
from opennimble.reconciler import loop
from opennimble.store import crypto, database


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
    db = database.Database(settings.resolved_database_url)
    is_sqlite = db.is_sqlite
    db.dispose()
    if not is_sqlite:
        return None
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


def build_app(
    settings: config.Settings, db: database.Database, now: clock.Now = clock.system_now
) -> api_app.App:
    provider = registry.load(settings)
    reconciler = loop.Reconciler(
        db,
        provider,
        now=now,
        interval=settings.reconcile_interval,
        ready_timeout=settings.desktop_ready_timeout,
        max_concurrent=settings.max_concurrent_provisions,
    )
    return api_app.App(
        db=db,
        cipher=cipher(settings),
        region=settings.region,
        account_id=settings.account_id,
        public_url=settings.resolved_public_url,
        reconciler=reconciler,
        now=now,
        page_size=settings.page_size,
    )
