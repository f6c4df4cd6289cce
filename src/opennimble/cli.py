"""The ``opennimble`` command: serve, users, keys, db."""

from __future__ import annotations

import json
import logging
import sys
from typing import Any

import click
import uvicorn

from opennimble import clock, config, demo, server
from opennimble.api import coverage
from opennimble.domain import identity

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
    try:
        return config.load(config_file, **flags)
    except Exception as exc:
        raise click.UsageError(f"invalid settings: {exc}") from None


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
def serve(config_file: str | None, with_demo: bool, **flags: Any) -> None:
    """Run the API server and its reconciler."""
    settings = settings_from(config_file, **flags)
    logging.basicConfig(
        level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s %(message)s"
    )
    try:
        lock = server.exclusive_lock(settings)
    except RuntimeError as exc:
        raise click.ClickException(str(exc)) from None
    db = server.open_database(settings)
    app = server.Root(settings, db)
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
    )
    if lock is not None:
        lock.close()


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
        with db.write() as conn:
            emit(
                identity.create_access_key(
                    conn, server.cipher(settings), user_id, clock.system_now()
                )
            )
    except LookupError as exc:
        raise click.ClickException(str(exc.args[0])) from None
    finally:
        db.dispose()


@main.command()
def operations() -> None:
    """Print the model's operations and which ones this server implements (Markdown)."""
    click.echo(coverage.table(), nl=False)


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
