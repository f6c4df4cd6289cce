"""An installation's data directory and database: whether the settings name a usable one,
and opening it (the database upgraded, the installation key checked, the data directory's lock
and the listening socket of a server).

Commands that act on an installation (``users``, ``keys``) refuse one that does not exist yet
instead of silently creating a new one wherever they happen to run; every problem is an
:class:`Problem` whose message says what is wrong and how to fix it. This module is what the
operator's commands share with ``serve``, without the server's own imports (the API, the
portal, the gateway, the reconciler): an admin command starts in a fraction of the time.
"""

from __future__ import annotations

import errno
import fcntl
import os
import pathlib
import socket
import stat
from typing import IO

import sqlalchemy as sa

from opennimble import config
from opennimble.store import crypto, database

HOW = "--data-dir DIR (or OPENNIMBLE_DATA_DIR)"


class Problem(Exception):
    """The settings name no installation, or one that cannot be used (its data directory,
    database or address); the message says what is wrong and how to fix it."""


def prepare_data_dir(data_dir: pathlib.Path) -> None:
    """Create the data directory if needed; refuse one that is a file or not writable."""
    if data_dir.exists() and not data_dir.is_dir():
        raise Problem(
            f"the data directory {data_dir} is a file, not a directory: name a directory with {HOW}"
        )
    try:
        data_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise Problem(
            f"cannot create the data directory {data_dir}: {exc.strerror}; "
            f"choose a directory you may write with {HOW}"
        ) from None
    if not os.access(data_dir, os.W_OK | os.X_OK):
        raise Problem(
            f"the data directory {data_dir} is not writable by this user; "
            f"choose one that is with {HOW}, or run as its owner"
        )


def require_sqlite(settings: config.Settings) -> None:
    """Refuse a data directory without the SQLite database of an installation."""
    url = sa.engine.make_url(database.normalize_url(settings.resolved_database_url))
    path = pathlib.Path(url.database or "")
    if not path.is_file():
        where = settings.data_dir.resolve()
        raise Problem(_missing(f"no opennimble installation in {where}"))


def require_schema(db: database.Database) -> None:
    """Refuse a (PostgreSQL) database that no opennimble installation has set up."""
    with db.engine.connect() as conn:
        if not sa.inspect(conn).has_table("alembic_version"):
            raise Problem(_missing(f"no opennimble installation in the database {db.engine.url!r}"))


def _missing(what: str) -> str:
    return (
        f"{what}: run this command where the installation's data directory is, name it with "
        f"{HOW} and its database with --database-url (or OPENNIMBLE_DATABASE_URL), or create "
        "a new installation there (`opennimble users create NAME --operator --init`)"
    )


def open_database(settings: config.Settings, *, create: bool = True) -> database.Database:
    """The installation's database, with its schema upgraded to the newest migration.

    Without ``create``, a data directory or database that holds no installation yet is
    refused (:class:`Problem`) instead of becoming a new installation.
    """
    sqlite = database.is_sqlite(settings.resolved_database_url)
    if not create and sqlite:
        require_sqlite(settings)
    if create or sqlite:  # (an existing PostgreSQL installation needs no data directory here)
        prepare_data_dir(settings.data_dir)
        private_data_dir(settings)
    db = database.Database(settings.resolved_database_url, settings.database_threads)
    try:
        if not create and not sqlite:
            require_schema(db)
        db.upgrade()
    except sa.exc.OperationalError as exc:
        db.dispose()
        raise Problem(
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

    Raises :class:`Problem` when the address cannot be had (a port taken,
    an address not of this machine), saying which and how to choose another.
    """
    family = socket.AF_INET6 if ":" in settings.host else socket.AF_INET
    try:
        sock = socket.create_server((settings.host, settings.port), family=family, backlog=2048)
    except OSError as exc:
        taken = exc.errno == errno.EADDRINUSE
        reason = "another program listens there" if taken else exc.strerror
        raise Problem(
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
    prepare_data_dir(settings.data_dir)
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
