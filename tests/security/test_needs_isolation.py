"""Attacks from inside a desktop that the desktop isolation stops: each desktop in a cgroup
of its own (a pids limit, everything killed when the session ends), an X socket directory of
its own (no squatting of display names; squatters of every abstract name are ended), scratch
space of its own (a size-limited /tmp, /var/tmp, /dev/shm and /run/lock), a file size limit,
and a data directory that is private from the start (umask 077). Every attempt fails; each
says what it tries and why it must fail. tests/slurm/test_slurm_security.py makes those that
apply to a Slurm job there.
"""

from __future__ import annotations

import os
import pathlib
import stat
import time
from collections.abc import Iterator
from typing import Any

import pytest

from opennimble.providers import local_confine, local_process
from tests.security.conftest import Scene, ready
from tests.support import desktops
from tests.support.server import FAST, Server

LIMIT = 64 * 1024 * 1024  # desktop_max_file_size of the scene's server (conftest), in bytes
SCRATCH_SIZE, SCRATCH_FILES = 32 * 1024 * 1024, 2048  # scratch_size and _files (conftest)
HOME_SIZE = 96 * 1024 * 1024  # home_size (conftest)

pytestmark = [pytest.mark.xvnc, pytest.mark.security]


def a_process(scene: Scene, name: str = "xterm") -> int:
    for pid in desktops.session_pids(scene.a["session_id"]):
        comm = pathlib.Path(f"/proc/{pid}/comm")
        if comm.exists() and comm.read_text().strip() == name:
            return pid
    raise AssertionError(f"A's desktop runs no {name}")


def pids_max(pid: int) -> str:
    """The pids limit of a process's cgroup ("max": none), cgroup v1 or v2."""
    root = pathlib.Path("/sys/fs/cgroup")
    candidates = []
    for line in pathlib.Path(f"/proc/{pid}/cgroup").read_text().splitlines():
        _, names, path = line.split(":", 2)
        if "pids" in names.split(","):
            candidates.append(root / "pids" / path.lstrip("/"))
        elif not names:  # the unified (v2) hierarchy
            candidates += [root / path.lstrip("/"), root / "unified" / path.lstrip("/")]
    for directory in candidates:
        if (directory / "pids.max").exists():
            return (directory / "pids.max").read_text().strip()
    return "max"  # a root cgroup: no limit


def test_nothing_a_starts_outlives_as_session(scene: Scene) -> None:
    """A starts processes that shed everything that ties them to the desktop (a cleared
    environment, a new session leader, a double fork) in a second desktop, then deletes that
    session while the first still runs: the processes must end with their session (its cgroup
    is frozen and killed) and its cgroup is removed, or A keeps using the host after the
    session is gone."""
    world = scene.world
    session_id = ready(world, world.artist, world.studio.launch_profile_id)
    second = desktops.record(world.server, session_id)
    escapes = "exec >/dev/null 2>&1; env -i setsid sh -c 'sleep 4242 &'; sh -c '(sleep 4243 &) &'"
    started = desktops.run_as(second, "sh", "-c", escapes)
    assert started.returncode == 0, started.stderr
    strays = wait_for_sleepers(second["uid"], 2)
    assert set(strays) <= set(desktops.session_pids(session_id))
    client = world.artist.client()
    client.delete_streaming_session(studioId=world.studio.studio_id, sessionId=session_id)
    client.get_waiter("streaming_session_deleted").wait(
        studioId=world.studio.studio_id, sessionId=session_id, WaiterConfig=FAST
    )
    deadline = time.monotonic() + 10
    while any(local_process.start_time_of(p) is not None for p in strays):
        if time.monotonic() > deadline:
            break
        time.sleep(0.1)
    alive = [p for p in strays if local_process.start_time_of(p) is not None]
    for pid in alive:
        os.kill(pid, 9)  # leave nothing behind, then fail
    assert not alive, "a process A started outlived A's deleted session"
    assert not list(pathlib.Path("/sys/fs/cgroup").glob(f"**/opennimble-*/{session_id}"))
    assert not mounts_of(session_id), "the deleted session's scratch space is still mounted"
    assert desktops.session_pids(scene.a["session_id"])  # A's first desktop runs on


