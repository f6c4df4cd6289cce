"""The migrated schema equals the declared one, and upgrading is repeatable, on the database
under test (SQLite, and PostgreSQL in the run that tests it)."""

from __future__ import annotations

import pathlib

import alembic.autogenerate
import alembic.command
import alembic.migration
import alembic.script
import pytest
import sqlalchemy as sa

from opennimble.store import database, quota_counters, schema
from tests.support import rows


def test_one_head() -> None:
    scripts = alembic.script.ScriptDirectory.from_config(database.alembic_config("sqlite://"))
    assert len(scripts.get_heads()) == 1, f"several migration heads: {scripts.get_heads()}"


def test_migrated_schema_equals_declared_schema(database_url: str) -> None:
    db = database.Database(database_url)
    db.upgrade()
    db.upgrade()  # a second upgrade is a no-op
    with db.engine.connect() as conn:
        context = alembic.migration.MigrationContext.configure(conn, opts={"compare_type": True})
        assert alembic.autogenerate.compare_metadata(context, schema.metadata) == []
        assert context.get_current_revision() is not None
    db.dispose()


@pytest.mark.postgresql
def test_migrations_and_declaration_both_install_the_notifying_triggers(
    database_url: str,
) -> None:
    migrated = database.Database(database_url)
    migrated.upgrade()
    declared = sa.create_engine(migrated.url)
    with declared.begin() as conn:
        conn.execute(sa.text("CREATE SCHEMA declared"))
        conn.execute(sa.text("SET LOCAL search_path TO declared"))
        schema.metadata.create_all(conn)
    query = sa.text(
        "SELECT n.nspname, c.relname, t.tgname FROM pg_trigger t JOIN pg_class c "
        "ON c.oid = t.tgrelid JOIN pg_namespace n ON n.oid = c.relnamespace "
        "WHERE NOT t.tgisinternal ORDER BY 1, 2"
    )
    with declared.connect() as conn:
        found = {tuple(r) for r in conn.execute(query)}
    declared.dispose()
    migrated.dispose()
    wanted = {
        ("resources", "resources_wake"),
        ("sessions", "sessions_wake"),
        ("events", "events_changed"),  # the change hubs' (store/changes.py)
        ("generations", "generations_changed"),
    }
    assert {(r, t) for s, r, t in found if s == "public"} == wanted
    assert {(r, t) for s, r, t in found if s == "declared"} == wanted


@pytest.mark.sqlite
def test_sqlite_runs_in_wal_mode_with_full_sync(tmp_path: pathlib.Path) -> None:
    db = database.Database(f"sqlite:///{tmp_path / 'x.db'}")
    with db.read() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert conn.exec_driver_sql("PRAGMA synchronous").scalar() == 2
    db.dispose()


def test_the_clear_vnc_passwords_of_existing_sessions_are_removed(database_url: str) -> None:
    """Sessions stored before passwords were sealed lose their clear VNC password (endpoint
    and provider state); the rest of both stays."""
    db = database.Database(database_url)
    with db.engine.begin() as conn:
        config = database.alembic_config(db.url)
        config.attributes["connection"] = conn
        alembic.command.upgrade(config, "0007_session_backups")
        endpoint = {"host": "127.0.0.1", "port": 5901, "password": "s3cret00"}
        state = {"session_id": "s1", "pid": 42, "password": "s3cret00"}
        row = rows.session(session_id="s1", state="READY", endpoint=endpoint, provider_state=state)
        conn.execute(schema.sessions.insert().values(**row))
    db.upgrade()
    with db.read() as conn:
        query = sa.select(schema.sessions).where(schema.sessions.c.session_id == "s1")
        found = conn.execute(query).mappings().one()
    db.dispose()
    assert found["endpoint"] == {"host": "127.0.0.1", "port": 5901}
    assert found["provider_state"] == {"session_id": "s1", "pid": 42}


def test_the_quota_counters_are_filled_from_the_sessions_present(database_url: str) -> None:
    """Every session but the DELETED ones counts, per studio and per (studio, owner)."""
    db = database.Database(database_url)
    with db.engine.begin() as conn:
        config = database.alembic_config(db.url)
        config.attributes["connection"] = conn
        alembic.command.upgrade(config, "0018_lifecycle_events")
        made = [
            ("s1", "ann", "READY"),
            ("s1", "ann", "STOPPED"),
            ("s1", "bob", "CREATE_FAILED"),
            ("s1", "bob", "DELETED"),
            ("s2", "ann", "DELETE_IN_PROGRESS"),
            ("s3", "cid", "DELETED"),
        ]
        for studio_id, owner, state in made:
            row = rows.session(studio_id=studio_id, owned_by=owner, state=state)
            conn.execute(schema.sessions.insert().values(**row))
    db.upgrade()
    t = schema.quota_counters
    with db.read() as conn:
        counted = sa.select(t.c.studio_id, t.c.owned_by, sa.func.sum(t.c.used))
        found = {tuple(r) for r in conn.execute(counted.group_by(t.c.studio_id, t.c.owned_by))}
    db.dispose()
    assert found == {
        ("s1", "", 3),
        ("s1", "ann", 2),
        ("s1", "bob", 1),
        ("s2", "", 1),
        ("s2", "ann", 1),
    }


def test_the_quota_counters_are_spread_over_their_stripes(database_url: str) -> None:
    """A counter's count moves onto its stripes as a limit is shared out: no stripe holds more
    than its share of a limit the count was within."""
    db = database.Database(database_url)
    with db.engine.begin() as conn:
        config = database.alembic_config(db.url)
        config.attributes["connection"] = conn
        alembic.command.upgrade(config, "0020_change_notifications")
        conn.execute(sa.text("INSERT INTO quota_counters VALUES ('s1', '', 19)"))  # as it was
    db.upgrade()
    t = schema.quota_counters
    with db.read() as conn:
        stripes = sa.select(t.c.stripe, t.c.used).where(t.c.studio_id == "s1")
        found = {int(stripe): int(used) for stripe, used in conn.execute(stripes)}
    db.dispose()
    assert sum(found.values()) == 19
    assert all(found[s] <= quota_counters.share(19, s) for s in found)
    assert sorted(found.values()) == [2, 2, 2, 2, 2, 3, 3, 3]
