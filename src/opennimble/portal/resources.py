"""The studio administrator's pages for launch profiles, streaming images and studio
components: a list (with Delete) and a form to create or edit one.

The forms come from the operations' input shapes (``forms``), and what is posted goes to the
operation itself (Create*, Update*, Delete*) for the signed-in user: the model's constraints
and the domain's rules (references to the studio's images and components, persistence and
backup settings, quotas, personas) are the API's, and each problem it names is shown next to
its field.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any

import anyio.to_thread
from starlette import requests, responses

from opennimble import errors
from opennimble.domain.identity import Caller
from opennimble.portal import admin, forms

if TYPE_CHECKING:
    from opennimble.portal.app import Portal


@dataclasses.dataclass(frozen=True)
class Kind:
    """A kind of studio resource as its pages see it; the operations are named after
    ``resource`` (CreateLaunchProfile, ListLaunchProfiles, ...)."""

    slug: str  # in the URL
    resource: str  # the model's name: LaunchProfile
    noun: str
    # form path -> (listing operation, its items' key, their id key): what a list field picks from
    choices: dict[str, tuple[str, str, str]] = dataclasses.field(default_factory=dict)
    defaults: dict[str, Any] = dataclasses.field(default_factory=dict)  # a new one's form

    @property
    def key(self) -> str:
        return self.resource[0].lower() + self.resource[1:]

    @property
    def id_key(self) -> str:
        return self.key + "Id"

    @property
    def list_key(self) -> str:
        return self.key + "s"

    def op(self, verb: str) -> str:
        return verb + self.resource + ("s" if verb == "List" else "")


KINDS = {
    kind.slug: kind
    for kind in (
        Kind(
            "launch-profiles",
            "LaunchProfile",
            "launch profile",
            choices={
                "streamConfiguration.streamingImageIds": (
                    "ListStreamingImages",
                    "streamingImages",
                    "streamingImageId",
                ),
                "studioComponentIds": (
                    "ListStudioComponents",
                    "studioComponents",
                    "studioComponentId",
                ),
            },
            defaults={
                "launchProfileProtocolVersions": ["2021-03-31"],
                "streamConfiguration": {"clipboardMode": "ENABLED"},
            },
        ),
        Kind("streaming-images", "StreamingImage", "streaming image"),
        Kind(
            "studio-components",
            "StudioComponent",
            "studio component",
            defaults={"type": "CUSTOM"},
        ),
    )
}


def _kind(request: requests.Request) -> Kind | None:
    return KINDS.get(request.path_params["kind"])


def _not_found(portal: Portal, request: requests.Request, caller: Caller) -> responses.Response:
    return portal.render(
        request, "error.html", status=404, caller=caller, message="There is no such page."
    )


def listing(portal: Portal, request: requests.Request) -> responses.Response:
    guarded = admin.guard(portal, request)
    if isinstance(guarded, responses.Response):
        return guarded
    caller, studio = guarded
    kind = _kind(request)
    if kind is None:
        return _not_found(portal, request, caller)
    items = portal.listed(caller, kind.op("List"), kind.list_key, studioId=studio["studioId"])
    return portal.render(
        request,
        "resources.html",
        caller=caller,
        studio=studio,
        kind=kind,
        items=[i for i in items if i["state"] != "DELETED"],
        error=request.query_params.get("error"),
    )


async def form_page(portal: Portal, request: requests.Request) -> responses.Response:
    """GET: the form of a new resource (``resource_id`` absent) or of an existing one; POST:
    create or update it through the API, and show the form again with its problems if it
    refuses."""
    if request.method == "POST":
        checked = await portal.checked_form(request)
        if isinstance(checked, responses.Response):
            return checked
        posted = checked[1]
    guarded = await anyio.to_thread.run_sync(admin.guard, portal, request)
    if isinstance(guarded, responses.Response):
        return guarded
    caller, studio = guarded
    kind = _kind(request)
    if kind is None:
        return _not_found(portal, request, caller)
    resource_id = request.path_params.get("resource_id")
    operation = portal.operations[kind.op("Update" if resource_id else "Create")]
    ids = {"studioId": studio["studioId"]}
    if resource_id:
        ids[kind.id_key] = resource_id

    def show(values: dict[str, Any], problems: list[tuple[str, str]], status: int) -> Any:
        choices = _choices(portal, caller, kind, studio["studioId"])
        fields, unplaced = forms.build(operation.input, values, choices, problems)
        return portal.render(
            request,
            "resource_form.html",
            status=status,
            caller=caller,
            studio=studio,
            kind=kind,
            resource_id=resource_id,
            fields=fields,
            error="; ".join(unplaced) or None,
        )

    if request.method == "GET":
        try:
            values = (
                portal.invoke(caller, kind.op("Get"), **ids)[kind.key]
                if resource_id
                else kind.defaults
            )
        except errors.ServiceError as exc:
            return portal.render(
                request, "error.html", status=exc.status, caller=caller, message=admin.refusal(exc)
            )
        return await anyio.to_thread.run_sync(show, values, [], 200)
    params = forms.parse(operation.input, posted)
    try:
        await anyio.to_thread.run_sync(
            lambda: portal.invoke(caller, operation.name, **ids, **params)
        )
    except errors.ServiceError as exc:
        return await anyio.to_thread.run_sync(show, params, forms.problems(exc), exc.status)
    return responses.RedirectResponse(
        request.url_for("resources", studio_id=studio["studioId"], kind=kind.slug), status_code=303
    )


def _choices(
    portal: Portal, caller: Caller, kind: Kind, studio_id: str
) -> dict[str, list[tuple[str, str]]]:
    """What each list field of ``kind`` picks from: the studio's resources that are not being
    deleted, by name."""
    found = {}
    for path, (operation, key, id_key) in kind.choices.items():
        items = portal.listed(caller, operation, key, studioId=studio_id)
        found[path] = [
            (i[id_key], f"{i['name']} ({i[id_key]})")
            for i in items
            if i["state"] not in ("DELETED", "DELETE_IN_PROGRESS")
        ]
    return found


async def delete(portal: Portal, request: requests.Request) -> responses.Response:
    checked = await portal.checked_form(request)
    if isinstance(checked, responses.Response):
        return checked
    caller = checked[0]
    studio_id = request.path_params["studio_id"]
    kind = _kind(request)
    if kind is None:
        return _not_found(portal, request, caller)
    url = request.url_for("resources", studio_id=studio_id, kind=kind.slug)
    ids = {"studioId": studio_id, kind.id_key: request.path_params["resource_id"]}
    try:
        await anyio.to_thread.run_sync(lambda: portal.invoke(caller, kind.op("Delete"), **ids))
    except errors.ServiceError as exc:
        url = url.include_query_params(error=admin.refusal(exc))
    return responses.RedirectResponse(url, status_code=303)