def wait_for_sleepers(uid: int, count: int) -> list[int]:
    deadline = time.monotonic() + 10
    while True:
        found = [
            pid
            for pid in local_process.user_pids(uid)
            if local_process.cmdline_of(pid)[:2] in (["sleep", "4242"], ["sleep", "4243"])
        ]
        if len(found) >= count or time.monotonic() > deadline:
            return found


def test_a_cannot_fill_the_process_table(scene: Scene) -> None:
    """A fork bomb in A's desktop must hit the desktop's own pids limit (its cgroup's
    pids.max), not the host's: no bomb is set off here, the limit is read."""
    limit = pids_max(a_process(scene))
    assert limit != "max", "A's desktop may create processes until the host has none left"


def test_a_cannot_fill_the_disk_for_everyone(scene: Scene) -> None:
    """A file written without end in A's desktop must stop at a limit of the desktop (a file
    size limit, soft and hard, so A cannot raise it), not at a full disk for every artist and
    the database."""
    limits = pathlib.Path(f"/proc/{a_process(scene)}/limits").read_text()
    (line,) = [entry for entry in limits.splitlines() if entry.startswith("Max file size")]
    assert "unlimited" not in line, "A's desktop may write until the disk is full"
    soft, hard = line.split()[3:5]
    assert soft == hard, "A may raise the file size limit of A's desktop"
    raised = scene.as_a("sh", "-c", "ulimit -f unlimited")
    assert raised.returncode != 0, "A raised the file size limit"
    big = pathlib.Path(scene.a["home"]) / "big"
    scene.as_a("sh", "-c", f"head -c {LIMIT + 4096} /dev/zero > {big}")
    size = big.stat().st_size
    big.unlink()
    assert size <= LIMIT, f"A wrote a file of {size} bytes, past the limit"


# Writes files of 16 MiB (under the file size limit) into a directory until a write fails and
# prints what stopped it (an errno name, "none" if nothing did) and how far it got; the files
# stay (the caller removes them, with "rm -f DIR/fill*").
FILL_FILES = """
import errno, sys
place, written, n = sys.argv[1], 0, 0
try:
    while written < 1 << 30:
        with open(f"{place}/fill{n}", "wb") as out:
            for _ in range(16):
                out.write(b"\\1" * 1048576)
                out.flush()
                written += 1048576
        n += 1
    print("none", written)
except OSError as exc:
    print(errno.errorcode[exc.errno], written)
"""


def works_on(scene: Scene, desktop: dict[str, Any], user: Any, place: str) -> None:
    """The ``desktop`` of ``user`` writes 4 MiB in ``place`` (as its owner sees it) and the API
    says it is READY."""
    writes = desktops.run_as(
        desktop, "sh", "-c", f"head -c 4194304 /dev/zero > {place}/w && rm {place}/w"
    )
    assert writes.returncode == 0, f"cannot write in {place}: {writes.stderr}"
    session = user.client().get_streaming_session(
        studioId=scene.world.studio.studio_id, sessionId=desktop["session_id"]
    )["session"]
    assert session["state"] == "READY"


def test_a_cannot_fill_the_disk_through_the_home(scene: Scene) -> None:
    """A writes files without end into the session's storage in A's home (each under the file
    size limit): A's desktop must run out of space (ENOSPC) at A's own home size (``home_size``,
    an ext4 image mounted on the home), not at a full disk for every artist and the server.
    Meanwhile B's desktop writes to B's home and the API answers; once A removes the files,
    A's desktop works on: A writes again, and its display answers."""
    storage = pathlib.Path(scene.a["home"]) / "sessions" / scene.a["session_id"]
    filled = scene.as_a("python3", "-c", FILL_FILES, str(storage))
    try:
        assert filled.returncode == 0, filled.stderr
        why, written = filled.stdout.split()
        assert why == "ENOSPC", f"A wrote {written} bytes in A's home: {why}"
        assert HOME_SIZE // 2 < int(written) <= HOME_SIZE, f"A wrote {written} bytes"
        assert os.path.ismount(scene.a["home"]), "A's home is not a file system of its own"
        host = os.statvfs(scene.data_dir)
        assert host.f_bavail * host.f_frsize > 2 * HOME_SIZE, "the host's disk filled up"
        works_on(scene, scene.b, scene.world.artist2, "$HOME")
    finally:
        cleaned = scene.as_a("sh", "-c", f"rm -f {storage}/fill*")
        assert cleaned.returncode == 0, cleaned.stderr
    works_on(scene, scene.a, scene.world.artist, str(storage))
    assert scene.as_a("xwininfo", "-root").returncode == 0, "A's display does not answer"


