"""The portal's ASGI application (Starlette), mounted at ``/portal/`` by the server.

Pages are rendered on the server with Jinja2. Every read and every action is an operation of
the API run by the API's own dispatcher (``invoke``) for the signed-in user: the personas, the
rules and their error messages are the API's. The signed-in user is kept in a signed cookie
(HttpOnly, SameSite=Lax, Secure when the public URL is https); every form carries a CSRF token.
"""

from __future__ import annotations

import functools
import hashlib
import pathlib
from collections.abc import AsyncIterator, Callable
from typing import Any

import anyio.to_thread
from starlette import (
    applications,
    datastructures,
    requests,
    responses,
    routing,
    staticfiles,
    templating,
)
from starlette.middleware import Middleware
from starlette.middleware.sessions import SessionMiddleware

from opennimble import clock, config, errors
from opennimble.domain import passwords
from opennimble.domain.identity import Caller
from opennimble.portal import (
    admin,
    cards,
    csrf,
    live,
    oidc,
    operator,
    resources,
    studio_sessions,
)
from opennimble.protocol import model
from opennimble.store import changes as changes_hub
from opennimble.store import database, users
from opennimble.store import sessions as sessions_store
from opennimble.store import streams as streams_store

Invoke = Callable[[model.Operation, Caller, dict[str, Any]], dict[str, Any]]

HERE = pathlib.Path(__file__).parent
USER_KEY = "user_id"
NEXT_KEY = "oidc_next"  # the portal page an OpenID Connect sign-in goes on to


