"""Streaming images: Create, Get, List, Update, Delete.

An image's ``eulaIds`` are not stored with it: they are the EULAs of the installation's
catalogue that name its ec2ImageId (see :mod:`opennimble.domain.eulas`).
"""

from __future__ import annotations

from typing import Any

from opennimble.api import listing, views
from opennimble.api.context import Context
from opennimble.api.operations import common
from opennimble.api.registry import Params, Result, handler
from opennimble.domain import access, quotas, resources, tags
from opennimble.store import resources as store

KIND = resources.STREAMING_IMAGE
UPDATABLE = ("name", "description")


@handler
def create_streaming_image(ctx: Context, params: Params) -> Result:
    studio_id = params["studioId"]
    studio = access.studio(ctx.conn, ctx.caller, studio_id)
    access.require_admin(ctx.conn, ctx.caller, studio_id, "create streaming images")
    image_tags = tags.check(params.get("tags"))
    resources.require_open(studio, "create streaming images in")
    quotas.check_resource(ctx.conn, ctx.install.quotas, KIND, studio_id)
    attrs: dict[str, Any] = {
        key: params[key] for key in ("name", "description", "ec2ImageId") if key in params
    }
    attrs.update(
        {
            "platform": "LINUX",
            "owner": ctx.install.account_id,
            "encryptionConfiguration": {"keyType": "AWS_OWNED_KEY"},
        }
    )
    row = common.create(ctx, KIND, studio_id, params["name"], attrs, image_tags)
    return {"streamingImage": row}


@handler
def get_streaming_image(ctx: Context, params: Params) -> Result:
    access.studio(ctx.conn, ctx.caller, params["studioId"])
    row = resources.get_any(ctx.conn, KIND, params["studioId"], params["streamingImageId"])
    return {"streamingImage": views.resource(ctx, row)}


@handler
def list_streaming_images(ctx: Context, params: Params) -> Result:
    studio_id = params["studioId"]
    access.studio(ctx.conn, ctx.caller, studio_id)
    owner = params.get("owner")
    only = None
    if owner is not None:
        only = sorted(
            r["resource_id"]
            for r in store.all_live(ctx.conn, KIND.name, studio_id)
            if r["attrs"].get("owner") == owner
        )
    rows, token = listing.page(
        ctx,
        params,
        ("ListStreamingImages", studio_id, owner),
        lambda after, limit: store.page(ctx.conn, KIND.name, studio_id, after, limit, only),
    )
    return {"streamingImages": [views.resource(ctx, r) for r in rows], "nextToken": token}


def _administered(ctx: Context, params: Params, action: str) -> dict[str, Any]:
    studio_id = params["studioId"]
    access.studio(ctx.conn, ctx.caller, studio_id)
    row = resources.get_any(ctx.conn, KIND, studio_id, params["streamingImageId"])
    access.require_admin(ctx.conn, ctx.caller, studio_id, f"{action} streaming images")
    return row


@handler
def update_streaming_image(ctx: Context, params: Params) -> Result:
    row = _administered(ctx, params, "update")
    changes = common.changes(params, UPDATABLE)
    return {"streamingImage": common.update(ctx, row, changes)}


@handler
def delete_streaming_image(ctx: Context, params: Params) -> Result:
    row = _administered(ctx, params, "delete")
    return {"streamingImage": common.delete(ctx, row)}
