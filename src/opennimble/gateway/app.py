"""The stream gateway's ASGI application: the stream page, its websocket, the client's files.

Routes (all under the server's ``public_url``):

* ``GET /streams/{streamId}?token=T``: checks and consumes the token (:mod:`.streams`); on
  admission answers the full-window noVNC client page and sets the stream's credential cookie
  (:mod:`.credentials`); otherwise a page that says why not.
* ``WS /streams/{streamId}/websocket``: checks the cookie (and that the page that connects is
  this server's own: the ``Origin`` must be this host), then relays to the desktop
  (:mod:`.relay`) until either side ends or the session stops (:mod:`.live`).
* ``GET /stream-client/novnc/...``: noVNC's files (npm ``@novnc/novnc``, see ``novnc_dir``);
  ``GET /stream-client/app/...``: the page's script and style sheet.
"""

from __future__ import annotations

import logging
import pathlib
import urllib.parse
from typing import Any

from starlette import requests, responses, routing, staticfiles, websockets
from starlette.middleware import exceptions

from opennimble import clock, logs
from opennimble.domain import audit, stream_tokens
from opennimble.gateway import credentials, live, pages, relay, streams
from opennimble.store import crypto, database

log = logging.getLogger("opennimble.gateway")

PREFIXES = ("/streams/", "/stream-client/")
CLIENT_DIR = pathlib.Path(__file__).parent / "client"
NOVNC_MISSING = (
    "The in-browser VNC client (noVNC) is not installed on this server. Its administrator "
    "installs it with `make setup` (npm package @novnc/novnc) or sets novnc_dir."
)


def novnc_installed(directory: pathlib.Path | None) -> bool:
    return directory is not None and (directory / "core" / "rfb.js").is_file()


def novnc_modules(directory: pathlib.Path | None) -> list[str]:
    """noVNC's ES modules (paths under its directory), for the page to preload."""
    if not novnc_installed(directory):
        return []
    assert directory is not None
    found = [*directory.glob("core/**/*.js"), *directory.glob("vendor/**/*.js")]
    return sorted(str(path.relative_to(directory)) for path in found)


