"""The stream URL in a real browser: the desktop, typing into its terminal, and refusals.

Everything goes through what a user has: boto3 for the API, headless Chromium for the URL.
Only to find where the desktop's terminal window is (and to check the file it made) does the
test look at the desktop from the host: ``xdotool`` on the session's display, and the owner's
home directory under the server's data directory.

The stream made by ``expiring`` (the minimum lifetime, 60 s) is created by the first test and
opened by the last, after its expiry.
"""

from __future__ import annotations

import dataclasses
import os
import pathlib
import re
import subprocess
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from playwright import sync_api

from tests.support import desktops
from tests.support import world as worlds
from tests.support.server import FAST

pytestmark = [pytest.mark.browser, pytest.mark.xvnc]


@dataclasses.dataclass
class Session:
    world: worlds.World
    session_id: str

    @property
    def client(self) -> Any:
        return self.world.artist.client()

    @property
    def ids(self) -> dict[str, str]:
        return {"studioId": self.world.studio.studio_id, "sessionId": self.session_id}

    def stream(self, seconds: int = 120) -> dict[str, Any]:
        """A new stream, once READY (with its url)."""
        stream = self.client.create_streaming_session_stream(
            **self.ids, expirationInSeconds=seconds
        )["stream"]
        ids = {**self.ids, "streamId": stream["streamId"]}
        self.client.get_waiter("streaming_session_stream_ready").wait(**ids, WaiterConfig=FAST)
        return dict(self.client.get_streaming_session_stream(**ids)["stream"])

    def delete(self) -> None:
        self.client.delete_streaming_session(**self.ids)
        self.client.get_waiter("streaming_session_deleted").wait(**self.ids, WaiterConfig=FAST)


def new_session(world: worlds.World) -> Session:
    client = world.artist.client()
    studio = world.studio
    session = client.create_streaming_session(
        studioId=studio.studio_id, launchProfileId=studio.launch_profile_id
    )["session"]
    ids = {"studioId": studio.studio_id, "sessionId": session["sessionId"]}
    client.get_waiter("streaming_session_ready").wait(**ids, WaiterConfig=FAST)
    return Session(world, session["sessionId"])


@pytest.fixture(scope="module")
def desktop(world: worlds.World) -> Session:
    return new_session(world)


@pytest.fixture(scope="module")
def expiring(desktop: Session) -> dict[str, Any]:
    return desktop.stream(seconds=60)


def open_stream(page: sync_api.Page, url: str) -> None:
    """Open a stream URL and wait until its client is connected to the desktop."""
    page.goto(url)
    page.wait_for_selector("body[data-state='connected']", state="attached", timeout=20_000)


def status_of(page: sync_api.Page, state: str) -> str:
    page.wait_for_selector(f"body[data-state='{state}']", state="attached", timeout=20_000)
    return page.inner_text("#status")


def refusal_of(page: sync_api.Page, url: str) -> tuple[int, str]:
    response = page.goto(url)
    assert response is not None
    return response.status, page.inner_text("#reason")


def canvas_size(page: sync_api.Page) -> tuple[int, int]:
    size = page.evaluate("(() => { const c = document.querySelector('#screen canvas');"
                         " return [c.width, c.height]; })()")  # fmt: skip
    return int(size[0]), int(size[1])