def test_no_desktop_keeps_another_accounts_home_mounted(scene: Scene) -> None:
    """B's desktop started while A's home was mounted: its mount namespace must not keep A's
    home mounted, or A's home image would stay attached (and could be mounted twice) after
    A's last desktop ended. Its own home is there."""
    for pid in desktops.session_pids(scene.b["session_id"]):
        try:
            table = pathlib.Path(f"/proc/{pid}/mountinfo").read_text()
        except OSError:  # ended meanwhile
            continue
        targets = {line.split()[4] for line in table.splitlines()}
        assert scene.a["home"] not in targets, f"B's process {pid} keeps A's home mounted"
        assert scene.b["home"] in targets, f"B's process {pid} has not its home mounted"


def mounts_of(session_id: str) -> list[str]:
    """The host's mount points in the runtime directory of a session."""
    table = pathlib.Path("/proc/self/mountinfo").read_text().splitlines()
    return [line.split()[4] for line in table if f"/{session_id}/" in line.split()[4] + "/"]


# Fills a directory with one file until a write fails, then with empty files until one cannot
# be created; prints what stopped each (an errno name, "none" if nothing did) and how far it got.
FILL = """
import errno, os, sys
place = sys.argv[1]
written = 0
try:
    with open(f"{place}/fill", "wb") as out:
        while written < 1 << 30:
            out.write(b"\\0" * 1048576)
            out.flush()
            written += 1048576
    print("none", written)
except OSError as exc:
    print(errno.errorcode[exc.errno], written)
os.unlink(f"{place}/fill")
made = 0
try:
    while made < 1000000:
        open(f"{place}/f{made}", "x").close()
        made += 1
    print("none", made)
except OSError as exc:
    print(errno.errorcode[exc.errno], made)
"""


@pytest.mark.parametrize("place", ["/tmp", "/var/tmp", "/dev/shm", "/run/lock"])
def test_a_cannot_fill_the_scratch_space_for_everyone(scene: Scene, place: str) -> None:
    """A writes one file without end, then empty files without end, into a directory every
    program may write to (``place``): A's desktop must run out of space (ENOSPC) at its own
    scratch limits (``scratch_size`` bytes, ``scratch_files`` files), not at a full disk or
    memory for every artist and the server. Meanwhile B's desktop writes to its own, the API
    answers, and nothing of A's is in the host's directory."""
    filled = scene.as_a("python3", "-c", FILL, place)
    try:
        assert filled.returncode == 0, filled.stderr
        (why_bytes, written), (why_files, made) = (
            line.split() for line in filled.stdout.splitlines()
        )
        assert why_bytes == "ENOSPC", f"A wrote {written} bytes in {place}: {why_bytes}"
        assert int(written) <= SCRATCH_SIZE
        assert why_files == "ENOSPC", f"A made {made} files in {place}: {why_files}"
        assert int(made) <= SCRATCH_FILES
        assert not pathlib.Path(place, "f0").exists(), f"A's files are in the host's {place}"
        works_on(scene, scene.b, scene.world.artist2, place)
    finally:
        cleaned = scene.as_a("sh", "-c", f"rm -f {place}/f[0-9]* {place}/fill")
        assert cleaned.returncode == 0, cleaned.stderr


def test_no_desktop_keeps_another_desktops_scratch_space(scene: Scene) -> None:
    """A desktop's mount namespace starts as a copy of the host's mounts, with the scratch file
    systems of the desktops running then: B's desktop (started after A's) must not keep A's,
    or what A leaves in /tmp would stay in memory after A's session is gone, until B's ends."""
    a_scratch = str(local_confine.scratch_dir(pathlib.Path(scene.a["runtime_dir"])))
    pids = desktops.session_pids(scene.b["session_id"])
    assert pids
    for pid in pids:
        try:
            table = pathlib.Path(f"/proc/{pid}/mountinfo").read_text()
        except OSError:  # ended meanwhile
            continue
        targets = {line.split()[4] for line in table.splitlines()}
        assert a_scratch not in targets, f"B's process {pid} keeps A's scratch space mounted"
        assert "/tmp" in targets, f"B's process {pid} has no /tmp of its own"


