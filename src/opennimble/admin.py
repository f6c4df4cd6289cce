"""The operator's commands of ``opennimble``: users, access keys, studios and sessions.

Users and keys are the identity store's (``domain.identity``). Studios and sessions are read
and deleted through the API's own operations, invoked in-process as an operator of the
installation (permissions, states and the reconciler's wake-up as for any client).
"""

from __future__ import annotations

import json
import os
import socket
import sys
from collections.abc import Iterator
from typing import Any

import click
import sqlalchemy as sa

from opennimble import clock, config, errors, installation
from opennimble.domain import audit, identity, paging, passwords, stream_tokens
from opennimble.protocol import model
from opennimble.store import crypto, database, users

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

OUTPUT = click.option(
    "--output",
    type=click.Choice(["json", "table"]),
    default="json",
    show_default=True,
    help="JSON (for scripts) or an aligned table (for people).",
)


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
    except config.Invalid as exc:
        raise click.ClickException(f"invalid settings:\n{exc}") from None


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


def open_installation(settings: config.Settings, *, create: bool = False) -> database.Database:
    """The installation's database; without ``create`` one that does not exist is refused."""
    try:
        return installation.open_database(settings, create=create)
    except installation.Problem as exc:
        raise click.ClickException(str(exc)) from None


def emit(document: Any, output: str = "json", columns: tuple[str, ...] = ()) -> None:
    """Print a document: JSON, or (``table``) a list of items as aligned columns."""
    if output == "json":
        click.echo(json.dumps(document, indent=2))
        return
    items = document if isinstance(document, list) else [document]
    names = columns or (tuple(items[0]) if items else ())
    rows = [[_cell(item.get(name)) for name in names] for item in items]
    widths = [max([len(name), *(len(row[i]) for row in rows)]) for i, name in enumerate(names)]
    for row in [list(names), *rows]:
        click.echo(
            "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        )


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    return str(value)


class Opened:
    """One command's use of an installation: settings, database, and failures said clearly."""

    def __init__(self, config_file: str | None, flags: dict[str, Any], create: bool = False):
        self.settings = settings_from(config_file, **flags)
        self.db = open_installation(self.settings, create=create)
        # what the command does through the API is in the audit trail like a client's
        self.trail = audit.Trail(self.db) if self.settings.audit else None

    def __enter__(self) -> Opened:
        return self

    def __exit__(self, kind: Any, error: Any, _tb: Any) -> None:
        if self.trail is not None:
            self.trail.close()
        self.db.dispose()
        if isinstance(error, LookupError):
            raise click.ClickException(str(error.args[0])) from None
        if isinstance(error, (identity.UserExists, ValueError, crypto.KeyMismatch)):
            raise click.ClickException(str(error)) from None

    def call(self, operation: str, as_user: str | None, **params: Any) -> dict[str, Any]:
        """Invoke an operation of the API as an operator (the first one, or ``as_user``)."""
        # the API's dispatcher (with every operation's handler) only for the commands that
        # call the API: the others start without it
        from opennimble.api import context, dispatch, throttle

        key = installation.cipher(self.settings, self.db)
        install = context.Installation(
            region=self.settings.region,
            account_id=self.settings.account_id,
            public_url=self.settings.resolved_public_url,
            page_size=self.settings.page_size,
            codec=paging.TokenCodec(key.key),
            stream_tokens=stream_tokens.StreamTokens(key.key),
            # the servers' reconcilers see the work: NOTIFY on PostgreSQL, their polling on SQLite
            wake_reconciler=context.no_wake,
        )
        runner = dispatch.Dispatcher(
            self.db, install, clock.system_now, throttle.Throttle(0, 1), self.trail
        )
        try:
            return runner.invoke(model.operations()[operation], self._operator(as_user), params)
        except errors.ServiceError as exc:
            raise click.ClickException(f"{operation}: {exc.message}") from None

    def pages(self, operation: str, key: str, as_user: str | None, **params: Any) -> Iterator[Any]:
        token = None
        while True:
            result = self.call(
                operation, as_user, **params, **({"nextToken": token} if token else {})
            )
            yield from result.get(key, [])
            token = result.get("nextToken")
            if not token:
                return

    def _operator(self, as_user: str | None) -> identity.Caller:
        with self.db.read() as conn:
            user = identity.find_user(conn, as_user) if as_user else users.first_operator(conn)
        if user is None or not user["operator"] or user["disabled"]:
            raise click.ClickException(
                "this command acts as an operator of the installation: create one with "
                "`opennimble users create NAME --operator`, or name an enabled one with --as"
            )
        return identity.Caller(user["user_id"], user["name"], True, client=CLI_CLIENT)


# where the audit trail says requests made by this command came from
CLI_CLIENT = f"opennimble-cli@{socket.gethostname()}"

AS_OPERATOR = click.option(
    "--as", "as_user", default=None, help="The operator to act as (default: the first one)."
)

USER_COLUMNS = ("userId", "name", "operator", "disabled", "accessKeys", "createdAt")


@click.group()
def users_group() -> None:
    """Users of the identity store."""


@users_group.command("create")
@common
@click.argument("name")
@click.option("--operator", is_flag=True, help="The installation's administrator.")
@click.option(
    "--init",
    is_flag=True,
    help="Create the installation (data directory, database) if there is none yet.",
)
@click.option("--password-stdin", is_flag=True, help="Read a portal password from standard input.")
@click.option(
    "--key",
    is_flag=True,
    help="Also create an access key for the user (its secret is printed once, as by keys create).",
)
def users_create(
    name: str,
    operator: bool,
    init: bool,
    password_stdin: bool,
    key: bool,
    config_file: str | None,
    **flags: Any,
) -> None:
    """Create a user; prints its userId and the identityStoreId (and with --key its access
    key: accessKeyId and secretAccessKey). Nothing is created if any of it fails."""
    password = _stdin_password() if password_stdin else None
    with Opened(config_file, flags, create=init) as inst:
        cipher = installation.cipher(inst.settings, inst.db) if key else None
        with inst.db.write() as conn:
            now = clock.system_now()
            created = identity.create_user(conn, name, operator, now)
            if password is not None:
                passwords.set_password(conn, name, password)
            if cipher is not None:
                access = identity.create_access_key(conn, cipher, str(created["userId"]), now)
                created = {**created, **access}
        emit(created)


@users_group.command("passwd")
@common
@click.argument("user")
def users_passwd(user: str, config_file: str | None, **flags: Any) -> None:
    """Set USER's (name or id) portal password: prompted for on a terminal, else read from
    standard input. Lifts a lock-out."""
    if sys.stdin.isatty():
        password = click.prompt("New password", hide_input=True, confirmation_prompt=True)
    else:
        password = _stdin_password()
    with Opened(config_file, flags) as inst, inst.db.write() as conn:
        emit({"userId": passwords.set_password(conn, user, password), "passwordSet": True})


def _stdin_password() -> str:
    """The first line of standard input, without its line end."""
    return sys.stdin.readline().rstrip("\r\n")


@users_group.command("list")
@common
@OUTPUT
def users_list(output: str, config_file: str | None, **flags: Any) -> None:
    """Every user, with how many access keys they have."""
    with Opened(config_file, flags) as inst, inst.db.read() as conn:
        emit(identity.list_users(conn), output, USER_COLUMNS)


@users_group.command("show")
@common
@OUTPUT
@click.argument("user")
def users_show(user: str, output: str, config_file: str | None, **flags: Any) -> None:
    """One user (by name or userId) and their access keys."""
    with Opened(config_file, flags) as inst, inst.db.read() as conn:
        found = identity.describe_user(conn, identity.find_user(conn, user))
        keys = identity.list_keys(conn, user)
    if output == "table":
        emit(found, output, USER_COLUMNS[:4] + USER_COLUMNS[5:])
        click.echo("")
        emit(keys, output, ("accessKeyId", "createdAt"))
    else:
        emit({**found, "accessKeys": keys})


def _switch(disabled: bool, doc: str) -> None:
    @users_group.command("disable" if disabled else "enable", help=doc)
    @common
    @click.argument("user")
    def command(user: str, config_file: str | None, **flags: Any) -> None:
        with Opened(config_file, flags) as inst, inst.db.write() as conn:
            emit(identity.set_disabled(conn, user, disabled))


_switch(True, "Refuse a user's requests (as if deleted); keep their keys, memberships, sessions.")
_switch(False, "Accept a disabled user's requests again.")


@users_group.command("delete")
@common
@click.argument("user")
def users_delete(user: str, config_file: str | None, **flags: Any) -> None:
    """Delete a user (by name or userId) and their access keys. Their studio and launch profile
    memberships stay until StartStudioSSOConfigurationRepair removes them; their sessions are
    kept."""
    with Opened(config_file, flags) as inst, inst.db.write() as conn:
        emit(identity.delete_user(conn, identity.find_user(conn, user)["user_id"]))


@click.group()
def keys_group() -> None:
    """Access keys (SigV4 credentials) of users."""


@keys_group.command("create")
@common
@click.argument("user")
def keys_create(user: str, config_file: str | None, **flags: Any) -> None:
    """Create an access key for a user (by name or userId); prints the secret once."""
    with Opened(config_file, flags) as inst:
        key = installation.cipher(inst.settings, inst.db)
        with inst.db.write() as conn:
            user_id = identity.find_user(conn, user)["user_id"]
            emit(identity.create_access_key(conn, key, user_id, clock.system_now()))


@keys_group.command("list")
@common
@OUTPUT
@click.argument("user", required=False)
def keys_list(user: str | None, output: str, config_file: str | None, **flags: Any) -> None:
    """Access keys (not their secrets), of every user or of one (by name or userId)."""
    with Opened(config_file, flags) as inst, inst.db.read() as conn:
        emit(identity.list_keys(conn, user), output, ("accessKeyId", "userId", "name", "createdAt"))


@keys_group.command("delete")
@common
@click.argument("access_key_id")
def keys_delete(access_key_id: str, config_file: str | None, **flags: Any) -> None:
    """Revoke one access key: requests signed with it are refused at once, on every server."""
    with Opened(config_file, flags) as inst, inst.db.write() as conn:
        emit(identity.delete_access_key(conn, access_key_id))


@click.group()
def studios_group() -> None:
    """Studios (read through the API as an operator)."""


@studios_group.command("list")
@common
@OUTPUT
@AS_OPERATOR
def studios_list(output: str, as_user: str | None, config_file: str | None, **flags: Any) -> None:
    """Every studio of the installation."""
    with Opened(config_file, flags) as inst:
        found = list(inst.pages("ListStudios", "studios", as_user))
    emit(found, output, ("studioId", "studioName", "state", "displayName", "createdAt"))


SESSION_COLUMNS = ("sessionId", "studioId", "ownedBy", "state", "statusCode", "createdAt")


@click.group()
def sessions_group() -> None:
    """Streaming sessions of every studio (through the API as an operator)."""


@sessions_group.command("list")
@common
@OUTPUT
@AS_OPERATOR
@click.option("--studio", default=None, help="Only this studio's sessions (its studioId).")
@click.option("--owner", default=None, help="Only sessions owned by this user (name or id).")
@click.option("--state", default=None, help="Only sessions in this state (e.g. READY).")
def sessions_list(
    output: str,
    as_user: str | None,
    studio: str | None,
    owner: str | None,
    state: str | None,
    config_file: str | None,
    **flags: Any,
) -> None:
    """Sessions, filtered by studio, owner and state."""
    with Opened(config_file, flags) as inst:
        filters = {}
        if owner is not None:
            with inst.db.read() as conn:
                filters["ownedBy"] = identity.find_user(conn, owner)["user_id"]
        studios = (
            [studio]
            if studio
            else [s["studioId"] for s in inst.pages("ListStudios", "studios", as_user)]
        )
        found = [
            session
            for studio_id in studios
            for session in inst.pages(
                "ListStreamingSessions", "sessions", as_user, studioId=studio_id, **filters
            )
            if state is None or session["state"] == state.upper()
        ]
    emit(found, output, SESSION_COLUMNS)


@sessions_group.command("delete")
@common
@AS_OPERATOR
@click.argument("studio_id")
@click.argument("session_ids", nargs=-1, required=True)
def sessions_delete(
    studio_id: str,
    session_ids: tuple[str, ...],
    as_user: str | None,
    config_file: str | None,
    **flags: Any,
) -> None:
    """Delete sessions of a studio (DeleteStreamingSession as an operator); the reconciler ends
    their desktops. (Ids made by earlier versions may begin with '-': put those after '--'.)"""
    with Opened(config_file, flags) as inst:
        deleted = [
            inst.call("DeleteStreamingSession", as_user, studioId=studio_id, sessionId=sid)[
                "session"
            ]
            for sid in session_ids
        ]
    emit(deleted)
