"""Helpers shared by the create, update and delete handlers of studio resources."""

from __future__ import annotations

from typing import Any

from opennimble.api import views
from opennimble.api.context import Context
from opennimble.api.registry import Params
from opennimble.domain import access, dependencies, quotas, resources, tags
from opennimble.protocol import validate

Row = dict[str, Any]


def creating(ctx: Context, params: Params, kind: resources.Kind) -> tuple[str, dict[str, str]]:
    """Check that the caller may add a ``kind`` to the request's studio now (an administrator,
    the studio not being deleted, room in its quota, valid tags); the studio id and the tags."""
    studio_id = params["studioId"]
    studio = access.studio(ctx.conn, ctx.caller, studio_id)
    plural = f"{kind.label.lower()}s"
    access.require_admin(ctx.conn, ctx.caller, studio_id, f"create {plural}")
    new_tags = tags.check(params.get("tags"))
    resources.require_open(studio, f"create {plural} in")
    quotas.check_resource(ctx.conn, ctx.install.quotas, kind, studio_id)
    return studio_id, new_tags


def create(
    ctx: Context,
    kind: resources.Kind,
    studio_id: str | None,
    name: str,
    attrs: dict[str, Any],
    tags: dict[str, str],
    resource_id: str | None = None,
) -> Row:
    """Insert a new resource (of the studio ``studio_id``; a studio itself has none, and its
    ``resource_id`` chosen by the caller); the reconciler makes it READY."""
    row = resources.new(
        ctx.conn,
        kind,
        studio_id=studio_id,
        name=name,
        attrs=attrs,
        tags=tags,
        by=ctx.caller.user_id,
        now=ctx.now,
        resource_id=resource_id,
    )
    ctx.install.wake_reconciler()
    return views.resource(ctx, row)


def administered(ctx: Context, params: Params, kind: resources.Kind, action: str) -> Row:
    """The studio resource the request names (also when DELETED), for an administrator to
    ``action`` (update, delete); AccessDeniedException for anyone else."""
    studio_id = params["studioId"]
    access.studio(ctx.conn, ctx.caller, studio_id)
    row = resources.get_any(ctx.conn, kind, studio_id, params[kind.id_field])
    access.require_admin(ctx.conn, ctx.caller, studio_id, f"{action} {kind.label.lower()}s")
    return row


def changes(params: Params, fields: tuple[str, ...]) -> dict[str, Any]:
    """The fields an Update request sets; at least one, or a ValidationException."""
    found = {key: params[key] for key in fields if key in params}
    if not found:
        names = ", ".join(fields)
        raise validate.exception([(names, f"Nothing to update: give at least one of {names}")])
    return found


def update(ctx: Context, row: Row, values: dict[str, Any]) -> Row:
    """Start the update of ``row``; the reconciler completes it."""
    updated = resources.begin_update(ctx.conn, row, values, ctx.caller.user_id, ctx.now)
    ctx.install.wake_reconciler()
    return views.resource(ctx, updated)


def delete(ctx: Context, row: Row) -> Row:
    """Start the delete of ``row`` unless something depends on it; the reconciler completes it.
    A resource being deleted or DELETED is returned unchanged."""
    if row["state"] not in resources.GONE:
        dependencies.check_delete(ctx.conn, row)
    deleted = resources.begin_delete(ctx.conn, row, ctx.caller.user_id, ctx.now)
    ctx.install.wake_reconciler()
    return views.resource(ctx, deleted)
