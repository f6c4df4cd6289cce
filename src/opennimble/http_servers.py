"""The HTTP servers ``opennimble serve`` can run the app on (``http_server``).

- ``uvicorn`` (the default): uvicorn with uvloop and :class:`connections.BoundedProtocol`,
  which gives every request a header and a body deadline (408 after), limits the headers'
  size, and at ``max_connections`` closes the slowest unfinished connection.
- ``granian``: granian's ASGI server (a Rust HTTP stack, hyper) embedded in this process on a
  uvloop event loop, one runtime thread, on the same listening socket. It runs the lifespan
  (the reconciler and the change hub start there) and serves websockets. Of the slow-client
  protections it has a header deadline (``header_timeout``: hyper closes the connection
  without an answer) and a header size limit (its read buffer: an empty 431); the body
  deadline is :class:`BodyDeadline`'s, in the app. It cannot evict the slowest connection
  (the app never sees a connection before its headers are whole): ``max_connections`` is
  granian's backpressure, a place per open connection, past which newcomers wait until a
  deadline ends one. See ARCHITECTURE.md ("HTTP servers").
"""

from __future__ import annotations

import asyncio
import importlib.util
import logging
import signal
import socket
from typing import Any

import uvicorn

from opennimble import config, connections, logs
from opennimble.protocol import serialize

log = logging.getLogger("opennimble.connections")

SHUTDOWN_GRACE = 5  # seconds for open requests to finish when the server is asked to stop
NAMES = ("uvicorn", "granian")
BACKLOG = 2048  # as installation.listen makes the socket
# granian's header deadline is given in milliseconds, at most a minute
GRANIAN_MAX_HEADER_TIMEOUT_MS = 60_000


def run(app: Any, sock: socket.socket, settings: config.Settings) -> None:
    """Serve ``app`` on ``sock`` with the server ``settings.http_server`` names until SIGTERM
    or SIGINT."""
    if settings.http_server == "granian":
        serve_granian(app, sock, settings)
    else:
        serve_uvicorn(app, sock, settings)


def serve_uvicorn(app: Any, sock: socket.socket, settings: config.Settings) -> None:
    limits = connections.Limits(
        header_timeout=settings.header_timeout,
        body_timeout=settings.body_timeout,
        max_connections=connections.raise_file_limit(settings.max_connections),
        max_header_bytes=settings.max_header_bytes,
    )
    uvicorn.Server(
        uvicorn.Config(
            app,
            http=connections.BoundedProtocol.bounded(limits),
            timeout_keep_alive=settings.keep_alive_timeout,
            log_level="warning",
            proxy_headers=bool(settings.forwarded_allow_ips),
            forwarded_allow_ips=settings.forwarded_allow_ips or None,
            log_config=None,  # uvicorn's own lines go through opennimble's format too
            access_log=False,
            lifespan="on",
            # stream websockets carry RFB data its encodings compressed already: deflating it
            # again would cost the server CPU for next to no gain
            ws_per_message_deflate=False,
            # open live pages (the portal's server-sent events) never end by themselves
            timeout_graceful_shutdown=SHUTDOWN_GRACE,
        )
    ).run(sockets=[sock])


def granian_header_timeout_ms(seconds: float) -> int:
    """``header_timeout`` as granian takes it (milliseconds, 1 to 60,000; a longer one is
    cut to a minute, saying so)."""
    wanted = max(1, round(seconds * 1000))
    if wanted > GRANIAN_MAX_HEADER_TIMEOUT_MS:
        log.warning(
            "header_timeout = %g: granian allows at most %d s, which it uses",
            seconds,
            GRANIAN_MAX_HEADER_TIMEOUT_MS // 1000,
        )
        return GRANIAN_MAX_HEADER_TIMEOUT_MS
    return wanted


def check(settings: config.Settings) -> None:
    """Raise RuntimeError, saying what to install, when the server chosen is not installed."""
    if settings.http_server == "granian" and importlib.util.find_spec("granian") is None:
        raise RuntimeError(
            "http_server = granian needs the granian package: pip install 'opennimble[granian]'"
        )


def serve_granian(app: Any, sock: socket.socket, settings: config.Settings) -> None:
    import uvloop

    connections.raise_file_limit(settings.max_connections)
    uvloop.run(_granian(app, sock, settings))


async def _granian(app: Any, sock: socket.socket, settings: config.Settings) -> None:
    """Run the lifespan's startup, serve until SIGTERM or SIGINT, give open requests
    ``SHUTDOWN_GRACE`` seconds, then run the lifespan's shutdown and return (the connections
    still open end with the process).

    The lifespan is driven here, not by granian: granian runs its shutdown only once every
    connection has ended, which a live page or a stream (ended by that very shutdown) never
    does by itself.
    """
    from granian.asgi import LifespanProtocol

    app = BodyDeadline(_forwarded(app, settings), settings.body_timeout)
    server = _granian_server(app, sock, settings)
    logs.setup(settings.log_level, settings.log_format)  # granian's logging set-up replaced it
    lifespan: Any = LifespanProtocol(app)  # type: ignore[no-untyped-call]
    await lifespan.startup()
    if lifespan.interrupt:
        raise SystemExit(1)  # the app logged why (lifespan.startup.failed)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    serving = asyncio.ensure_future(server.serve())
    stopping = asyncio.ensure_future(stop.wait())
    await asyncio.wait([serving, stopping], return_when=asyncio.FIRST_COMPLETED)
    stopping.cancel()
    server.stop()
    done, _ = await asyncio.wait([serving], timeout=SHUTDOWN_GRACE)
    if not done:
        log.info(
            "requests still open %g s after the stop: they end with the server", SHUTDOWN_GRACE
        )
    await lifespan.shutdown()
    failure = serving.exception() if serving.done() else None
    if failure is not None:
        raise failure


