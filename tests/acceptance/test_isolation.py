"""Each owner's desktop is a real desktop running as the owner's own Unix account, and one
owner can do nothing to another's: read their home, look into or signal their processes, use
their display or VNC port, or read the server's data. Also: the image's desktop recipe and the
launch profile's clipboard mode shape the desktop."""

from __future__ import annotations

import json
import os
import pathlib
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from opennimble.providers import local_process
from tests.support import desktops
from tests.support import world as worlds
from tests.support.server import FAST, shared_dir

pytestmark = [
    pytest.mark.xvnc,
    pytest.mark.skipif(os.geteuid() != 0, reason="per-owner accounts need root"),
]

RECIPES = {
    "ami-00abc": {
        "applications": ["xterm -title studio-terminal"],
        "environment": {"STUDIO_PIPELINE": "/srv/pipeline"},
    }
}


@pytest.fixture(scope="module")
def world() -> Iterator[worlds.World]:
    """A server whose image ami-00abc has a desktop recipe; its data directory outside /tmp
    (desktops have a /tmp of their own), so that attempts on it meet it."""
    data_dir = shared_dir("isolation") / "data"
    env = {"OPENNIMBLE_PROVIDERS__LOCAL__RECIPES": json.dumps(RECIPES)}
    with worlds.running_world(data_dir, env) as built:
        yield built


def ready_desktop(
    world: worlds.World, user: Any, profile_id: str, studio: worlds.Studio | None = None
) -> dict[str, Any]:
    studio = studio or world.studio
    session_id = desktops.create_session(user, studio, profile_id)
    user.client().get_waiter("streaming_session_ready").wait(
        studioId=studio.studio_id, sessionId=session_id, WaiterConfig=FAST
    )
    return desktops.record(world.server, session_id)


def eventually(check: Callable[[], bool], timeout: float = 10) -> bool:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)
    return True


def program_pids(desktop: dict[str, Any], name: str) -> list[int]:
    return [
        pid
        for pid in desktops.session_pids(desktop["session_id"])
        if pathlib.Path(f"/proc/{pid}/comm").read_text().strip() == name
    ]


@pytest.fixture(scope="module")
def two(world: worlds.World) -> tuple[dict[str, Any], dict[str, Any]]:
    """The desktops of the artist and of the second artist, READY."""
    profile = world.studio.launch_profile_id
    return ready_desktop(world, world.artist, profile), ready_desktop(world, world.artist2, profile)


def test_the_desktop_runs_its_recipe_as_the_owner(two: tuple[dict[str, Any], ...]) -> None:
    mine = two[0]
    assert mine["uid"] not in (0, os.geteuid())
    assert eventually(
        lambda: "studio-terminal" in desktops.run_as(mine, "xwininfo", "-root", "-tree").stdout
    )
    xterm, openbox = program_pids(mine, "xterm"), program_pids(mine, "openbox")
    assert xterm and openbox
    assert {local_process.uid_of(pid) for pid in xterm + openbox} == {mine["uid"]}
    environ = pathlib.Path(f"/proc/{xterm[0]}/environ").read_bytes().split(b"\0")
    assert b"STUDIO_PIPELINE=/srv/pipeline" in environ
    assert f"HOME={mine['home']}".encode() in environ
    home = pathlib.Path(mine["home"]).stat()
    assert (home.st_uid, home.st_mode & 0o777) == (mine["uid"], 0o700)


