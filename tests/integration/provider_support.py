"""What the tests of the local provider share: a data directory desktop accounts can reach,
specs with owners of their own, waiting for READY, and looking at processes and VNC ports."""

from __future__ import annotations

import asyncio
import json
import os
import pathlib
import pwd
import shutil
import signal
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator

from opennimble.providers import (
    base,
    local,
    local_accounts,
    local_cgroups,
    local_home_images,
    local_network,
    local_process,
)
from tests.support import desktops

READY_TIMEOUT = 15.0


def make_spec(session_id: str | None = None, **changes: object) -> base.DesktopSpec:
    """A spec whose owner is new (an account of its own), unless ``owned_by`` is given."""
    spec = base.DesktopSpec(
        session_id=session_id or f"st-{uuid.uuid4().hex[:12]}",
        studio_id="stid-1",
        owned_by=str(uuid.uuid4()),
        owner_name="alice",
        ec2_instance_type="g4dn.xlarge",
        ec2_image_id="ami-1",
        launch_profile_id="lp-1",
    )
    return base.DesktopSpec(**{**spec.__dict__, **changes})  # type: ignore[arg-type]


def desktop_processes(directory: pathlib.Path) -> set[int]:
    """Live processes of the desktops under ``directory``: those whose command line names it
    (Xvnc's Xauthority, the session script), those recorded, and those of its accounts."""
    mark = str(directory).encode()
    pids = set()
    for entry in pathlib.Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if any(mark in arg for arg in argv) and local_process.start_time_of(int(entry.name)):
            pids.add(int(entry.name))
    for record in directory.glob("*/desktop.json"):
        data = json.loads(record.read_text())
        if local_process.desktop_alive(data.get("pid"), data.get("start_time"), record.parent.name):
            pids.add(data["pid"])
    return pids


def account_processes(base_dir: pathlib.Path) -> set[int]:
    """Live processes of the desktop accounts whose homes are under ``base_dir``."""
    root = str(base_dir) + os.sep
    uids = [e.pw_uid for e in pwd.getpwall() if e.pw_dir.startswith(root)]
    return {pid for uid in uids for pid in local_process.user_pids(uid)}


def wait_gone(pid: int, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while local_process.start_time_of(pid) is not None:
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


def reachable_data_dir() -> Iterator[pathlib.Path]:
    """Fixture: a data directory that desktop accounts can reach; at the end no desktop
    process may be left, and the accounts made for it are removed."""
    base_dir = pathlib.Path(tempfile.mkdtemp(prefix="opennimble-provider-"))
    base_dir.chmod(0o711)
    directory = base_dir / "data"
    try:
        yield directory
        left = desktop_processes(directory / "desktops") | account_processes(base_dir)
    finally:
        stray = desktop_processes(directory / "desktops") | account_processes(base_dir)
        for pid in stray:
            os.kill(pid, signal.SIGKILL)
        groups = local_cgroups.hierarchy(directory)
        for name in groups.names():
            groups.group(name).kill()
        local_home_images.unmount_all(base_dir)
        local_accounts.remove_accounts(base_dir)
        local_network.Firewall(local_network.table_name(directory)).remove()
        shutil.rmtree(base_dir, ignore_errors=True)
    assert not left, f"desktop processes were left running: {sorted(left)}"


def runtime_dir_in(data_dir: pathlib.Path) -> pathlib.Path:
    """Fixture: the desktops' runtime directory of ``data_dir``."""
    return data_dir / "desktops"


def provider_in(runtime_dir: pathlib.Path) -> local.LocalProvider:
    """Fixture: a local provider with its desktops in ``runtime_dir``."""
    return local.LocalProvider(runtime_dir=runtime_dir, ready_timeout=10.0)


async def wait_ready(provider: base.Provider, state: base.ProviderState) -> base.PollResult:
    deadline = time.monotonic() + READY_TIMEOUT
    while (result := await provider.poll(state)).health is not base.Health.READY:
        assert result.health is base.Health.STARTING, result
        assert time.monotonic() < deadline, f"the desktop did not become ready in time: {result}"
        await asyncio.sleep(0.02)
    return result


async def started(provider: base.Provider, spec: base.DesktopSpec) -> base.ProviderState:
    state = await provider.start(spec, {})
    await wait_ready(provider, state)
    return state


def alive(state: base.ProviderState) -> bool:
    return local_process.desktop_alive(state["pid"], state["start_time"], state["session_id"])


def as_owner(state: base.ProviderState, *argv: str, **env: str) -> subprocess.CompletedProcess[str]:
    """Run a command as the desktop's account, on its display."""
    return desktops.run_as(state, *argv, **env)
