"""All sessions of a studio, for its administrators: filters (owner, state, launch profile),
newest first, in keyset pages (each page costs the same however many sessions the studio has).

The store finds the page's session ids (the API's ListStreamingSessions has no state or launch
profile filter); the sessions themselves are read through ListStreamingSessions for the
signed-in user, so what is shown, and whether it may be, is the API's. Stop, Start and Delete
are the session cards' own actions (the API's operations).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from starlette import requests, responses

from opennimble import errors
from opennimble.domain.identity import Caller
from opennimble.portal import admin, cards
from opennimble.store import paging, users
from opennimble.store import sessions as store

if TYPE_CHECKING:
    from opennimble.portal.app import Portal

PAGE = 50  # sessions per page


def states(portal: Portal) -> list[str]:
    """The model's session states."""
    view = portal.operations["GetStreamingSession"].output.members["session"].shape
    return sorted(view.members["state"].shape.enum)


def page(portal: Portal, request: requests.Request) -> responses.Response:
    guarded = admin.guard(portal, request)
    if isinstance(guarded, responses.Response):
        return guarded
    caller, studio = guarded
    studio_id = studio["studioId"]
    query = request.query_params
    filters = {k: query.get(k, "").strip() for k in ("owner", "state", "launchProfileId")}
    known = states(portal)
    problems: dict[str, str] = {}
    owner = None
    if filters["owner"]:
        try:
            owner = admin.user_id_of(portal, filters["owner"])
        except errors.ValidationException:
            problems["owner"] = f"No user named {filters['owner']!r}"
    if filters["state"] and filters["state"] not in known:
        problems["state"] = f"Not a session state: {filters['state']!r}"
    after = _key(query.get("after", ""))
    if query.get("after") and after is None:
        problems["after"] = "This page link is not valid: start again from the first page"
    profiles = portal.listed(caller, "ListLaunchProfiles", "launchProfiles", studioId=studio_id)
    rows: list[dict[str, Any]] = []
    next_key = None
    if not problems:
        wanted = [filters["state"]] if filters["state"] else [s for s in known if s != "DELETED"]
        with portal.db.read() as conn:
            found = store.page(
                conn,
                studio_id,
                owned_by=owner,
                created_by=None,
                session_ids=None,
                after=after,
                limit=PAGE,
                states=wanted,
                launch_profile_id=filters["launchProfileId"] or None,
                newest_first=True,
            )
        rows = _views(portal, caller, studio_id, [r["session_id"] for r in found.rows])
        next_key = found.next_key
    names = {p["launchProfileId"]: p["name"] for p in profiles}
    for row in rows:
        row["profileName"] = names.get(row["launchProfileId"], row["launchProfileId"])
        row["actions"] = [
            a for a in cards.actions(row) if a != "open" or row["ownedBy"] == caller.user_id
        ]
    next_url = None
    if next_key is not None:
        next_url = request.url.include_query_params(after=f"{next_key[0]}~{next_key[1]}")
    return portal.render(
        request,
        "studio_sessions.html",
        caller=caller,
        studio=studio,
        sessions=rows,
        filters=filters,
        problems=problems,
        states=known,
        profiles=profiles,
        next_url=next_url,
        first_url=request.url.remove_query_params("after") if after else None,
        here=str(request.url.path) + ("?" + request.url.query if request.url.query else ""),
        error=request.query_params.get("error"),
    )


def _key(text: str) -> paging.Key | None:
    created, _, ident = text.partition("~")
    return (int(created), ident) if created.isdigit() and ident else None


def _views(
    portal: Portal, caller: Caller, studio_id: str, session_ids: list[str]
) -> list[dict[str, Any]]:
    """The API's views of ``session_ids`` in that order, with their people's names."""
    if not session_ids:
        return []
    listed = portal.invoke(
        caller, "ListStreamingSessions", studioId=studio_id, sessionIds=",".join(session_ids)
    )["sessions"]
    by_id = {s["sessionId"]: s for s in listed}
    names: dict[str, str] = {}
    with portal.db.read() as conn:
        for s in listed:
            for user_id in (s["ownedBy"], s["createdBy"]):
                if user_id not in names:
                    user = users.get_user(conn, user_id)
                    names[user_id] = str(user["name"]) if user else user_id
    rows = []
    for session_id in session_ids:
        if session_id in by_id:
            s = by_id[session_id]
            rows.append(
                {
                    **s,
                    "studioId": studio_id,
                    "ownerName": names[s["ownedBy"]],
                    "creatorName": names[s["createdBy"]],
                }
            )
    return rows
