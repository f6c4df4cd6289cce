"""Launch profiles: Create, Get, List, Update, Delete."""

from __future__ import annotations

from typing import Any

from opennimble.api import listing, views
from opennimble.api.context import Context
from opennimble.api.operations import common
from opennimble.api.registry import Params, Result, handler
from opennimble.domain import access, persistence, resources
from opennimble.protocol import validate
from opennimble.store import members
from opennimble.store import resources as store

KIND = resources.LAUNCH_PROFILE

# automaticTerminationMode's default depends on sessionPersistenceMode (domain/persistence.py)
STREAM_DEFAULTS: dict[str, Any] = {
    "maxSessionLengthInMinutes": 690,
    "maxStoppedSessionLengthInMinutes": 0,
    "sessionPersistenceMode": "DEACTIVATED",
    "sessionBackup": {"mode": "DEACTIVATED", "maxBackupsToRetain": 0},
}
ATTRS = (
    "description",
    "ec2SubnetIds",
    "launchProfileProtocolVersions",
    "name",
    "studioComponentIds",
    "streamConfiguration",
)
UPDATABLE = (
    "description",
    "launchProfileProtocolVersions",
    "name",
    "streamConfiguration",
    "studioComponentIds",
)


def _references(params: Params) -> list[tuple[str, resources.Kind, list[str]]]:
    refs = []
    if "studioComponentIds" in params:
        refs.append(
            ("studioComponentIds", resources.STUDIO_COMPONENT, params["studioComponentIds"])
        )
    if "streamConfiguration" in params:
        refs.append(
            (
                "streamConfiguration.streamingImageIds",
                resources.STREAMING_IMAGE,
                params["streamConfiguration"]["streamingImageIds"],
            )
        )
    return refs


def _check(ctx: Context, params: Params) -> None:
    """The components and images named must be resources of the studio not being deleted, and
    the stream configuration may only use persistence settings it has persistence for."""
    problems = _reference_problems(ctx, params)
    if "streamConfiguration" in params:
        problems += persistence.problems(params["streamConfiguration"])
    if problems:
        raise validate.exception(problems)


def _reference_problems(ctx: Context, params: Params) -> list[validate.Problem]:
    studio_id = params["studioId"]
    problems: list[validate.Problem] = []
    for field, kind, wanted in _references(params):
        for i, rid in enumerate(wanted, start=1):
            row = store.get(ctx.conn, kind.name, rid, studio_id)
            if row is None or row["state"] in resources.GONE:
                path = f"{field}.{i}.member"
                problems.append(
                    (
                        path,
                        f"Value '{rid}' at '{path}' names no {kind.label.lower()}"
                        f" of studio {studio_id}",
                    )
                )
    return problems


def _attrs(params: Params, fields: tuple[str, ...]) -> dict[str, Any]:
    attrs: dict[str, Any] = {key: params[key] for key in fields if key in params}
    if "streamConfiguration" in attrs:
        attrs["streamConfiguration"] = _stream_configuration(attrs["streamConfiguration"])
    return attrs


def _stream_configuration(given: dict[str, Any]) -> dict[str, Any]:
    """The stream configuration given with every default filled in, so that the launch profile
    and the sessions that copy it show the settings in effect."""
    stream = {**STREAM_DEFAULTS, **given}
    stream["automaticTerminationMode"] = persistence.automatic_termination(stream)
    return stream


@handler
def create_launch_profile(ctx: Context, params: Params) -> Result:
    studio_id, profile_tags = common.creating(ctx, params, KIND)
    _check(ctx, params)
    row = common.create(ctx, KIND, studio_id, params["name"], _attrs(params, ATTRS), profile_tags)
    return {"launchProfile": row}


def readable(
    ctx: Context, studio_id: str, launch_profile_id: str, deleted_ok: bool = False
) -> dict[str, Any]:
    """A launch profile the caller may use: an admin's, or one the caller is a member of."""
    access.studio(ctx.conn, ctx.caller, studio_id)
    get = resources.get_any if deleted_ok else resources.get_live
    row = get(ctx.conn, KIND, studio_id, launch_profile_id)
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
    row = readable(ctx, params["studioId"], params["launchProfileId"], deleted_ok=True)
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


@handler
def update_launch_profile(ctx: Context, params: Params) -> Result:
    row = common.administered(ctx, params, KIND, "update")
    changes = common.changes(params, UPDATABLE)
    _check(ctx, params)
    return {"launchProfile": common.update(ctx, row, _attrs(changes, UPDATABLE))}


@handler
def delete_launch_profile(ctx: Context, params: Params) -> Result:
    row = common.administered(ctx, params, KIND, "delete")
    return {"launchProfile": common.delete(ctx, row)}
