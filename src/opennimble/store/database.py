"""The database handle: engine set-up, transactions and schema upgrades.

SQLite (the embedded default) runs in WAL mode with ``synchronous=FULL``, so that a commit
acknowledged to a client survives a crash of the process or the machine. Write transactions on
SQLite begin with ``BEGIN IMMEDIATE`` so that concurrent writers (the server, the CLI) queue on
the busy timeout instead of failing on a lock upgrade.
"""

from __future__ import annotations

import contextlib
import pathlib
from collections.abc import Iterator
from typing import Any

import alembic.command
import alembic.config
import sqlalchemy as sa

MIGRATIONS = pathlib.Path(__file__).parent / "migrations"


def normalize_url(url: str) -> str:
    """Accept the plain URLs users copy from database docs and pick our driver."""
    if url.startswith(("postgresql://", "postgres://")):
        return "postgresql+psycopg://" + url.split("://", 1)[1]
    return url


class Database:
    def __init__(self, url: str) -> None:
        self.url = normalize_url(url)
        self.is_sqlite = self.url.startswith("sqlite")
        self.engine = self._create_engine()

    def _create_engine(self) -> sa.Engine:
        if not self.is_sqlite:
            return sa.create_engine(self.url, pool_pre_ping=True)
        path = self.url.split(":///", 1)[1] if ":///" in self.url else ""
        if path and path != ":memory:":
            pathlib.Path(path).parent.mkdir(parents=True, exist_ok=True)
        engine = sa.create_engine(self.url, connect_args={"timeout": 30})
        sa.event.listen(engine, "connect", _sqlite_connect)
        sa.event.listen(engine, "begin", _sqlite_begin)
        return engine

    @contextlib.contextmanager
    def read(self) -> Iterator[sa.Connection]:
        """A transaction for reading (a consistent snapshot, no write lock)."""
        with self.engine.connect() as conn, conn.begin():
            yield conn

    @contextlib.contextmanager
    def write(self) -> Iterator[sa.Connection]:
        """A transaction for reading and writing; committed on success, rolled back on error."""
        with self.engine.connect() as conn:
            conn = conn.execution_options(opennimble_write=True)
            with conn.begin():
                yield conn

    def upgrade(self) -> None:
        """Create or upgrade the schema to the newest migration."""
        with self.engine.begin() as conn:
            config = alembic_config(self.url)
            config.attributes["connection"] = conn
            alembic.command.upgrade(config, "head")

    def dispose(self) -> None:
        self.engine.dispose()


def alembic_config(url: str) -> alembic.config.Config:
    config = alembic.config.Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config


def _sqlite_connect(dbapi_connection: Any, _record: Any) -> None:
    dbapi_connection.isolation_level = None  # we issue BEGIN ourselves (see _sqlite_begin)
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=FULL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()


def _sqlite_begin(conn: sa.Connection) -> None:
    immediate = conn.get_execution_options().get("opennimble_write", False)
    conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")
