"""EULAs: ListEulas, GetEula (any user), AcceptEulas, ListEulaAcceptances (per studio).

The catalogue is the installation's (settings ``[eulas.ID]``, see
:mod:`opennimble.domain.eulas`). A user accepts EULAs for themselves in a studio; studio
administrators see every acceptance of their studio, other members only their own.
"""

from __future__ import annotations

from typing import Any

from opennimble import errors
from opennimble.api import listing
from opennimble.api.context import Context
from opennimble.api.registry import Params, Result, handler
from opennimble.domain import access, ids
from opennimble.protocol import validate
from opennimble.store import eulas

Row = dict[str, Any]


def _eula(row: Row) -> Row:
    return {
        "eulaId": row["eula_id"],
        "name": row["name"],
        "content": row["content"],
        "createdAt": row["created_at"],
        "updatedAt": row["updated_at"],
    }


def _acceptance(row: Row) -> Row:
    return {
        "eulaAcceptanceId": row["eula_acceptance_id"],
        "eulaId": row["eula_id"],
        "acceptedAt": row["created_at"],
        "acceptedBy": row["accepted_by"],
        "accepteeId": row["studio_id"],
    }


@handler
def list_eulas(ctx: Context, params: Params) -> Result:
    wanted = params.get("eulaIds")
    rows, token = listing.page(
        ctx,
        params,
        ("ListEulas", wanted),
        lambda after, limit: eulas.page(ctx.conn, wanted, after, limit),
    )
    return {"eulas": [_eula(r) for r in rows], "nextToken": token}


@handler
def get_eula(ctx: Context, params: Params) -> Result:
    row = eulas.get(ctx.conn, params["eulaId"])
    if row is None:
        raise errors.not_found("EULA", params["eulaId"])
    return {"eula": _eula(row)}


def _check_known(ctx: Context, eula_ids: list[str]) -> None:
    if not eula_ids:
        raise validate.exception([("eulaIds", "Value at 'eulaIds' must name at least one EULA")])
    problems: list[validate.Problem] = []
    for i, eula_id in enumerate(eula_ids, start=1):
        if eulas.get(ctx.conn, eula_id) is None:
            path = f"eulaIds.{i}.member"
            problems.append(
                (path, f"Value '{eula_id}' at '{path}' is not a EULA of this installation")
            )
    if problems:
        raise validate.exception(problems)


@handler
def accept_eulas(ctx: Context, params: Params) -> Result:
    studio_id = params["studioId"]
    access.studio(ctx.conn, ctx.caller, studio_id)
    wanted = list(dict.fromkeys(params.get("eulaIds") or []))
    _check_known(ctx, wanted)
    done = eulas.accepted(ctx.conn, studio_id, ctx.caller.user_id)
    out = []
    for eula_id in wanted:
        row = done.get(eula_id)
        if row is None:
            row = {
                "eula_acceptance_id": ids.resource_id(),
                "studio_id": studio_id,
                "accepted_by": ctx.caller.user_id,
                "eula_id": eula_id,
                "created_at": ctx.now,
            }
            eulas.accept(ctx.conn, row)
        out.append(_acceptance(row))
    return {"eulaAcceptances": out}


@handler
def list_eula_acceptances(ctx: Context, params: Params) -> Result:
    studio_id = params["studioId"]
    access.studio(ctx.conn, ctx.caller, studio_id)
    mine = None if access.is_admin(ctx.conn, ctx.caller, studio_id) else ctx.caller.user_id
    wanted = params.get("eulaIds")
    rows, token = listing.page(
        ctx,
        params,
        ("ListEulaAcceptances", studio_id, mine, wanted),
        lambda after, limit: eulas.page_acceptances(
            ctx.conn, studio_id, accepted_by=mine, eula_ids=wanted, after=after, limit=limit
        ),
    )
    return {"eulaAcceptances": [_acceptance(r) for r in rows], "nextToken": token}
