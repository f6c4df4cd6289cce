"""Whether the settings name a usable installation: its data directory and its database.

Commands that act on an installation (``users``, ``keys``) refuse one that does not exist yet
instead of silently creating a new one wherever they happen to run; every problem is an
:class:`Problem` whose message says what is wrong and how to fix it.
"""

from __future__ import annotations

import os
import pathlib

import sqlalchemy as sa

from opennimble import config
from opennimble.store import database

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
