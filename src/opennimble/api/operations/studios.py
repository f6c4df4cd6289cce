"""Studios: Create, Get, List, Update, Delete."""

from __future__ import annotations

from opennimble import errors
from opennimble.api import listing, views
from opennimble.api.context import Context
from opennimble.api.operations import common
from opennimble.api.registry import Params, Result, handler
from opennimble.domain import access, ids, resources, tags
from opennimble.store import members
from opennimble.store import resources as store

KIND = resources.STUDIO
UPDATABLE = ("displayName", "adminRoleArn", "userRoleArn")


@handler
def create_studio(ctx: Context, params: Params) -> Result:
    access.require_operator(ctx.caller, "create a studio")
    name = params["studioName"]
    studio_tags = tags.check(params.get("tags"))
    if store.find_live_by_name(ctx.conn, KIND.name, name) is not None:
        raise errors.ConflictException(
            f"A studio named '{name}' exists already", context={"studioName": name}
        )
    studio_id = ids.studio_id(ctx.install.region)
    attrs = {
        key: params[key] for key in ("displayName", "studioName", "adminRoleArn", "userRoleArn")
    }
    attrs["studioEncryptionConfiguration"] = params.get(
        "studioEncryptionConfiguration", {"keyType": "AWS_OWNED_KEY"}
    )
    attrs["homeRegion"] = ctx.install.region
    attrs["studioUrl"] = f"{ctx.install.public_url}/studios/{name}"
    attrs["ssoClientId"] = ids.resource_id()
    return {"studio": common.create(ctx, KIND, None, name, attrs, studio_tags, studio_id)}


@handler
def get_studio(ctx: Context, params: Params) -> Result:
    row = access.studio(ctx.conn, ctx.caller, params["studioId"], deleted_ok=True)
    return {"studio": views.resource(ctx, row)}


@handler
def list_studios(ctx: Context, params: Params) -> Result:
    visible = None
    if not ctx.caller.operator:
        visible = sorted({m["studio_id"] for m in members.scopes_of(ctx.conn, ctx.caller.user_id)})
    rows, token = listing.page(
        ctx,
        params,
        ("ListStudios",),
        lambda after, limit: store.page(ctx.conn, KIND.name, None, after, limit, visible),
    )
    return {"studios": [views.resource(ctx, r) for r in rows], "nextToken": token}


@handler
def update_studio(ctx: Context, params: Params) -> Result:
    row = access.studio(ctx.conn, ctx.caller, params["studioId"])
    access.require_admin(ctx.conn, ctx.caller, params["studioId"], "update the studio")
    return {"studio": common.update(ctx, row, common.changes(params, UPDATABLE))}


@handler
def delete_studio(ctx: Context, params: Params) -> Result:
    row = access.studio(ctx.conn, ctx.caller, params["studioId"], deleted_ok=True)
    access.require_operator(ctx.caller, f"delete studio {params['studioId']}")
    return {"studio": common.delete(ctx, row)}
