"""The ``opennimble`` command: serve, worker, users, keys, db."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
import sys
from collections.abc import Coroutine
from typing import Any

import click
import sqlalchemy as sa
import uvicorn

from opennimble import clock, config, demo, server
from opennimble.api import coverage
from opennimble.domain import identity
from opennimble.providers import base as provider_base
from opennimble.reconciler import loop
from opennimble.store import crypto, database

COMMON = [
    click.option(
        "--data-dir",
        type=click.Path(file_okay=False),
        default=None,
        help="Directory of the database, keys and desktops [OPENNIMBLE_DATA_DIR].",
    ),
    click.option(
        "--database-url",
        default=None,
        help="SQLAlchemy or postgresql:// URL [OPENNIMBLE_DATABASE_URL]; "
        "default: SQLite in the data directory.",
    ),
    click.option(
        "--config",
        "config_file",
        type=click.Path(dir_okay=False),
        default=None,
        help="A TOML file of settings [OPENNIMBLE_CONFIG].",
    ),
]


def common(fn: Any) -> Any:
    for option in reversed(COMMON):
        fn = option(fn)
    return fn


def settings_from(config_file: str | None, **flags: Any) -> config.Settings:
    # everything a command creates (the data directory, the SQLite database wherever
    # database_url puts it, logs, keys) is private to the server's user from the start
    os.umask(0o077)
    _refuse_password_in_argv(flags.get("database_url"))
    try:
        return config.load(config_file, **flags)
    except Exception as exc:
        raise click.UsageError(f"invalid settings: {exc}") from None


def _refuse_password_in_argv(url: str | None) -> None:
    """A command line is readable by every user of the machine (``ps``, ``/proc``): a
    database password must come from elsewhere."""
    if url is None:
        return
    try:
        password = sa.engine.make_url(url).password
    except sa.exc.ArgumentError:
        return  # the settings say what is wrong with it
    if password:
        raise click.UsageError(
            "--database-url must not carry a password: every user of this machine can read "
            "command lines. Give the URL in OPENNIMBLE_DATABASE_URL or the config file (mode "
            "0600), or the password in a libpq password file (~/.pgpass, PGPASSFILE)."
        )


def emit(document: dict[str, Any]) -> None:
    click.echo(json.dumps(document, indent=2))


@click.group()
def main() -> None:
    """opennimble: a self-hosted AWS Nimble Studio streaming-session service."""


@main.command()
@common
@click.option("--host", default=None, help="Address to listen on [OPENNIMBLE_HOST].")
@click.option("--port", type=int, default=None, help="Port to listen on [OPENNIMBLE_PORT].")
@click.option("--region", default=None, help="The AWS region this endpoint serves.")
@click.option(
    "--demo",
    "with_demo",
    is_flag=True,
    help="On first start, create an operator, an artist and a demo studio.",
)
@click.option(
    "--reconciler/--no-reconciler",
    default=None,
    help="Run a reconciler in this process (default), or leave that to `opennimble worker` "
    "processes (PostgreSQL only) [OPENNIMBLE_RECONCILER].",
)
def serve(config_file: str | None, with_demo: bool, **flags: Any) -> None:
    """Run the API server (and, unless told not to, its reconciler)."""
    settings = settings_from(config_file, **flags)
    _log_setup(settings)
    if not settings.reconciler and database.is_sqlite(settings.resolved_database_url):
        raise click.UsageError(
            "--no-reconciler needs PostgreSQL: on SQLite the one server runs the reconciler"
        )
    try:
        lock = server.exclusive_lock(settings, reconciler=settings.reconciler)
    except RuntimeError as exc:
        raise click.ClickException(str(exc)) from None
    db = server.open_database(settings)
    try:
        app = server.Root(settings, db)
    except (crypto.KeyMismatch, LookupError, provider_base.ProviderFailure) as exc:
        raise click.ClickException(str(exc)) from None
    if with_demo:
        demo.bootstrap(settings, app.api)
    click.echo(
        f"opennimble serving the nimble API at {settings.endpoint_url} (region {settings.region})",
        err=True,
    )
    click.echo(f"data: {settings.data_dir.resolve()}; database: {db.engine.url!r}", err=True)
    uvicorn.run(
        app,
        host=settings.host,
        port=settings.port,
        log_level="warning",
        access_log=False,
        lifespan="on",
        # stream websockets carry RFB data its encodings compressed already: deflating it again
        # would cost the server CPU for next to no gain
        ws_per_message_deflate=False,
    )
    if lock is not None:
        lock.close()


@main.command()
@common
@click.option("--host-id", default=None, help="This workstation host's id [OPENNIMBLE_HOST_ID].")
@click.option(
    "--advertise-host",
    default=None,
    help="The address API servers reach this host's desktops at [OPENNIMBLE_ADVERTISE_HOST].",
)
def worker(config_file: str | None, **flags: Any) -> None:
    """Run a reconciler only: this machine is a workstation host of a PostgreSQL installation.

    It claims new sessions while it has capacity (max_desktops), runs their desktops, and
    drives the sessions bound to it. Stops on SIGTERM or SIGINT; desktops keep running.
    """
    settings = settings_from(config_file, **flags)
    _log_setup(settings)
    if database.is_sqlite(settings.resolved_database_url):
        raise click.UsageError(
            "opennimble worker needs PostgreSQL (--database-url postgresql://...); "
            "on SQLite `opennimble serve` runs the reconciler itself"
        )
    try:
        lock = server.exclusive_lock(settings)
        db = server.open_database(settings)
        reconciler = loop.Reconciler.from_settings(db, settings)
    except (RuntimeError, LookupError, crypto.KeyMismatch, provider_base.ProviderFailure) as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(
        f"opennimble worker for host {settings.resolved_host_id} (desktops at "
        f"{settings.resolved_advertise_host}, at most {settings.max_desktops}); "
        f"database: {db.engine.url!r}",
        err=True,
    )
    try:
        asyncio.run(_until_signalled(reconciler.run()))
    except database.LockTaken:
        raise click.ClickException(
            f"another reconciler runs as host {settings.resolved_host_id} already"
        ) from None
    finally:
        db.dispose()
        if lock is not None:
            lock.close()


async def _until_signalled(work: Coroutine[Any, Any, None]) -> None:
    """Run ``work`` until it ends or SIGTERM / SIGINT arrives (then cancel it and return)."""
    task = asyncio.ensure_future(work)
    loop_ = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop_.add_signal_handler(sig, task.cancel)
    with contextlib.suppress(asyncio.CancelledError):
        await task


def _log_setup(settings: config.Settings) -> None:
    logging.basicConfig(
        level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s %(message)s"
    )


@main.group()
def users() -> None:
    """Users of the identity store."""


@users.command("create")
@common
@click.argument("name")
@click.option("--operator", is_flag=True, help="The installation's administrator.")
def users_create(name: str, operator: bool, config_file: str | None, **flags: Any) -> None:
    """Create a user; prints its userId and the identityStoreId."""
    settings = settings_from(config_file, **flags)
    db = server.open_database(settings)
    try:
        with db.write() as conn:
            emit(identity.create_user(conn, name, operator, clock.system_now()))
    except (identity.UserExists, ValueError) as exc:
        raise click.ClickException(str(exc)) from None
    finally:
        db.dispose()


@users.command("delete")
@common
@click.argument("user_id")
def users_delete(user_id: str, config_file: str | None, **flags: Any) -> None:
    """Delete a user and their access keys. Their studio and launch profile memberships stay
    until StartStudioSSOConfigurationRepair removes them; their sessions are kept."""
    settings = settings_from(config_file, **flags)
    db = server.open_database(settings)
    try:
        with db.write() as conn:
            emit(identity.delete_user(conn, user_id))
    except LookupError as exc:
        raise click.ClickException(str(exc.args[0])) from None
    finally:
        db.dispose()


@main.group()
def keys() -> None:
    """Access keys (SigV4 credentials) of users."""


@keys.command("create")
@common
@click.argument("user_id")
def keys_create(user_id: str, config_file: str | None, **flags: Any) -> None:
    """Create an access key for a user; prints the secret once."""
    settings = settings_from(config_file, **flags)
    db = server.open_database(settings)
    try:
        key = server.cipher(settings, db)
        with db.write() as conn:
            emit(identity.create_access_key(conn, key, user_id, clock.system_now()))
    except LookupError as exc:
        raise click.ClickException(str(exc.args[0])) from None
    except crypto.KeyMismatch as exc:
        raise click.ClickException(str(exc)) from None
    finally:
        db.dispose()


@main.command()
@click.option(
    "--tested",
    type=click.File("r"),
    default=None,
    help="A list of the operations the acceptance suite exercises (one a line), for the "
    "table's tested column.",
)
def operations(tested: Any) -> None:
    """Print the model's operations and which ones this server implements (Markdown)."""
    names = None if tested is None else {line.strip() for line in tested if line.strip()}
    click.echo(coverage.table(names), nl=False)


@main.group()
def db() -> None:
    """The database."""


@db.command("upgrade")
@common
def db_upgrade(config_file: str | None, **flags: Any) -> None:
    """Create or upgrade the schema to the newest version."""
    settings = settings_from(config_file, **flags)
    server.open_database(settings).dispose()
    click.echo("database schema is up to date", err=True)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
