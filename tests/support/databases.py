"""The database the tests run against: SQLite (the default) or PostgreSQL.

``OPENNIMBLE_TEST_DATABASE_URL=postgresql://user@host:5432/dbname`` runs the tests on that
PostgreSQL server: every server, CLI call and test that needs a database gets a database of its
own, created under a unique name (through a connection to ``dbname``) and dropped when the test
session ends, so that concurrent test runs never meet. Without it, each gets a SQLite file in
its data directory.
"""

from __future__ import annotations

import os
import pathlib
import threading
import uuid

import psycopg
import sqlalchemy as sa
from psycopg import sql

ENV = "OPENNIMBLE_TEST_DATABASE_URL"
PREFIX = "opennimble_test_"

_lock = threading.Lock()
_created: list[str] = []  # names of the databases this test session created
_by_data_dir: dict[pathlib.Path, str] = {}


def server_url() -> str | None:
    """The PostgreSQL server to test against, or None for SQLite."""
    return os.environ.get(ENV) or None


def postgresql() -> bool:
    return server_url() is not None


def backend() -> str:
    return "postgresql" if postgresql() else "sqlite"


def create() -> str:
    """A new, empty PostgreSQL database; its ``postgresql://`` URL."""
    admin = server_url()
    assert admin, f"{ENV} is not set"
    name = f"{PREFIX}{uuid.uuid4().hex[:16]}"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    with _lock:
        _created.append(name)
    return url_of(name)


def drop(url: str) -> None:
    """Drop a database made by :func:`create`, ending the connections still open to it."""
    name = sa.engine.make_url(url).database or ""
    admin = server_url()
    assert admin and name.startswith(PREFIX)
    with psycopg.connect(admin, autocommit=True) as conn:
        statement = "DROP DATABASE IF EXISTS {} WITH (FORCE)"
        conn.execute(sql.SQL(statement).format(sql.Identifier(name)))
    with _lock:
        if name in _created:
            _created.remove(name)


def drop_all() -> None:
    """Drop every database this test session created."""
    with _lock:
        names = list(_created)
    for name in names:
        drop(url_of(name))
    _by_data_dir.clear()


def url_of(name: str) -> str:
    admin = server_url()
    assert admin
    return sa.engine.make_url(admin).set(database=name).render_as_string(False)


def url_for(data_dir: pathlib.Path) -> str:
    """The database URL of the installation in ``data_dir`` (created on first use)."""
    if not postgresql():
        return f"sqlite:///{data_dir.resolve() / 'opennimble.db'}"
    key = data_dir.resolve()
    with _lock:
        known = _by_data_dir.get(key)
    if known is None:
        known = create()
        with _lock:
            known = _by_data_dir.setdefault(key, known)
    return known


def share(data_dir: pathlib.Path, url: str) -> None:
    """Make the installation in ``data_dir`` use the database ``url`` (several processes of
    one installation, each with a data directory of its own)."""
    with _lock:
        _by_data_dir[data_dir.resolve()] = url


def env_for(data_dir: pathlib.Path) -> dict[str, str]:
    """Environment variables that point opennimble at the database of ``data_dir``."""
    return {"OPENNIMBLE_DATABASE_URL": url_for(data_dir)} if postgresql() else {}


def fresh_url(tmp_path: pathlib.Path) -> str:
    """A new, empty database of the backend under test."""
    return create() if postgresql() else f"sqlite:///{tmp_path / f'{uuid.uuid4().hex}.db'}"


def stored_text(data_dir: pathlib.Path) -> bytes:
    """Everything the installation in ``data_dir`` stored in its database, as bytes to search
    (for checks of what is kept at rest)."""
    if not postgresql():
        return b"".join(p.read_bytes() for p in data_dir.glob("opennimble.db*"))
    engine = sa.create_engine(url_for(data_dir).replace("postgresql://", "postgresql+psycopg://"))
    try:
        with engine.connect() as conn:
            tables = sa.inspect(conn).get_table_names()
            rows = [
                conn.execute(sa.text(f'SELECT row_to_json(t)::text FROM "{table}" t'))
                .scalars()
                .all()
                for table in tables
            ]
            return "\n".join(text for result in rows for text in result).encode()
    finally:
        engine.dispose()
