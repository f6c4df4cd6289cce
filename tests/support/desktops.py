"""Looking at the desktops of a test server from the outside: as their owners' accounts.

The tests act as the artist would inside a desktop (a command in its terminal runs as the
owner's account, on its display) to show what an artist can and cannot do there.
"""

from __future__ import annotations

import contextlib
import json
import os
import pathlib
import socket
import struct
import subprocess
import tempfile
import time
from collections.abc import Iterator
from typing import Any

import pytest

from opennimble.gateway import rfb
from opennimble.providers import local_cgroups, local_confine, local_home_images
from tests.support import slurm
from tests.support.server import FAST, Server, User
from tests.support.world import Studio

ROLE_VERSION = "2021-03-31"


def record(server: Server, session_id: str) -> dict[str, Any]:
    """What the local provider recorded of a session's desktop (a test that acts inside the
    desktop through it is skipped when the run tests another provider)."""
    if os.environ.get(slurm.PROVIDER_ENV, "local") != "local":
        pytest.skip("acts inside the desktop through the local provider's record")
    path = server.desktops_dir / "desktops" / session_id / "desktop.json"
    data: dict[str, Any] = json.loads(path.read_text())
    return data


def run_as(desktop: dict[str, Any], *argv: str, **env: str) -> subprocess.CompletedProcess[str]:
    """Run a command as the desktop's owner, on its display, in its control group, with its X
    sockets and file size limit, as its terminal would (or as the owner, outside any desktop,
    once the desktop has ended)."""
    environ = {
        "PATH": "/usr/bin:/bin",
        "HOME": desktop["home"],
        "DISPLAY": f":{desktop['display']}",
        "XAUTHORITY": str(pathlib.Path(desktop["runtime_dir"]) / "Xauthority"),
        **env,
    }
    data_dir = pathlib.Path(desktop["runtime_dir"]).parent.parent
    group = local_cgroups.hierarchy(data_dir).group(desktop["session_id"])
    owner = (desktop["uid"], desktop["gid"])
    confinement = local_confine.Confinement(
        private_sockets(desktop["runtime_dir"]),
        file_size_limit(desktop),
        owner,
        private_scratch(desktop["runtime_dir"]),
        home_image(desktop),
    )
    command = confinement.command(list(argv))
    if desktop.get("namespace_of"):  # a desktop in a mount namespace of its own (a Slurm job's)
        command = ["nsenter", f"--target={desktop['namespace_of']}", "--mount", "--", *command]
    process = local_cgroups.popen(
        group if group.exists() else None,
        command,
        env=environ,
        cwd="/",
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    with process:
        try:
            out, err = process.communicate(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()  # not left waiting for: the test fails now, not at its timeout
            raise
    return subprocess.CompletedProcess(process.args, process.returncode, out, err)


def file_size_limit(desktop: dict[str, Any]) -> int | None:
    """The file size limit of the desktop's processes (its Xvnc's), None if it has ended."""
    try:
        limits = pathlib.Path(f"/proc/{int(desktop['pid'])}/limits").read_text()
    except (OSError, TypeError, ValueError):
        return None
    (line,) = [entry for entry in limits.splitlines() if entry.startswith("Max file size")]
    hard = line.split()[4]
    return None if hard == "unlimited" else int(hard)


def private_sockets(runtime_dir: str | pathlib.Path) -> pathlib.Path | None:
    """The desktop's own X socket directory, None once the desktop has ended."""
    sockets = local_confine.sockets_dir(pathlib.Path(runtime_dir))
    return sockets if sockets.is_dir() else None


def private_scratch(runtime_dir: str | pathlib.Path) -> pathlib.Path | None:
    """The desktop's own scratch file system (/tmp, /var/tmp, /dev/shm), None once the
    desktop has ended (or if it has none)."""
    scratch = local_confine.scratch_dir(pathlib.Path(runtime_dir))
    return scratch if os.path.ismount(scratch) else None


def home_image(desktop: dict[str, Any]) -> pathlib.Path | None:
    """The owner's home if it is an image mounted on it (as the provider confines the
    desktop's processes then), None if not."""
    home = pathlib.Path(desktop["home"])
    return home if os.path.ismount(home) else None


@contextlib.contextmanager
def home_at_rest(server: Server, desktop: dict[str, Any]) -> Iterator[pathlib.Path]:
    """The desktop owner's home, to look at from the host whatever runs: the home itself when
    it is mounted (a desktop of the owner runs) or has no image (``home_size`` 0); otherwise
    its image (local_home_images), mounted read-only on a directory of its own for the look."""
    home = pathlib.Path(desktop["home"])
    image = server.desktops_dir / local_home_images.IMAGES_DIR / f"{desktop['user']}.ext4"
    if os.path.ismount(home) or not image.exists():
        yield home
        return
    with tempfile.TemporaryDirectory(dir=server.desktops_dir) as place:
        options = "loop,ro,noload,nosuid,nodev"
        subprocess.run(["mount", "-o", options, "--", str(image), place], check=True)
        try:
            yield pathlib.Path(place)
        finally:
            subprocess.run(["umount", "--", place], check=True)


X_PEER = """
import socket, struct, sys
for path in sys.argv[1:]:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.connect(path.replace("@", "\\0", 1))
    except OSError as exc:
        print(path, "no-connection", type(exc).__name__)
        continue
    pid, uid, gid = struct.unpack("3i", sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, 12))
    print(path, "uid", uid)
"""


def create_launch_profile(
    admin: User,
    studio: Studio,
    members: list[User],
    *,
    component_ids: list[str] | None = None,
    **stream: Any,
) -> str:
    """A READY launch profile of the studio's first image, with ``members`` as USERs."""
    client = admin.client()
    configuration = {
        "clipboardMode": "ENABLED",
        "ec2InstanceTypes": ["g4dn.xlarge"],
        "streamingImageIds": [studio.image_id],
        **stream,
    }
    profile = client.create_launch_profile(
        studioId=studio.studio_id,
        name="profile",
        ec2SubnetIds=[],
        launchProfileProtocolVersions=[ROLE_VERSION],
        studioComponentIds=component_ids or [studio.component_id],
        streamConfiguration=configuration,
    )["launchProfile"]
    profile_id = str(profile["launchProfileId"])
    client.get_waiter("launch_profile_ready").wait(
        studioId=studio.studio_id, launchProfileId=profile_id, WaiterConfig=FAST
    )
    client.put_launch_profile_members(
        studioId=studio.studio_id,
        launchProfileId=profile_id,
        identityStoreId=admin.identity_store_id,
        members=[{"principalId": m.user_id, "persona": "USER"} for m in members],
    )
    return profile_id


def stoppable(admin: User, studio: Studio, members: list[User], **options: Any) -> str:
    """A launch profile whose sessions may be stopped (for up to an hour)."""
    return create_launch_profile(
        admin,
        studio,
        members,
        sessionPersistenceMode="ACTIVATED",
        automaticTerminationMode="ACTIVATED",
        maxStoppedSessionLengthInMinutes=60,
        **options,
    )


def component(admin: User, studio: Studio, name: str, *scripts: tuple[str, str]) -> str:
    """A CUSTOM studio component with LINUX initialization scripts: (run context, script)."""
    created = admin.client().create_studio_component(
        studioId=studio.studio_id,
        name=name,
        type="CUSTOM",
        initializationScripts=[
            {
                "launchProfileProtocolVersion": ROLE_VERSION,
                "platform": "LINUX",
                "runContext": run_context,
                "script": text,
            }
            for run_context, text in scripts
        ],
        scriptParameters=[{"key": "GREETING", "value": "hello"}],
    )["studioComponent"]
    component_id = str(created["studioComponentId"])
    admin.client().get_waiter("studio_component_ready").wait(
        studioId=studio.studio_id, studioComponentId=component_id, WaiterConfig=FAST
    )
    return component_id


def create_session(user: User, studio: Studio, profile_id: str) -> str:
    session = user.client().create_streaming_session(
        studioId=studio.studio_id, launchProfileId=profile_id
    )["session"]
    return str(session["sessionId"])


def settle(user: User, studio: Studio, session_id: str, timeout: float = 60) -> dict[str, Any]:
    """The session once it is no longer in a transition."""
    client, deadline = user.client(), time.monotonic() + timeout
    while True:
        session: dict[str, Any] = client.get_streaming_session(
            studioId=studio.studio_id, sessionId=session_id
        )["session"]
        if not session["state"].endswith("_IN_PROGRESS"):
            return session
        assert time.monotonic() < deadline, f"still {session['state']}"
        time.sleep(0.2)


def recv_exactly(sock: socket.socket, n: int) -> bytes:
    data = b""
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        if not chunk:
            raise ConnectionError(f"closed after {len(data)} of {n} bytes")
        data += chunk
    return data


def vnc_connect(port: int, password: str | None) -> tuple[list[int], socket.socket | None]:
    """The VNC security types the desktop offers and, given a password, a socket past a
    successful VNC authentication and ClientInit/ServerInit (None if authentication failed)."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=5)
    assert recv_exactly(sock, 12).startswith(b"RFB 003.")
    sock.sendall(b"RFB 003.008\n")
    types = list(recv_exactly(sock, recv_exactly(sock, 1)[0]))
    if password is None:
        sock.close()
        return types, None
    sock.sendall(bytes([2]))
    sock.sendall(rfb.vnc_auth_response(password, recv_exactly(sock, 16)))
    if struct.unpack(">I", recv_exactly(sock, 4))[0] != 0:
        sock.close()
        return types, None
    sock.sendall(b"\x01")  # ClientInit: shared
    head = recv_exactly(sock, 24)
    recv_exactly(sock, struct.unpack(">I", head[20:24])[0])  # the desktop's name
    return types, sock


def session_pids(session_id: str) -> list[int]:
    """The processes in the control group of the desktop of ``session_id`` (any installation
    on this machine): every process of that desktop."""
    machine = local_cgroups.hierarchy(pathlib.Path("/"))
    base = local_cgroups.ROOT / ("freezer" if machine.version == 1 else "")
    found: set[int] = set()
    for procs in base.glob(f"opennimble-*/{session_id}/cgroup.procs"):
        with contextlib.suppress(FileNotFoundError):
            found.update(int(pid) for pid in procs.read_text().split())
    return sorted(found)


def wait_for_file(root: pathlib.Path, name: str, timeout: float = 15) -> pathlib.Path:
    """The file ``name`` once it appears in an owner's home under the desktops directory
    ``root`` (made there by typing in a desktop's terminal)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = list(root.glob(f"homes/*/{name}"))
        if found:
            return found[0]
        time.sleep(0.2)
    raise AssertionError(f"{name} did not appear in an owner's home under {root}/homes")
