"""CreateStreamingSession, GetStreamingSession, ListStreamingSessions, DeleteStreamingSession,
StopStreamingSession, StartStreamingSession.

The state-changing operations only record the transition (a compare-and-set on the state) and
wake the reconciler, which does the work; wrong-state calls are ConflictExceptions.
"""

from __future__ import annotations

from opennimble.api import listing, views
from opennimble.api.context import Context
from opennimble.api.registry import Params, Result, handler
from opennimble.domain import access, ids, lifecycle
from opennimble.domain import backups as backup_rules
from opennimble.domain import sessions as rules
from opennimble.protocol import validate
from opennimble.store import backups as backup_store
from opennimble.store import sessions as store


@handler
def create_streaming_session(ctx: Context, params: Params) -> Result:
    studio_id = params["studioId"]
    plan = rules.plan(ctx.conn, ctx.caller, studio_id, params)
    estimate = lifecycle.timers(plan.attrs, ctx.now)
    row = {
        "session_id": ids.resource_id(),
        "studio_id": studio_id,
        "launch_profile_id": plan.launch_profile["resource_id"],
        "streaming_image_id": plan.streaming_image_id,
        "ec2_instance_type": plan.ec2_instance_type,
        "owned_by": plan.owned_by,
        "created_by": ctx.caller.user_id,
        "tags": params.get("tags", {}),
        "attrs": plan.attrs,
        "created_at": ctx.now,
        "provider": "",
        "provider_state": {},
        "endpoint": {},
        "attempts": 0,
        "next_attempt_at": 0,
        "work_started_at": ctx.now,
        **estimate,
        **lifecycle.enter("CREATE_IN_PROGRESS", ctx.now, ctx.caller.user_id),
    }
    store.insert(ctx.conn, row)
    rules.count_against_quotas(ctx.conn, plan, studio_id, row["session_id"], ctx.install.quotas)
    ctx.install.wake_reconciler(housekeeping=False)
    return {"session": views.session(ctx, row)}


@handler
def get_streaming_session(ctx: Context, params: Params) -> Result:
    studio_id, session_id = params["studioId"], params["sessionId"]
    values = rules.requested_listed(ctx.conn, ctx.caller, studio_id, session_id)
    return {"session": views.listed_session(ctx, values)}


@handler
def delete_streaming_session(ctx: Context, params: Params) -> Result:
    session_id = params["sessionId"]
    row = rules.requested(ctx.conn, ctx.caller, params["studioId"], session_id)
    if row["state"] in lifecycle.GONE:
        return {"session": views.session(ctx, row)}
    if row["state"] not in lifecycle.DELETABLE:
        raise lifecycle.conflict(row, "delete")
    values = {**lifecycle.enter("DELETE_IN_PROGRESS", ctx.now, ctx.caller.user_id)}
    values.update(lifecycle.work(ctx.now))
    return _transition(ctx, row, lifecycle.DELETABLE, values, "delete")


@handler
def stop_streaming_session(ctx: Context, params: Params) -> Result:
    session_id = params["sessionId"]
    row = rules.requested(ctx.conn, ctx.caller, params["studioId"], session_id)
    if not lifecycle.stoppable(row["attrs"]):
        message = (
            f"Streaming session {session_id} cannot be stopped: the "
            "maxStoppedSessionLengthInMinutes of its launch profile is 0, so it can only be deleted"
        )
        raise validate.exception([("sessionId", message)])
    if row["state"] not in lifecycle.STOPPABLE:
        raise lifecycle.conflict(row, "stop")
    retention = params.get("volumeRetentionMode") or "RETAIN"
    values = lifecycle.stopping(ctx.now, ctx.caller.user_id)
    values["attrs"] = {**row["attrs"], "volumeRetentionMode": retention}
    return _transition(ctx, row, lifecycle.STOPPABLE, values, "stop")


@handler
def start_streaming_session(ctx: Context, params: Params) -> Result:
    session_id = params["sessionId"]
    row = rules.requested(ctx.conn, ctx.caller, params["studioId"], session_id)
    if row["state"] not in lifecycle.STARTABLE:
        raise lifecycle.conflict(row, "start")
    attrs = {
        k: v for k, v in row["attrs"].items() if k not in ("startedFromBackupId", "restoreBackupId")
    }
    backup_id = params.get("backupId")
    if backup_id:  # the reconciler restores it before the desktop starts
        backup_rules.restorable(backup_store.get(ctx.conn, backup_id), row, backup_id)
        attrs.update(startedFromBackupId=backup_id, restoreBackupId=backup_id)
    values = {**lifecycle.starting(ctx.now, ctx.caller.user_id), "attrs": attrs}
    return _transition(ctx, row, lifecycle.STARTABLE, values, "start")


def _transition(
    ctx: Context, row: store.Row, states: frozenset[str], values: Params, action: str
) -> Result:
    """Move the session on if it is still in one of ``states``, and wake the reconciler."""
    if not store.transition(ctx.conn, row["session_id"], states, **values):
        raise lifecycle.conflict(row, action)
    row.update(values)
    ctx.install.wake_reconciler(housekeeping=False)
    return {"session": views.session(ctx, row)}


@handler
def list_streaming_sessions(ctx: Context, params: Params) -> Result:
    studio_id = params["studioId"]
    access.studio(ctx.conn, ctx.caller, studio_id)
    owned_by = access.listed_owner(
        ctx.conn, ctx.caller, studio_id, params.get("ownedBy"), "sessions"
    )
    session_ids = _session_ids(params.get("sessionIds"))
    created_by = params.get("createdBy")
    listed, token = listing.page(
        ctx,
        params,
        ("ListStreamingSessions", studio_id, owned_by, created_by, session_ids),
        lambda after, limit: store.listed(
            ctx.conn,
            studio_id,
            owned_by=owned_by,
            created_by=created_by,
            session_ids=session_ids,
            after=after,
            limit=limit,
        ),
    )
    return {"sessions": views.listed_sessions(ctx, listed), "nextToken": token}


def _session_ids(value: str | None) -> list[str] | None:
    if value is None:
        return None
    ids_ = [part.strip() for part in value.split(",") if part.strip()]
    if not ids_ or len(ids_) > 100:
        raise validate.exception(
            [
                (
                    "sessionIds",
                    "Value at 'sessionIds' must be a comma-separated list of 1 to 100 session ids",
                )
            ]
        )
    return ids_
