"""Studio-scoped resources that share one lifecycle.

Studios, launch profiles, streaming images and studio components go through the model's states::

    Create -> CREATE_IN_PROGRESS -> READY (or CREATE_FAILED)
    Update -> UPDATE_IN_PROGRESS -> READY (or UPDATE_FAILED)
    Delete -> DELETE_IN_PROGRESS -> DELETED, readable for a day, then purged

The API records the transition; the reconciler's housekeeping completes it (see
:func:`readiness` and :func:`completion`), so that the model's ``*_ready`` and ``*_deleted``
waiters see the same states as on AWS. Deletes are refused while something depends on the
resource (:mod:`opennimble.domain.dependencies`).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import sqlalchemy as sa

from opennimble import clock, errors
from opennimble.domain import access, ids
from opennimble.store import eulas, members, resources

Row = dict[str, Any]

# how long a DELETED resource stays readable (for waiters and audits) before it is purged
DELETED_RETENTION = 24 * clock.HOUR
GONE = frozenset({"DELETE_IN_PROGRESS", "DELETED"})
# states from which an update or a delete may start
UPDATABLE = frozenset({"READY", "UPDATE_FAILED"})
DELETABLE = frozenset({"READY", "CREATE_FAILED", "UPDATE_FAILED", "DELETE_FAILED"})


@dataclasses.dataclass(frozen=True)
class Kind:
    name: str  # the ``kind`` column
    label: str  # for messages
    arn_type: str
    id_field: str  # the model's id member
    prefix: str  # of the model's status codes
    ready: str  # status code once created
    updated: str  # status code once updated

    def code(self, event: str) -> str:
        """The status code of a transition in progress or done: CREATE_IN_PROGRESS, DELETED..."""
        return f"{self.prefix}_{event}"


STUDIO = Kind(
    "studio", "Studio", "studio", "studioId", "STUDIO", "STUDIO_CREATED", "STUDIO_UPDATED"
)
LAUNCH_PROFILE = Kind(
    "launch_profile",
    "Launch profile",
    "launch-profile",
    "launchProfileId",
    "LAUNCH_PROFILE",
    "LAUNCH_PROFILE_CREATED",
    "LAUNCH_PROFILE_UPDATED",
)
STREAMING_IMAGE = Kind(
    "streaming_image",
    "Streaming image",
    "streaming-image",
    "streamingImageId",
    "STREAMING_IMAGE",
    "STREAMING_IMAGE_READY",
    "STREAMING_IMAGE_READY",  # the model has no STREAMING_IMAGE_UPDATED
)
STUDIO_COMPONENT = Kind(
    "studio_component",
    "Studio component",
    "studio-component",
    "studioComponentId",
    "STUDIO_COMPONENT",
    "STUDIO_COMPONENT_CREATED",
    "STUDIO_COMPONENT_UPDATED",
)
KINDS = {k.name: k for k in (STUDIO, LAUNCH_PROFILE, STREAMING_IMAGE, STUDIO_COMPONENT)}
BY_ARN_TYPE = {k.arn_type: k for k in KINDS.values()}


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
        "status_code": kind.code("CREATE_IN_PROGRESS"),
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


def remembered_live(conn: sa.Connection, kind: Kind, studio_id: str, resource_id: str) -> Row:
    """:func:`get_live`, from what this process remembers while the access generation stays the
    same (:class:`opennimble.domain.access.Remembered`: every change of a resource bumps it),
    for the reads of every CreateStreamingSession. The row is shared: do not change it."""
    row = access.remembered(
        conn,
        ("resource", f"{kind.name}/{studio_id}/{resource_id}"),
        lambda: resources.get(conn, kind.name, resource_id, studio_id),
    )
    if row is None or row["state"] == "DELETED":
        raise errors.not_found(kind.label, resource_id)
    return row


def get_any(conn: sa.Connection, kind: Kind, studio_id: str, resource_id: str) -> Row:
    """A resource of the studio, DELETED ones included (until they are purged)."""
    row = resources.get(conn, kind.name, resource_id, studio_id)
    if row is None:
        raise errors.not_found(kind.label, resource_id)
    return row


def present(conn: sa.Connection, kind: Kind, studio_id: str, resource_ids: list[str]) -> list[Row]:
    """The resources named (a launch profile's components or images) that exist and are not
    being deleted, in the order named; the others are left out."""
    found = []
    for resource_id in resource_ids:
        row = resources.get(conn, kind.name, resource_id, studio_id)
        if row is not None and row["state"] not in GONE:
            found.append(row)
    return found


def conflict(row: Row, action: str) -> errors.ConflictException:
    kind = KINDS[row["kind"]]
    return errors.ConflictException(
        f"Cannot {action} {kind.label.lower()} {row['resource_id']} while it is {row['state']}",
        context={"resourceId": row["resource_id"], "state": row["state"]},
    )


def require_open(studio: Row, action: str) -> None:
    """New things may not be added to a studio that is being deleted."""
    if studio["state"] in GONE:
        raise conflict(studio, action)


def begin_update(
    conn: sa.Connection,
    row: Row,
    changes: dict[str, Any],
    by: str,
    now: int,
    status: tuple[str, str] | None = None,
) -> Row:
    """Record an update (attribute ``changes``, maybe a new ``name``): UPDATE_IN_PROGRESS,
    with the kind's status code and message unless ``status`` gives others."""
    if row["state"] not in UPDATABLE:
        raise conflict(row, "update")
    kind = KINDS[row["kind"]]
    code, message = status or (kind.code("UPDATE_IN_PROGRESS"), f"{kind.label} is being updated")
    values: dict[str, Any] = {
        "attrs": {**row["attrs"], **changes},
        "state": "UPDATE_IN_PROGRESS",
        "status_code": code,
        "status_message": message,
        "updated_at": now,
        "updated_by": by,
    }
    if "name" in changes and kind is not STUDIO:
        values["name"] = changes["name"]
    if not resources.update(conn, row["resource_id"], row["state"], **values):
        raise conflict(row, "update")
    return {**row, **values}


def begin_delete(conn: sa.Connection, row: Row, by: str, now: int) -> Row:
    """Record a delete: DELETE_IN_PROGRESS. Deleting again returns the resource unchanged."""
    if row["state"] in GONE:
        return row
    if row["state"] not in DELETABLE:
        raise conflict(row, "delete")
    kind = KINDS[row["kind"]]
    values = {
        "state": "DELETE_IN_PROGRESS",
        "status_code": kind.code("DELETE_IN_PROGRESS"),
        "status_message": f"{kind.label} is being deleted",
        "updated_at": now,
        "updated_by": by,
    }
    if not resources.update(conn, row["resource_id"], row["state"], **values):
        raise conflict(row, "delete")
    return {**row, **values}


def readiness(conn: sa.Connection, row: Row) -> tuple[str, str, str] | None:
    """What a resource being created or updated becomes now: (state, status code, message).

    None means "not yet": a launch profile waits for its streaming images to be READY.
    """
    kind = KINDS[row["kind"]]
    creating = row["state"] == "CREATE_IN_PROGRESS"
    if kind is LAUNCH_PROFILE:
        for image_id in row["attrs"].get("streamConfiguration", {}).get("streamingImageIds", []):
            image = resources.get(conn, STREAMING_IMAGE.name, image_id, row["studio_id"])
            if image is None or image["state"] in GONE:
                return (
                    "CREATE_FAILED" if creating else "UPDATE_FAILED",
                    "STREAMING_IMAGE_NOT_FOUND",
                    f"Streaming image {image_id} does not exist",
                )
            if image["state"] != "READY":
                return None
    if row["status_code"] == "AWS_SSO_CONFIGURATION_REPAIR_IN_PROGRESS":
        return ("READY", "AWS_SSO_CONFIGURATION_REPAIRED", row["status_message"])
    if creating:
        return ("READY", kind.ready, f"{kind.label} is ready")
    return ("READY", kind.updated, f"{kind.label} is updated")


def completion(row: Row) -> tuple[str, str, str]:
    """What a resource being deleted becomes: (state, status code, message)."""
    kind = KINDS[row["kind"]]
    return ("DELETED", kind.code("DELETED"), f"{kind.label} is deleted")


def forget(conn: sa.Connection, row: Row) -> None:
    """After a DELETED resource is purged: drop what only it gave meaning to."""
    if row["kind"] in (STUDIO.name, LAUNCH_PROFILE.name):
        members.forget_scope(conn, row["resource_id"])
    if row["kind"] == STUDIO.name:
        eulas.forget_studio(conn, row["resource_id"])
