"""What the Slurm job's launcher (``desktop_job``, stdlib only) asks a desktop's X display
before it starts the applications and before it reports the desktop: the same rule as the
local provider's (tests/integration/test_local_display.py)."""

from __future__ import annotations

import pathlib

import pytest
from Xlib import X

from opennimble.providers import desktop_job, local_display
from tests.integration.test_local_display import provider_auth, take_the_screen
from tests.support import vnc

pytestmark = pytest.mark.xvnc


def test_the_launcher_waits_until_the_window_manager_manages_the_screen(
    tmp_path: pathlib.Path,
) -> None:
    """Openbox takes the screen's selection before it redirects the windows' requests to
    itself: an application started in between maps unmanaged (an xterm then waits seconds for
    its resize), so the selection alone must not let the applications start."""
    with vnc.xvnc(tmp_path / "x") as server:
        cookie = server.xauthority.read_bytes()[-16:]
        with desktop_job.XDisplay(server.display, cookie) as launcher:
            assert launcher.missing(want_window=False) == "the window manager is not running yet"
            auth = provider_auth(server, tmp_path)
            with local_display.connect(server.display, auth) as wm:  # a window manager, by steps
                root = take_the_screen(wm)
                assert launcher.missing(want_window=False) == (
                    "the window manager does not manage the screen yet"
                )
                root.change_attributes(event_mask=X.SubstructureRedirectMask)
                wm.sync()
                assert launcher.missing(want_window=False) is None
                assert launcher.missing(want_window=True) == "no application window is mapped yet"
