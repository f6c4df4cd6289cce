"""CreateStreamingSessionStream, GetStreamingSessionStream."""

from __future__ import annotations

from opennimble import clock, errors
from opennimble.api import views
from opennimble.api.context import Context
from opennimble.api.registry import Params, Result, handler
from opennimble.domain import ids, lifecycle
from opennimble.domain import sessions as rules
from opennimble.store import streams

DEFAULT_EXPIRATION_SECONDS = 120


@handler
def create_streaming_session_stream(ctx: Context, params: Params) -> Result:
    session_id = params["sessionId"]
    session = rules.requested(ctx.conn, ctx.caller, params["studioId"], session_id)
    if session["state"] != "READY":
        raise lifecycle.conflict(session, "create a stream into")
    seconds = params.get("expirationInSeconds") or DEFAULT_EXPIRATION_SECONDS
    stream = {
        "stream_id": ids.resource_id(),
        "session_id": session_id,
        "studio_id": params["studioId"],
        "created_by": ctx.caller.user_id,
        "owned_by": session["owned_by"],
        "created_at": ctx.now,
        "expires_at": ctx.now + seconds * clock.SECOND,
        "state": "READY",
        "status_code": "STREAM_READY",
    }
    streams.insert(ctx.conn, stream)
    return {"stream": views.stream(ctx, stream, ctx.now)}


@handler
def get_streaming_session_stream(ctx: Context, params: Params) -> Result:
    session_id = params["sessionId"]
    rules.requested(ctx.conn, ctx.caller, params["studioId"], session_id)
    stream = streams.get(ctx.conn, params["streamId"], session_id)
    if stream is None:
        raise errors.not_found("Stream", params["streamId"])
    return {"stream": views.stream(ctx, stream, ctx.now)}