def wait_canvas(page: sync_api.Page, width: int, height: int, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while canvas_size(page) != (width, height):
        assert time.monotonic() < deadline, f"desktop is {canvas_size(page)}, not {width}x{height}"
        time.sleep(0.1)


def display_env(world: worlds.World, session_id: str) -> dict[str, str]:
    """DISPLAY and XAUTHORITY of a session's desktop, from its runtime record."""
    runtime = world.server.desktops_dir / "desktops" / session_id
    record = desktops.record(world.server, session_id)
    return {
        "PATH": os.environ["PATH"],
        "DISPLAY": f":{record['display']}",
        "XAUTHORITY": str(runtime / "Xauthority"),
    }


def terminal_geometry(env: dict[str, str], timeout: float = 15) -> tuple[int, int, int, int]:
    """x, y, width, height of the desktop's terminal window."""
    deadline = time.monotonic() + timeout
    while True:
        found = subprocess.run(
            ["xdotool", "search", "--onlyvisible", "--class", "xterm"],
            env=env, capture_output=True, text=True, check=False,
        )  # fmt: skip
        windows = found.stdout.split()
        if windows:
            break
        assert time.monotonic() < deadline, "no terminal window on the desktop"
        time.sleep(0.2)
    shell = subprocess.run(
        ["xdotool", "getwindowgeometry", "--shell", windows[0]],
        env=env, capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    values = dict(re.findall(r"(\w+)=(\d+)", shell))
    return int(values["X"]), int(values["Y"]), int(values["WIDTH"]), int(values["HEIGHT"])


@pytest.fixture
def second_page(browser: sync_api.Browser) -> Iterator[sync_api.Page]:
    context = browser.new_context(viewport={"width": 800, "height": 600})
    try:
        yield context.new_page()
    finally:
        context.close()


def test_desktop_in_the_browser_takes_typing_into_its_terminal(
    page: sync_api.Page, desktop: Session, expiring: dict[str, Any], artifacts: pathlib.Path
) -> None:
    assert expiring["state"] == "READY"
    open_stream(page, desktop.stream()["url"])
    wait_canvas(page, 1024, 700)  # the desktop took the window's size
    x, y, width, height = terminal_geometry(display_env(desktop.world, desktop.session_id))
    page.mouse.click(x + width / 2, y + height / 2)
    proof = f"proof-{uuid.uuid4().hex[:8]}"
    page.keyboard.type(f"touch ~/{proof}")
    page.keyboard.press("Enter")
    made = desktops.wait_for_file(desktop.world.server.desktops_dir, proof)
    time.sleep(0.5)  # let the terminal's next prompt reach the page
    page.screenshot(path=str(artifacts / "stream-desktop.png"))
    assert made.is_file()
    assert "token=" not in page.url  # the used token is kept out of the browser's history


def test_resizing_the_window_resizes_the_desktop(page: sync_api.Page, desktop: Session) -> None:
    open_stream(page, desktop.stream()["url"])
    wait_canvas(page, 1024, 700)
    page.set_viewport_size({"width": 1280, "height": 820})
    wait_canvas(page, 1280, 820)
    page.set_viewport_size({"width": 900, "height": 640})
    wait_canvas(page, 900, 640)


def test_a_url_admits_one_browser_only(
    page: sync_api.Page, second_page: sync_api.Page, desktop: Session
) -> None:
    url = desktop.stream()["url"]
    open_stream(page, url)
    assert refusal_of(second_page, url) == (
        403,
        "This stream link was used already: ask for a new stream.",
    )


def test_url_of_another_sessions_stream_is_refused(
    page: sync_api.Page, world: worlds.World, desktop: Session
) -> None:
    other = new_session(world)
    mine, theirs = desktop.stream(), other.stream()
    forged = mine["url"].split("?")[0] + "?" + theirs["url"].split("?")[1]
    assert refusal_of(page, forged) == (403, "This stream link is not valid.")
    # admitted into one session, the browser cannot open another session's websocket
    open_stream(page, mine["url"])
    socket = theirs["url"].split("?")[0].replace("http://", "ws://") + "/websocket"
    closed = page.evaluate(
        """(url) => new Promise((resolve) => {
            const ws = new WebSocket(url);
            ws.onclose = (event) => resolve([event.code, event.reason]);
        })""",
        socket,
    )
    assert closed == [4001, "No valid credential for this stream: open its URL."]
    other.delete()


def test_deleting_the_session_ends_the_stream_and_refuses_its_urls(
    page: sync_api.Page, second_page: sync_api.Page, world: worlds.World
) -> None:
    doomed = new_session(world)
    live, unused = doomed.stream(), doomed.stream()
    open_stream(page, live["url"])
    doomed.delete()
    assert status_of(page, "disconnected") == "The session was deleted."
    assert refusal_of(second_page, unused["url"]) == (
        403,
        "The session of this stream is not running.",
    )


def test_expired_url_is_refused_and_the_stream_reads_deleted(
    page: sync_api.Page, desktop: Session, expiring: dict[str, Any]
) -> None:
    wait = expiring["expiresAt"].timestamp() - time.time() + 0.5
    if wait > 0:
        time.sleep(wait)
    assert refusal_of(page, expiring["url"]) == (
        403,
        "This stream link has expired: ask for a new stream.",
    )
    ids = {**desktop.ids, "streamId": expiring["streamId"]}
    deadline = time.monotonic() + 10
    while (stream := desktop.client.get_streaming_session_stream(**ids)["stream"])[
        "state"
    ] != "DELETED":
        assert time.monotonic() < deadline, stream
        time.sleep(0.2)
    assert stream["statusCode"] == "STREAM_DELETED"
