"""Two artists' live desktops on one host, for attacks from inside a desktop.

``scene`` runs a server (local provider, as root: per-owner accounts), and gives the artist
("A", the attacker) and the second artist ("B", the victim) a READY desktop each, in the same
studio. B's desktop has what an artist's desktop holds: files in the home and in the session's
storage, a user initialization script (its file and log in the desktop's runtime directory)
and, from an earlier session of B that was stopped, a backup archive. Every test module gets
its own scene, so modules can run in parallel; at the end every session is deleted and no
desktop may be left running.
"""

from __future__ import annotations

import dataclasses
import os
import pathlib
from collections.abc import Iterator
from typing import Any

import pytest

from tests.support import desktops
from tests.support import world as worlds
from tests.support.server import FAST, shared_dir

B_SECRET = "b-private-work"
# desktops of the scene may write files of 64 MiB at most, and 32 MiB and 2048 files in their
# /tmp, /var/tmp and /dev/shm together; each owner's home holds 96 MiB
# (tests/security/test_needs_isolation)
LIMITS = {
    "OPENNIMBLE_PROVIDERS__LOCAL__MAX_FILE_SIZE": "64",
    "OPENNIMBLE_PROVIDERS__LOCAL__HOME_SIZE": "96",
    "OPENNIMBLE_PROVIDERS__LOCAL__SCRATCH_SIZE": "32",
    "OPENNIMBLE_PROVIDERS__LOCAL__SCRATCH_FILES": "2048",
}
B_SCRIPT = ("USER_INITIALIZATION", 'echo "b-init $GREETING"\n')


@dataclasses.dataclass
class Scene:
    world: worlds.World
    a: dict[str, Any]  # the attacker's desktop record (tests/support/desktops.record)
    b: dict[str, Any]  # the victim's
    b_backup: pathlib.Path  # an archive of a stopped session of B

    @property
    def data_dir(self) -> pathlib.Path:
        return self.world.server.data_dir

    @property
    def desktops_dir(self) -> pathlib.Path:
        return self.world.server.desktops_dir

    def as_a(self, *argv: str, **env: str) -> Any:
        """Run a command in A's desktop: as A's account, on A's display."""
        return desktops.run_as(self.a, *argv, **env)

    def b_storage(self) -> pathlib.Path:
        return pathlib.Path(self.b["home"]) / "sessions" / self.b["session_id"]


def ready(world: worlds.World, user: Any, profile: str) -> str:
    session_id = desktops.create_session(user, world.studio, profile)
    user.client().get_waiter("streaming_session_ready").wait(
        studioId=world.studio.studio_id, sessionId=session_id, WaiterConfig=FAST
    )
    return session_id


def backup_of_b(world: worlds.World) -> pathlib.Path:
    """Stop a session of B whose launch profile takes backups: the path of its archive."""
    profile = desktops.stoppable(
        world.studio.admin,
        world.studio,
        [world.artist2],
        sessionBackup={"mode": "AUTOMATIC", "maxBackupsToRetain": 1},
    )
    session_id = ready(world, world.artist2, profile)
    storage = pathlib.Path(desktops.record(world.server, session_id)["home"]) / "sessions"
    desktops.run_as(
        desktops.record(world.server, session_id),
        "sh",
        "-c",
        f"echo {B_SECRET} > {storage / session_id}/kept.txt",
    )
    client = world.artist2.client()
    client.stop_streaming_session(studioId=world.studio.studio_id, sessionId=session_id)
    client.get_waiter("streaming_session_stopped").wait(
        studioId=world.studio.studio_id, sessionId=session_id, WaiterConfig=FAST
    )
    (archive,) = (world.server.data_dir / "backups" / session_id).glob("*.tar")
    return archive


@pytest.fixture(scope="module")
def scene() -> Iterator[Scene]:
    if os.geteuid() != 0:
        pytest.skip("per-owner accounts need root")
    # outside /tmp: desktops have a /tmp of their own, where the attempts on the data dir
    # would meet nothing
    data_dir = shared_dir("security") / "data"
    with worlds.running_world(data_dir, LIMITS) as world:
        component = desktops.component(world.studio.admin, world.studio, "licence", B_SCRIPT)
        profile = desktops.create_launch_profile(
            world.studio.admin,
            world.studio,
            [world.artist, world.artist2],
            component_ids=[component],
        )
        archive = backup_of_b(world)
        a = desktops.record(world.server, ready(world, world.artist, profile))
        b = desktops.record(world.server, ready(world, world.artist2, profile))
        storage = pathlib.Path(b["home"]) / "sessions" / b["session_id"]
        written = desktops.run_as(
            b, "sh", "-c", f"echo {B_SECRET} > $HOME/notes.txt; echo {B_SECRET} > {storage}/x"
        )
        assert written.returncode == 0, written.stderr
        yield Scene(world, a, b, archive)
