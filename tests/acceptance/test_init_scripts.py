"""Studio components' LINUX initialization scripts run when a session's desktop starts: system
scripts before it (as root only if an operator wrote the component, otherwise as the owner),
user scripts inside it, as the owner; a failing one fails the
session with INITIALIZATION_SCRIPT_ERROR and says which script failed and how."""

from __future__ import annotations

import os
import pathlib
from typing import Any

import pytest

from tests.support import desktops
from tests.support import world as worlds
from tests.support.server import FAST, User

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


def boot(world: worlds.World, component: str) -> tuple[dict[str, Any], list[str]]:
    """Start a desktop of the artist with ``component``: its record and the lines of boot.txt."""
    profile = desktops.create_launch_profile(
        world.studio.admin, world.studio, [world.artist], component_ids=[component]
    )
    session_id = desktops.create_session(world.artist, world.studio, profile)
    world.artist.client().get_waiter("streaming_session_ready").wait(
        studioId=world.studio.studio_id, sessionId=session_id, WaiterConfig=FAST
    )
    desktop = desktops.record(world.server, session_id)
    return desktop, (pathlib.Path(desktop["home"]) / "boot.txt").read_text().splitlines()


def test_an_operators_scripts_run_as_root_before_the_desktop_and_as_the_owner_inside(
    world: worlds.World,
) -> None:
    component = desktops.component(world.operator, world.studio, "pipeline", USER, SYSTEM)
    desktop, lines = boot(world, component)
    assert lines == [
        "system as root, display none, hello",
        f"user as {desktop['user']}, display :{desktop['display']}, hello",
        "the display answers",
    ]


# what a studio administrator tried in order to become root: read the installation key and the
# database and print them into the session's statusMessage
TAKE_OVER = (
    'echo "uid=$(id -u) user=$(id -un)"\n'
    'cat "$KEY" >/dev/null 2>&1 && echo "read the installation key" || echo "key refused"\n'
    'cat "$DB" >/dev/null 2>&1 && echo "read the database" || echo "database refused"\n'
    "exit 3\n"
)


def take_over(world: worlds.World, writer: User) -> str:
    """The statusMessage of a session whose profile has ``writer``'s TAKE_OVER system script."""
    created = writer.client().create_studio_component(
        studioId=world.studio.studio_id,
        name="takeover",
        type="CUSTOM",
        initializationScripts=[
            {
                "launchProfileProtocolVersion": desktops.ROLE_VERSION,
                "platform": "LINUX",
                "runContext": "SYSTEM_INITIALIZATION",
                "script": TAKE_OVER,
            }
        ],
        scriptParameters=[
            {"key": "KEY", "value": str(world.server.data_dir / "secret.key")},
            {"key": "DB", "value": str(world.server.data_dir / "opennimble.db")},
        ],
    )["studioComponent"]
    component = str(created["studioComponentId"])
    writer.client().get_waiter("studio_component_ready").wait(
        studioId=world.studio.studio_id, studioComponentId=component, WaiterConfig=FAST
    )
    profile = desktops.create_launch_profile(
        world.studio.admin, world.studio, [world.artist], component_ids=[component]
    )
    session_id = desktops.create_session(world.artist, world.studio, profile)
    return failed(world, session_id)[2]


def test_a_studio_admins_system_script_runs_unprivileged_as_the_owner(
    world: worlds.World,
) -> None:
    """Finding: an admin's SYSTEM_INITIALIZATION script ran as root, read the installation key
    and acted as operator everywhere. It must run as the session's account, which can read
    neither the key nor the database."""
    message = take_over(world, world.studio.admin)
    assert "uid=0 " not in message
    assert "user=on-" in message
    assert "key refused / database refused" in message


def test_an_admins_change_to_an_operators_component_takes_root_away(
    world: worlds.World,
) -> None:
    """The admin may not keep the operator's trust by editing the operator's component: after
    the admin's update its system scripts run unprivileged."""
    component = desktops.component(world.operator, world.studio, "root-tools", SYSTEM)
    admin = world.studio.admin.client()
    admin.update_studio_component(
        studioId=world.studio.studio_id, studioComponentId=component, description="edited"
    )
    admin.get_waiter("studio_component_ready").wait(
        studioId=world.studio.studio_id, studioComponentId=component, WaiterConfig=FAST
    )
    desktop, lines = boot(world, component)
    assert lines[0] == f"system as {desktop['user']}, display none, hello"


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


def test_an_operator_who_rewrites_an_admins_component_vouches_for_it(
    world: worlds.World,
) -> None:
    """An operator's UpdateStudioComponent that sets both the scripts and their parameters has
    written all that runs: the system scripts run as root from then on."""
    component = desktops.component(world.studio.admin, world.studio, "vouched", SYSTEM)
    operator = world.operator.client()
    operator.update_studio_component(
        studioId=world.studio.studio_id,
        studioComponentId=component,
        initializationScripts=[
            {
                "launchProfileProtocolVersion": desktops.ROLE_VERSION,
                "platform": "LINUX",
                "runContext": SYSTEM[0],
                "script": SYSTEM[1],
            }
        ],
        scriptParameters=[{"key": "GREETING", "value": "hello"}],
    )
    operator.get_waiter("studio_component_ready").wait(
        studioId=world.studio.studio_id, studioComponentId=component, WaiterConfig=FAST
    )
    _, lines = boot(world, component)
    assert lines[0] == "system as root, display none, hello"
