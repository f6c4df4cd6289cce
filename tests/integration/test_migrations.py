"""The migrated schema equals the declared one, and upgrading is repeatable."""

from __future__ import annotations

import pathlib

import alembic.autogenerate
import alembic.migration

from opennimble.store import database, schema


def test_migrated_schema_equals_declared_schema_on_sqlite(tmp_path: pathlib.Path) -> None:
    db = database.Database(f"sqlite:///{tmp_path / 'x.db'}")
    db.upgrade()
    db.upgrade()  # a second upgrade is a no-op
    with db.engine.connect() as conn:
        context = alembic.migration.MigrationContext.configure(conn, opts={"compare_type": True})
        assert alembic.autogenerate.compare_metadata(context, schema.metadata) == []
        assert context.get_current_revision() is not None
    db.dispose()


def test_sqlite_runs_in_wal_mode_with_full_sync(tmp_path: pathlib.Path) -> None:
    db = database.Database(f"sqlite:///{tmp_path / 'x.db'}")
    with db.read() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert conn.exec_driver_sql("PRAGMA synchronous").scalar() == 2
    db.dispose()