class Gateway:
    """The ASGI app of the stream paths; ``close()`` ends every live connection."""

    def __init__(
        self,
        db: database.Database,
        key: bytes,
        *,
        public_url: str,
        novnc_dir: pathlib.Path | None,
        now: clock.Now = clock.system_now,
        watch_interval: float = 1.0,
        trail: audit.Trail | None = None,
    ) -> None:
        self.db = db
        self.credentials = credentials.StreamCredentials(key)
        tokens = stream_tokens.StreamTokens(key)
        self.gate = streams.StreamGate(db, tokens, self.credentials, now, crypto.Cipher(key), trail)
        self.connections = live.LiveConnections(db, watch_interval)
        self.novnc_dir = novnc_dir
        base = urllib.parse.urlsplit(public_url)
        self._path_prefix = base.path.rstrip("/")
        self._secure = base.scheme == "https"
        self.novnc_modules = novnc_modules(novnc_dir)
        if not self.novnc_modules:
            log.warning("noVNC not found in %s: stream pages cannot be served", novnc_dir)
        # static files answer a missing file with an HTTPException: a 404, never a traceback
        self.router = exceptions.ExceptionMiddleware(routing.Router(self._routes()))

    def _routes(self) -> list[routing.BaseRoute]:
        routes: list[routing.BaseRoute] = [
            routing.Route("/streams/{stream_id}", self.page, methods=["GET"]),
            routing.WebSocketRoute("/streams/{stream_id}/websocket", self.websocket),
            routing.Mount("/stream-client/app", staticfiles.StaticFiles(directory=CLIENT_DIR)),
        ]
        if self.novnc_dir is not None and novnc_installed(self.novnc_dir):
            novnc = staticfiles.StaticFiles(directory=self.novnc_dir)
            routes.append(routing.Mount("/stream-client/novnc", novnc))
        return routes

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        await self.router(scope, receive, send)

    async def close(self) -> None:
        await self.connections.close()

    async def page(self, request: requests.Request) -> responses.Response:
        """The stream URL: admission by token, then the client page with the credential."""
        if request.method == "HEAD":  # a HEAD must not consume the token
            return _html("", 200)
        if not novnc_installed(self.novnc_dir):
            return _html(pages.refusal("Stream unavailable", NOVNC_MISSING), 503)
        stream_id = request.path_params["stream_id"]
        answer, reloaded = await self.db.run(self._admit, request, stream_id)
        client = request.client.host if request.client else None
        # where its owner gets a new stream of the session (the portal checks who may)
        renew = f"{self._path_prefix}/portal/streams/{urllib.parse.quote(stream_id)}"
        if answer.stream is None or answer.session is None:
            log.info(
                "stream page refused: %s",
                answer.title,
                extra=logs.fields(event="stream_page_refused", stream_id=stream_id, client=client),
            )
            return _html(pages.refusal(answer.title, answer.text, renew), answer.status)
        session = answer.session
        log.info(
            "stream page opened",
            extra=logs.fields(
                event="stream_page_opened",
                stream_id=stream_id,
                session_id=session["session_id"],
                owner=session["owned_by"],
                client=client,
            ),
        )
        clipboard = session["attrs"].get("clipboardMode", "ENABLED") != "DISABLED"
        page = pages.client(stream_id, session["session_id"], clipboard, self.novnc_modules, renew)
        response = _html(page, 200)
        if reloaded:  # the browser keeps the credential it has
            return response
        # the page's own path and its websocket's (a reload sends it back: see _admit)
        path = f"{self._path_prefix}/streams/{stream_id}"
        admitted_at = answer.stream["used_at"]
        cookie = self.credentials.cookie(answer.stream, path, admitted_at, self._secure)
        response.headers.append("set-cookie", cookie)
        return response

    def _admit(self, request: requests.Request, stream_id: str) -> tuple[streams.Answer, bool]:
        """The stream URL's token admits a browser once; a browser admitted before (a reload,
        or the page opened again after a short outage) comes back with its credential, which
        admits it by the websocket's rules (the session READY, the stream not expired, its
        creator's access kept). Returns the answer and whether it was such a return."""
        credential = request.cookies.get(credentials.COOKIE, "")
        answer = None
        if "token" in request.query_params:
            client = request.client.host if request.client else None
            answer = self.gate.admit(stream_id, request.url.query, client)
            if answer.session is not None:
                return answer, False
        if credential:
            again = self.gate.readmit(stream_id, credential)
            if answer is None or again.stream is not None:
                return again, True
        return answer or streams.Answer(403, "Stream refused", streams.INVALID), False

    async def websocket(self, ws: websockets.WebSocket) -> None:
        """The stream's websocket: admitted by credential, then relayed to the desktop."""
        requested = ws.scope.get("subprotocols") or []
        await ws.accept(subprotocol="binary" if "binary" in requested else None)
        if not _same_origin(ws.headers.get("origin"), ws.headers.get("host")):
            await relay.close(ws, streams.Close.INVALID, "Cross-site connection refused.")
            return
        credential = ws.cookies.get(credentials.COOKIE, "")
        stream_id = ws.path_params["stream_id"]
        admission = await self.db.run(self.gate.admit_connection, stream_id, credential)
        client = ws.client.host if ws.client else None
        if isinstance(admission, streams.Refusal):
            log.info(
                "stream connection refused: %s",
                admission.reason,
                extra=logs.fields(
                    event="stream_refused", stream_id=stream_id, code=admission.code, client=client
                ),
            )
            await relay.close(ws, admission.code, admission.reason)
            return
        log.info(
            "stream connection admitted",
            extra=logs.fields(event="stream_admitted", stream_id=stream_id, client=client),
        )
        await relay.serve(ws, admission, self.connections)


def _html(body: str, status: int) -> responses.HTMLResponse:
    return responses.HTMLResponse(body, status, headers=pages.SECURITY_HEADERS)


def _same_origin(origin: str | None, host: str | None) -> bool:
    """Browsers always send Origin on websockets; a page of another site must not connect."""
    if origin is None:
        return True  # not a browser: the credential alone decides
    return urllib.parse.urlsplit(origin).netloc == (host or "")
