"""Each owner's home is a file system of its own of ``home_size`` (an ext4 image mounted on it):
mounted while a desktop of the owner runs, or while the provider works in it (backups,
restores, discarding storage), unmounted otherwise, with nothing left attached; a home made
before ``home_size`` was set moves into its image, unless it is too large for it."""

from __future__ import annotations

import os
import pathlib
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

import pytest

from opennimble import config
from opennimble.providers import local_confine
from tests.support import desktops
from tests.support import world as worlds
from tests.support.server import FAST

pytestmark = [
    pytest.mark.xvnc,
    pytest.mark.skipif(os.geteuid() != 0, reason="home images are mounted as root"),
]
HOME_SIZE = "64"  # MiB


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[worlds.World]:
    data_dir = tmp_path_factory.mktemp("home-images") / "data"
    env = {"OPENNIMBLE_PROVIDERS__LOCAL__HOME_SIZE": HOME_SIZE}
    with worlds.running_world(data_dir, env) as built:
        yield built


def attached(world: worlds.World) -> list[str]:
    """The loop devices whose file is one of the installation's home images."""
    listed = subprocess.run(
        ["losetup", "--list", "--noheadings", "--output", "BACK-FILE"],
        capture_output=True, text=True, check=True,
    ).stdout.split()  # fmt: skip
    images = str(world.server.desktops_dir / "home-images") + "/"
    return [path for path in listed if path.startswith(images)]


def ready(world: worlds.World, user: Any, profile: str) -> dict[str, Any]:
    session_id = desktops.create_session(user, world.studio, profile)
    user.client().get_waiter("streaming_session_ready").wait(
        studioId=world.studio.studio_id, sessionId=session_id, WaiterConfig=FAST
    )
    return desktops.record(world.server, session_id)


def settled(world: worlds.World, user: Any, session_id: str, action: str) -> None:
    """Stop or delete a session and wait until it is STOPPED or DELETED."""
    client, ids = user.client(), {"studioId": world.studio.studio_id, "sessionId": session_id}
    getattr(client, f"{action}_streaming_session")(**ids)
    client.get_waiter(f"streaming_session_{action}ped" if action == "stop" else
                      "streaming_session_deleted").wait(**ids, WaiterConfig=FAST)  # fmt: skip


def write(desktop: dict[str, Any], path: pathlib.Path, text: str) -> None:
    done = desktops.run_as(desktop, "sh", "-c", f"echo {text} > {path}")
    assert done.returncode == 0, done.stderr


def backups_of(world: worlds.World, user: Any, session_id: str) -> list[dict[str, Any]]:
    listed = user.client().list_streaming_session_backups(studioId=world.studio.studio_id)
    found = [b for b in listed["streamingSessionBackups"] if b["sessionId"] == session_id]
    return sorted(found, key=lambda b: b["createdAt"])


def unmounted(world: worlds.World, home: pathlib.Path) -> bool:
    """Whether ``home`` is unmounted and no image of the installation is on a loop device
    (the kernel may take a moment to clear one after its file system was unmounted)."""
    if os.path.ismount(home):
        return False
    deadline = time.monotonic() + 5
    while attached(world) and time.monotonic() < deadline:
        time.sleep(0.05)
    return attached(world) == []


def test_a_home_is_mounted_while_its_desktops_run(world: worlds.World) -> None:
    """The home is mounted from the owner's first desktop until the last ends (two desktops of
    one owner); the backups taken on stops while no other desktop of the owner runs are read
    from the image, and a start from one restores it into the image while no desktop runs."""
    studio, artist = world.studio, world.artist
    profile = desktops.stoppable(
        studio.admin, studio, [artist], sessionBackup={"mode": "AUTOMATIC", "maxBackupsToRetain": 2}
    )
    first = ready(world, artist, profile)
    home, session_id = pathlib.Path(first["home"]), first["session_id"]
    ids = {"studioId": studio.studio_id, "sessionId": session_id}
    assert os.path.ismount(home) and len(attached(world)) == 1
    work = home / "sessions" / session_id / "work.txt"
    write(first, work, "before")
    write(first, home / "notes.txt", "mine")
    settled(world, artist, session_id, "stop")  # backs "before" up with no desktop running
    assert unmounted(world, home)
    assert list(home.iterdir()) == [], "the owner's files are on the host's file system"
    with desktops.home_at_rest(world.server, first) as image:
        assert image != home and (image / "notes.txt").read_text() == "mine\n"
        assert (image / work.relative_to(home)).read_text() == "before\n"
    artist.client().start_streaming_session(**ids)
    artist.client().get_waiter("streaming_session_ready").wait(**ids, WaiterConfig=FAST)
    assert work.read_text() == "before\n"
    second = ready(world, artist, profile)
    write(second, work, "after")  # the same owner's other desktop changes the stored work
    settled(world, artist, session_id, "stop")
    assert os.path.ismount(home), "the home went with one desktop while another runs"
    settled(world, artist, second["session_id"], "delete")
    assert unmounted(world, home)
    oldest = backups_of(world, artist, session_id)[0]
    artist.client().start_streaming_session(**ids, backupId=oldest["backupId"])
    artist.client().get_waiter("streaming_session_ready").wait(**ids, WaiterConfig=FAST)
    assert os.path.ismount(home)
    assert work.read_text() == "before\n", "the backup was not restored into the home's image"
    assert (home / "notes.txt").read_text() == "mine\n"
    settled(world, artist, session_id, "delete")
    assert unmounted(world, home)


