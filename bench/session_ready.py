"""How long a new streaming session takes to become READY (usable), and what an idle desktop
weighs: the local and the Slurm provider next to the bare desktop started by hand, in one run.

Run: ``.venv/bin/python -m bench.session_ready [--sessions 20] [--burst 50] [--no-slurm]`` as
root, so that desktops run as their owners' accounts, as in production. Needs TigerVNC's Xvnc
and the built-in desktop's packages (``make setup``); the Slurm rows need Debian's slurm-wlm and
munge (``make test-packages``; skipped with a note otherwise).

1. Baseline, in this run: the bare desktop started directly (no server, no account, no
   scripts, no control group): Xvnc with the provider's flags, Openbox, and once Openbox
   manages the screen the built-in recipe's applications (xsetroot, ``xterm -geometry ...``),
   until the display is usable by the provider's own definition
   (window manager running, the xterm mapped with the keyboard focus); ``--sessions`` times.
2. The local provider: a real ``opennimble serve`` on a fresh data directory with a studio set
   up through the API; the artist creates ``--sessions`` sessions one after the other, each
   timed from the CreateStreamingSession call to the first GetStreamingSession that reads
   READY (polled every 10 ms), and by the server's own timestamps (``createdAt`` to
   ``startedAt``). The owner's account exists already (a warm-up session made it).
3. The memory of one idle desktop (``IDLE`` s after READY): its control group's memory usage
   (what its limit counts), and the RSS and PSS summed over its processes, next to the PSS of
   the bare baseline.
4. ``--burst`` sessions created at once (from 8 threads): time from the first call until all
   are READY.
5. The Slurm provider: the same sequential timing against a server with ``provider = "slurm"``
   on a single-node cluster of its own (tests/support/slurm.py), one desktop at a time.
6. Prints a table; deletes every session, stops the servers and the cluster, removes the data
   and accounts.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import contextlib
import dataclasses
import json
import os
import pathlib
import secrets
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from typing import Any

from tests.support import desktops, slurm
from tests.support import server as support
from tests.support import world as worlds

from opennimble.providers import (
    local_accounts,
    local_cgroups,
    local_display,
    local_home_images,
    local_recipes,
    local_xvnc,
)

POLL = 0.01
IDLE = 3.0


def percentiles(samples: list[float]) -> tuple[float, float]:
    """(p50, p95) of ``samples``, in milliseconds."""
    ordered = sorted(samples)
    p95 = ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]
    return statistics.median(ordered) * 1000, p95 * 1000


def memory_kib(pids: list[int]) -> tuple[int, int]:
    """Summed (RSS, PSS) of ``pids`` in KiB, from /proc/<pid>/smaps_rollup."""
    rss = pss = 0
    for pid in pids:
        with contextlib.suppress(OSError):
            for line in pathlib.Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
                name, _, rest = line.partition(":")
                if name in ("Rss", "Pss"):
                    value = int(rest.split()[0])
                    rss, pss = (rss + value, pss) if name == "Rss" else (rss, pss + value)
    return rss, pss


# --- the baseline ----------------------------------------------------------------------------


@contextlib.contextmanager
def bare_desktop(directory: pathlib.Path) -> Iterator[tuple[float, list[int]]]:
    """Xvnc + Openbox, then an xterm, started directly; yields (seconds until the display was
    usable, the pids), and ends them."""
    cookie = secrets.token_bytes(16)
    xauthority, password = directory / "Xauthority", directory / "passwd"
    probe = directory / local_display.AUTH_FILE
    local_xvnc.write_private(xauthority, local_xvnc.xauthority_entry(cookie))
    local_xvnc.write_private(probe, local_display.auth_entry(cookie))
    local_xvnc.write_private(password, local_xvnc.password_file_content("benchpw1"))
    port = support.free_port()
    read_fd, write_fd = os.pipe()
    argv = local_xvnc.xvnc_command(
        shutil.which("Xvnc") or "Xvnc",
        session_id=f"bench-{port}",
        port=port,
        geometry="1280x800",
        displayfd=write_fd,
        xauthority=str(xauthority),
        password_file=str(password),
    )
    began = time.monotonic()
    xvnc = subprocess.Popen(argv, pass_fds=(write_fd,), stderr=subprocess.DEVNULL)
    os.close(write_fd)
    display = local_xvnc.read_display(read_fd, 20)
    env = {"PATH": "/usr/bin:/bin", "DISPLAY": f":{display}", "XAUTHORITY": str(xauthority)}
    env.update(HOME=str(directory), LANG=os.environ.get("LANG", "C.UTF-8"))  # as a desktop's
    quiet = {"env": env, "start_new_session": True, "stderr": subprocess.DEVNULL}
    wm = subprocess.Popen(["openbox"], **quiet)  # type: ignore[call-overload]
    local_display.wait_window_manager(display, probe, 20)
    apps = [  # the built-in recipe's applications, as its session script runs them
        subprocess.Popen(["sh", "-c", command], **quiet)  # type: ignore[call-overload]
        for command in local_recipes.BUILTIN.applications
    ]
    lacking = local_display.wait_usable(display, probe, want_window=True, timeout=20)
    elapsed = time.monotonic() - began
    try:
        if lacking is not None:
            raise RuntimeError(f"the bare desktop did not get usable: {lacking}")
        children = [pid for app in apps for pid in _children(app.pid)]
        yield elapsed, [xvnc.pid, wm.pid, *[app.pid for app in apps], *children]
    finally:
        for process in (*apps, wm):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait()
        xvnc.terminate()
        xvnc.wait()


def _children(pid: int) -> list[int]:
    found = []
    for entry in pathlib.Path("/proc").iterdir():
        with contextlib.suppress(OSError, ValueError):
            if entry.name.isdigit() and int((entry / "stat").read_text().split()[3]) == pid:
                found.append(int(entry.name))
    return found


def baseline(count: int) -> tuple[list[float], tuple[int, int]]:
    times, memory = [], (0, 0)
    with tempfile.TemporaryDirectory(prefix="opennimble-bench-") as tmp:
        for i in range(count):
            with bare_desktop(pathlib.Path(tmp)) as (elapsed, pids):
                times.append(elapsed)
                if i == count - 1:
                    time.sleep(IDLE)
                    memory = memory_kib(pids)
    return times, memory


# --- the service -----------------------------------------------------------------------------


def create_until_ready(client: Any, studio: worlds.Studio) -> tuple[float, float, str]:
    """(client-side seconds, server-side seconds, session id) of one new session."""
    began = time.monotonic()
    session = client.create_streaming_session(
        studioId=studio.studio_id, launchProfileId=studio.launch_profile_id
    )["session"]
    while session["state"] == "CREATE_IN_PROGRESS":
        time.sleep(POLL)
        session = client.get_streaming_session(
            studioId=studio.studio_id, sessionId=session["sessionId"]
        )["session"]
    elapsed = time.monotonic() - began
    if session["state"] != "READY":
        raise RuntimeError(f"session {session['sessionId']}: {session['statusMessage']}")
    server_side = (session["startedAt"] - session["createdAt"]).total_seconds()
    return elapsed, server_side, str(session["sessionId"])


@dataclasses.dataclass
class Measured:
    ready: list[float]  # client-side seconds, one after the other
    server_side: list[float]
    burst: float | None = None  # seconds until all of a burst were READY
    group_memory: int = 0  # bytes, one idle desktop's control group
    memory: tuple[int, int] = (0, 0)  # its processes' (RSS, PSS) KiB
    processes: int = 0


@contextlib.contextmanager
def served(env: dict[str, str], room: int) -> Iterator[worlds.World]:
    """A real server with a studio; at the end every session deleted and the data removed."""
    base = pathlib.Path(tempfile.mkdtemp(prefix="opennimble-bench-"))
    base.chmod(0o711)
    env = {
        "OPENNIMBLE_PROVIDERS__LOCAL__MAX_DESKTOPS": str(room),
        "OPENNIMBLE_PROVIDERS__LOCAL__MAX_DESKTOPS_PER_OWNER": str(room),
        "OPENNIMBLE_MAX_SESSIONS_PER_OWNER": str(room),
        "OPENNIMBLE_MAX_CONCURRENT_PROVISIONS": "16",
        "OPENNIMBLE_LOG_LEVEL": "warning",
        **env,
    }
    srv = support.Server(base / "data", env=env)
    srv.start()
    try:
        world = worlds.build(srv)
        yield world
        worlds.delete_all_sessions(world, timeout=300)
    finally:
        srv.stop()
        local_home_images.unmount_all(srv.desktops_dir)
        local_accounts.remove_accounts(base)
        local_accounts.remove_accounts(srv.desktops_dir)
        shutil.rmtree(base, ignore_errors=True)
        shutil.rmtree(srv.desktops_dir, ignore_errors=True)  # runtime files, homes, images


def one_after_another(world: worlds.World, count: int, keep: bool) -> Measured:
    """``count`` sessions, each created once the one before is READY (and deleted then unless
    ``keep``: a small Slurm node holds one desktop at a time)."""
    client = world.artist.client()
    measured = Measured([], [])
    for _ in range(count):
        seconds, server_seconds, session_id = create_until_ready(client, world.studio)
        measured.ready.append(seconds)
        measured.server_side.append(server_seconds)
        if not keep:
            ids = {"studioId": world.studio.studio_id, "sessionId": session_id}
            client.delete_streaming_session(**ids)
            client.get_waiter("streaming_session_deleted").wait(**ids, WaiterConfig=support.FAST)
    return measured


def idle_memory(world: worlds.World, session_id: str, measured: Measured) -> None:
    time.sleep(IDLE)
    pids = desktops.session_pids(session_id)  # the desktop's control group
    measured.memory, measured.processes = memory_kib(pids), len(pids)
    groups = local_cgroups.hierarchy(world.server.desktops_dir)
    measured.group_memory = groups.group(session_id).memory_bytes()


def burst(world: worlds.World, count: int) -> float:
    """Seconds from the first of ``count`` CreateStreamingSession calls, made at once, until
    all of the sessions are READY."""
    studio = world.studio
    clients = [world.artist.client() for _ in range(8)]

    def create(i: int) -> str:
        made = clients[i % len(clients)].create_streaming_session(
            studioId=studio.studio_id, launchProfileId=studio.launch_profile_id
        )
        return str(made["session"]["sessionId"])

    began = time.monotonic()
    with concurrent.futures.ThreadPoolExecutor(len(clients)) as pool:
        ids = set(pool.map(create, range(count)))
    while True:
        listed = clients[0].list_streaming_sessions(
            studioId=studio.studio_id, ownedBy=world.artist.user_id
        )["sessions"]
        states = {s["sessionId"]: s for s in listed if s["sessionId"] in ids}
        failed = [s for s in states.values() if s["state"].endswith("FAILED")]
        if failed:
            raise RuntimeError(f"a session of the burst failed: {failed[0]['statusMessage']}")
        if len(states) == len(ids) and all(s["state"] == "READY" for s in states.values()):
            return time.monotonic() - began
        time.sleep(0.05)


def local_provider(count: int, burst_size: int) -> Measured:
    with served({"OPENNIMBLE_PAGE_SIZE": "100"}, count + burst_size + 4) as world:
        create_until_ready(world.artist.client(), world.studio)  # warm-up: makes the account
        measured = one_after_another(world, count, keep=True)
        listed = world.artist.client().list_streaming_sessions(studioId=world.studio.studio_id)
        idle_memory(world, listed["sessions"][0]["sessionId"], measured)
        worlds.delete_all_sessions(world, timeout=300)
        if burst_size:
            measured.burst = burst(world, burst_size)
        return measured


def slurm_provider(count: int) -> Measured | str:
    """The Slurm provider's figures, or why they cannot be measured here."""
    if (why := slurm.available()) is not None:
        return why
    with slurm.cluster() as cluster:
        settings = cluster.provider_settings(resource_scale=0.01)
        env = {
            "OPENNIMBLE_PROVIDER": "slurm",
            "OPENNIMBLE_PROVIDERS": json.dumps({"slurm": settings}),
        }
        with served(env, count + 4) as world:
            return one_after_another(world, count, keep=False)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", type=int, default=20, help="sessions (and baseline runs)")
    parser.add_argument("--burst", type=int, default=50, help="sessions created at once")
    parser.add_argument("--no-slurm", action="store_true", help="skip the Slurm provider")
    args = parser.parse_args(argv)
    if shutil.which("Xvnc") is None:
        print("Xvnc not found: run make setup (as root)", file=sys.stderr)
        return 2
    if os.geteuid() != 0:
        print("note: not root, so desktops run as this user (no per-owner accounts)")
    base_times, base_memory = baseline(args.sessions)
    local = local_provider(args.sessions, args.burst)
    on_slurm = "skipped (--no-slurm)" if args.no_slurm else slurm_provider(args.sessions)
    rows = [
        ("bare desktop, started by hand, until usable", base_times),
        ("local: CreateStreamingSession to READY (client)", local.ready),
        ("local: createdAt to startedAt (server timestamps)", local.server_side),
    ]
    if isinstance(on_slurm, Measured):
        rows.append(("slurm: CreateStreamingSession to READY (client)", on_slurm.ready))
    print(f"\n{args.sessions} sessions each, one after the other, on {os.cpu_count()} cores")
    print(f"{'':52} {'p50 ms':>8} {'p95 ms':>8} {'x bare':>7}")
    bare_p50 = percentiles(base_times)[0]
    for name, samples in rows:
        p50, p95 = percentiles(samples)
        print(f"{name:52} {p50:8.1f} {p95:8.1f} {p50 / bare_p50:7.2f}")
    if not isinstance(on_slurm, Measured):
        print(f"slurm: not measured: {on_slurm}")
    if local.burst is not None:
        print(f"local: {args.burst} sessions created at once, all READY after {local.burst:.1f} s")
    print(
        f"idle desktop ({local.processes} processes): control group "
        f"{local.group_memory / 2**20:.1f} MiB; processes RSS {local.memory[0] / 1024:.1f} MiB, "
        f"PSS {local.memory[1] / 1024:.1f} MiB; bare desktop PSS {base_memory[1] / 1024:.1f} MiB"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
