"""The lock of one local desktop (``Host.session_lock``): one holder at a time among the tasks
and processes of a host, released by the kernel when its holder is killed, and still exclusive
when a holder removes the lock file of a deleted desktop while others wait for it."""

from __future__ import annotations

import asyncio
import pathlib
import subprocess
import sys

import pytest

from opennimble.providers import local_cgroups, local_host, local_process

HOLDER = """
import fcntl, os, sys, time
fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT, 0o600)
fcntl.flock(fd, fcntl.LOCK_EX)
print("held", flush=True)
time.sleep(60)
"""


@pytest.fixture
def host(tmp_path: pathlib.Path) -> local_host.Host:
    runtime = tmp_path / "desktops"
    return local_host.Host(
        runtime,
        max_desktops=4,
        ending=local_process.Ending(grace=1.0),
        groups=local_cgroups.hierarchy(tmp_path),
    )


def test_one_holder_at_a_time(host: local_host.Host) -> None:
    inside, most = 0, 0

    async def hold(seconds: float) -> None:
        nonlocal inside, most
        async with host.session_lock("st-1"):
            inside += 1
            most = max(most, inside)
            await asyncio.sleep(seconds)
            inside -= 1

    async def scenario() -> None:
        await asyncio.gather(*(hold(0.05) for _ in range(4)))
        async with host.session_lock("st-2"):  # another desktop's lock is another lock
            async with asyncio.timeout(1):
                async with host.session_lock("st-3"):
                    pass

    asyncio.run(scenario())
    assert most == 1


def test_a_killed_holder_leaves_the_lock_free(host: local_host.Host) -> None:
    path = host.runtime_dir / local_host.SESSION_LOCKS_DIR / "st-1"
    path.parent.mkdir(parents=True)
    with subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(path)], stdout=subprocess.PIPE
    ) as holder:
        assert holder.stdout is not None and holder.stdout.readline() == b"held\n"

        async def take(timeout: float) -> None:
            async with asyncio.timeout(timeout), host.session_lock("st-1"):
                pass

        with pytest.raises(TimeoutError):  # the holder is alive: we wait
            asyncio.run(take(0.3))
        holder.kill()
        holder.wait()
        asyncio.run(take(5))  # killed: the kernel dropped its lock


def test_a_removed_lock_file_keeps_waiters_apart(host: local_host.Host) -> None:
    """The first holder deletes the desktop (and its lock file) while a second waits on the
    old file; a third that comes then opens a new file: the second must not hold the old one
    beside it."""
    inside, most = 0, 0

    async def scenario() -> None:
        entered = asyncio.Event()

        async def hold(forget: bool) -> None:
            nonlocal inside, most
            async with host.session_lock("st-1") as lock_forget:
                entered.set()
                inside += 1
                most = max(most, inside)
                await asyncio.sleep(0.1)
                inside -= 1
                if forget:
                    lock_forget()

        first = asyncio.create_task(hold(forget=True))
        await entered.wait()
        second = asyncio.create_task(hold(forget=False))
        await first
        third = asyncio.create_task(hold(forget=False))
        await asyncio.gather(second, third)

    asyncio.run(scenario())
    assert most == 1
    assert (host.runtime_dir / local_host.SESSION_LOCKS_DIR / "st-1").exists()
