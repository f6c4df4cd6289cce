"""Studio and launch profile memberships: Put, List and Get of each."""

from __future__ import annotations

import hashlib
from typing import Any

from opennimble import errors
from opennimble.api import listing, views
from opennimble.api.context import Context
from opennimble.api.operations import launch_profiles
from opennimble.api.registry import Params, Result, handler
from opennimble.domain import access, identity
from opennimble.protocol import validate
from opennimble.store import members, users


def _check_new_members(ctx: Context, params: Params) -> None:
    problems: list[validate.Problem] = []
    store_id = identity.identity_store_id(ctx.conn)
    if params["identityStoreId"] != store_id:
        problems.append(
            (
                "identityStoreId",
                f"Value '{params['identityStoreId']}' at "
                f"'identityStoreId' is not this installation's identity store "
                f"({store_id})",
            )
        )
    for i, new in enumerate(params["members"], start=1):
        if users.get_user(ctx.conn, new["principalId"]) is None:
            path = f"members.{i}.member.principalId"
            problems.append(
                (
                    path,
                    f"Value '{new['principalId']}' at '{path}' is not a user of the identity store",
                )
            )
    if problems:
        raise validate.exception(problems)
    principals = [
        (f"members.{i}.member.principalId", new["principalId"])
        for i, new in enumerate(params["members"], start=1)
    ]
    access.require_standing(ctx.conn, ctx.caller, params["studioId"], principals)


def _put(ctx: Context, params: Params, scope_id: str) -> None:
    _check_new_members(ctx, params)
    for new in params["members"]:
        principal = new["principalId"]
        members.put(
            ctx.conn,
            {
                "scope_id": scope_id,
                "principal_id": principal,
                "studio_id": params["studioId"],
                "persona": new["persona"],
                "identity_store_id": params["identityStoreId"],
                "sid": _sid(principal),
                "created_at": ctx.now,
            },
        )


def _sid(principal_id: str) -> str:
    """A stable Windows-style security identifier for a user."""
    digest = hashlib.sha256(principal_id.encode()).digest()
    parts = [int.from_bytes(digest[i : i + 4], "big") for i in (0, 4, 8)]
    return "S-1-5-21-" + "-".join(str(p) for p in parts) + "-1001"


def _get(ctx: Context, scope_id: str, principal_id: str, label: str) -> dict[str, Any]:
    row = members.get(ctx.conn, scope_id, principal_id)
    if row is None:
        raise errors.not_found(f"Member of {label}", principal_id)
    return views.member(row)


def _list(ctx: Context, params: Params, scope_id: str, name: str) -> Result:
    rows, token = listing.page(
        ctx,
        params,
        (name, scope_id),
        lambda after, limit: members.page(ctx.conn, scope_id, after, limit),
    )
    return {"members": [views.member(r) for r in rows], "nextToken": token}


@handler
def put_studio_members(ctx: Context, params: Params) -> Result:
    access.studio(ctx.conn, ctx.caller, params["studioId"])
    access.require_admin(ctx.conn, ctx.caller, params["studioId"], "add studio members")
    _put(ctx, params, params["studioId"])
    return {}


@handler
def list_studio_members(ctx: Context, params: Params) -> Result:
    access.studio(ctx.conn, ctx.caller, params["studioId"])
    return _list(ctx, params, params["studioId"], "ListStudioMembers")


@handler
def get_studio_member(ctx: Context, params: Params) -> Result:
    access.studio(ctx.conn, ctx.caller, params["studioId"])
    return {"member": _get(ctx, params["studioId"], params["principalId"], "the studio")}


def _launch_profile(ctx: Context, params: Params) -> dict[str, Any]:
    """The launch profile, if the caller may see its members: its own members and the studio's
    administrators (a member of one profile does not learn who uses the others)."""
    return launch_profiles.readable(ctx, params["studioId"], params["launchProfileId"])


@handler
def put_launch_profile_members(ctx: Context, params: Params) -> Result:
    profile = _launch_profile(ctx, params)
    access.require_admin(ctx.conn, ctx.caller, params["studioId"], "add launch profile members")
    _put(ctx, params, profile["resource_id"])
    return {}


@handler
def list_launch_profile_members(ctx: Context, params: Params) -> Result:
    profile = _launch_profile(ctx, params)
    return _list(ctx, params, profile["resource_id"], "ListLaunchProfileMembers")


@handler
def get_launch_profile_member(ctx: Context, params: Params) -> Result:
    profile = _launch_profile(ctx, params)
    member = _get(ctx, profile["resource_id"], params["principalId"], "the launch profile")
    return {"member": member}


@handler
def update_launch_profile_member(ctx: Context, params: Params) -> Result:
    profile = _launch_profile(ctx, params)
    access.require_admin(ctx.conn, ctx.caller, params["studioId"], "change launch profile members")
    scope_id = profile["resource_id"]
    _get(ctx, scope_id, params["principalId"], "the launch profile")
    members.put(
        ctx.conn,
        {"scope_id": scope_id, "principal_id": params["principalId"], "persona": params["persona"]},
    )
    return {"member": _get(ctx, scope_id, params["principalId"], "the launch profile")}


@handler
def delete_launch_profile_member(ctx: Context, params: Params) -> Result:
    profile = _launch_profile(ctx, params)
    access.require_admin(ctx.conn, ctx.caller, params["studioId"], "remove launch profile members")
    if not members.delete(ctx.conn, profile["resource_id"], params["principalId"]):
        raise errors.not_found("Member of the launch profile", params["principalId"])
    return {}


@handler
def delete_studio_member(ctx: Context, params: Params) -> Result:
    access.studio(ctx.conn, ctx.caller, params["studioId"])
    access.require_admin(ctx.conn, ctx.caller, params["studioId"], "remove studio members")
    if not members.delete(ctx.conn, params["studioId"], params["principalId"]):
        raise errors.not_found("Member of the studio", params["principalId"])
    return {}
