"""The ``opennimble`` command: serve, worker, users, keys, db."""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import sys
from collections.abc import Coroutine
from typing import Any

import click

import opennimble
from opennimble import admin, collector, config, installation, logs, upkeep, webhooks_cli
from opennimble.api import coverage
from opennimble.protocol import model
from opennimble.store import crypto, database

# `serve` and `worker` import the server's parts (the API, portal, gateway, reconciler and
# providers, the HTTP servers) when they run: the operator's other commands start without them

common, emit, settings_from = admin.common, admin.emit, admin.settings_from


@click.group()
@click.version_option(opennimble.__version__, prog_name="opennimble")
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
@click.option(
    "--http-server",
    type=click.Choice(["uvicorn", "granian"]),
    default=None,
    help="The HTTP server: uvicorn (default; every slow-client protection) or granian "
    "[OPENNIMBLE_HTTP_SERVER].",
)
def serve(config_file: str | None, with_demo: bool, **flags: Any) -> None:
    """Run the API server (and, unless told not to, its reconciler)."""
    from opennimble import demo, http_servers, server
    from opennimble.providers import base as provider_base

    settings = settings_from(config_file, **flags)
    _log_setup(settings)
    if not settings.reconciler and database.is_sqlite(settings.resolved_database_url):
        raise click.UsageError(
            "--no-reconciler needs PostgreSQL: on SQLite the one server runs the reconciler"
        )
    try:
        http_servers.check(settings)
        lock = installation.exclusive_lock(settings, reconciler=settings.reconciler)
        sock, settings = installation.listen(settings)
    except (RuntimeError, installation.Problem) as exc:
        raise click.ClickException(str(exc)) from None
    db = admin.open_installation(settings, create=True)
    try:
        app = server.Root(settings, db)
    except (
        crypto.KeyMismatch,
        LookupError,
        provider_base.ProviderFailure,
        config.Invalid,  # the provider's own settings ([providers.NAME])
    ) as exc:
        raise click.ClickException(str(exc)) from None
    if with_demo:
        demo.bootstrap(settings, app.api)
    click.echo(
        f"opennimble serving the nimble API at {settings.endpoint_url} (region {settings.region})",
        err=True,
    )
    click.echo(f"data: {settings.data_dir.resolve()}; database: {db.engine.url!r}", err=True)
    collector.settle()
    http_servers.run(app, sock, settings)
    if lock is not None:
        lock.close()


@main.command()
@common
@click.option("--host-id", default=None, help="This workstation host's id [OPENNIMBLE_HOST_ID].")
@click.option(
    "--advertise-host",
    default=None,
    help="The address API servers reach this host's desktops at (the local provider's "
    "advertise_host) [OPENNIMBLE_PROVIDERS__LOCAL__ADVERTISE_HOST].",
)
def worker(config_file: str | None, **flags: Any) -> None:
    """Run a reconciler only: this machine is a workstation host of a PostgreSQL installation.

    It claims new sessions while it has capacity (max_desktops), runs their desktops, and
    drives the sessions bound to it. Stops on SIGTERM or SIGINT; desktops keep running.
    """
    from opennimble.providers import base as provider_base
    from opennimble.reconciler import loop

    advertise_host = flags.pop("advertise_host", None)
    settings = settings_from(config_file, **flags)
    if advertise_host is not None:  # a key of the provider's table
        tables = {name: dict(table) for name, table in settings.providers.items()}
        tables.setdefault(settings.provider, {})["advertise_host"] = advertise_host
        settings = settings.model_copy(update={"providers": tables})
    _log_setup(settings)
    if database.is_sqlite(settings.resolved_database_url):
        raise click.UsageError(
            "opennimble worker needs PostgreSQL (--database-url postgresql://...); "
            "on SQLite `opennimble serve` runs the reconciler itself"
        )
    try:
        lock = installation.exclusive_lock(settings)
        db = installation.open_database(settings)
        reconciler = loop.Reconciler.from_settings(db, settings)
    except (
        RuntimeError,
        LookupError,
        crypto.KeyMismatch,
        installation.Problem,
        provider_base.ProviderFailure,
        config.Invalid,
    ) as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(
        f"opennimble worker for host {settings.resolved_host_id} ({settings.provider} "
        f"provider, at most {reconciler.capacity} desktops); "
        f"database: {db.engine.url!r}",
        err=True,
    )
    collector.settle()
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
    logs.setup(settings.log_level, settings.log_format)


main.add_command(admin.users_group, "users")
main.add_command(admin.keys_group, "keys")
main.add_command(admin.studios_group, "studios")
main.add_command(admin.sessions_group, "sessions")
main.add_command(upkeep.audit_command, "audit")
main.add_command(upkeep.backup_command, "backup")
main.add_command(upkeep.restore_command, "restore")
main.add_command(webhooks_cli.webhooks_group, "webhooks")


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


@main.command("model")
def model_command() -> None:
    """Print the nimble API model this server implements (botocore's JSON), for clients that
    no longer ship it: `opennimble model > nimble.json && aws configure add-model
    --service-model file://nimble.json --service-name nimble` makes `aws nimble ...` work."""
    click.echo(json.dumps(model.service_document(), indent=1))


@main.group()
def db() -> None:
    """The database."""


@db.command("upgrade")
@common
def db_upgrade(config_file: str | None, **flags: Any) -> None:
    """Create or upgrade the schema to the newest version."""
    settings = settings_from(config_file, **flags)
    admin.open_installation(settings, create=True).dispose()
    click.echo("database schema is up to date", err=True)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
