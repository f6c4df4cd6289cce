"""The operator's pages: the identity store's users (create, disable and enable, reset the
portal password, access keys: list, create, revoke one) and the studios (list, create).

Users are the identity store's, which the API does not model: these pages call the same
domain functions as the ``opennimble users`` and ``keys`` commands (``domain/identity.py``,
``domain/passwords.py``). Studios are created through CreateStudio, with a form made from its
input shape. Only operators see these pages; the server refuses them to anyone else.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import anyio.to_thread
from starlette import requests, responses

from opennimble import errors
from opennimble.domain import identity, passwords
from opennimble.domain.identity import Caller
from opennimble.portal import forms
from opennimble.store import crypto, users

if TYPE_CHECKING:
    from opennimble.portal.app import Portal


class _Refused(Exception):
    """Ends a write transaction without committing it."""


def _guard(portal: Portal, request: requests.Request) -> Caller | responses.Response:
    caller = portal.caller(request)
    if caller is None:
        return responses.RedirectResponse(request.url_for("signin"), status_code=303)
    with portal.db.read() as conn:
        user = users.get_user(conn, caller.user_id)
    if not caller.operator or user is None or user["disabled"]:
        return portal.render(
            request,
            "error.html",
            status=403,
            caller=caller,
            message="Only an operator may manage the installation's users and studios.",
        )
    return caller


async def _posted(portal: Portal, request: requests.Request) -> tuple[Caller, Any] | Any:
    """The operator and the form they posted (CSRF checked), or the answer refusing it."""
    checked = await portal.checked_form(request)
    if isinstance(checked, responses.Response):
        return checked
    guarded = await anyio.to_thread.run_sync(_guard, portal, request)
    if isinstance(guarded, responses.Response):
        return guarded
    return guarded, checked[1]


def _users_page(
    portal: Portal,
    request: requests.Request,
    caller: Caller,
    problems: dict[str, str] | None = None,
    values: dict[str, Any] | None = None,
    status: int = 200,
) -> responses.Response:
    with portal.db.read() as conn:
        found = identity.list_users(conn)
    return portal.render(
        request,
        "users.html",
        status=status,
        caller=caller,
        users=found,
        problems=problems or {},
        values=values or {},
        error=request.query_params.get("error"),
    )


def users_page(portal: Portal, request: requests.Request) -> responses.Response:
    guarded = _guard(portal, request)
    if isinstance(guarded, responses.Response):
        return guarded
    return _users_page(portal, request, guarded)


async def create_user(portal: Portal, request: requests.Request) -> responses.Response:
    checked = await _posted(portal, request)
    if isinstance(checked, responses.Response):
        return checked
    guarded, form = checked
    name = str(form.get("name") or "").strip()
    password = str(form.get("password") or "")
    operator = form.get("operator") is not None

    def create() -> dict[str, str]:
        problems: dict[str, str] = {}
        if password:
            try:
                passwords.check_new(password)
            except ValueError as exc:
                problems["password"] = str(exc)
        try:
            with portal.db.write() as conn:
                try:
                    identity.create_user(conn, name, operator, portal.now())
                except (ValueError, identity.UserExists) as exc:
                    problems["name"] = f"name: {exc}"
                if problems:
                    raise _Refused  # nothing of it is committed
                if password:
                    passwords.set_password(conn, name, password)
        except _Refused:
            pass
        return problems

    problems = await anyio.to_thread.run_sync(create)
    if problems:
        values = {"name": name, "operator": operator}
        return await anyio.to_thread.run_sync(
            lambda: _users_page(portal, request, guarded, problems, values, 400)
        )
    return responses.RedirectResponse(request.url_for("user", user_id=_id(portal, name)), 303)


def _id(portal: Portal, name: str) -> str:
    with portal.db.read() as conn:
        return str(identity.find_user(conn, name)["user_id"])


def user_page(
    portal: Portal,
    request: requests.Request,
    secret: dict[str, str] | None = None,
    problems: dict[str, str] | None = None,
    status: int = 200,
) -> responses.Response:
    guarded = _guard(portal, request)
    if isinstance(guarded, responses.Response):
        return guarded
    with portal.db.read() as conn:
        try:
            user = identity.find_user(conn, request.path_params["user_id"])
        except LookupError as exc:
            return portal.render(request, "error.html", 404, caller=guarded, message=str(exc))
        shown = identity.describe_user(conn, user)
        keys = identity.list_keys(conn, user["user_id"])
    return portal.render(
        request,
        "user.html",
        status=status,
        caller=guarded,
        user=shown,
        keys=keys,
        secret=secret,
        problems=problems or {},
        error=request.query_params.get("error"),
    )


async def user_action(portal: Portal, request: requests.Request) -> responses.Response:
    """disable, enable, password (reset), key (create one: its secret is shown once), revoke."""
    checked = await _posted(portal, request)
    if isinstance(checked, responses.Response):
        return checked
    form = checked[1]
    user_id = request.path_params["user_id"]
    action = request.path_params["action"]
    back = request.url_for("user", user_id=user_id)

    def act() -> Any:
        with portal.db.write() as conn:
            if action in ("disable", "enable"):
                identity.set_disabled(conn, user_id, action == "disable")
            elif action == "password":
                try:
                    passwords.set_password(conn, user_id, str(form.get("password") or ""))
                except ValueError as exc:
                    return {"password": str(exc)}
            elif action == "key":
                cipher = crypto.Cipher(portal.secret)
                return identity.create_access_key(conn, cipher, user_id, portal.now())
            elif action == "revoke":
                key = users.get_key(conn, str(form.get("accessKeyId") or ""))
                if key is None or key["user_id"] != user_id:
                    raise LookupError("no such access key of this user")
                identity.delete_access_key(conn, key["access_key_id"])
            else:
                raise LookupError(f"no action {action!r}")
        return None

    try:
        done = await anyio.to_thread.run_sync(act)
    except LookupError as exc:
        return responses.RedirectResponse(back.include_query_params(error=str(exc)), 303)
    if action == "key":
        return await anyio.to_thread.run_sync(lambda: user_page(portal, request, secret=done))
    if done:
        return await anyio.to_thread.run_sync(
            lambda: user_page(portal, request, problems=done, status=400)
        )
    return responses.RedirectResponse(back, status_code=303)


async def studios_page(portal: Portal, request: requests.Request) -> responses.Response:
    """GET: the studios and a new studio's form; POST: CreateStudio."""
    posted = None
    if request.method == "POST":
        checked = await _posted(portal, request)
        if isinstance(checked, responses.Response):
            return checked
        caller, posted = checked
    else:
        guarded = await anyio.to_thread.run_sync(_guard, portal, request)
        if isinstance(guarded, responses.Response):
            return guarded
        caller = guarded
    operation = portal.operations["CreateStudio"]
    values: dict[str, Any] = {}
    problems: list[tuple[str, str]] = []
    status = 200
    if posted is not None:
        values = forms.parse(operation.input, posted)
        try:
            await anyio.to_thread.run_sync(lambda: portal.invoke(caller, "CreateStudio", **values))
        except errors.ServiceError as exc:
            problems, status = forms.problems(exc), exc.status
        else:
            return responses.RedirectResponse(request.url_for("studios"), status_code=303)

    def show() -> responses.Response:
        found = portal.listed(caller, "ListStudios", "studios")
        fields, unplaced = forms.build(operation.input, values, None, problems)
        return portal.render(
            request,
            "studios.html",
            status=status,
            caller=caller,
            studios=found,
            fields=fields,
            error="; ".join(unplaced) or request.query_params.get("error"),
        )

    return await anyio.to_thread.run_sync(show)
