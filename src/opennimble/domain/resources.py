"""Studio-scoped resources that share one lifecycle: CREATE_IN_PROGRESS -> READY (or *_FAILED).

The reconciler moves each new resource on once its checks pass (see :func:`readiness`), so that
the model's ``*_ready`` waiters see the same states as on AWS.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import sqlalchemy as sa

from opennimble import errors
from opennimble.domain import ids
from opennimble.store import resources

Row = dict[str, Any]


@dataclasses.dataclass(frozen=True)
class Kind:
    name: str  # the ``kind`` column
    label: str  # for messages
    arn_type: str
    id_field: str  # the model's id member
    creating: str  # status code while CREATE_IN_PROGRESS
    ready: str  # status code once READY


STUDIO = Kind(
    "studio", "Studio", "studio", "studioId", "STUDIO_CREATE_IN_PROGRESS", "STUDIO_CREATED"
)
LAUNCH_PROFILE = Kind(
    "launch_profile",
    "Launch profile",
    "launch-profile",
    "launchProfileId",
    "LAUNCH_PROFILE_CREATE_IN_PROGRESS",
    "LAUNCH_PROFILE_CREATED",
)
STREAMING_IMAGE = Kind(
    "streaming_image",
    "Streaming image",
    "streaming-image",
    "streamingImageId",
    "STREAMING_IMAGE_CREATE_IN_PROGRESS",
    "STREAMING_IMAGE_READY",
)
STUDIO_COMPONENT = Kind(
    "studio_component",
    "Studio component",
    "studio-component",
    "studioComponentId",
    "STUDIO_COMPONENT_CREATE_IN_PROGRESS",
    "STUDIO_COMPONENT_CREATED",
)
KINDS = {k.name: k for k in (STUDIO, LAUNCH_PROFILE, STREAMING_IMAGE, STUDIO_COMPONENT)}


def new(
    conn: sa.Connection,
    kind: Kind,
    *,
    studio_id: str | None,
    name: str,
    attrs: dict[str, Any],
    tags: dict[str, str],
    by: str,
    now: int,
    resource_id: str | None = None,
) -> Row:
    """Insert a resource in CREATE_IN_PROGRESS and return its row."""
    rid = resource_id or ids.resource_id()
    row: Row = {
        "resource_id": rid,
        "kind": kind.name,
        "studio_id": studio_id or rid,
        "name": name,
        "state": "CREATE_IN_PROGRESS",
        "status_code": kind.creating,
        "status_message": f"{kind.label} is being created",
        "attrs": attrs,
        "tags": tags,
        "created_at": now,
        "created_by": by,
        "updated_at": now,
        "updated_by": by,
    }
    resources.insert(conn, row)
    return row


def get_live(conn: sa.Connection, kind: Kind, studio_id: str, resource_id: str) -> Row:
    """A resource of the studio that is not DELETED, or ResourceNotFoundException."""
    row = resources.get(conn, kind.name, resource_id, studio_id)
    if row is None or row["state"] == "DELETED":
        raise errors.not_found(kind.label, resource_id)
    return row


def readiness(conn: sa.Connection, row: Row) -> tuple[str, str, str] | None:
    """What a resource in CREATE_IN_PROGRESS becomes now: (state, status code, message).

    None means "not yet": a launch profile waits for its streaming images to be READY.
    """
    kind = KINDS[row["kind"]]
    if kind is LAUNCH_PROFILE:
        for image_id in row["attrs"].get("streamConfiguration", {}).get("streamingImageIds", []):
            image = resources.get(conn, STREAMING_IMAGE.name, image_id, row["studio_id"])
            if image is None or image["state"] in ("DELETED", "DELETE_IN_PROGRESS"):
                return (
                    "CREATE_FAILED",
                    "STREAMING_IMAGE_NOT_FOUND",
                    f"Streaming image {image_id} does not exist",
                )
            if image["state"] != "READY":
                return None
    return ("READY", kind.ready, f"{kind.label} is ready")
