"""What stands in the way of a delete: the dependency rules of studio resources.

* a launch profile cannot be deleted while sessions from it are not DELETED;
* a streaming image cannot be deleted while a launch profile offers it or a session runs it;
* a studio component cannot be deleted while a launch profile uses it;
* a studio cannot be deleted while it has launch profiles, studio components or streaming
  images that are not DELETED.

Each refusal is a ConflictException that names what is in the way (its code is the model's
status code for the case where the model has one).
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from opennimble import errors
from opennimble.domain import resources
from opennimble.store import resources as store

Row = dict[str, Any]
SHOWN = 10  # ids named in a message at most


def check_delete(conn: sa.Connection, row: Row) -> None:
    """Raise ConflictException if something still depends on ``row``."""
    kind = resources.KINDS[row["kind"]]
    blockers = {
        resources.STUDIO: _studio,
        resources.LAUNCH_PROFILE: _launch_profile,
        resources.STREAMING_IMAGE: _streaming_image,
        resources.STUDIO_COMPONENT: _studio_component,
    }[kind](conn, row)
    if not blockers:
        return
    parts = [f"{what} {_ids(found)}" for what, found, _ in blockers]
    raise errors.ConflictException(
        f"Cannot delete {kind.label.lower()} {row['resource_id']}: it still has "
        + "; ".join(parts)
        + ". Delete those first",
        code=blockers[0][2],
        context={"resourceId": row["resource_id"]},
    )


Blockers = list[tuple[str, list[str], str]]  # (what, their ids, status code)


def _studio(conn: sa.Connection, row: Row) -> Blockers:
    out: Blockers = []
    for kind, code in (
        (resources.LAUNCH_PROFILE, "STUDIO_WITH_LAUNCH_PROFILES_NOT_DELETED"),
        (resources.STUDIO_COMPONENT, "STUDIO_WITH_STUDIO_COMPONENTS_NOT_DELETED"),
        (resources.STREAMING_IMAGE, "STUDIO_WITH_STREAMING_IMAGES_NOT_DELETED"),
    ):
        found = [r["resource_id"] for r in store.not_deleted(conn, kind.name, row["studio_id"])]
        if found:
            out.append((f"{kind.label.lower()}s", found, code))
    return out


def _launch_profile(conn: sa.Connection, row: Row) -> Blockers:
    found = store.live_sessions(conn, row["studio_id"], launch_profile_id=row["resource_id"])
    if not found:
        return []
    return [("streaming sessions", found, "LAUNCH_PROFILE_WITH_STREAM_SESSIONS_NOT_DELETED")]


def _profiles_using(conn: sa.Connection, row: Row, attribute: str) -> list[str]:
    profiles = store.not_deleted(conn, resources.LAUNCH_PROFILE.name, row["studio_id"])
    found = []
    for profile in profiles:
        attrs = profile["attrs"]
        used = (
            attrs.get("streamConfiguration", {}).get("streamingImageIds", [])
            if attribute == "streamingImageIds"
            else attrs.get(attribute, [])
        )
        if row["resource_id"] in used:
            found.append(profile["resource_id"])
    return found


def _streaming_image(conn: sa.Connection, row: Row) -> Blockers:
    out: Blockers = []
    profiles = _profiles_using(conn, row, "streamingImageIds")
    if profiles:
        out.append(("launch profiles that offer it", profiles, "STREAMING_IMAGE_IN_USE"))
    found = store.live_sessions(conn, row["studio_id"], streaming_image_id=row["resource_id"])
    if found:
        out.append(("streaming sessions that run it", found, "STREAMING_IMAGE_IN_USE"))
    return out


def _studio_component(conn: sa.Connection, row: Row) -> Blockers:
    profiles = _profiles_using(conn, row, "studioComponentIds")
    if not profiles:
        return []
    return [("launch profiles that use it", profiles, "STUDIO_COMPONENT_IN_USE")]


def _ids(found: list[str]) -> str:
    shown = ", ".join(found[:SHOWN])
    more = f" and {len(found) - SHOWN} more" if len(found) > SHOWN else ""
    return f"({len(found)}: {shown}{more})"
