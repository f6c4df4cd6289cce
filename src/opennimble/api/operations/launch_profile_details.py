"""GetLaunchProfileDetails and GetLaunchProfileInitialization: what a launch profile provides.

Details: the launch profile, the streaming images it offers and summaries of its studio
components. Initialization: what a workstation of this launch profile runs at start for a
platform and protocol version: the components' system and user initialization scripts for
that platform and version (in the launch profile's component order), the union of their
security groups and the Active Directory component's settings. Fields that describe nothing of
this installation (the directory's name and DNS addresses, which live in AWS Directory
Service) are omitted.
"""

from __future__ import annotations

import re
from typing import Any

from opennimble.api import views
from opennimble.api.context import Context
from opennimble.api.operations import launch_profiles
from opennimble.api.registry import Params, Result, handler
from opennimble.domain import resources
from opennimble.protocol import validate

Row = dict[str, Any]
LAUNCH_PURPOSE = re.compile(r"[A-Z0-9_]{1,64}")
SUMMARY = ("description", "name", "subtype", "type")
SCRIPT_LISTS = {
    "SYSTEM_INITIALIZATION": "systemInitializationScripts",
    "USER_INITIALIZATION": "userInitializationScripts",
}


def _components(ctx: Context, profile: Row) -> list[Row]:
    wanted = profile["attrs"].get("studioComponentIds", [])
    return resources.present(ctx.conn, resources.STUDIO_COMPONENT, profile["studio_id"], wanted)


def _images(ctx: Context, profile: Row) -> list[Row]:
    wanted = profile["attrs"]["streamConfiguration"]["streamingImageIds"]
    return resources.present(ctx.conn, resources.STREAMING_IMAGE, profile["studio_id"], wanted)


def _summary(row: Row) -> Row:
    out = {key: row["attrs"].get(key) for key in SUMMARY}
    out.update(
        {
            "studioComponentId": row["resource_id"],
            "createdAt": row["created_at"],
            "createdBy": row["created_by"],
            "updatedAt": row["updated_at"],
            "updatedBy": row["updated_by"],
        }
    )
    return out


@handler
def get_launch_profile_details(ctx: Context, params: Params) -> Result:
    profile = launch_profiles.readable(ctx, params["studioId"], params["launchProfileId"])
    return {
        "launchProfile": views.resource(ctx, profile),
        "streamingImages": [views.resource(ctx, r) for r in _images(ctx, profile)],
        "studioComponentSummaries": [_summary(r) for r in _components(ctx, profile)],
    }


def _choose(ctx: Context, profile: Row, params: Params) -> tuple[str, str]:
    """The protocol version and platform to answer for, or every problem of the request."""
    problems: list[validate.Problem] = []
    offered = profile["attrs"].get("launchProfileProtocolVersions", [])
    common = sorted(set(offered) & set(params["launchProfileProtocolVersions"]))
    if not common:
        problems.append(
            (
                "launchProfileProtocolVersions",
                f"None of the versions at 'launchProfileProtocolVersions' is one of the launch "
                f"profile's {offered}",
            )
        )
    platform = params["platform"]
    platforms = sorted({r["attrs"].get("platform", "LINUX") for r in _images(ctx, profile)})
    if platform not in platforms:
        problems.append(
            (
                "platform",
                f"Value '{platform}' at 'platform': the launch profile's streaming images are "
                f"for {', '.join(platforms) or 'no platform'}",
            )
        )
    purpose = params["launchPurpose"]
    if not LAUNCH_PURPOSE.fullmatch(purpose):
        problems.append(
            (
                "launchPurpose",
                f"Value '{purpose}' at 'launchPurpose' failed to satisfy constraint: Member must "
                "be 1 to 64 of the characters A-Z 0-9 _",
            )
        )
    if problems:
        raise validate.exception(problems)
    return common[-1], platform


def _scripts(components: list[Row], platform: str, version: str) -> dict[str, list[Row]]:
    lists: dict[str, list[Row]] = {name: [] for name in SCRIPT_LISTS.values()}
    for row in components:
        attrs = row["attrs"]
        for script in attrs.get("initializationScripts", []):
            if script.get("platform") != platform:
                continue
            if script.get("launchProfileProtocolVersion", version) != version:
                continue
            target = SCRIPT_LISTS.get(script.get("runContext", ""))
            if target is None:
                continue
            lists[target].append(
                {
                    "studioComponentId": row["resource_id"],
                    "studioComponentName": attrs.get("name"),
                    "script": script["script"],
                    "runtimeRoleArn": attrs.get("runtimeRoleArn"),
                    "secureInitializationRoleArn": attrs.get("secureInitializationRoleArn"),
                }
            )
    return lists


def _active_directory(components: list[Row]) -> Row | None:
    for row in components:
        config = row["attrs"].get("configuration", {}).get("activeDirectoryConfiguration")
        if row["attrs"].get("type") == "ACTIVE_DIRECTORY" and config:
            return {
                **config,
                "studioComponentId": row["resource_id"],
                "studioComponentName": row["attrs"].get("name"),
            }
    return None


def _security_groups(components: list[Row]) -> list[str] | None:
    groups = [g for row in components for g in row["attrs"].get("ec2SecurityGroupIds", [])]
    return list(dict.fromkeys(groups)) or None


@handler
def get_launch_profile_initialization(ctx: Context, params: Params) -> Result:
    profile = launch_profiles.readable(ctx, params["studioId"], params["launchProfileId"])
    if profile["state"] != "READY":
        raise resources.conflict(profile, "initialize a workstation of")
    version, platform = _choose(ctx, profile, params)
    components = _components(ctx, profile)
    return {
        "launchProfileInitialization": {
            "launchProfileId": profile["resource_id"],
            "name": profile["attrs"].get("name"),
            "launchProfileProtocolVersion": version,
            "launchPurpose": params["launchPurpose"],
            "platform": platform,
            "ec2SecurityGroupIds": _security_groups(components),
            "activeDirectory": _active_directory(components),
            **_scripts(components, platform, version),
        }
    }
