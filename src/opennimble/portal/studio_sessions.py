"""All sessions of a studio, for its administrators: filters (owner, state, launch profile),
newest first, in keyset pages (each page costs the same however many sessions the studio has).

The store finds the page's session ids (the API's ListStreamingSessions has no state or launch
profile filter); the sessions themselves are read through ListStreamingSessions for the
signed-in user, so what is shown, and whether it may be, is the API's. Stop, Start and Delete
are the session cards' own actions (the API's operations).

The rows are live: the page's script follows ``live_rows`` (server-sent events), which sends the
table's body again when a session of the studio changed and the page looks different.
"""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

import anyio.to_thread
from starlette import datastructures, requests, responses

from opennimble import errors
from opennimble.domain.identity import Caller
from opennimble.portal import admin, cards, csrf, live
from opennimble.store import changes, paging, users
from opennimble.store import sessions as store

if TYPE_CHECKING:
    from opennimble.portal.app import Portal

PAGE = 50  # sessions per page


def states(portal: Portal) -> list[str]:
    """The model's session states."""
    view = portal.operations["GetStreamingSession"].output.members["session"].shape
    return sorted(view.members["state"].shape.enum)


@dataclasses.dataclass
class Listing:
    """One page of the studio's sessions as the query of the page's URL asks for it."""

    filters: dict[str, str]
    problems: dict[str, str]
    after: paging.Key | None
    rows: list[dict[str, Any]]
    next_key: paging.Key | None


def page(portal: Portal, request: requests.Request) -> responses.Response:
    guarded = admin.guard(portal, request)
    if isinstance(guarded, responses.Response):
        return guarded
    caller, studio = guarded
    studio_id = studio["studioId"]
    listing = _listing(portal, caller, studio_id, request.query_params)
    profiles = portal.listed(caller, "ListLaunchProfiles", "launchProfiles", studioId=studio_id)
    _decorate(listing.rows, profiles, caller)
    next_url = None
    if listing.next_key is not None:
        key = listing.next_key
        next_url = request.url.include_query_params(after=f"{key[0]}~{key[1]}")
    live = request.url_for("studio_sessions_live", studio_id=studio_id)
    return portal.render(
        request,
        "studio_sessions.html",
        caller=caller,
        studio=studio,
        sessions=listing.rows,
        filters=listing.filters,
        problems=listing.problems,
        states=states(portal),
        profiles=profiles,
        next_url=next_url,
        first_url=request.url.remove_query_params("after") if listing.after else None,
        here=_here(request.url.path, request.url.query),
        live_url=str(live) + ("?" + request.url.query if request.url.query else ""),
        error=request.query_params.get("error"),
    )


async def live_rows(portal: Portal, request: requests.Request) -> responses.Response:
    """The page's rows, live: server-sent events with the table body's new HTML whenever a
    session of the page changed state (or one entered or left the page)."""
    guarded = await anyio.to_thread.run_sync(admin.guard, portal, request)
    if isinstance(guarded, responses.Response):
        return responses.PlainTextResponse("Not an administrator of this studio", 403)
    caller, studio = guarded
    return responses.StreamingResponse(
        _changes(portal, request, caller, studio["studioId"]),
        media_type="text/event-stream",
        headers={"cache-control": "no-store", "x-accel-buffering": "no"},
    )


async def _changes(
    portal: Portal, request: requests.Request, caller: Caller, studio_id: str
) -> AsyncIterator[bytes]:
    """Reads nothing while nothing changes: waits on the process's change hub for a change of
    this studio (or of access), then reads the page again as the page itself does (one keyset
    page and ListStreamingSessions) and sends the rows when they look different."""
    query = request.query_params
    page_url = request.url_for("studio_sessions", studio_id=studio_id)
    here = _here(page_url.path, request.url.query)
    topics = (studio_id, changes.ACCESS)
    sent = None
    version = portal.changes.mark()
    while True:
        try:
            html = await anyio.to_thread.run_sync(
                _rows_html, portal, request, caller, studio_id, query, here
            )
        except errors.ServiceError:
            return  # no longer allowed: the page's next load says why
        if html != sent:
            sent = html
            yield live.event("rows", {"html": html})
        while True:
            moved = await portal.changes.wait(version, topics, live.KEEPALIVE)
            if moved != version:
                break
            yield live.KEEPALIVE_LINE
        if portal.changes.moved(version, (changes.ACCESS,)):
            again = await anyio.to_thread.run_sync(admin.is_admin, portal, caller, studio_id)
            if not again:
                return
        version = moved


def _rows_html(
    portal: Portal,
    request: requests.Request,
    caller: Caller,
    studio_id: str,
    query: datastructures.QueryParams,
    here: str,
) -> str:
    listing = _listing(portal, caller, studio_id, query)
    profiles = portal.listed(caller, "ListLaunchProfiles", "launchProfiles", studioId=studio_id)
    _decorate(listing.rows, profiles, caller)
    return portal.templates.get_template("studio_session_rows.html").render(
        sessions=listing.rows,
        filters=listing.filters,
        here=here,
        csrf_token=csrf.token(request.session),
        csrf_field=csrf.FIELD,
        url_for=request.url_for,
    )


def _here(path: str, query: str) -> str:
    """Where the rows' forms come back to: the page with its query."""
    return path + ("?" + query if query else "")


def _listing(
    portal: Portal, caller: Caller, studio_id: str, query: datastructures.QueryParams
) -> Listing:
    """The page of sessions the URL's query (filters, ``after``) asks for, or its problems."""
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
    if problems:
        return Listing(filters, problems, after, [], None)
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
    return Listing(filters, problems, after, rows, found.next_key)


def _decorate(rows: list[dict[str, Any]], profiles: list[dict[str, Any]], caller: Caller) -> None:
    """The launch profiles' names, and the actions each row offers."""
    names = {p["launchProfileId"]: p["name"] for p in profiles}
    for row in rows:
        row["profileName"] = names.get(row["launchProfileId"], row["launchProfileId"])
        row["actions"] = [
            a for a in cards.actions(row) if a != "open" or row["ownedBy"] == caller.user_id
        ]


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
