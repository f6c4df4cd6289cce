"""What the local provider asks a desktop's X display before it says READY: a window manager
that answers, then an application window mapped with the keyboard focus."""

from __future__ import annotations

import pathlib
import select
import subprocess
import threading
from typing import Any

import pytest
from Xlib import X
from Xlib.display import Display

from opennimble.providers import local_display
from tests.support import vnc

pytestmark = pytest.mark.xvnc


def provider_auth(server: vnc.Xvnc, directory: pathlib.Path) -> pathlib.Path:
    """The provider's own cookie file for ``server`` (its cookie, under this host's name)."""
    cookie = server.xauthority.read_bytes()[-16:]
    path = directory / local_display.AUTH_FILE
    path.write_bytes(local_display.auth_entry(cookie))
    return path


def test_usable_once_the_window_manager_answers_and_a_window_has_the_focus(
    tmp_path: pathlib.Path,
) -> None:
    with vnc.xvnc(tmp_path / "x") as server:
        auth = provider_auth(server, tmp_path)
        wait = local_display.wait_usable
        assert wait(server.display, auth, want_window=False, timeout=0.2) == (
            "the window manager is not running yet"
        )
        started = [subprocess.Popen(["openbox"], env=server.env(), stderr=subprocess.DEVNULL)]
        try:
            assert local_display.wait_window_manager(server.display, auth, 20) is None
            assert wait(server.display, auth, want_window=False, timeout=0.2) is None
            assert wait(server.display, auth, want_window=True, timeout=0.2) == (
                "no application window is mapped yet"
            )
            started.append(subprocess.Popen(["xterm"], env=server.env()))
            assert wait(server.display, auth, want_window=True, timeout=20) is None
        finally:
            for process in started:
                process.kill()
                process.wait()


def test_a_display_that_refuses_the_cookie_is_not_reachable(tmp_path: pathlib.Path) -> None:
    with vnc.xvnc(tmp_path / "x") as server:
        wrong = tmp_path / "wrong"
        wrong.write_bytes(local_display.auth_entry(b"\0" * 16))
        lacking = local_display.wait_usable(server.display, wrong, want_window=True, timeout=1)
        assert lacking is not None and "not reachable" in lacking  # and no socket leaks
    gone = local_display.wait_usable(server.display, wrong, want_window=True, timeout=0.2)
    assert gone is not None and "not reachable" in gone


def test_a_window_manager_answers_only_once_it_manages_the_screen(tmp_path: pathlib.Path) -> None:
    """A window manager takes the screen's selection before it redirects the windows'
    requests to itself, and handles none while it starts up: until it does, a resize of the
    provider's passes straight to the server or stays unanswered, and says nothing."""
    with vnc.xvnc(tmp_path / "x") as server:
        auth = provider_auth(server, tmp_path)
        with local_display.connect(server.display, auth) as wm:  # a window manager, by steps
            root = take_the_screen(wm)
            lacking = local_display.wait_window_manager(server.display, auth, 0.3)
            assert lacking == "the window manager does not manage the screen yet"
            root.change_attributes(event_mask=X.SubstructureRedirectMask)
            wm.sync()
            lacking = local_display.wait_window_manager(server.display, auth, 0.3)
            assert lacking == "the window manager does not answer yet"
            stop = threading.Event()
            answering = threading.Thread(target=_pass_requests_on, args=(wm, stop))
            answering.start()
            try:
                assert local_display.wait_window_manager(server.display, auth, 5) is None
            finally:
                stop.set()
                answering.join()


def take_the_screen(wm: Display) -> Any:
    """What a window manager does first: own the screen's selection (``WM_S0``); return the
    root window."""
    root = wm.screen().root
    owner = root.create_window(-10, -10, 1, 1, 0, 0, X.InputOnly, X.CopyFromParent)
    owner.set_selection_owner(wm.intern_atom("WM_S0"), X.CurrentTime)
    wm.sync()
    return root


def _pass_requests_on(wm: Display, stop: threading.Event) -> None:
    """What a running window manager does with the resizes of windows it does not manage."""
    while not stop.is_set():
        for _ in range(wm.pending_events()):
            event = wm.next_event()
            if event.type == X.ConfigureRequest:
                event.window.configure(width=event.width, height=event.height)
        wm.flush()
        select.select([wm.fileno()], [], [], 0.02)