def test_a_cannot_see_or_squat_bs_x_socket(scene: Scene) -> None:
    """B's X socket must not be in a /tmp/.X11-unix that A shares, where A could see it and
    take the names of displays that later desktops would use (finding 7): every desktop has a
    socket directory of its own there. A sees no socket but its own X server's, B's is out of
    A's reach by its path on the host too, and a name A takes is nobody else's: not in the
    host's /tmp/.X11-unix, not in B's."""
    b_display = f"X{scene.b['display']}"
    done = scene.as_a("test", "-e", f"/tmp/.X11-unix/{b_display}")
    assert done.returncode != 0, "B's X socket is visible to A in /tmp/.X11-unix"
    listing = scene.as_a("ls", "-A", "/tmp/.X11-unix")
    assert listing.returncode == 0, listing.stderr
    paths = [f"/tmp/.X11-unix/{name}" for name in listing.stdout.split()]
    reached = scene.as_a("python3", "-c", desktops.X_PEER, *paths)
    answers = {line.split(" ", 1)[1] for line in reached.stdout.splitlines()}
    assert answers == {f"uid {scene.a['uid']}"}, f"A's /tmp/.X11-unix: {answers}"
    b_sockets = local_confine.sockets_dir(pathlib.Path(scene.b["runtime_dir"]))
    reached = scene.as_a("python3", "-c", desktops.X_PEER, str(b_sockets / b_display))
    assert "no-connection PermissionError" in reached.stdout, reached.stdout
    squat = scene.as_a("python3", "-c", SQUAT)
    assert squat.returncode == 0, squat.stderr  # in A's own socket directory: A's business
    assert not pathlib.Path("/tmp/.X11-unix/X999").exists(), "A took a name in the host's"
    assert not (b_sockets / "X999").exists(), "A took a name in B's socket directory"


SQUAT = """
import socket
sock = socket.socket(socket.AF_UNIX)
sock.bind("/tmp/.X11-unix/X999")
"""

# Binds every display name from :0 to :63 that is free (the socket files, the abstract names,
# the lock files), prints the displays whose abstract name it holds, and holds them for a
# minute in the background. (Names held already belong to running X servers, of other tests
# running at the same time too.)
SQUATTER = """
import os, socket, sys, time
held, displays = [], []
for n in range(64):
    for path in (f"/tmp/.X11-unix/X{n}", f"\\0/tmp/.X11-unix/X{n}"):
        sock = socket.socket(socket.AF_UNIX)
        try:
            sock.bind(path)
            sock.listen(1)
            held.append(sock)
            if path.startswith("\\0"):
                displays.append(str(n))
        except OSError:
            pass
    try:
        with open(f"/tmp/.X{n}-lock", "x") as lock:
            lock.write("%10d\\n" % 1)
    except OSError:
        pass
if os.fork():
    print(" ".join(displays))
    sys.exit(0)
os.setsid()
os.close(1); os.close(2)
time.sleep(60)
"""


@pytest.mark.host_wide  # squats names; another test's desktop could evict the squatter
def test_a_squatter_cannot_make_a_later_desktop_fail(scene: Scene) -> None:
    """A takes every free X display name from :0 to :63 it can reach (socket files in its
    /tmp/.X11-unix, abstract sockets, X lock files) and holds them; desktops started
    afterwards (B's, and another of A's) still come up READY and usable: their socket files
    are in directories of their own, and their abstract names are the next free ones, held
    by their own X servers."""
    squat = scene.as_a("python3", "-c", SQUATTER)
    assert squat.returncode == 0, squat.stderr
    squatted = {int(display) for display in squat.stdout.split()}
    assert squatted, "the squatter held no display name at all"
    world = scene.world
    for user in (world.artist2, world.artist):
        session_id = ready(world, user, world.studio.launch_profile_id)
        desktop = desktops.record(world.server, session_id)
        assert desktop["display"] not in squatted
        shown = desktops.run_as(desktop, "xwininfo", "-root")
        assert shown.returncode == 0, shown.stderr
        listing = desktops.run_as(desktop, "ls", "-A", "/tmp/.X11-unix").stdout.split()
        assert listing == [f"X{desktop['display']}"]
        client = user.client()
        client.delete_streaming_session(studioId=world.studio.studio_id, sessionId=session_id)
        client.get_waiter("streaming_session_deleted").wait(
            studioId=world.studio.studio_id, sessionId=session_id, WaiterConfig=FAST
        )
    # the lock files are in A's own /tmp (its scratch space): A removes what A made there
    scene.as_a("sh", "-c", "rm -f /tmp/.X[0-9]*-lock")


