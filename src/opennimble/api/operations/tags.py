"""TagResource, UntagResource, ListTagsForResource: tags by ARN.

Permissions follow the resource's: whoever may read a resource may list its tags, and whoever
may change it may tag it (studio resources: the studio's administrators; sessions: their owner
and the studio's administrators). DELETED resources have no tags to show or change.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

from opennimble import errors
from opennimble.api.context import Context
from opennimble.api.operations import launch_profiles, studio_components
from opennimble.api.registry import Params, Result, handler
from opennimble.domain import access, resources, tags
from opennimble.domain import backups as backup_rules
from opennimble.domain import sessions as session_rules
from opennimble.protocol import validate
from opennimble.store import backups as backup_store
from opennimble.store import resources as resource_store
from opennimble.store import sessions as session_store

Row = dict[str, Any]
TAGGABLE = sorted([*resources.BY_ARN_TYPE, tags.SESSION_ARN_TYPE, tags.BACKUP_ARN_TYPE])


@dataclasses.dataclass(frozen=True)
class Target:
    """A taggable resource found by ARN, and how to save its tags."""

    tags: dict[str, str]
    save: Callable[[dict[str, str]], object]


def _resolve(ctx: Context, arn: str, write: bool) -> Target:
    parsed = tags.parse_arn(arn, ctx.install.region, ctx.install.account_id)
    if parsed.resource_type == tags.SESSION_ARN_TYPE:
        return _session(ctx, parsed.resource_id)
    if parsed.resource_type == tags.BACKUP_ARN_TYPE:
        return _backup(ctx, parsed.resource_id)
    kind = resources.BY_ARN_TYPE.get(parsed.resource_type)
    if kind is None:
        raise validate.exception(
            [
                (
                    "resourceArn",
                    f"Resource type '{parsed.resource_type}' of '{arn}' cannot be tagged; "
                    f"taggable: {', '.join(TAGGABLE)}",
                )
            ]
        )
    row = resource_store.get(ctx.conn, kind.name, parsed.resource_id)
    if row is None or row["state"] == "DELETED":
        raise errors.not_found(kind.label, parsed.resource_id)
    _check_resource_access(ctx, kind, row, write)
    rid = row["resource_id"]
    return Target(row["tags"], lambda new: resource_store.update(ctx.conn, rid, None, tags=new))


def _check_resource_access(ctx: Context, kind: resources.Kind, row: Row, write: bool) -> None:
    studio_id = row["studio_id"]
    access.studio(ctx.conn, ctx.caller, studio_id)
    if write:
        what = f"tag {kind.label.lower()} {row['resource_id']}"
        access.require_admin(ctx.conn, ctx.caller, studio_id, what)
    elif kind is resources.LAUNCH_PROFILE:
        launch_profiles.readable(ctx, studio_id, row["resource_id"])
    elif kind is resources.STUDIO_COMPONENT:
        studio_components.require_readable(ctx, studio_id, row["resource_id"])


def _session(ctx: Context, session_id: str) -> Target:
    row = session_store.get(ctx.conn, session_id)
    if row is None or row["state"] == "DELETED":
        raise errors.not_found("Streaming session", session_id)
    session_rules.readable(ctx.conn, ctx.caller, row["studio_id"], row, session_id)
    return Target(row["tags"], lambda new: session_store.update(ctx.conn, session_id, tags=new))


def _backup(ctx: Context, backup_id: str) -> Target:
    row = backup_store.get(ctx.conn, backup_id)
    if row is None or row["state"] == "DELETED":
        raise errors.not_found("Streaming session backup", backup_id)
    backup_rules.readable(ctx.conn, ctx.caller, row["studio_id"], row, backup_id)
    return Target(row["tags"], lambda new: backup_store.set_tags(ctx.conn, backup_id, new))


@handler
def list_tags_for_resource(ctx: Context, params: Params) -> Result:
    return {"tags": _resolve(ctx, params["resourceArn"], write=False).tags}


@handler
def tag_resource(ctx: Context, params: Params) -> Result:
    given = params.get("tags") or {}
    if not given:
        raise validate.exception([("tags", "Value at 'tags' must name at least one tag")])
    target = _resolve(ctx, params["resourceArn"], write=True)
    merged = {**target.tags, **given}
    problems = tags.problems(given)
    if len(merged) > tags.MAX_TAGS and len(given) <= tags.MAX_TAGS:
        problems.append(
            (
                "tags",
                f"A resource has at most {tags.MAX_TAGS} tags: it has {len(target.tags)}, "
                f"adding these would make {len(merged)}",
            )
        )
    if problems:
        raise validate.exception(problems)
    target.save(merged)
    return {}


@handler
def untag_resource(ctx: Context, params: Params) -> Result:
    target = _resolve(ctx, params["resourceArn"], write=True)
    remaining = {k: v for k, v in target.tags.items() if k not in set(params["tagKeys"])}
    if remaining != target.tags:
        target.save(remaining)
    return {}
