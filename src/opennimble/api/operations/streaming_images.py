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
from opennimble.domain import access, resources
from opennimble.store import resources as store

KIND = resources.STREAMING_IMAGE
UPDATABLE = ("name", "description")


@handler
def create_streaming_image(ctx: Context, params: Params) -> Result:
    studio_id, image_tags = common.creating(ctx, params, KIND)
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
            for r in store.not_deleted(ctx.conn, KIND.name, studio_id)
            if r["attrs"].get("owner") == owner
        )
    rows, token = listing.page(
        ctx,
        params,
        ("ListStreamingImages", studio_id, owner),
        lambda after, limit: store.page(ctx.conn, KIND.name, studio_id, after, limit, only),
    )
    return {"streamingImages": [views.resource(ctx, r) for r in rows], "nextToken": token}


@handler
def update_streaming_image(ctx: Context, params: Params) -> Result:
    row = common.administered(ctx, params, KIND, "update")
    changes = common.changes(params, UPDATABLE)
    return {"streamingImage": common.update(ctx, row, changes)}


@handler
def delete_streaming_image(ctx: Context, params: Params) -> Result:
    row = common.administered(ctx, params, KIND, "delete")
    return {"streamingImage": common.delete(ctx, row)}