# Binds every X display's abstract name that is free (all an X server could take), from four
# processes, each holding a quarter (file descriptors: raised to the hard limit); prints the pids
# of the holders and how many names they hold, and holds them for a minute in the background,
# taking every name of the quarter that someone else frees meanwhile (other X servers on the
# machine end). A holder ended before it reported (another provider evicting it) prints nothing.
SQUAT_ALL = """
import os, resource, socket, sys, time
_, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
reader, writer = os.pipe()
for part in range(4):
    if os.fork() == 0:
        os.setsid()
        os.close(reader)
        held, missing = [], set(range(part, 59536, 4))
        def grab():
            for n in list(missing):
                sock = socket.socket(socket.AF_UNIX)
                try:
                    sock.bind(f"\\0/tmp/.X11-unix/X{n}")
                    held.append(sock)
                    missing.discard(n)
                except OSError:
                    sock.close()
        grab()
        os.write(writer, f"{os.getpid()} {len(held)}\\n".encode())
        os.close(writer); os.close(1); os.close(2)
        for _ in range(600):  # names other X servers give up are taken as well
            time.sleep(0.1)
            grab()
        os._exit(0)
os.close(writer)
with os.fdopen(reader) as lines:
    print(lines.read().strip())
"""


def squat_every_name(scene: Scene) -> dict[int, int]:
    """A's squatters of every free name: pid -> names held."""
    squat = scene.as_a("python3", "-c", SQUAT_ALL)
    assert squat.returncode == 0, squat.stderr
    fields = squat.stdout.split()  # pid count pid count ...
    squatters = {int(pid): int(count) for pid, count in zip(fields[::2], fields[1::2], strict=True)}
    if len(squatters) < 4 or sum(squatters.values()) <= 59_000:
        end_squatters(scene, squatters)
        raise AssertionError(f"A held only {squatters} names")
    return squatters


def end_squatters(scene: Scene, squatters: dict[int, int]) -> None:
    for pid in squatters:
        if local_process.uid_of(pid) == scene.a["uid"]:
            os.kill(pid, 9)


@pytest.mark.host_wide
def test_a_squatter_of_every_abstract_name_cannot_stop_a_new_desktop(scene: Scene) -> None:
    """A holds every X display's abstract name that is free (about 59,500 sockets, so that no
    X server finds one): B's next desktop must still come up READY and usable. The provider
    ends the processes that hold more than one name (an X server holds one: A's own desktop
    runs on) and starts its Xvnc again."""
    squatters = squat_every_name(scene)
    try:
        world = scene.world
        session_id = ready(world, world.artist2, world.studio.launch_profile_id)
        desktop = desktops.record(world.server, session_id)
        shown = desktops.run_as(desktop, "xwininfo", "-root")
        assert shown.returncode == 0, shown.stderr
        alive = [pid for pid in squatters if local_process.start_time_of(pid) is not None]
        assert not alive, "the squatters still hold the names"
        assert desktops.run_as(scene.a, "xwininfo", "-root").returncode == 0, "A's desktop"
        client = world.artist2.client()
        client.delete_streaming_session(studioId=world.studio.studio_id, sessionId=session_id)
        client.get_waiter("streaming_session_deleted").wait(
            studioId=world.studio.studio_id, sessionId=session_id, WaiterConfig=FAST
        )
    finally:
        end_squatters(scene, squatters)


@pytest.fixture
def fresh_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    server = Server(tmp_path_factory.mktemp("fresh") / "data")
    server.start()
    try:
        yield server
    finally:
        server.stop()


def test_the_data_directory_is_private_before_any_desktop(fresh_server: Server) -> None:
    """Until the first desktop started, the data directory was 0755 and the database 0644
    (finding 3): an artist copied the database. From the start, nothing in it is readable by
    other users."""
    data = fresh_server.data_dir
    assert not stat.S_IMODE(data.stat().st_mode) & 0o044
    for entry in data.iterdir():
        mode = stat.S_IMODE(entry.lstat().st_mode)
        assert not mode & 0o044, f"{entry.name} is readable by other users ({mode:04o})"