def test_an_owner_can_do_nothing_to_another_owners_desktop(
    world: worlds.World, two: tuple[dict[str, Any], ...]
) -> None:
    mine, theirs = two
    assert mine["uid"] != theirs["uid"]
    written = desktops.run_as(mine, "sh", "-c", f"echo private > {mine['home']}/diary.txt")
    assert written.returncode == 0
    xterm = program_pids(mine, "xterm")[0]
    data = world.server.data_dir
    attempts = {
        "read the home": ["cat", f"{mine['home']}/diary.txt"],
        "list the home": ["ls", mine["home"]],
        "read the environment": ["cat", f"/proc/{xterm}/environ"],
        "signal a process": ["kill", "-TERM", str(xterm)],
        "read the X cookie": ["cat", f"{mine['runtime_dir']}/Xauthority"],
        "read the VNC password": ["cat", f"{mine['runtime_dir']}/passwd"],
        "list the desktops": ["ls", str(world.server.desktops_dir / "desktops")],
    }
    for name in ("opennimble.db", "secret.key"):  # the database file: on SQLite only
        if (data / name).exists():
            attempts[f"read {name}"] = ["cat", str(data / name)]
    for what, argv in attempts.items():
        done = desktops.run_as(theirs, *argv)
        assert done.returncode != 0, what
        assert "denied" in done.stderr or "not permitted" in done.stderr, (what, done.stderr)
    display = desktops.run_as(theirs, "xwininfo", "-root", DISPLAY=f":{mine['display']}")
    assert display.returncode != 0 and "unable to open display" in display.stderr
    assert desktops.vnc_connect(mine["port"], None)[0] == [2]  # the VNC port asks for a password
    assert desktops.vnc_connect(mine["port"], theirs["password"])[1] is None
    assert local_process.start_time_of(xterm) is not None  # still running


def test_clipboard_disabled_by_the_launch_profile_is_closed_in_the_desktop(
    world: worlds.World,
) -> None:
    profile = desktops.create_launch_profile(
        world.studio.admin, world.studio, [world.artist], clipboardMode="DISABLED"
    )
    desktop = ready_desktop(world, world.artist, profile)
    for parameter in ("AcceptCutText", "SendCutText"):
        assert desktops.run_as(desktop, "vncconfig", "-get", parameter).stdout.strip() == "0"
    desktops.run_as(desktop, "vncconfig", "-set", "SendCutText=1")
    assert desktops.run_as(desktop, "vncconfig", "-get", "SendCutText").stdout.strip() == "0"


def test_clipboard_enabled_stays_open(two: tuple[dict[str, Any], ...]) -> None:
    for parameter in ("AcceptCutText", "SendCutText"):
        assert desktops.run_as(two[0], "vncconfig", "-get", parameter).stdout.strip() == "1"


def test_one_users_desktops_in_two_studios_cannot_reach_each_other(
    world: worlds.World, two: tuple[dict[str, Any], ...]
) -> None:
    """Finding: the admin of another studio added our artist to their launch profile and ran a
    script as the artist's account there, reading what the artist has in this studio. A user
    the operator brought into two studios has, in each, an account and a home of its own,
    closed to the other (and a studio's admin alone can no longer bring them in)."""
    mine = two[0]
    written = desktops.run_as(mine, "sh", "-c", 'echo studio-a-work > "$HOME/shot.txt"')
    assert written.returncode == 0, written.stderr
    foreign = world.foreign
    world.operator.client().put_launch_profile_members(
        studioId=foreign.studio_id,
        launchProfileId=foreign.launch_profile_id,
        identityStoreId=foreign.admin.identity_store_id,
        members=[{"principalId": world.artist.user_id, "persona": "USER"}],
    )
    there = ready_desktop(world, world.artist, foreign.launch_profile_id, foreign)
    assert (there["uid"], there["home"]) != (mine["uid"], mine["home"])
    assert there["user"] != mine["user"]
    shot = str(pathlib.Path(mine["home"]) / "shot.txt")
    assert desktops.run_as(there, "cat", shot).returncode != 0
    assert desktops.run_as(there, "ls", mine["home"]).returncode != 0
    assert desktops.run_as(there, "kill", "-0", str(mine["pid"])).returncode != 0


@pytest.mark.sqlite  # the PostgreSQL run keeps sealed passwords too (test_stream on PostgreSQL)
def test_the_database_holds_no_usable_vnc_password(
    world: worlds.World, two: tuple[dict[str, Any], ...]
) -> None:
    """Finding: every desktop's VNC password was in clear in the session row, and an artist
    who copied the database typed into another artist's desktop. The database (with its
    write-ahead log) holds no desktop's password."""
    data = world.server.data_dir
    stored = b"".join(
        path.read_bytes() for path in data.iterdir() if path.name.startswith("opennimble.db")
    )
    assert stored  # SQLite: the test server's database lives in the data directory
    for desktop in two:
        assert desktop["password"].encode() not in stored
        assert b'"sealedPassword"' in stored  # what the gateway unseals (test_stream.py)
