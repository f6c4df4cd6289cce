"""Attacks from inside an artist's desktop (A) against another artist's live desktop (B), both
Slurm jobs on the same node (``provider = "slurm"``), as in tests/security for the local
provider: each attempt must fail, and says why.

A "terminal of A" is a shell as A's account in A's job (its mount namespace: the job's own
``/tmp``, from Slurm's ``job_container/tmpfs``, which the test cluster uses) with the file
size limit of A's desktop.
"""

from __future__ import annotations

import json
import pathlib
import pwd
import subprocess
from collections.abc import Iterator
from typing import Any

import pytest

from opennimble.providers import local_process
from opennimble.providers import slurm as slurm_provider
from tests.security.test_needs_isolation import LIMIT, SQUAT, SQUATTER
from tests.support import desktops, slurm
from tests.support import world as worlds
from tests.support.server import FAST

pytestmark = [pytest.mark.slurm, pytest.mark.xvnc, pytest.mark.security]
if (why := slurm.available()) is not None:
    pytestmark.append(pytest.mark.skip(reason=why))

B_SECRET = "b-private-work"


@pytest.fixture(scope="module")
def world(
    cluster: slurm.Cluster, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[worlds.World]:
    env = cluster.server_env(resource_scale=0.25, max_file_size=LIMIT // 2**20)
    with worlds.running_world(tmp_path_factory.mktemp("slurmsec") / "data", env) as built:
        yield built
    assert cluster.live_jobs() == [], "jobs left running"


def ready(world: worlds.World, user: Any) -> str:
    session_id = desktops.create_session(user, world.studio, world.studio.launch_profile_id)
    user.client().get_waiter("streaming_session_ready").wait(
        studioId=world.studio.studio_id, sessionId=session_id, WaiterConfig=FAST
    )
    return session_id


def job_desktop(cluster: slurm.Cluster, session_id: str) -> dict[str, Any]:
    """A record of a Slurm desktop like the local provider's (tests/support/desktops)."""
    (job,) = [j for j in cluster.live_jobs() if j["name"] == f"opennimble-{session_id}"]
    entry = pwd.getpwnam(job["user_name"])
    runtime = pathlib.Path(entry.pw_dir) / slurm_provider.RUNTIME / session_id
    endpoint = json.loads((runtime / "endpoint.json").read_text())
    name = local_process.desktop_name(session_id)
    (xvnc,) = [
        pid
        for pid in local_process.user_pids(entry.pw_uid)
        if name in local_process.cmdline_of(pid)
    ]
    return {
        "session_id": session_id,
        "user": entry.pw_name,
        "uid": entry.pw_uid,
        "gid": entry.pw_gid,
        "home": entry.pw_dir,
        "runtime_dir": str(runtime),
        "display": endpoint["display"],
        "port": endpoint["port"],
        "password": endpoint["password"],
        "pid": xvnc,
        "namespace_of": xvnc,
    }


@pytest.fixture(scope="module")
def scene(world: worlds.World, cluster: slurm.Cluster) -> dict[str, dict[str, Any]]:
    a = job_desktop(cluster, ready(world, world.artist))
    b = job_desktop(cluster, ready(world, world.artist2))
    written = desktops.run_as(b, "sh", "-c", f"echo {B_SECRET} > $HOME/notes.txt")
    assert written.returncode == 0, written.stderr
    return {"a": a, "b": b}


def refused(done: subprocess.CompletedProcess[str]) -> bool:
    return done.returncode != 0 and (
        "Permission denied" in done.stderr or "Operation not permitted" in done.stderr
    )


@pytest.mark.parametrize(
    "target",
    ["notes.txt", f"{slurm_provider.RUNTIME}/{{sid}}/passwd",
     f"{slurm_provider.RUNTIME}/{{sid}}/Xauthority",
     f"{slurm_provider.RUNTIME}/{{sid}}/endpoint.json"],
    ids=["home-file", "vnc-password-file", "x-authority", "endpoint-with-password"],
)  # fmt: skip
def test_a_cannot_read_bs_files(scene: dict[str, dict[str, Any]], target: str) -> None:
    """B's home (and the launcher's files in it: the VNC password, the X cookie, the endpoint
    with the password) is B's account's, mode 0700."""
    b = scene["b"]
    path = pathlib.Path(b["home"]) / target.format(sid=b["session_id"])
    assert refused(desktops.run_as(scene["a"], "cat", str(path))), f"A read {path}"


def test_a_cannot_see_or_squat_bs_x_socket(scene: dict[str, dict[str, Any]]) -> None:
    """Every job has its own /tmp: B's X socket is not in A's /tmp/.X11-unix, and a name A
    takes there is in neither the node's nor B's."""
    a, b = scene["a"], scene["b"]
    assert desktops.run_as(a, "test", "-e", f"/tmp/.X11-unix/X{b['display']}").returncode != 0
    assert desktops.run_as(a, "python3", "-c", SQUAT).returncode == 0
    assert not pathlib.Path("/tmp/.X11-unix/X999").exists(), "A took a name in the node's"
    assert desktops.run_as(b, "test", "-e", "/tmp/.X11-unix/X999").returncode != 0


def test_a_cannot_open_bs_display(scene: dict[str, dict[str, Any]]) -> None:
    """B's X server (reached through its abstract socket) asks for B's cookie: A's own cookie
    and none at all are refused."""
    a, b = scene["a"], scene["b"]
    display = f":{b['display']}"
    own_cookie = str(pathlib.Path(a["runtime_dir"]) / "Xauthority")
    for cookie in (own_cookie, "/dev/null"):
        done = desktops.run_as(a, "xwininfo", "-root", DISPLAY=display, XAUTHORITY=cookie)
        assert done.returncode != 0 and "unable to open display" in done.stderr


def test_a_cannot_read_or_signal_bs_processes(scene: dict[str, dict[str, Any]]) -> None:
    """B's processes are B's account's: /proc environ is closed, signals are refused."""
    a, b = scene["a"], scene["b"]
    assert refused(desktops.run_as(a, "cat", f"/proc/{b['pid']}/environ"))
    assert refused(desktops.run_as(a, "kill", "-TERM", str(b["pid"])))
    assert local_process.start_time_of(b["pid"]) is not None


def test_a_cannot_fill_the_disk_for_everyone(scene: dict[str, dict[str, Any]]) -> None:
    """Every process of A's job has the desktop's file size limit, soft and hard."""
    a = scene["a"]
    assert desktops.file_size_limit(a) == LIMIT
    assert desktops.run_as(a, "sh", "-c", "ulimit -f unlimited").returncode != 0
    big = pathlib.Path(a["home"]) / "big"
    desktops.run_as(a, "sh", "-c", f"head -c {LIMIT + 4096} /dev/zero > {big}")
    size = big.stat().st_size
    big.unlink()
    assert size <= LIMIT, f"A wrote a file of {size} bytes, past the limit"


def test_a_squatter_cannot_make_a_later_desktop_fail(
    world: worlds.World, cluster: slurm.Cluster, scene: dict[str, dict[str, Any]]
) -> None:
    """A holds the X display names :0 to :63 it can reach (its /tmp's socket files and lock
    files, the node's abstract names); a desktop started afterwards (B's next, once B's first
    made room on the two-CPU node) comes up READY and usable."""
    squat = desktops.run_as(scene["a"], "python3", "-c", SQUATTER)
    assert squat.returncode == 0, squat.stderr
    client = world.artist2.client()
    for session_id in (scene["b"]["session_id"], None):
        if session_id is None:
            session_id = ready(world, world.artist2)
            shown = desktops.run_as(job_desktop(cluster, session_id), "xwininfo", "-root")
            assert shown.returncode == 0, shown.stderr
        client.delete_streaming_session(studioId=world.studio.studio_id, sessionId=session_id)
        client.get_waiter("streaming_session_deleted").wait(
            studioId=world.studio.studio_id, sessionId=session_id, WaiterConfig=FAST
        )
