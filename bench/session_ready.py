"""How long a new streaming session takes to become READY, and what an idle desktop weighs.

Run: ``.venv/bin/python -m bench.session_ready [--sessions 20]`` (as root, so that desktops
run as their owners' accounts, as in production). Needs TigerVNC's Xvnc and the built-in
desktop's packages (``make setup``).

1. Baseline, in this run: the bare desktop, started directly (no server, no account, no
   scripts): Xvnc with the provider's flags, then Openbox and an xterm on it, until the VNC
   port answers; repeated ``--sessions`` times.
2. A real ``opennimble serve`` on a fresh data directory with a studio set up through the API;
   the artist creates ``--sessions`` sessions one after the other, each timed from the
   CreateStreamingSession call to the first GetStreamingSession that reads READY (polled every
   10 ms), and, from the server's own timestamps, from ``createdAt`` to ``startedAt``.
   The first session of an owner also creates the owner's Unix account.
3. The memory of one idle desktop (all its processes, after a few seconds of idleness): the sum
   of their RSS and of their PSS (which splits shared pages among the processes sharing them).
4. Prints the figures, deletes the sessions, stops the server and removes its data.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import pathlib
import secrets
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from typing import Any

from tests.support import desktops
from tests.support import server as support
from tests.support import world as worlds

from opennimble.providers import local_accounts, local_xvnc

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
    """Xvnc + Openbox + xterm started directly; yields (seconds until the VNC port answered,
    the pids), and ends them."""
    xauthority, password = directory / "Xauthority", directory / "passwd"
    local_xvnc.write_private(xauthority, local_xvnc.xauthority_entry(secrets.token_bytes(16)))
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
    session = subprocess.Popen(
        ["sh", "-c", "openbox & xterm & wait"], env=env, start_new_session=True
    )
    while not _rfb_answers(port):
        time.sleep(POLL)
    elapsed = time.monotonic() - began
    try:
        yield elapsed, [xvnc.pid, session.pid, *_children(session.pid)]
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(session.pid, signal.SIGKILL)
        xvnc.terminate()
        xvnc.wait()
        session.wait()


def _rfb_answers(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1) as sock:
            return local_xvnc.is_rfb_greeting(sock.recv(12))
    except OSError:
        return False


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


def service(count: int) -> tuple[list[float], list[float], tuple[int, int], int]:
    base = pathlib.Path(tempfile.mkdtemp(prefix="opennimble-bench-"))
    base.chmod(0o711)
    env = {
        "OPENNIMBLE_PROVIDERS__LOCAL__MAX_DESKTOPS": str(count + 4),
        "OPENNIMBLE_PROVIDERS__LOCAL__MAX_DESKTOPS_PER_OWNER": str(count + 4),
        "OPENNIMBLE_MAX_SESSIONS_PER_OWNER": str(count + 4),
        "OPENNIMBLE_LOG_LEVEL": "warning",
    }
    srv = support.Server(base / "data", env=env)
    srv.start()
    try:
        world = worlds.build(srv)
        client = world.artist.client()
        client_side, server_side, ids = [], [], []
        for _ in range(count):
            seconds, server_seconds, session_id = create_until_ready(client, world.studio)
            client_side.append(seconds)
            server_side.append(server_seconds)
            ids.append(session_id)
        time.sleep(IDLE)
        pids = desktops.session_pids(ids[-1])  # the desktop's control group
        memory = memory_kib(pids)
        processes = len(pids)
        worlds.delete_all_sessions(world, timeout=120)
        return client_side, server_side, memory, processes
    finally:
        srv.stop()
        local_accounts.remove_accounts(base)
        shutil.rmtree(base, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", type=int, default=20, help="sessions (and baseline runs)")
    args = parser.parse_args(argv)
    if shutil.which("Xvnc") is None:
        print("Xvnc not found: run make setup (as root)", file=sys.stderr)
        return 2
    if os.geteuid() != 0:
        print("note: not root, so desktops run as this user (no per-owner accounts)")
    base_times, base_memory = baseline(args.sessions)
    ready, server_side, memory, processes = service(args.sessions)
    rows = [
        ("baseline: Xvnc + Openbox + xterm started directly", percentiles(base_times)),
        ("CreateStreamingSession to READY (client, 10 ms polls)", percentiles(ready)),
        ("createdAt to startedAt (server timestamps)", percentiles(server_side)),
    ]
    print(f"\n{args.sessions} sessions, one after the other, on {os.cpu_count()} cores")
    print(f"{'':58} {'p50 ms':>8} {'p95 ms':>8}")
    for name, (p50, p95) in rows:
        print(f"{name:58} {p50:8.1f} {p95:8.1f}")
    print(f"first session (creates the owner's account): {ready[0] * 1000:.1f} ms")
    print(
        f"\nidle desktop ({processes} processes): RSS {memory[0] / 1024:.1f} MiB, "
        f"PSS {memory[1] / 1024:.1f} MiB; bare baseline: RSS {base_memory[0] / 1024:.1f} MiB, "
        f"PSS {base_memory[1] / 1024:.1f} MiB"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
