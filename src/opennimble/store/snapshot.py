"""Copies of a database for backups: SQLite's online backup API, or PostgreSQL's pg_dump and
pg_restore (custom format).

The online backup copies a consistent snapshot while servers keep writing. pg_dump reads one
snapshot too. The PostgreSQL tools get the connection's settings in libpq's environment
variables, never on their command line (every user of a machine can read command lines).
"""

from __future__ import annotations

import contextlib
import os
import pathlib
import shutil
import sqlite3
import subprocess

import sqlalchemy as sa

from opennimble.store import database

PG_TIMEOUT = 3600  # seconds a pg_dump or pg_restore may take
NO_PG_TOOLS = (
    "{tool} is not installed: install the PostgreSQL client programs (Debian's "
    "postgresql-client; `make setup` does as root), of the server's major version or newer"
)


class SnapshotError(Exception):
    """A copy could not be made or put back; the message says why."""


def sqlite_path(url: str) -> pathlib.Path:
    path = sa.engine.make_url(database.normalize_url(url)).database
    if not path or path == ":memory:":
        raise SnapshotError(f"the database {url!r} is not an SQLite file")
    return pathlib.Path(path)


def copy_sqlite(source: pathlib.Path, target: pathlib.Path) -> None:
    """Copy an SQLite database with the online backup API (writers may go on meanwhile); the
    target is replaced page by page, under its own lock."""
    try:
        with (
            contextlib.closing(sqlite3.connect(source, timeout=30)) as src,
            contextlib.closing(sqlite3.connect(target, timeout=30)) as dst,
        ):
            src.backup(dst)
    except sqlite3.Error as exc:
        raise SnapshotError(f"copying the SQLite database {source} to {target}: {exc}") from None


def _pg_environment(url: str) -> dict[str, str]:
    parsed = sa.engine.make_url(database.normalize_url(url))
    env = {**os.environ}
    for name, value in (
        ("PGHOST", parsed.host),
        ("PGPORT", parsed.port),
        ("PGUSER", parsed.username),
        ("PGPASSWORD", parsed.password),
        ("PGDATABASE", parsed.database),
    ):
        if value is not None:
            env[name] = str(value)
    return env


def _run_pg(tool: str, args: list[str], url: str) -> None:
    if shutil.which(tool) is None:
        raise SnapshotError(NO_PG_TOOLS.format(tool=tool))
    try:
        done = subprocess.run(
            [tool, *args],
            env=_pg_environment(url),
            capture_output=True,
            text=True,
            timeout=PG_TIMEOUT,
            check=False,
        )
    except subprocess.TimeoutExpired:
        raise SnapshotError(f"{tool} did not finish within {PG_TIMEOUT} s") from None
    if done.returncode != 0:
        raise SnapshotError(f"{tool} failed: {done.stderr.strip() or done.returncode}")


def pg_dump(url: str, target: pathlib.Path) -> None:
    """Dump the database of ``url`` to ``target`` (pg_dump's custom format)."""
    _run_pg("pg_dump", ["--format=custom", "--no-owner", "--no-acl", f"--file={target}"], url)


def pg_restore(url: str, source: pathlib.Path, *, clean: bool) -> None:
    """Load a dump into the database of ``url``; ``clean``: drop what is there first."""
    args = ["--no-owner", "--no-acl", "--exit-on-error", "--single-transaction"]
    if clean:
        args += ["--clean", "--if-exists"]
    name = sa.engine.make_url(database.normalize_url(url)).database or ""
    _run_pg("pg_restore", [*args, f"--dbname={name}", str(source)], url)


def tables(db: database.Database) -> list[str]:
    """The tables of a database (none: nothing to overwrite)."""
    return sorted(sa.inspect(db.engine).get_table_names())


def revision(db: database.Database) -> str | None:
    """The schema's migration (alembic's revision), if any."""
    if "alembic_version" not in tables(db):
        return None
    with db.read() as conn:
        return conn.execute(sa.text("SELECT version_num FROM alembic_version")).scalar()
