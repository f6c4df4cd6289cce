"""Rows as the model's output structures (the serializer keeps only modelled members)."""

from __future__ import annotations

from typing import Any

from opennimble.api.context import Context
from opennimble.domain import eulas, resources, tags
from opennimble.protocol import model, serialize
from opennimble.store import sessions as sessions_store

Row = dict[str, Any]
_SESSION = model.shape_named("StreamingSession")


def resource(ctx: Context, row: Row) -> Row:
    kind = resources.KINDS[row["kind"]]
    out = dict(row["attrs"])
    out.update(
        {
            kind.id_field: row["resource_id"],
            "arn": ctx.install.arn(kind.arn_type, row["resource_id"]),
            "state": row["state"],
            "statusCode": row["status_code"],
            "statusMessage": row["status_message"],
            "createdAt": row["created_at"],
            "createdBy": row["created_by"],
            "updatedAt": row["updated_at"],
            "updatedBy": row["updated_by"],
            "tags": row["tags"],
        }
    )
    if kind is resources.STREAMING_IMAGE:
        out["eulaIds"] = eulas.required_by_image(ctx.conn, out.get("ec2ImageId"))
    return out


def member(row: Row) -> Row:
    return {
        "principalId": row["principal_id"],
        "persona": row["persona"],
        "identityStoreId": row["identity_store_id"],
        "sid": row["sid"],
    }


def session(ctx: Context, row: Row) -> Row:
    # listings keep what this makes of a row, keyed by the row (api/rendered.py): it may read
    # nothing else but the installation
    attrs = row["attrs"]
    return {
        "arn": ctx.install.arn(tags.SESSION_ARN_TYPE, row["session_id"]),
        "sessionId": row["session_id"],
        "launchProfileId": row["launch_profile_id"],
        "streamingImageId": row["streaming_image_id"],
        "ec2InstanceType": row["ec2_instance_type"],
        "ownedBy": row["owned_by"],
        "createdBy": row["created_by"],
        "createdAt": row["created_at"],
        "updatedBy": row["updated_by"],
        "updatedAt": row["updated_at"],
        "state": row["state"],
        "statusCode": row["status_code"],
        "statusMessage": row["status_message"],
        "tags": row["tags"],
        "terminateAt": row.get("terminate_at"),
        "stopAt": row.get("stop_at"),
        "startedAt": row.get("started_at"),
        "startedBy": row.get("started_by"),
        "stoppedAt": row.get("stopped_at"),
        "stoppedBy": row.get("stopped_by"),
        "automaticTerminationMode": attrs.get("automaticTerminationMode"),
        "sessionPersistenceMode": attrs.get("sessionPersistenceMode"),
        "volumeRetentionMode": attrs.get("volumeRetentionMode"),
        "backupMode": attrs.get("backupMode"),
        "maxBackupsToRetain": attrs.get("maxBackupsToRetain"),
        "volumeConfiguration": attrs.get("volumeConfiguration"),
        "startedFromBackupId": attrs.get("startedFromBackupId"),
    }


def listed_sessions(ctx: Context, listed: list[tuple[Any, ...]]) -> list[serialize.Written]:
    """Sessions as a listing reads them (``store.sessions.listed``), each viewed and written
    once per process and row (api/rendered.py); read-only views, shared."""
    return [listed_session(ctx, values) for values in listed]


def listed_session(ctx: Context, values: tuple[Any, ...]) -> serialize.Written:
    """A session as listings read it (``store.sessions.listed``, ``get_listed``), viewed and
    written once per process and row (api/rendered.py); a read-only view, shared."""
    return ctx.install.rendered.get(values, lambda values: _written_session(ctx, values))


def _written_session(ctx: Context, values: tuple[Any, ...]) -> serialize.Written:
    return serialize.written(_SESSION, session(ctx, sessions_store.listed_row(values)))


def backup(ctx: Context, row: Row) -> Row:
    return {
        "arn": ctx.install.arn(tags.BACKUP_ARN_TYPE, row["backup_id"]),
        "backupId": row["backup_id"],
        "sessionId": row["session_id"],
        "launchProfileId": row["launch_profile_id"],
        "ownedBy": row["owned_by"],
        "createdAt": row["created_at"],
        "state": row["state"],
        "statusCode": row["status_code"],
        "statusMessage": row["status_message"],
        "tags": row["tags"],
    }


def stream(ctx: Context, row: Row, now: int) -> Row:
    expired = row["state"] == "READY" and row["expires_at"] <= now
    state = "DELETED" if expired else row["state"]
    out: Row = {
        "streamId": row["stream_id"],
        "createdAt": row["created_at"],
        "createdBy": row["created_by"],
        "ownedBy": row["owned_by"],
        "expiresAt": row["expires_at"],
        "state": state,
        "statusCode": "STREAM_DELETED" if expired else row["status_code"],
    }
    if state == "READY":
        out["url"] = ctx.install.stream_tokens.url(
            ctx.install.public_url, row["stream_id"], row["session_id"], row["expires_at"]
        )
    return out
