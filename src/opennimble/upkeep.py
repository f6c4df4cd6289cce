"""The operator's upkeep commands of ``opennimble``: reading the audit trail, backing an
installation up and restoring it."""

from __future__ import annotations

import datetime
import json
import pathlib
import re
import shutil
from typing import Any

import click
import sqlalchemy as sa

import opennimble
from opennimble import admin, clock, config, installation
from opennimble.domain import audit
from opennimble.store import audit as audit_store
from opennimble.store import crypto, database, snapshot

AUDIT_COLUMNS = (
    "at",
    "operation",
    "outcome",
    "status",
    "errorCode",
    "userName",
    "persona",
    "accessKeyId",
    "client",
    "studioId",
    "resourceId",
)
DURATION = re.compile(r"^(\d+)([smhd])$")
UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def moment(value: str | None, option: str) -> int | None:
    """A time given on the command line: ISO-8601 (UTC unless it says otherwise) or a
    duration before now (``90m``, ``12h``, ``7d``)."""
    if value is None:
        return None
    duration = DURATION.match(value.strip())
    if duration:
        seconds = int(duration.group(1)) * UNITS[duration.group(2)]
        return clock.system_now() - seconds * clock.SECOND
    try:
        when = datetime.datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except ValueError:
        raise click.BadParameter(
            f"{value!r} is neither an ISO-8601 time (2026-01-31T12:00:00Z) nor a duration "
            "before now (90m, 12h, 7d)",
            param_hint=option,
        ) from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=datetime.UTC)
    return int(when.timestamp() * clock.SECOND)


def describe(row: dict[str, Any]) -> dict[str, Any]:
    """An entry as the command prints it."""
    return {
        "at": clock.iso(row["at"]),
        "operation": row["operation"],
        "outcome": row["outcome"],
        "status": row["status"],
        "errorCode": row["error_code"],
        "userId": row["user_id"],
        "userName": row["user_name"],
        "persona": row["persona"],
        "accessKeyId": row["access_key_id"],
        "client": row["client"],
        "studioId": row["studio_id"],
        "resourceId": row["resource_id"],
        "message": row["message"],
    }


@click.command("audit")
@admin.common
@click.option("--studio", default=None, help="Only entries of this studio (its studioId).")
@click.option("--user", default=None, help="Only entries of this user (name or userId).")
@click.option("--operation", default=None, help="Only this operation (DeleteStreamingSession...).")
@click.option("--since", default=None, help="From this time on: ISO-8601, or 90m, 12h, 7d ago.")
@click.option("--until", default=None, help="Before this time: ISO-8601, or 90m, 12h, 7d ago.")
@click.option("--outcome", type=click.Choice(audit.OUTCOMES), default=None, help="Only these.")
@click.option("--limit", type=click.IntRange(min=1), default=None, help="Only the newest N.")
@click.option(
    "--output",
    type=click.Choice(["json", "table"]),
    default="json",
    show_default=True,
    help="One JSON document a line (for scripts), or an aligned table (for people).",
)
def audit_command(
    studio: str | None,
    user: str | None,
    operation: str | None,
    since: str | None,
    until: str | None,
    outcome: str | None,
    limit: int | None,
    output: str,
    config_file: str | None,
    **flags: Any,
) -> None:
    """The audit trail, oldest first: who did what to which resource, when, from where, with
    what outcome (state-changing requests, refused ones included, and streams opened)."""
    filters = audit_store.Filters(
        studio_id=studio,
        user=user,
        operation=operation,
        outcome=outcome,
        since=moment(since, "--since"),
        until=moment(until, "--until"),
        limit=limit,
    )
    with admin.Opened(config_file, flags) as inst, inst.db.read() as conn:
        found = [describe(row) for row in audit_store.read(conn, filters)]
    if output == "table":
        admin.emit(found, output, AUDIT_COLUMNS)
        return
    for item in found:
        click.echo(json.dumps(item))


# ---- backup and restore

MANIFEST = "manifest.json"
FORMAT = 1  # of the backup directory's layout
SQLITE_FILE = "database.sqlite3"
PG_FILE = "database.pgdump"
KEY_FILE = "secret.key"
SESSION_BACKUPS = "session-backups"


def _kind(settings: config.Settings) -> str:
    return "sqlite" if database.is_sqlite(settings.resolved_database_url) else "postgresql"


def _session_backups_dir(settings: config.Settings) -> pathlib.Path:
    """The provider's ``backups_dir`` ([providers.NAME], or the old top-level key)."""
    given = settings.providers.get(settings.provider, {}).get("backups_dir")
    return pathlib.Path(given) if given else settings.backups_dir or settings.data_dir / "backups"


