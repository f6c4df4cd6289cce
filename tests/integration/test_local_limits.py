"""A desktop's limits, from its instance type (scaled for this host): memory, CPU, processes.
Each is exceeded for real from inside a desktop (as its owner, in its control group), while a
neighbour desktop of another owner keeps working."""

from __future__ import annotations

import asyncio
import os
import pathlib
import subprocess
import time

import pytest

from opennimble.domain import instance_types
from opennimble.providers import base, local, local_cgroups
from tests.integration import provider_support as support
from tests.integration.provider_support import as_owner, make_spec, started
from tests.integration.test_local_provider import rfb_greeting

pytestmark = [
    pytest.mark.xvnc,
    pytest.mark.skipif(os.geteuid() != 0, reason="control groups and accounts need root"),
]

SCALE = 1 / 32  # g4dn.xlarge (4 vCPUs, 16 GiB) becomes 1 vCPU and 512 MiB here
MAX_PROCESSES = 64

data_dir = pytest.fixture(support.reachable_data_dir)
runtime_dir = pytest.fixture(support.runtime_dir_in)


@pytest.fixture
def provider(runtime_dir: pathlib.Path) -> local.LocalProvider:
    return local.LocalProvider(
        runtime_dir=runtime_dir,
        ready_timeout=10.0,
        resource_scale=SCALE,
        max_processes=MAX_PROCESSES,
    )


def group_of(provider: local.LocalProvider, state: base.ProviderState) -> local_cgroups.Group:
    return provider._host.groups.group(state["session_id"])


def test_every_instance_type_has_limits(provider: local.LocalProvider) -> None:
    for name, kind in instance_types.TABLE.items():
        limits = provider.limits(name)
        assert limits.cpus == max(1, int(kind.vcpus * SCALE))
        assert limits.memory == max(256, int(kind.memory_mib * SCALE)) * 1024 * 1024
        assert limits.pids == MAX_PROCESSES
    with pytest.raises(base.PermanentFailure, match="ec2InstanceType"):
        provider.limits("t2.micro")


HOG = "b = []\nwhile True:\n    b.append(bytearray(16 * 1024 * 1024))\n"


def test_a_memory_hog_is_killed_alone(provider: local.LocalProvider) -> None:
    async def scenario() -> None:
        hog, neighbour = await asyncio.gather(
            started(provider, make_spec()), started(provider, make_spec())
        )
        try:
            done = as_owner(hog, "python3", "-c", HOG)  # 512 MiB, then the OOM killer
            assert done.returncode == -9, done
            assert group_of(provider, hog).oom_kills() >= 1
            assert group_of(provider, neighbour).oom_kills() == 0
            for state in (hog, neighbour):  # both desktops keep serving
                assert support.alive(state)
                assert rfb_greeting(state["port"]).startswith(b"RFB ")
            assert as_owner(neighbour, "xdpyinfo").returncode == 0
        finally:
            await asyncio.gather(provider.delete(hog), provider.delete(neighbour))

    asyncio.run(scenario())


def test_a_busy_desktop_gets_no_more_than_its_cpus(provider: local.LocalProvider) -> None:
    async def scenario() -> None:
        state = await started(provider, make_spec())
        group = group_of(provider, state)
        try:
            busy = "for i in 1 2 3; do (while :; do :; done) & done; sleep 3; kill 0"
            before, since = group.cpu_seconds(), time.monotonic()
            as_owner(state, "sh", "-c", busy)
            used = group.cpu_seconds() - before
            elapsed = time.monotonic() - since
            # three busy loops on a host of two cores, held to one vCPU (less on a busy host)
            assert 0.1 * elapsed < used < 1.15 * elapsed, (used, elapsed)
        finally:
            await provider.delete(state)

    asyncio.run(scenario())


BOMB = """
import os, time
children = 0
while True:
    try:
        pid = os.fork()
    except OSError:
        break
    if pid == 0:
        time.sleep(30)
        os._exit(0)
    children += 1
print(children, flush=True)
"""


def test_a_fork_bomb_stops_at_the_process_limit(provider: local.LocalProvider) -> None:
    async def scenario() -> None:
        bomber, neighbour = await asyncio.gather(
            started(provider, make_spec()), started(provider, make_spec())
        )
        try:
            done = as_owner(bomber, "sh", "-c", f"python3 -c '{BOMB}' </dev/null 2>&1 | head -1")
            children = int(done.stdout.split()[0])
            assert 0 < children < MAX_PROCESSES
            assert len(group_of(provider, bomber).pids()) <= MAX_PROCESSES
            # the host and the neighbour still start processes
            assert subprocess.run(["true"], check=False).returncode == 0
            assert as_owner(neighbour, "xdpyinfo").returncode == 0
        finally:
            await asyncio.gather(provider.delete(bomber), provider.delete(neighbour))
        assert not group_of(provider, bomber).exists()

    asyncio.run(scenario())


def test_a_desktop_ended_for_its_memory_says_so(provider: local.LocalProvider) -> None:
    async def scenario() -> None:
        state = await started(provider, make_spec())
        try:  # the kernel picks the desktop's X server this time
            pathlib.Path(f"/proc/{state['pid']}/oom_score_adj").write_text("1000")
            as_owner(state, "python3", "-c", HOG)
            result = await provider.poll(state)
            assert result.health is base.Health.GONE
            assert "more memory than its ec2InstanceType allows" in (result.message or "")
        finally:
            await provider.delete(state)

    asyncio.run(scenario())
