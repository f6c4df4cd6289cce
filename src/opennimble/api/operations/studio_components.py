"""Studio components: Create, Get, List, Update, Delete.

A component holds scripts and their parameters (licence servers, tokens): the studio's
administrators see every component, other members only those their launch profiles use.
"""

from __future__ import annotations

from opennimble.api import listing, views
from opennimble.api.context import Context
from opennimble.api.operations import common
from opennimble.api.registry import Params, Result, handler
from opennimble.domain import access, components, resources
from opennimble.store import resources as store

KIND = resources.STUDIO_COMPONENT
ATTRS = (
    "configuration",
    "description",
    "ec2SecurityGroupIds",
    "initializationScripts",
    "name",
    "runtimeRoleArn",
    "scriptParameters",
    "secureInitializationRoleArn",
    "subtype",
    "type",
)


@handler
def create_studio_component(ctx: Context, params: Params) -> Result:
    studio_id, component_tags = common.creating(ctx, params, KIND)
    attrs = {key: params[key] for key in ATTRS if key in params}
    attrs.update(components.on_create(ctx.caller))
    row = common.create(ctx, KIND, studio_id, params["name"], attrs, component_tags)
    return {"studioComponent": row}


def visible(ctx: Context, studio_id: str) -> set[str] | None:
    """The ids of the components the caller may read (``None``: all, for administrators)."""
    if access.is_admin(ctx.conn, ctx.caller, studio_id):
        return None
    return access.components_used_by(ctx.conn, ctx.caller.user_id, studio_id)


def require_readable(ctx: Context, studio_id: str, component_id: str) -> None:
    shown = visible(ctx, studio_id)
    if shown is not None and component_id not in shown:
        raise access.denied(
            ctx.caller,
            f"read studio component {component_id}",
            "only studio administrators and members of the launch profiles that use it may",
        )


@handler
def get_studio_component(ctx: Context, params: Params) -> Result:
    studio_id = params["studioId"]
    access.studio(ctx.conn, ctx.caller, studio_id)
    row = resources.get_any(ctx.conn, KIND, studio_id, params["studioComponentId"])
    require_readable(ctx, studio_id, row["resource_id"])
    return {"studioComponent": views.resource(ctx, row)}


@handler
def list_studio_components(ctx: Context, params: Params) -> Result:
    studio_id = params["studioId"]
    access.studio(ctx.conn, ctx.caller, studio_id)
    types = params.get("types")
    shown = visible(ctx, studio_id)
    only = None if shown is None else sorted(shown)
    if types:
        only = sorted(
            r["resource_id"]
            for r in store.not_deleted(ctx.conn, KIND.name, studio_id)
            if r["attrs"].get("type") in types and (shown is None or r["resource_id"] in shown)
        )
    states = params.get("states")
    rows, token = listing.page(
        ctx,
        params,
        ("ListStudioComponents", studio_id, states, types),
        lambda after, limit: store.page(ctx.conn, KIND.name, studio_id, after, limit, only, states),
    )
    return {"studioComponents": [views.resource(ctx, r) for r in rows], "nextToken": token}


@handler
def update_studio_component(ctx: Context, params: Params) -> Result:
    row = common.administered(ctx, params, KIND, "update")
    changes = common.changes(params, ATTRS)
    changes.update(components.on_update(ctx.caller, row["attrs"], changes))
    return {"studioComponent": common.update(ctx, row, changes)}


@handler
def delete_studio_component(ctx: Context, params: Params) -> Result:
    row = common.administered(ctx, params, KIND, "delete")
    return {"studioComponent": common.delete(ctx, row)}
