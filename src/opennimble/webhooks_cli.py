"""``opennimble webhooks``: the operator registers, lists and deletes webhooks and reads their
delivery log (docs/events.md). The deliveries themselves are the reconcilers' work
(:mod:`opennimble.reconciler.webhooks`)."""

from __future__ import annotations

import pathlib
from typing import Any

import click

from opennimble import clock, installation
from opennimble.admin import OUTPUT, Opened, common, emit
from opennimble.domain import ids
from opennimble.domain import webhooks as rules
from opennimble.store import resources
from opennimble.store import webhooks as store

WEBHOOK_COLUMNS = ("webhookId", "studioId", "url", "events", "createdAt")
DELIVERY_COLUMNS = (
    "deliveryId",
    "webhookId",
    "eventId",
    "type",
    "sessionId",
    "state",
    "attempts",
    "lastStatus",
    "lastError",
    "nextAttemptAt",
    "updatedAt",
)


@click.group()
def webhooks_group() -> None:
    """Webhooks: a studio's lifecycle events POSTed, signed, to a URL."""


@webhooks_group.command("add")
@common
@click.option("--studio", "studio_id", required=True, help="The studio (its studioId).")
@click.option("--url", "url", required=True, help="Where to POST the events (http or https).")
@click.option(
    "--events",
    "events",
    required=True,
    help="Event types, comma-separated; patterns work (session.*, *). See docs/events.md.",
)
@click.option(
    "--secret-file",
    type=click.Path(dir_okay=False, path_type=pathlib.Path),
    default=None,
    help="A file holding the signing secret; without it a random one is made and printed once.",
)
def webhooks_add(
    studio_id: str,
    url: str,
    events: str,
    secret_file: pathlib.Path | None,
    config_file: str | None,
    **flags: Any,
) -> None:
    """Register a webhook of a studio; prints it (and its secret if it was made here)."""
    given = _read_secret(secret_file)
    try:
        row = {
            "webhook_id": "wh-" + ids.resource_id(),
            "studio_id": studio_id,
            "url": rules.url(url),
            "event_types": rules.event_patterns(events),
            "created_at": clock.system_now(),
        }
        secret = rules.secret(given)
    except rules.Invalid as exc:
        raise click.UsageError(str(exc)) from None
    with Opened(config_file, flags) as inst:
        row["secret"] = installation.cipher(inst.settings, inst.db).encrypt(secret)
        with inst.db.write() as conn:
            studio = resources.get(conn, "studio", studio_id)
            if studio is None or studio["state"] == "DELETED":
                raise click.ClickException(
                    f"--studio: there is no studio {studio_id!r} (`opennimble studios list`)"
                )
            store.insert(conn, row)
    document = _webhook(row)
    if given is None:
        document["secret"] = secret
    emit(document)


@webhooks_group.command("list")
@common
@OUTPUT
@click.option("--studio", "studio_id", default=None, help="Only this studio's webhooks.")
def webhooks_list(
    studio_id: str | None, output: str, config_file: str | None, **flags: Any
) -> None:
    """Webhooks (never their secrets), of every studio or of one."""
    with Opened(config_file, flags) as inst, inst.db.read() as conn:
        emit([_webhook(r) for r in store.listed(conn, studio_id)], output, WEBHOOK_COLUMNS)


@webhooks_group.command("delete")
@common
@click.argument("webhook_id")
def webhooks_delete(webhook_id: str, config_file: str | None, **flags: Any) -> None:
    """Remove a webhook; its pending deliveries are dropped."""
    with Opened(config_file, flags) as inst, inst.db.write() as conn:
        if not store.delete(conn, webhook_id):
            raise click.ClickException(f"there is no webhook {webhook_id!r}")
    emit({"webhookId": webhook_id, "deleted": True})


@webhooks_group.command("deliveries")
@common
@OUTPUT
@click.argument("webhook_id", required=False)
@click.option(
    "--state",
    type=click.Choice(["PENDING", "DELIVERED", "FAILED"]),
    default=None,
    help="Only deliveries in this state.",
)
@click.option("--limit", type=click.IntRange(1, 10_000), default=100, show_default=True)
def webhooks_deliveries(
    webhook_id: str | None,
    state: str | None,
    limit: int,
    output: str,
    config_file: str | None,
    **flags: Any,
) -> None:
    """The delivery log, newest last: state, attempts, the last answer or error."""
    with Opened(config_file, flags) as inst, inst.db.read() as conn:
        if webhook_id is not None and store.get(conn, webhook_id) is None:
            raise click.ClickException(f"there is no webhook {webhook_id!r}")
        rows = store.log(conn, webhook_id, state, limit)
    emit([_delivery(r) for r in rows], output, DELIVERY_COLUMNS)


def _read_secret(path: pathlib.Path | None) -> str | None:
    if path is None:
        return None
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
        raise click.ClickException(f"--secret-file: cannot read {str(path)!r}: {reason}") from None


def _webhook(row: dict[str, Any]) -> dict[str, Any]:
    return {
        "webhookId": row["webhook_id"],
        "studioId": row["studio_id"],
        "url": row["url"],
        "events": ",".join(row["event_types"]),
        "createdAt": clock.iso(row["created_at"]),
    }


def _delivery(row: dict[str, Any]) -> dict[str, Any]:
    pending = row["state"] == "PENDING"
    return {
        "deliveryId": row["delivery_id"],
        "webhookId": row["webhook_id"],
        "eventId": row["seq"],
        "type": row["type"],
        "sessionId": row["session_id"],
        "state": row["state"],
        "attempts": row["attempts"],
        "lastStatus": row["last_status"],
        "lastError": row["last_error"],
        "nextAttemptAt": clock.iso(row["next_attempt_at"]) if pending else None,
        "updatedAt": clock.iso(row["updated_at"]),
    }
