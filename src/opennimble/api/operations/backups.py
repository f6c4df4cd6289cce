"""GetStreamingSessionBackup, ListStreamingSessionBackups (see :mod:`opennimble.domain.backups`).

Backups are taken by the reconciler when a session stops; StartStreamingSession restores one.
"""

from __future__ import annotations

from opennimble.api import listing, views
from opennimble.api.context import Context
from opennimble.api.registry import Params, Result, handler
from opennimble.domain import access
from opennimble.domain import backups as rules
from opennimble.store import backups as store


@handler
def get_streaming_session_backup(ctx: Context, params: Params) -> Result:
    studio_id, backup_id = params["studioId"], params["backupId"]
    row = store.get(ctx.conn, backup_id, studio_id)
    row = rules.readable(ctx.conn, ctx.caller, studio_id, row, backup_id)
    return {"streamingSessionBackup": views.backup(ctx, row)}


@handler
def list_streaming_session_backups(ctx: Context, params: Params) -> Result:
    """A studio's backups, oldest first; a non-admin sees those of the sessions it owns."""
    studio_id = params["studioId"]
    access.studio(ctx.conn, ctx.caller, studio_id)
    owned_by = access.listed_owner(
        ctx.conn, ctx.caller, studio_id, params.get("ownedBy"), "streaming session backups"
    )
    rows, token = listing.page(
        ctx,
        params,
        ("ListStreamingSessionBackups", studio_id, owned_by),
        lambda after, limit: store.page(
            ctx.conn, studio_id, owned_by=owned_by, after=after, limit=limit
        ),
    )
    return {"streamingSessionBackups": [views.backup(ctx, r) for r in rows], "nextToken": token}
