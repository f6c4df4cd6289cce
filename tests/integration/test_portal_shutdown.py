"""A server asked to stop while a portal page listens for live changes stops within its grace
period, instead of waiting for the browser to go away."""

from __future__ import annotations

import pathlib
import re
import threading
import time

import requests

from tests.support.server import Server

PASSWORD = "a long password"


def test_an_open_live_page_does_not_hold_the_server(tmp_path: pathlib.Path) -> None:
    server = Server(tmp_path / "data")
    server.start()
    try:
        server.user("artist")
        server.set_password("artist", PASSWORD)
        browser = requests.Session()
        portal = server.endpoint + "/portal/"
        form = browser.get(portal + "signin").text
        token = re.search(r'name="csrf_token" value="([^"]+)"', form)
        assert token is not None
        signed_in = browser.post(
            portal + "signin",
            data={"csrf_token": token.group(1), "name": "artist", "password": PASSWORD},
        )
        assert signed_in.url == portal
        live = browser.get(portal + "sessions/events", stream=True, timeout=60)
        assert live.headers["content-type"].startswith("text/event-stream")
        ended = threading.Event()

        def listen() -> None:
            try:
                for _ in live.iter_lines():
                    pass
            except requests.RequestException:
                pass
            ended.set()

        threading.Thread(target=listen, daemon=True).start()
        time.sleep(1)
        started = time.monotonic()
    finally:
        server.stop()
    assert time.monotonic() - started < 10
    assert ended.wait(5)