def _granian_server(app: Any, sock: socket.socket, settings: config.Settings) -> Any:
    from granian.constants import HTTPModes, Interfaces
    from granian.http import HTTP1Settings
    from granian.log import LogLevels

    return _embedded_server_class()(
        app,
        sock,
        address=settings.host,
        port=settings.port,
        interface=Interfaces.ASGINL,  # the lifespan is _granian's
        http=HTTPModes.http1,
        websockets=True,
        runtime_threads=1,
        backlog=BACKLOG,
        # a place per open connection; past it newcomers wait in the listen queue (nothing
        # evicts the slowest, as connections.BoundedProtocol does)
        backpressure=settings.max_connections,
        http1_settings=HTTP1Settings(
            header_read_timeout=granian_header_timeout_ms(settings.header_timeout),
            keep_alive=True,
            max_buffer_size=max(8192, settings.max_header_bytes),
        ),
        log_level=LogLevels.warning,
        # granian's lines go to the root logger, in opennimble's format
        log_dictconfig={
            "loggers": {
                "_granian": {"handlers": [], "level": "WARNING", "propagate": True},
                "granian.access": {"handlers": [], "level": "WARNING", "propagate": False},
            }
        },
    )


class BodyDeadline:
    """ASGI middleware: a request's body must arrive within ``seconds`` of its headers (granian
    calls the app once the headers are whole, and has no body deadline of its own).

    Past the deadline the app sees the client gone (``http.disconnect``), and the client gets
    ``408 RequestTimeoutException`` with ``connection: close`` (as uvicorn's
    :class:`connections.BoundedProtocol` answers): the rest of the body is not read.
    Websockets, the lifespan, and whatever the app awaits after the body (a live page waiting
    for the client to leave) are not bounded.
    """

    def __init__(self, app: Any, seconds: float) -> None:
        self.app = app
        self.seconds = seconds

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        deadline = asyncio.get_running_loop().time() + self.seconds
        body_whole = expired = started = False

        async def bounded_receive() -> Any:
            nonlocal body_whole, expired
            if body_whole:
                return await receive()
            try:
                async with asyncio.timeout_at(deadline):
                    message = await receive()
            except TimeoutError:
                expired = True
                return {"type": "http.disconnect"}
            if message["type"] != "http.request" or not message.get("more_body"):
                body_whole = True
            return message

        async def guarded_send(message: Any) -> None:
            nonlocal started
            if expired:
                return  # the 408 below is the answer
            started = started or message["type"] == "http.response.start"
            await send(message)

        await self.app(scope, bounded_receive, guarded_send)
        if expired and not started:
            await _answer(send, self.seconds)


async def _answer(send: Any, seconds: float) -> None:
    log.info("a request's body did not arrive in %g s: its connection is closed", seconds)
    error = connections.RequestTimeoutException(
        f"The request's body did not arrive within {seconds:g} s"
    )
    status, headers, body = serialize.error_response(error)
    headers = [*headers, (b"content-length", str(len(body)).encode()), (b"connection", b"close")]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def _forwarded(app: Any, settings: config.Settings) -> Any:
    """The app behind uvicorn's proxy-headers middleware when proxies are trusted (granian has
    no such option): X-Forwarded-For/-Proto from ``forwarded_allow_ips`` only."""
    if not settings.forwarded_allow_ips:
        return app
    from uvicorn.middleware.proxy_headers import ProxyHeadersMiddleware

    return ProxyHeadersMiddleware(app, trusted_hosts=settings.forwarded_allow_ips)


def _embedded_server_class() -> Any:
    from granian._granian import SocketHolder
    from granian.server.embed import Server

    class EmbeddedOnSocket(Server):
        """granian's embedded server on a socket that is already listening."""

        def __init__(self, target: Any, sock: socket.socket, **options: Any) -> None:
            super().__init__(target, **options)
            self._listening = sock

        def _init_shared_socket(self) -> None:
            # granian's holder of a listening socket, made from its descriptor (fd, is a Unix
            # socket, backlog) instead of binding a new one: the port is the one `serve` has
            holder: Any = SocketHolder(self._listening.fileno(), False, BACKLOG)  # type: ignore[call-arg]
            self._ssp = None
            self._shd = holder
            self._sfd = holder.get_fd()

    return EmbeddedOnSocket
