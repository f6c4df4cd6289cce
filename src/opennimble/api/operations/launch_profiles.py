"""CreateLaunchProfile, GetLaunchProfile, ListLaunchProfiles."""

from __future__ import annotations

from typing import Any

from opennimble.api import listing, views
from opennimble.api.context import Context
from opennimble.api.registry import Params, Result, handler
from opennimble.domain import access, resources
from opennimble.protocol import validate
from opennimble.store import members
from opennimble.store import resources as store

KIND = resources.LAUNCH_PROFILE

STREAM_DEFAULTS: dict[str, Any] = {
    "automaticTerminationMode": "ACTIVATED",
    "maxSessionLengthInMinutes": 690,
    "maxStoppedSessionLengthInMinutes": 0,
    "sessionPersistenceMode": "DEACTIVATED",
    "sessionBackup": {"mode": "DEACTIVATED", "maxBackupsToRetain": 0},
}


def _check_references(ctx: Context, params: Params) -> None:
    studio_id = params["studioId"]
    problems: list[validate.Problem] = []
    refs = [
        ("studioComponentIds", resources.STUDIO_COMPONENT, params["studioComponentIds"]),
        (
            "streamConfiguration.streamingImageIds",
            resources.STREAMING_IMAGE,
            params["streamConfiguration"]["streamingImageIds"],
        ),
    ]
    for field, kind, wanted in refs:
        for i, rid in enumerate(wanted, start=1):
            row = store.get(ctx.conn, kind.name, rid, studio_id)
            if row is None or row["state"] in ("DELETED", "DELETE_IN_PROGRESS"):
                path = f"{field}.{i}.member"
                problems.append(
                    (
                        path,
                        f"Value '{rid}' at '{path}' names no {kind.label.lower()}"
                        f" of studio {studio_id}",
                    )
                )
    if problems:
        raise validate.exception(problems)


@handler
def create_launch_profile(ctx: Context, params: Params) -> Result:
    studio_id = params["studioId"]
    access.studio(ctx.conn, ctx.caller, studio_id)
    access.require_admin(ctx.conn, ctx.caller, studio_id, "create launch profiles")
    _check_references(ctx, params)
    stream = {**STREAM_DEFAULTS, **params["streamConfiguration"]}
    attrs: dict[str, Any] = {
        key: params[key]
        for key in (
            "description",
            "ec2SubnetIds",
            "launchProfileProtocolVersions",
            "name",
            "studioComponentIds",
        )
        if key in params
    }
    attrs["streamConfiguration"] = stream
    row = resources.new(
        ctx.conn,
        KIND,
        studio_id=studio_id,
        name=params["name"],
        attrs=attrs,
        tags=params.get("tags", {}),
        by=ctx.caller.user_id,
        now=ctx.now,
    )
    ctx.install.wake_reconciler()
    return {"launchProfile": views.resource(ctx, row)}


def readable(ctx: Context, studio_id: str, launch_profile_id: str) -> dict[str, Any]:
    """A launch profile the caller may use: an admin's, or one the caller is a member of."""
    access.studio(ctx.conn, ctx.caller, studio_id)
    row = resources.get_live(ctx.conn, KIND, studio_id, launch_profile_id)
    if (
        not access.is_admin(ctx.conn, ctx.caller, studio_id)
        and members.get(ctx.conn, launch_profile_id, ctx.caller.user_id) is None
    ):
        raise access.denied(
            ctx.caller,
            f"use launch profile {launch_profile_id}",
            "only its members and studio administrators may",
        )
    return row


@handler
def get_launch_profile(ctx: Context, params: Params) -> Result:
    row = readable(ctx, params["studioId"], params["launchProfileId"])
    return {"launchProfile": views.resource(ctx, row)}


@handler
def list_launch_profiles(ctx: Context, params: Params) -> Result:
    studio_id = params["studioId"]
    access.studio(ctx.conn, ctx.caller, studio_id)
    principal = params.get("principalId")
    if not access.is_admin(ctx.conn, ctx.caller, studio_id):
        if principal not in (None, ctx.caller.user_id):
            raise access.denied(ctx.caller, f"list the launch profiles of {principal}")
        principal = ctx.caller.user_id
    only = None
    if principal is not None:
        only = sorted(
            m["scope_id"]
            for m in members.scopes_of(ctx.conn, principal)
            if m["scope_id"] != studio_id
        )
    states = params.get("states")
    rows, token = listing.page(
        ctx,
        params,
        ("ListLaunchProfiles", studio_id, principal, states),
        lambda after, limit: store.page(ctx.conn, KIND.name, studio_id, after, limit, only, states),
    )
    return {"launchProfiles": [views.resource(ctx, r) for r in rows], "nextToken": token}