@click.command("backup")
@admin.common
@click.argument("dest", type=click.Path(file_okay=False, path_type=pathlib.Path))
def backup_command(dest: pathlib.Path, config_file: str | None, **flags: Any) -> None:
    """Back the installation up into DEST, a new directory: its database (SQLite's online
    backup, or pg_dump), its installation key and the sessions' backups. Servers may keep
    running meanwhile."""
    if dest.exists() and (not dest.is_dir() or any(dest.iterdir())):
        raise click.ClickException(f"{dest} exists and is not an empty directory: name a new one")
    with admin.Opened(config_file, flags) as inst:
        settings, db = inst.settings, inst.db
        installation.cipher(settings, db)  # the key file is the database's (KeyMismatch otherwise)
        schema = snapshot.revision(db)
        try:
            dest.mkdir(mode=0o700, parents=True, exist_ok=True)
        except OSError as exc:
            raise click.ClickException(f"cannot create {dest}: {exc.strerror}") from None
        kind = _kind(settings)
        try:
            if kind == "sqlite":
                source = snapshot.sqlite_path(settings.resolved_database_url)
                snapshot.copy_sqlite(source, dest / SQLITE_FILE)
            else:
                snapshot.pg_dump(settings.resolved_database_url, dest / PG_FILE)
        except snapshot.SnapshotError as exc:
            raise click.ClickException(str(exc)) from None
        shutil.copy2(settings.resolved_key_file, dest / KEY_FILE)
        kept = _session_backups_dir(settings)
        if kept.is_dir():
            shutil.copytree(kept, dest / SESSION_BACKUPS)
        manifest = {
            "format": FORMAT,
            "opennimble": opennimble.__version__,
            "createdAt": clock.iso(clock.system_now()),
            "database": kind,
            "schema": schema,
            "files": sorted(p.name for p in dest.iterdir()),
        }
        (dest / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
    admin.emit({"backup": str(dest.resolve()), **manifest})


def _read_manifest(source: pathlib.Path) -> dict[str, Any]:
    try:
        manifest: dict[str, Any] = json.loads((source / MANIFEST).read_text())
    except FileNotFoundError:
        raise click.ClickException(
            f"{source} is not a backup of `opennimble backup`: it has no {MANIFEST}"
        ) from None
    except (OSError, ValueError) as exc:
        raise click.ClickException(f"cannot read {source / MANIFEST}: {exc}") from None
    if manifest.get("format") != FORMAT or manifest.get("database") not in ("sqlite", "postgresql"):
        raise click.ClickException(
            f"{source / MANIFEST} is not a backup this opennimble can restore (format "
            f"{manifest.get('format')!r}, database {manifest.get('database')!r})"
        )
    return manifest


def _occupied(settings: config.Settings) -> list[str]:
    """What an installation already has where a restore would write."""
    found = []
    if settings.resolved_key_file.exists():
        found.append(f"the installation key {settings.resolved_key_file}")
    if _kind(settings) == "sqlite":
        path = snapshot.sqlite_path(settings.resolved_database_url)
        if path.exists() and path.stat().st_size:
            found.append(f"the database {path}")
    else:
        db = database.Database(settings.resolved_database_url)
        try:
            if snapshot.tables(db):
                found.append(f"the tables of the database {db.engine.url!r}")
        except sa.exc.OperationalError as exc:
            raise click.ClickException(
                f"cannot use the database {db.engine.url!r}: {exc.orig or exc} (create it "
                "first, e.g. `createdb`, and check database_url or OPENNIMBLE_DATABASE_URL)"
            ) from None
        finally:
            db.dispose()
    return found


@click.command("restore")
@admin.common
@click.argument("src", type=click.Path(file_okay=False, exists=True, path_type=pathlib.Path))
@click.option(
    "--force", is_flag=True, help="Overwrite the installation that is there (its database and key)."
)
def restore_command(src: pathlib.Path, force: bool, config_file: str | None, **flags: Any) -> None:
    """Restore a backup of `opennimble backup` into this data directory and database (a fresh
    installation; --force to overwrite one). No server may run on it meanwhile."""
    manifest = _read_manifest(src)
    settings = admin.settings_from(config_file, **flags)
    kind = _kind(settings)
    if manifest["database"] != kind:
        raise click.ClickException(
            f"{src} holds a {manifest['database']} database and this installation's database is "
            f"{kind}: restore it onto a {manifest['database']} database_url"
        )
    try:
        lock = installation.exclusive_lock(settings)
    except (RuntimeError, installation.Problem) as exc:
        raise click.ClickException(str(exc)) from None
    try:
        occupied = _occupied(settings)
        if occupied and not force:
            raise click.ClickException(
                f"this installation is not empty: {'; '.join(occupied)}. Restore into a fresh "
                "data directory and database, or add --force to overwrite them"
            )
        _put_back(src, settings, clean=bool(occupied))
        db = admin.open_installation(settings, create=True)  # upgrades an older schema
        try:
            installation.cipher(settings, db)
        except crypto.KeyMismatch as exc:
            raise click.ClickException(str(exc)) from None
        finally:
            db.dispose()
    finally:
        if lock is not None:
            lock.close()
    admin.emit({"restored": str(src.resolve()), "dataDir": str(settings.data_dir.resolve())})


def _put_back(src: pathlib.Path, settings: config.Settings, *, clean: bool) -> None:
    """The key, the database and the sessions' backups, from the backup ``src``."""
    key = settings.resolved_key_file
    key.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(src / KEY_FILE, key)
    key.chmod(0o600)
    try:
        if _kind(settings) == "sqlite":
            target = snapshot.sqlite_path(settings.resolved_database_url)
            target.parent.mkdir(parents=True, exist_ok=True)
            snapshot.copy_sqlite(src / SQLITE_FILE, target)
        else:
            snapshot.pg_restore(settings.resolved_database_url, src / PG_FILE, clean=clean)
    except snapshot.SnapshotError as exc:
        raise click.ClickException(str(exc)) from None
    kept = src / SESSION_BACKUPS
    if kept.is_dir():
        shutil.copytree(kept, _session_backups_dir(settings), dirs_exist_ok=True)