def test_a_restarted_server_keeps_the_home_mounted(world: worlds.World) -> None:
    """The server restarts while a desktop runs: the desktop and its home stay, and deleting
    the session afterwards unmounts the home."""
    profile = desktops.stoppable(world.studio.admin, world.studio, [world.artist])
    desktop = ready(world, world.artist, profile)
    world.server.stop()
    world.server.start()
    world.artist.client().get_waiter("streaming_session_ready").wait(
        studioId=world.studio.studio_id, sessionId=desktop["session_id"], WaiterConfig=FAST
    )
    assert os.path.ismount(desktop["home"])
    write(desktop, pathlib.Path(desktop["home"]) / "still.txt", "here")
    settled(world, world.artist, desktop["session_id"], "delete")
    assert unmounted(world, pathlib.Path(desktop["home"]))


def test_an_existing_home_moves_into_its_image(world: worlds.World) -> None:
    """A home made while ``home_size`` was 0 is copied into its image on its first mount (and
    emptied on the host); one holding more than ``home_size`` is refused, saying so, and left
    as it was."""
    server, studio, artist = world.server, world.studio, world.artist2
    profile = desktops.stoppable(studio.admin, studio, [artist])
    server.stop()
    server.env["OPENNIMBLE_PROVIDERS__LOCAL__HOME_SIZE"] = "0"
    server.start()
    desktop = ready(world, artist, profile)
    home = pathlib.Path(desktop["home"])
    assert not os.path.ismount(home)
    write(desktop, home / "notes.txt", "kept")
    big = home / "big"
    done = desktops.run_as(desktop, "sh", "-c", f"head -c 80000000 /dev/zero > {big}")
    assert done.returncode == 0, done.stderr
    settled(world, artist, desktop["session_id"], "delete")
    server.stop()
    server.env["OPENNIMBLE_PROVIDERS__LOCAL__HOME_SIZE"] = HOME_SIZE
    server.start()
    refused_id = desktops.create_session(artist, studio, profile)
    refused = desktops.settle(artist, studio, refused_id)
    assert refused["state"] == "CREATE_FAILED"
    assert "more than home_size (64 MiB)" in refused["statusMessage"]
    assert big.stat().st_size == 80000000 and (home / "notes.txt").read_text() == "kept\n"
    assert unmounted(world, home)
    big.unlink()
    settled(world, artist, refused_id, "delete")
    desktop = ready(world, artist, profile)
    assert os.path.ismount(home)
    assert (home / "notes.txt").read_text() == "kept\n"
    assert os.stat(home / "notes.txt").st_uid == desktop["uid"]
    settled(world, artist, desktop["session_id"], "delete")
    assert unmounted(world, home)
    assert list(home.iterdir()) == [], "the home's old copy stays on the host's file system"


# Runs "$@" in a mount namespace of its own whose /dev is a tmpfs with null, zero, random and
# urandom bound from the host's, and no loop device: a host without the loop module, as far
# as the command can tell. "$1": an empty directory to make the new /dev in. The copies of the
# home images mounted on the host go first: where the host's mounts are private, the namespace
# would keep them attached while it lasts (the other run's tests wait for theirs to be detached)
WITHOUT_LOOP_DEVICES = (
    "findmnt -rn -t ext4 -o TARGET,LABEL | while read -r m l; do "
    f'[ "$l" != {local_confine.HOME_LABEL} ] || umount --lazy -- "$m" || exit 1; done && '
    'mount -t tmpfs none "$1" && for d in null zero random urandom; do '
    'touch "$1/$d" && mount --bind "/dev/$d" "$1/$d" || exit 1; done && '
    'mount --move "$1" /dev && shift && exec "$@"'
)


def test_a_host_without_loop_devices_is_refused_at_start(tmp_path: pathlib.Path) -> None:
    """With ``home_size`` set, a server on a host without loop devices refuses to start and
    says why and what to do, rather than failing every session later."""
    data = tmp_path / "data"
    (tmp_path / "dev").mkdir()
    argv = ["unshare", "--mount", "--propagation", "slave", "sh", "-c", WITHOUT_LOOP_DEVICES]
    argv += ["sh", str(tmp_path / "dev"), sys.executable, "-m", "opennimble", "serve"]
    argv += ["--port", "0", "--data-dir", str(data)]
    env = {**os.environ, "OPENNIMBLE_PROVIDERS__LOCAL__HOME_SIZE": "64"}
    try:
        done = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=60)
    finally:
        shutil.rmtree(config.default_desktops_dir(data), ignore_errors=True)
    assert done.returncode == 1, done.stderr
    assert "Traceback" not in done.stderr
    assert "home_size is set, but this host has no loop devices" in done.stderr
    assert "modprobe loop" in done.stderr and "home_size = 0" in done.stderr