class Portal:
    """The portal; ``invoke`` runs an API operation for a caller (the API's dispatcher);
    its live pages wait on ``changes``, the process's change hub."""

    def __init__(
        self,
        db: database.Database,
        invoke: Invoke,
        *,
        secret: bytes,
        public_url: str,
        changes: changes_hub.Hub,
        now: clock.Now = clock.system_now,
        oidc_settings: config.OidcSetting | None = None,
    ) -> None:
        self.db = db
        self.changes = changes
        self.secret = secret  # the installation key (access keys' secrets are sealed with it)
        self._invoke = invoke
        self.now = now
        self.operations = model.operations()
        self.templates = templating.Jinja2Templates(directory=HERE / "templates")
        self.templates.env.globals["csrf_field"] = csrf.FIELD
        self.templates.env.globals["card_actions"] = cards.actions
        self.templates.env.filters["when"] = cards.when
        # sign-in with an OpenID Connect provider, when the settings name one
        self.oidc = (
            oidc.Provider(oidc_settings, db, public_url=public_url, now=now)
            if oidc_settings is not None
            else None
        )
        self.templates.env.globals["oidc_name"] = self.oidc.name if self.oidc else None
        key = hashlib.sha256(b"opennimble portal session\0" + secret).hexdigest()
        self.app = applications.Starlette(
            routes=[routing.Mount("/portal", routes=self._routes())],
            middleware=[
                Middleware(
                    SessionMiddleware,
                    secret_key=key,
                    session_cookie="opennimble_portal",
                    same_site="lax",
                    https_only=public_url.startswith("https://"),
                    path="/portal",
                    max_age=12 * 3600,
                )
            ],
        )

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        await self.app(scope, receive, send)

    def _page(
        self, path: str, handler: Any, name: str, methods: list[str] | None = None
    ) -> routing.Route:
        """A route to a page handler of another portal module (they take the portal first)."""
        return routing.Route(path, functools.partial(handler, self), methods=methods, name=name)

    def _routes(self) -> list[routing.BaseRoute]:
        return [
            routing.Route("/", self.home, name="home"),
            routing.Mount(
                "/static", staticfiles.StaticFiles(directory=HERE / "static"), name="static"
            ),
            routing.Route("/signin", self.signin_page, name="signin"),
            routing.Route("/signin", self.signin, methods=["POST"]),
            routing.Route("/signin/oidc", self.oidc_start, methods=["POST"], name="oidc"),
            routing.Route("/signin/oidc/callback", self.oidc_callback, name="oidc_callback"),
            routing.Route("/signout", self.signout, methods=["POST"], name="signout"),
            routing.Route("/launch", self.launch, methods=["POST"], name="launch"),
            routing.Route("/sessions", self.sessions_page, name="sessions"),
            routing.Route("/sessions/events", self.events, name="events"),
            self._page("/studios/{studio_id}", admin.studio_page, "studio"),
            self._page("/studios/{studio_id}/audit", admin.audit_page, "audit"),
            self._page(
                "/studios/{studio_id}/launch-profiles/{launch_profile_id}/members",
                admin.members,
                "members",
                methods=["POST"],
            ),
            self._page("/users", operator.users_page, "users"),
            self._page("/users", operator.create_user, "create_user", methods=["POST"]),
            self._page("/users/{user_id}", operator.user_page, "user"),
            self._page(
                "/users/{user_id}/{action}", operator.user_action, "user_action", methods=["POST"]
            ),
            self._page("/studios", operator.studios_page, "studios", methods=["GET", "POST"]),
            self._page("/studios/{studio_id}/sessions", studio_sessions.page, "studio_sessions"),
            self._page(
                "/studios/{studio_id}/sessions/live",
                studio_sessions.live_rows,
                "studio_sessions_live",
            ),
            self._page("/studios/{studio_id}/{kind}", resources.listing, "resources"),
            self._page(
                "/studios/{studio_id}/{kind}/new",
                resources.form_page,
                "resource_new",
                methods=["GET", "POST"],
            ),
            self._page(
                "/studios/{studio_id}/{kind}/{resource_id}",
                resources.form_page,
                "resource",
                methods=["GET", "POST"],
            ),
            self._page(
                "/studios/{studio_id}/{kind}/{resource_id}/delete",
                resources.delete,
                "resource_delete",
                methods=["POST"],
            ),
            routing.Route("/streams/{stream_id}", self.renew_page, name="renew"),
            routing.Route(
                "/sessions/{studio_id}/{session_id}/{action}",
                self.act,
                methods=["POST"],
                name="act",
            ),
        ]

    # ---- helpers

    def invoke(self, caller: Caller, name: str, /, **params: Any) -> dict[str, Any]:
        return self._invoke(self.operations[name], caller, params)

    def caller(self, request: requests.Request) -> Caller | None:
        user_id = request.session.get(USER_KEY)
        if not user_id:
            return None
        with self.db.read() as conn:
            user = users.get_user(conn, user_id)
        if user is None:
            request.session.clear()
            return None
        client = request.client.host if request.client else None
        return Caller(user["user_id"], user["name"], bool(user["operator"]), client=client)

    def render(
        self, request: requests.Request, template: str, status: int = 200, **context: Any
    ) -> responses.Response:
        context.setdefault("caller", None)
        context["csrf_token"] = csrf.token(request.session)
        return self.templates.TemplateResponse(request, template, context, status_code=status)

    def refused_form(self, request: requests.Request) -> responses.Response:
        return self.render(
            request,
            "error.html",
            status=403,
            message="This form has expired or did not come from this portal (its CSRF token is "
            "missing or wrong). Go back, reload the page and try again.",
        )

    # ---- sign-in

    def signin_page(self, request: requests.Request) -> responses.Response:
        then = request.query_params.get("next", "")
        return self.render(request, "signin.html", error=None, name="", then=then)

    async def signin(self, request: requests.Request) -> responses.Response:
        form = await request.form()
        if not csrf.valid(request.session, form):
            return self.refused_form(request)
        name, password = str(form.get("name", "")), str(form.get("password", ""))
        try:
            caller = await anyio.to_thread.run_sync(self._sign_in, name, password)
        except passwords.SigninRefused as exc:
            then = str(form.get("next", ""))
            return self.render(
                request, "signin.html", status=401, error=str(exc), name=name, then=then
            )
        request.session.clear()  # a new session (and CSRF token) for the signed-in user
        request.session[USER_KEY] = caller.user_id
        return responses.RedirectResponse(_next(request, "home", form.get("next")), 303)

    def _sign_in(self, name: str, password: str) -> Caller:
        with self.db.write() as conn:
            try:
                return passwords.sign_in(conn, name, password, self.now())
            except passwords.SigninRefused as exc:
                refused = exc
        raise refused  # the failure count is committed first

    async def oidc_start(self, request: requests.Request) -> responses.Response:
        """ "Sign in with PROVIDER": off to the provider's authorization endpoint."""
        form = await request.form()
        if not csrf.valid(request.session, form):
            return self.refused_form(request)
        if self.oidc is None:
            return responses.PlainTextResponse("No OpenID Connect provider is configured", 404)
        then = str(form.get("next", ""))
        try:
            redirect = await self.oidc.start(request)
        except oidc.Refused as exc:
            return self.render(
                request, "signin.html", exc.status, error=str(exc), name="", then=then
            )
        request.session[NEXT_KEY] = then
        return redirect

    async def oidc_callback(self, request: requests.Request) -> responses.Response:
        """Where the provider sends the browser back: the user it signed in, or why not."""
        if self.oidc is None:
            return responses.PlainTextResponse("No OpenID Connect provider is configured", 404)
        then = str(request.session.get(NEXT_KEY, ""))
        try:
            caller = await self.oidc.finish(request)
        except oidc.Refused as exc:
            request.session.pop(NEXT_KEY, None)
            if exc.status == 403:  # the provider signed them in, this studio does not
                return self.render(request, "error.html", exc.status, message=str(exc))
            return self.render(
                request, "signin.html", exc.status, error=str(exc), name="", then=then
            )
        request.session.clear()  # a new session (and CSRF token) for the signed-in user
        request.session[USER_KEY] = caller.user_id
        return responses.RedirectResponse(_next(request, "home", then), 303)

    async def signout(self, request: requests.Request) -> responses.Response:
        form = await request.form()
        if not csrf.valid(request.session, form):
            return self.refused_form(request)
        request.session.clear()
        return responses.RedirectResponse(request.url_for("signin"), status_code=303)

    # ---- pages

    def home(self, request: requests.Request) -> responses.Response:
        caller = self.caller(request)
        if caller is None:
            return responses.RedirectResponse(request.url_for("signin"), status_code=303)
        studios = []
        for studio in self.invoke(caller, "ListStudios")["studios"]:
            profiles = self.invoke(
                caller, "ListLaunchProfiles", studioId=studio["studioId"], states=["READY"]
            )["launchProfiles"]
            offers = [self._offer(caller, studio, p) for p in profiles]
            studios.append(
                {
                    **studio,
                    "profiles": offers,
                    "admin": admin.is_admin(self, caller, studio["studioId"]),
                }
            )
        error = request.query_params.get("error")
        return self.render(request, "home.html", caller=caller, studios=studios, error=error)

    def _offer(self, caller: Caller, studio: dict[str, Any], profile: dict[str, Any]) -> Any:
        """A launch profile with its images (and their EULAs not yet accepted by the caller)."""
        studio_id = studio["studioId"]
        details = self.invoke(
            caller,
            "GetLaunchProfileDetails",
            studioId=studio_id,
            launchProfileId=profile["launchProfileId"],
        )
        accepted = {
            a["eulaId"]
            for a in self.invoke(caller, "ListEulaAcceptances", studioId=studio_id)[
                "eulaAcceptances"
            ]
        }
        images = []
        for image in details.get("streamingImages", []):
            pending = [e for e in image.get("eulaIds", []) if e not in accepted]
            eulas = self.invoke(caller, "ListEulas", eulaIds=pending)["eulas"] if pending else []
            images.append({**image, "pendingEulas": eulas})
        return {**profile, "images": images}

    def sessions_page(self, request: requests.Request) -> responses.Response:
        caller = self.caller(request)
        if caller is None:
            return responses.RedirectResponse(request.url_for("signin"), status_code=303)
        sessions = self._my_sessions(caller)
        error = request.query_params.get("error")
        return self.render(request, "sessions.html", caller=caller, sessions=sessions, error=error)

    def _my_sessions(self, caller: Caller) -> list[dict[str, Any]]:
        """The caller's own sessions in every studio they belong to, newest first."""
        found = []
        for studio in self.invoke(caller, "ListStudios")["studios"]:
            images = self._image_names(caller, studio["studioId"])
            params: dict[str, Any] = {"studioId": studio["studioId"], "ownedBy": caller.user_id}
            while True:
                page = self.invoke(caller, "ListStreamingSessions", **params)
                found += [
                    {
                        **s,
                        "studioId": studio["studioId"],
                        "studioName": studio["displayName"],
                        "imageName": images.get(s["streamingImageId"], s["streamingImageId"]),
                    }
                    for s in page["sessions"]
                    if s["state"] != "DELETED"
                ]
                if not page.get("nextToken"):
                    break
                params["nextToken"] = page["nextToken"]
        self._attach_backups(caller, found)
        found.sort(key=lambda s: s["createdAt"], reverse=True)
        return found

    def _attach_backups(self, caller: Caller, sessions: list[dict[str, Any]]) -> None:
        """Give each stopped session its READY backups, newest first, under ``backups`` (what
        the card's "Start from backup" offers); one listing per studio that has a stopped
        session of the caller's."""
        stopped = {s["studioId"] for s in sessions if s["state"] == "STOPPED"}
        by_session: dict[str, list[dict[str, Any]]] = {}
        for studio_id in stopped:
            backups = self.listed(
                caller,
                "ListStreamingSessionBackups",
                "streamingSessionBackups",
                studioId=studio_id,
                ownedBy=caller.user_id,
            )
            for backup in backups:
                if backup["state"] == "READY":
                    by_session.setdefault(backup["sessionId"], []).append(backup)
        for session in sessions:
            found = by_session.get(session["sessionId"], [])
            session["backups"] = sorted(found, key=lambda b: b["createdAt"], reverse=True)

    def _image_names(self, caller: Caller, studio_id: str) -> dict[str, str]:
        """The studio's streaming images' names by id (ids of deleted ones stay as they are)."""
        images = self.listed(caller, "ListStreamingImages", "streamingImages", studioId=studio_id)
        return {i["streamingImageId"]: i["name"] for i in images}

    def listed(self, caller: Caller, operation: str, key: str, /, **params: Any) -> list[Any]:
        """Every item of a paged listing operation (its pages followed through nextToken)."""
        items: list[Any] = []
        while True:
            page = self.invoke(caller, operation, **params)
            items += page[key]
            if not page.get("nextToken"):
                return items
            params["nextToken"] = page["nextToken"]

    def renew_page(self, request: requests.Request) -> responses.Response:
        """Where a stream page that admits no more sends its owner: the card of the stream's
        session, with Open (a new stream) while it is READY. Who may see it is the API's
        GetStreamingSession's rule; a stream id alone tells nobody else anything."""
        caller = self.caller(request)
        if caller is None:
            url = request.url_for("signin").include_query_params(next=request.url.path)
            return responses.RedirectResponse(url, status_code=303)
        with self.db.read() as conn:
            stream = streams_store.get(conn, request.path_params["stream_id"])
        try:
            if stream is None:
                raise errors.not_found("Stream", request.path_params["stream_id"])
            studio_id = stream["studio_id"]
            studio = self.invoke(caller, "GetStudio", studioId=studio_id)["studio"]
            session = self.invoke(
                caller, "GetStreamingSession", studioId=studio_id, sessionId=stream["session_id"]
            )["session"]
        except errors.ServiceError as exc:
            return self.render(
                request, "error.html", exc.status, caller=caller, message=admin.refusal(exc)
            )
        image = self._image_names(caller, studio_id).get(session["streamingImageId"])
        card = {
            **session,
            "studioId": studio_id,
            "studioName": studio["displayName"],
            "imageName": image or session["streamingImageId"],
        }
        return self.render(request, "renew.html", caller=caller, s=card)

    # ---- actions

    async def checked_form(
        self, request: requests.Request
    ) -> tuple[Caller, Any] | responses.Response:
        """The signed-in caller and the form they posted, or the answer refusing it (not
        signed in: to the sign-in page; no valid CSRF token: refused)."""
        caller = await anyio.to_thread.run_sync(self.caller, request)
        if caller is None:
            return responses.RedirectResponse(request.url_for("signin"), status_code=303)
        form = await request.form()
        if not csrf.valid(request.session, form):
            return self.refused_form(request)
        return caller, form

    async def launch(self, request: requests.Request) -> responses.Response:
        checked = await self.checked_form(request)
        if isinstance(checked, responses.Response):
            return checked
        caller, form = checked
        studio_id = str(form.get("studioId", ""))
        try:
            await anyio.to_thread.run_sync(self._launch, caller, studio_id, form)
        except errors.ServiceError as exc:
            return _back(request, "home", exc)
        return responses.RedirectResponse(request.url_for("sessions"), status_code=303)

    def _launch(self, caller: Caller, studio_id: str, form: Any) -> None:
        eulas = form.getlist("acceptEula")
        if eulas:
            self.invoke(caller, "AcceptEulas", studioId=studio_id, eulaIds=list(eulas))
        params = {
            key: str(form[key])
            for key in ("launchProfileId", "streamingImageId", "ec2InstanceType")
            if form.get(key)
        }
        params.update(admin.owner(self, form))
        self.invoke(caller, "CreateStreamingSession", studioId=studio_id, **params)

    async def act(self, request: requests.Request) -> responses.Response:
        checked = await self.checked_form(request)
        if isinstance(checked, responses.Response):
            return checked
        caller, form = checked
        studio_id = request.path_params["studio_id"]
        session_id = request.path_params["session_id"]
        action = request.path_params["action"]
        operation = {
            "stop": "StopStreamingSession",
            "start": "StartStreamingSession",
            "delete": "DeleteStreamingSession",
            "open": "CreateStreamingSessionStream",
        }.get(action)
        if operation is None:
            return responses.PlainTextResponse(f"No action {action!r}", status_code=404)
        params = {"studioId": studio_id, "sessionId": session_id}
        if action == "start" and form.get("backupId"):
            params["backupId"] = str(form["backupId"])
        try:
            result = await anyio.to_thread.run_sync(
                lambda: self.invoke(caller, operation, **params)
            )
        except errors.ServiceError as exc:
            return _back(request, "sessions", exc, form.get("next"))
        if action == "open":
            return responses.RedirectResponse(result["stream"]["url"], status_code=303)
        return responses.RedirectResponse(_next(request, "sessions", form.get("next")), 303)

    # ---- live updates

    async def events(self, request: requests.Request) -> responses.Response:
        caller = await anyio.to_thread.run_sync(self.caller, request)
        if caller is None:
            return responses.PlainTextResponse("Sign in first", status_code=401)
        return responses.StreamingResponse(
            self._changes(request, caller),
            media_type="text/event-stream",
            headers={"cache-control": "no-store", "x-accel-buffering": "no"},
        )

    async def _changes(self, request: requests.Request, caller: Caller) -> AsyncIterator[bytes]:
        """Server-sent events: a card's new HTML whenever one of the caller's sessions
        changes, ``gone`` when one disappears. The browser does not poll, and this server
        reads nothing while nothing changes: the connection waits on the process's change hub
        for a change in one of the caller's studios (or of access), then reads a cheap mark
        of the caller's sessions (their count and last changes, one indexed query) and lists
        them through the API only when it moved."""
        seen: dict[str, tuple[Any, ...]] = {}
        mark = (-1, -1)
        version = self.changes.mark()
        try:
            studios = await anyio.to_thread.run_sync(self._studio_ids, caller)
        except errors.ServiceError:
            return  # the user lost access: the page's next load says why
        while True:
            moved = await anyio.to_thread.run_sync(self._mark, studios, caller)
            if moved != mark:
                mark = moved
                try:
                    sessions = await anyio.to_thread.run_sync(self._my_sessions, caller)
                except errors.ServiceError:
                    return
                for event in self._card_events(request, sessions, seen):
                    yield event
            while True:
                changed = await self.changes.wait(
                    version, (*studios, changes_hub.ACCESS), live.KEEPALIVE
                )
                if changed != version:
                    break
                yield live.KEEPALIVE_LINE
            if self.changes.moved(version, (changes_hub.ACCESS,)):  # memberships may differ
                try:
                    studios = await anyio.to_thread.run_sync(self._studio_ids, caller)
                except errors.ServiceError:
                    return
            version = changed

    def _studio_ids(self, caller: Caller) -> list[str]:
        return [s["studioId"] for s in self.invoke(caller, "ListStudios")["studios"]]

    def _mark(self, studio_ids: list[str], caller: Caller) -> tuple[int, int]:
        with self.db.read() as conn:
            return sessions_store.owner_mark(conn, studio_ids, caller.user_id)

    def _card_events(
        self,
        request: requests.Request,
        sessions: list[dict[str, Any]],
        seen: dict[str, tuple[Any, ...]],
    ) -> list[bytes]:
        """Events for the cards that changed since ``seen`` (updated in place)."""
        events = []
        current = {s["sessionId"]: s for s in sessions}
        for session_id, session in current.items():
            fingerprint = cards.fingerprint(session)
            if seen.get(session_id) != fingerprint:
                seen[session_id] = fingerprint
                card = self._card(request, session)
                events.append(live.event("card", {"id": session_id, "html": card}))
        for session_id in [s for s in seen if s not in current]:
            del seen[session_id]
            events.append(live.event("gone", {"id": session_id}))
        return events

    def _card(self, request: requests.Request, session: dict[str, Any]) -> str:
        template = self.templates.get_template("card.html")
        return template.render(
            s=session,
            csrf_token=csrf.token(request.session),
            url_for=request.url_for,
            card_actions=cards.actions,
            csrf_field=csrf.FIELD,
        )


def _next(request: requests.Request, page: str, given: Any = None) -> datastructures.URL:
    """Where a form goes back to: the portal page it names in ``next``, else ``page``."""
    if isinstance(given, str) and given.startswith("/portal/") and "//" not in given:
        return request.url.replace(path=given.partition("?")[0], query=given.partition("?")[2])
    return request.url_for(page)


def _back(
    request: requests.Request, page: str, exc: errors.ServiceError, given: Any = None
) -> responses.Response:
    """Back to ``page`` (or the portal page ``given``) with the API's refusal at its top."""
    url = _next(request, page, given).include_query_params(error=admin.refusal(exc))
    return responses.RedirectResponse(url, status_code=303)
