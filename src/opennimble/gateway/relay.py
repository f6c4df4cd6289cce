"""One admitted websocket connection: handshakes bridged, then bytes relayed both ways.

The gateway connects to the session's loopback VNC port, authenticates to the desktop (see
:mod:`.rfb`), greets the browser, and from the browser's ClientInit on relays RFB bytes in
both directions. The connection ends when either side closes, or when the watch of live
connections says the session stopped or was deleted; the browser is then told why in the close
frame's code and reason.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from starlette import websockets

from opennimble.gateway import live, rfb
from opennimble.gateway.streams import Admission, Close

log = logging.getLogger("opennimble.gateway")

CHUNK = 256 * 1024
HANDSHAKE_TIMEOUT = 20.0
_MAX_REASON_BYTES = 123  # what a close frame can carry


class BrowserGone(Exception):
    """The browser closed its websocket."""


class Browser:
    """The browser's websocket seen as a byte stream (messages may split RFB messages)."""

    def __init__(self, ws: websockets.WebSocket) -> None:
        self.ws = ws
        self._buffer = bytearray()

    async def receive(self) -> bytes | None:
        """The next message's bytes, or None once the browser has gone."""
        message = await self.ws.receive()
        if message["type"] == "websocket.disconnect":
            return None
        data = message.get("bytes")
        return data if data is not None else str(message.get("text", "")).encode()

    async def readexactly(self, n: int) -> bytes:
        while len(self._buffer) < n:
            data = await self.receive()
            if data is None:
                raise BrowserGone
            self._buffer += data
        head = bytes(self._buffer[:n])
        del self._buffer[:n]
        return head

    def take_buffer(self) -> bytes:
        data, self._buffer = bytes(self._buffer), bytearray()
        return data

    async def send(self, data: bytes) -> None:
        await self.ws.send_bytes(data)


class Desktop:
    """The desktop's VNC connection, with errors that say what went wrong."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    async def readexactly(self, n: int) -> bytes:
        try:
            return await self.reader.readexactly(n)
        except asyncio.IncompleteReadError:
            raise rfb.HandshakeError("The desktop closed the connection.") from None

    async def send(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()

    async def close(self) -> None:
        self.writer.close()
        with contextlib.suppress(OSError):
            await self.writer.wait_closed()


class Refused(Exception):
    """The connection cannot go on; ``code`` and ``reason`` go to the browser."""

    def __init__(self, code: Close, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason


async def serve(
    ws: websockets.WebSocket, admission: Admission, connections: live.LiveConnections
) -> None:
    """Serve an admitted (and accepted) websocket until it ends, then close it with a reason."""
    connection = live.Connection(admission.session_id, admission.user_id)
    connections.add(connection)
    try:
        browser = Browser(ws)
        desktop = await _open(browser, admission)
        try:
            ending = await _relay(browser, desktop, connection, connections)
        finally:
            await desktop.close()
        if ending is not None:
            await close(ws, *ending)
    except Refused as refused:
        await close(ws, refused.code, refused.reason)
    except BrowserGone:
        pass
    finally:
        connections.discard(connection)


async def _open(browser: Browser, admission: Admission) -> Desktop:
    """The desktop's connection, authenticated, once the browser has been greeted too."""
    desktop = await _authenticated_desktop(admission)
    async with contextlib.AsyncExitStack() as cleanup:
        cleanup.push_async_callback(desktop.close)
        try:
            async with asyncio.timeout(HANDSHAKE_TIMEOUT):
                await rfb.greet_browser(browser, browser)
        except TimeoutError:
            raise Refused(Close.PROTOCOL, "The VNC client did not answer in time.") from None
        except rfb.HandshakeError as exc:
            raise Refused(Close.PROTOCOL, str(exc)) from None
        cleanup.pop_all()
    return desktop


async def _authenticated_desktop(admission: Admission) -> Desktop:
    endpoint = admission.endpoint
    async with contextlib.AsyncExitStack() as cleanup:
        try:
            async with asyncio.timeout(HANDSHAKE_TIMEOUT):
                reader, writer = await asyncio.open_connection(
                    endpoint["host"], int(endpoint["port"])
                )
                desktop = Desktop(reader, writer)
                cleanup.push_async_callback(desktop.close)
                await rfb.authenticate_to_desktop(desktop, desktop, endpoint.get("password"))
        except (OSError, TimeoutError, rfb.HandshakeError) as exc:
            log.warning("session %s: desktop not reachable: %s", admission.session_id, exc)
            reason = f"The desktop cannot be reached: {_describe(exc)}"
            raise Refused(Close.UNREACHABLE, reason) from None
        cleanup.pop_all()
    return desktop


async def _relay(
    browser: Browser,
    desktop: Desktop,
    connection: live.Connection,
    connections: live.LiveConnections,
) -> tuple[int, str] | None:
    """Relay until one side ends; the close code and reason for the browser, if any."""
    up = asyncio.create_task(_upstream(browser, desktop))
    down = asyncio.create_task(_downstream(desktop, browser))
    ended = asyncio.create_task(connection.ended.wait())
    done, _ = await asyncio.wait({up, down, ended}, return_when=asyncio.FIRST_COMPLETED)
    for task in (up, down, ended):
        task.cancel()
    results = await asyncio.gather(up, down, ended, return_exceptions=True)
    if connection.ended.is_set():
        return connection.code, connection.reason
    if up in done and results[0] is None:
        return None  # the browser left
    # the desktop hung up (or could not be written to): was its session stopped or deleted?
    await connections.check()
    if connection.ended.is_set():
        return connection.code, connection.reason
    return Close.UNREACHABLE, "The desktop closed the connection."


async def _upstream(browser: Browser, desktop: Desktop) -> None:
    data: bytes | None = browser.take_buffer()
    while data is not None:
        if data:
            await desktop.send(data)
        data = await browser.receive()


async def _downstream(desktop: Desktop, browser: Browser) -> None:
    while data := await desktop.reader.read(CHUNK):
        await browser.send(data)


async def close(ws: websockets.WebSocket, code: int, reason: str) -> None:
    """Close with a code and a reason, unless the browser has gone already."""
    if ws.application_state == websockets.WebSocketState.DISCONNECTED:
        return
    with contextlib.suppress(RuntimeError, OSError, websockets.WebSocketDisconnect):
        await ws.close(int(code), _clip(reason))


def _clip(reason: str) -> str:
    data = reason.encode()[:_MAX_REASON_BYTES]
    return data.decode(errors="ignore")


def _describe(exc: BaseException) -> str:
    if isinstance(exc, TimeoutError):
        return "no answer in time."
    if isinstance(exc, OSError):
        return exc.strerror or str(exc)
    return str(exc)
