"""Time from stream creation to the first desktop frame in the browser, against a bare baseline.

Run: ``.venv/bin/python -m bench.stream_first_frame [--runs N]``; needs Debian's Chromium and
TigerVNC (``make test-packages``). Prints the figures; nothing is asserted.

1. Starts a real ``opennimble serve`` (fresh data directory), sets up a studio through the API
   and one streaming session (a real desktop), READY.
2. Starts the baseline: a bare Xvnc (no VNC authentication) of the same size, behind a
   transparent websocket relay in this process that serves the same client page and noVNC
   files but no admission, no database and no RFB handshake bridging.
3. In interleaved rounds, in a fresh Chromium profile each time:
   * gateway: CreateStreamingSessionStream (boto3), open its ``url``, until the first
     desktop frame is on the page's canvas (the centre pixel painted);
   * baseline: open the bare page, until the first frame.
   It prints the medians, the spread and the difference, then cleans up everything it started.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import pathlib
import shutil
import statistics
import tempfile
import threading
import time
from collections.abc import Iterator
from typing import Any

import uvicorn
from playwright import sync_api
from starlette import applications, responses, routing, staticfiles, websockets
from tests.support import server as support
from tests.support import vnc
from tests.support import world as worlds

from opennimble import config
from opennimble.gateway import app as gateway
from opennimble.gateway import pages

GEOMETRY = (1280, 800)  # the server's default desktop size: no resize during the measurement
FIRST_FRAME = """() => new Promise((resolve) => {
    const painted = () => {
        const canvas = document.querySelector('#screen canvas');
        if (canvas && canvas.width > 0) {
            const pixel = canvas.getContext('2d')
                .getImageData(canvas.width >> 1, canvas.height >> 1, 1, 1).data;
            if (pixel[3] === 255) { resolve(true); return; }
        }
        requestAnimationFrame(painted);
    };
    painted();
})"""


def bare_app(port: int, novnc_dir: pathlib.Path) -> applications.Starlette:
    """The baseline: the same page and files, a websocket relayed to Xvnc as it is."""

    async def page(_request: Any) -> responses.HTMLResponse:
        return responses.HTMLResponse(
            pages.client("bare", "bare", True, gateway.novnc_modules(novnc_dir)),
            200,
            pages.SECURITY_HEADERS,
        )

    async def socket(ws: websockets.WebSocket) -> None:
        await ws.accept()
        reader, writer = await asyncio.open_connection("127.0.0.1", port)

        async def down() -> None:
            while data := await reader.read(256 * 1024):
                await ws.send_bytes(data)

        task = asyncio.create_task(down())
        try:
            while (message := await ws.receive())["type"] != "websocket.disconnect":
                writer.write(message.get("bytes") or b"")
                await writer.drain()
        finally:
            task.cancel()
            writer.close()

    return applications.Starlette(
        routes=[
            routing.Route("/streams/bare", page),
            routing.WebSocketRoute("/streams/bare/websocket", socket),
            routing.Mount(
                "/stream-client/app", staticfiles.StaticFiles(directory=gateway.CLIENT_DIR)
            ),
            routing.Mount("/stream-client/novnc", staticfiles.StaticFiles(directory=novnc_dir)),
        ]
    )


@contextlib.contextmanager
def serving(app: Any) -> Iterator[str]:
    port = support.free_port()
    server = uvicorn.Server(uvicorn.Config(app, port=port, log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=15)


def first_frame(browser: sync_api.Browser, url: str, started: float) -> float:
    """Seconds from ``started`` until ``url`` shows its first desktop frame."""
    width, height = GEOMETRY
    context = browser.new_context(viewport={"width": width, "height": height})
    try:
        page = context.new_page()
        page.goto(url, wait_until="commit")
        page.evaluate(FIRST_FRAME)
        return time.perf_counter() - started
    finally:
        context.close()


def gateway_run(browser: sync_api.Browser, world: worlds.World, session_id: str) -> float:
    client = world.artist.client()
    started = time.perf_counter()
    stream = client.create_streaming_session_stream(
        studioId=world.studio.studio_id, sessionId=session_id
    )["stream"]
    return first_frame(browser, stream["url"], started)


def summary(name: str, values: list[float]) -> str:
    ms = sorted(v * 1000 for v in values)
    return (
        f"{name:<34} p50 {statistics.median(ms):7.1f} ms   min {ms[0]:7.1f}   max {ms[-1]:7.1f}"
        f"   (n={len(ms)})"
    )


def measure(runs: int, base: pathlib.Path) -> None:
    srv = support.Server(base / "data")  # made reachable for the desktops' own accounts
    srv.start()
    try:
        world = worlds.build(srv)
        client = world.artist.client()
        session_id = client.create_streaming_session(
            studioId=world.studio.studio_id, launchProfileId=world.studio.launch_profile_id
        )["session"]["sessionId"]
        ids = {"studioId": world.studio.studio_id, "sessionId": session_id}
        client.get_waiter("streaming_session_ready").wait(**ids, WaiterConfig=support.FAST)
        novnc = config.Settings().resolved_novnc_dir
        size = f"{GEOMETRY[0]}x{GEOMETRY[1]}"
        with contextlib.ExitStack() as stack:
            bare = stack.enter_context(vnc.xvnc(base / "bare", geometry=size))
            bare_url = stack.enter_context(serving(bare_app(bare.port, novnc))) + "/streams/bare"
            playwright = stack.enter_context(sync_api.sync_playwright())
            browser = playwright.chromium.launch(executable_path=shutil.which("chromium"))
            through, direct = [], []
            first_frame(browser, bare_url, time.perf_counter())  # warm-up
            for _ in range(runs):
                through.append(gateway_run(browser, world, session_id))
                direct.append(first_frame(browser, bare_url, time.perf_counter()))
            browser.close()
        print(
            f"load average (1 min) at the end: {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores"
        )
        print(summary("gateway: CreateStream -> 1st frame", through))
        print(summary("baseline: bare relay -> 1st frame", direct))
        gap = statistics.median(through) - statistics.median(direct)
        print(f"{'difference of the medians':<34} {gap * 1000:+7.1f} ms")
        worlds.delete_all_sessions(world)
    finally:
        srv.stop()
        support.kill_all(support.live_desktops(srv.data_dir))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=11)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="opennimble-bench-") as base:
        measure(args.runs, pathlib.Path(base))


if __name__ == "__main__":
    main()
