"""Control groups of local desktops (v1 and v2, as root): whatever a process does to hide, it
stays in its group and ends with it."""

from __future__ import annotations

import os
import pathlib
import subprocess
import time
import uuid

import pytest

from opennimble.providers import local_cgroups

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="control groups need root")

ESCAPES = [
    "env -i setsid sh -c 'sleep 4242 &'",  # cleared environment, a new session leader
    "sh -c '(sleep 4243 &) &'",  # a double fork
    "setsid -f sleep 4244",
]


def _hierarchies(tmp_path: pathlib.Path) -> list[local_cgroups.Hierarchy]:
    found: list[local_cgroups.Hierarchy] = []
    machine = local_cgroups.hierarchy(tmp_path)
    if machine.usable() is None:
        found.append(machine)
    unified = local_cgroups.ROOT / "unified"  # a hybrid machine's v2 hierarchy
    if machine.version == 1 and (unified / "cgroup.procs").exists():
        found.append(local_cgroups.V2(machine.parent, unified))
    return found


def _sleepers() -> set[int]:
    out = subprocess.run(["pgrep", "-f", "^sleep 424[234]$"], capture_output=True, text=True)
    return {int(pid) for pid in out.stdout.split()}


@pytest.mark.parametrize("version", [1, 2])
def test_everything_started_in_a_group_ends_with_it(tmp_path: pathlib.Path, version: int) -> None:
    chosen = [h for h in _hierarchies(tmp_path) if h.version == version]
    if not chosen:
        pytest.skip(f"no usable cgroup v{version} hierarchy here")
    hierarchy = chosen[0]
    group = hierarchy.group(f"test-{uuid.uuid4().hex[:8]}")
    group.create()
    try:
        before = _sleepers()
        shell = local_cgroups.popen(
            group, ["sh", "-c", "; ".join(ESCAPES) + "; sleep 4242"], user=65534, group=65534
        )
        deadline = time.monotonic() + 5
        while len(_sleepers() - before) < 4 and time.monotonic() < deadline:
            time.sleep(0.02)
        started = _sleepers() - before
        assert len(started) == 4
        assert started <= set(group.pids())  # the escapees are still in the group
        assert group.name in hierarchy.names()  # found again by its name
        assert group.kill(grace=0.2) == []
        shell.wait(5)
        assert not (_sleepers() & started)
        assert not group.exists()
        assert group.name not in hierarchy.names()
        leftovers = list(local_cgroups.ROOT.glob(f"**/{hierarchy.parent}"))
        assert not leftovers  # nor the installation's group, once its last desktop's is gone
    finally:
        group.kill()
