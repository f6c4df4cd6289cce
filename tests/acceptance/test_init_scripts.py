"""Studio components' LINUX initialization scripts run when a session's desktop starts: system
scripts before it, as root, user scripts inside it, as the owner; a failing one fails the
session with INITIALIZATION_SCRIPT_ERROR and says which script failed and how."""

from __future__ import annotations

import os
import pathlib

import pytest

from tests.support import desktops
from tests.support import world as worlds
from tests.support.server import FAST

pytestmark = [
    pytest.mark.xvnc,
    pytest.mark.skipif(os.geteuid() != 0, reason="system scripts run as root"),
]

SYSTEM = (
    "SYSTEM_INITIALIZATION",
    'log="$OPENNIMBLE_OWNER_HOME/boot.txt"\n'
    'echo "system as $(id -un), display ${DISPLAY:-none}, $GREETING" > "$log"\n'
    'chown "$OPENNIMBLE_OWNER:" "$log"\n',
)
USER = (
    "USER_INITIALIZATION",
    'echo "user as $(id -un), display $DISPLAY, $GREETING" >> "$HOME/boot.txt"\n'
    'xwininfo -root > /dev/null && echo "the display answers" >> "$HOME/boot.txt"\n',
)
FAILING = ("USER_INITIALIZATION", "echo 'mounting /projects'\necho 'no route to filer' >&2\nexit 7")


def failed(world: worlds.World, session_id: str) -> tuple[str, str, str]:
    session = desktops.settle(world.artist, world.studio, session_id)
    return session["state"], session["statusCode"], session.get("statusMessage", "")


def test_scripts_run_as_root_before_the_desktop_and_as_the_owner_inside(
    world: worlds.World,
) -> None:
    component = desktops.component(world.studio.admin, world.studio, "pipeline", USER, SYSTEM)
    profile = desktops.create_launch_profile(
        world.studio.admin, world.studio, [world.artist], component_ids=[component]
    )
    session_id = desktops.create_session(world.artist, world.studio, profile)
    world.artist.client().get_waiter("streaming_session_ready").wait(
        studioId=world.studio.studio_id, sessionId=session_id, WaiterConfig=FAST
    )
    desktop = desktops.record(world.server, session_id)
    lines = (pathlib.Path(desktop["home"]) / "boot.txt").read_text().splitlines()
    assert lines == [
        "system as root, display none, hello",
        f"user as {desktop['user']}, display :{desktop['display']}, hello",
        "the display answers",
    ]


@pytest.mark.parametrize("run_context", ["SYSTEM_INITIALIZATION", "USER_INITIALIZATION"])
def test_a_failing_script_fails_the_new_session(world: worlds.World, run_context: str) -> None:
    fine = desktops.component(world.studio.admin, world.studio, "licenses", USER)
    broken = desktops.component(
        world.studio.admin, world.studio, "storage", (run_context, FAILING[1])
    )
    profile = desktops.create_launch_profile(
        world.studio.admin, world.studio, [world.artist], component_ids=[fine, broken]
    )
    session_id = desktops.create_session(world.artist, world.studio, profile)
    assert failed(world, session_id) == (
        "CREATE_FAILED",
        "INITIALIZATION_SCRIPT_ERROR",
        f"Initialization script of studio component 'storage' ({run_context}) failed with "
        "exit status 7: mounting /projects / no route to filer",
    )


def test_a_script_failing_at_a_later_start_fails_that_start(world: worlds.World) -> None:
    once = (
        "USER_INITIALIZATION",
        'if [ -e "$OPENNIMBLE_SESSION_DIR/started" ]; then echo "only once" >&2; exit 4; fi\n'
        'touch "$OPENNIMBLE_SESSION_DIR/started"\n',
    )
    component = desktops.component(world.studio.admin, world.studio, "first-boot", once)
    profile = desktops.stoppable(
        world.studio.admin, world.studio, [world.artist], component_ids=[component]
    )
    artist, studio_id = world.artist.client(), world.studio.studio_id
    session_id = desktops.create_session(world.artist, world.studio, profile)
    artist.get_waiter("streaming_session_ready").wait(
        studioId=studio_id, sessionId=session_id, WaiterConfig=FAST
    )
    artist.stop_streaming_session(studioId=studio_id, sessionId=session_id)
    artist.get_waiter("streaming_session_stopped").wait(
        studioId=studio_id, sessionId=session_id, WaiterConfig=FAST
    )
    artist.start_streaming_session(studioId=studio_id, sessionId=session_id)
    assert failed(world, session_id) == (
        "START_FAILED",
        "INITIALIZATION_SCRIPT_ERROR",
        "Initialization script of studio component 'first-boot' (USER_INITIALIZATION) failed "
        "with exit status 4: only once",
    )
