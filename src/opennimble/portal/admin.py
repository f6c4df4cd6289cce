"""The studio administrator's page: launch profile members (add by user name, remove), and
launching sessions on a member's behalf (on Home). Shown only to the operator and the studio's
ADMINISTRATORs (the same rule as the API's, ``access.is_admin``); the operations refuse
everyone else anyway."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import anyio.to_thread
from starlette import requests, responses

from opennimble import errors
from opennimble.domain import access, identity
from opennimble.domain.identity import Caller
from opennimble.store import audit as audit_store
from opennimble.store import users

AUDIT_PAGE = 200  # entries the audit page shows

if TYPE_CHECKING:
    from opennimble.portal.app import Portal


def refusal(exc: errors.ServiceError) -> str:
    """The API's refusal, as the page shows it."""
    return f"{exc.code or type(exc).__name__}: {exc.message}"


def is_admin(portal: Portal, caller: Caller, studio_id: str) -> bool:
    with portal.db.read() as conn:
        return access.is_admin(conn, caller, studio_id)


def user_id_of(portal: Portal, name: str) -> str:
    """The id of the user named ``name``; a ValidationException naming the field otherwise."""
    with portal.db.read() as conn:
        user = users.get_user_by_name(conn, name.strip())
    if user is None:
        raise errors.ValidationException(
            f"userName: no user named {name.strip()!r} in the identity store",
            context={"fields": "userName"},
        )
    return str(user["user_id"])


def _admin_studio(
    portal: Portal, request: requests.Request, what: str
) -> tuple[Caller, dict[str, Any]] | responses.Response:
    """The signed-in caller and the studio of the page, if they administer it; otherwise the
    answer to give (sign in, or refused saying why)."""
    caller = portal.caller(request)
    if caller is None:
        return responses.RedirectResponse(request.url_for("signin"), status_code=303)
    studio_id = request.path_params["studio_id"]
    try:
        studio = portal.invoke(caller, "GetStudio", studioId=studio_id)["studio"]
    except errors.ServiceError as exc:
        return portal.render(
            request, "error.html", status=exc.status, caller=caller, message=refusal(exc)
        )
    if not is_admin(portal, caller, studio_id):
        return portal.render(
            request,
            "error.html",
            status=403,
            caller=caller,
            message=f"Only the operator and the studio's administrators may {what}.",
        )
    return caller, studio


def guard(
    portal: Portal, request: requests.Request
) -> tuple[Caller, dict[str, Any]] | responses.Response:
    """The signed-in caller and the studio of the URL if the caller administers it (the API's
    rule, ``access.is_admin``); otherwise the answer refusing the page."""
    return _admin_studio(portal, request, "manage this studio")


def studio_page(portal: Portal, request: requests.Request) -> responses.Response:
    checked = _admin_studio(portal, request, "manage this studio")
    if isinstance(checked, responses.Response):
        return checked
    caller, studio = checked
    studio_id = studio["studioId"]
    profiles = portal.invoke(caller, "ListLaunchProfiles", studioId=studio_id)["launchProfiles"]
    for profile in profiles:
        found = portal.invoke(
            caller,
            "ListLaunchProfileMembers",
            studioId=studio_id,
            launchProfileId=profile["launchProfileId"],
        )["members"]
        profile["members"] = [{**m, "name": _name(portal, m["principalId"])} for m in found]
    return portal.render(
        request,
        "studio.html",
        caller=caller,
        studio=studio,
        profiles=profiles,
        error=request.query_params.get("error"),
    )


def audit_page(portal: Portal, request: requests.Request) -> responses.Response:
    """The studio's audit trail, newest first (the latest AUDIT_PAGE entries)."""
    checked = _admin_studio(portal, request, "read this studio's audit trail")
    if isinstance(checked, responses.Response):
        return checked
    caller, studio = checked
    filters = audit_store.Filters(studio_id=studio["studioId"], limit=AUDIT_PAGE)
    with portal.db.read() as conn:
        entries = audit_store.read(conn, filters)[::-1]
    return portal.render(request, "audit.html", caller=caller, studio=studio, entries=entries)


def _name(portal: Portal, user_id: str) -> str:
    with portal.db.read() as conn:
        user = users.get_user(conn, user_id)
    return str(user["name"]) if user else f"{user_id} (no longer in the identity store)"


async def members(portal: Portal, request: requests.Request) -> responses.Response:
    """Add (``userName``) or remove (``principalId``) a launch profile member."""
    checked = await portal.checked_form(request)
    if isinstance(checked, responses.Response):
        return checked
    caller, form = checked
    studio_id = request.path_params["studio_id"]
    profile_id = request.path_params["launch_profile_id"]

    def change() -> None:
        ids = {"studioId": studio_id, "launchProfileId": profile_id}
        if form.get("principalId"):
            portal.invoke(
                caller, "DeleteLaunchProfileMember", principalId=str(form["principalId"]), **ids
            )
            return
        user_id = user_id_of(portal, str(form.get("userName", "")))
        with portal.db.write() as conn:  # the identity store's id is made on first use
            store_id = identity.identity_store_id(conn)
        portal.invoke(
            caller,
            "PutLaunchProfileMembers",
            identityStoreId=store_id,
            members=[{"principalId": user_id, "persona": "USER"}],
            **ids,
        )

    url = request.url_for("studio", studio_id=studio_id)
    try:
        await anyio.to_thread.run_sync(change)
    except errors.ServiceError as exc:
        url = url.include_query_params(error=refusal(exc))
    return responses.RedirectResponse(url, status_code=303)


def owner(portal: Portal, form: Any) -> dict[str, str]:
    """``ownedBy`` for a launch on a member's behalf (an admin's Launch form), if asked."""
    name = str(form.get("ownerName") or "").strip()
    return {"ownedBy": user_id_of(portal, name)} if name else {}
