"""The ``local`` provider against a real TigerVNC Xvnc: start, poll, re-attach, stop, reap.

What runs on the desktop, as whom, and its limits are in test_local_desktop.py.
"""

from __future__ import annotations

import asyncio
import json
import os
import pathlib
import signal
import socket
import stat
import subprocess
import sys
import time
from collections.abc import Collection

import pytest

from opennimble.providers import (
    base,
    local,
    local_host,
    local_process,
    local_xnames,
    local_xvnc,
)
from tests.integration import provider_support as support
from tests.integration.provider_support import (
    alive,
    desktop_processes,
    make_spec,
    wait_gone,
    wait_ready,
)
from tests.support import cluster as clusters

pytestmark = pytest.mark.xvnc

data_dir = pytest.fixture(support.reachable_data_dir)
runtime_dir = pytest.fixture(support.runtime_dir_in)
provider = pytest.fixture(support.provider_in)


def rfb_greeting(port: int) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        data = b""
        while len(data) < 12 and (chunk := sock.recv(12 - len(data))):
            data += chunk
        return data


def listening_addresses(port: int) -> set[str]:
    """Local addresses (hex, as in /proc/net/tcp*) of the TCP sockets listening on ``port``."""
    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in pathlib.Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            address, _, port_hex = fields[1].partition(":")
            if fields[3] == "0A" and int(port_hex, 16) == port:
                found.add(address)
    return found


def test_start_becomes_ready_and_speaks_rfb_on_loopback_only(
    provider: local.LocalProvider, runtime_dir: pathlib.Path
) -> None:
    spec = make_spec()

    async def scenario() -> tuple[base.ProviderState, base.PollResult, float]:
        began = time.monotonic()
        state = await provider.start(spec, {})
        return state, await wait_ready(provider, state), time.monotonic() - began

    state, result, elapsed = asyncio.run(scenario())
    port = state["port"]
    password = result.endpoint["password"]
    assert result.endpoint == {"host": "127.0.0.1", "port": port, "password": password}
    assert len(password) == 8 and password.isalnum()
    assert set(state) == {
        "pid",
        "display",
        "port",
        "host",
        "start_time",
        "runtime_dir",
        "session_id",
        "user",
        "uid",
        "gid",
        "home",
    }
    assert json.loads(json.dumps(state)) == state  # stored in the database: no password
    assert rfb_greeting(port).startswith(b"RFB 003.")
    assert listening_addresses(port) == {"0100007F"}  # 127.0.0.1 and nothing else
    assert local_process.is_our_xvnc(local_process.cmdline_of(state["pid"]), spec.session_id)
    session_dir = runtime_dir / spec.session_id
    record = json.loads((session_dir / "desktop.json").read_text())
    assert record["pid"] == state["pid"] and record["launched"] is True
    for private in ("desktop.json", "Xauthority", "passwd", "xvnc.log"):
        assert stat.S_IMODE((session_dir / private).stat().st_mode) == 0o600
    rss = pathlib.Path(f"/proc/{state['pid']}/status").read_text().split("VmRSS:")[1].split()[0]
    print(f"start to READY: {elapsed:.3f} s; idle Xvnc VmRSS: {rss} kB")
    asyncio.run(provider.delete(state))
    assert not alive(state)


def test_start_is_idempotent(provider: local.LocalProvider) -> None:
    spec = make_spec()

    async def scenario() -> None:
        state = await provider.start(spec, {})
        again = await provider.start(spec, state)
        assert again == state
        # A state lost before it was stored is found again through desktop.json.
        lost = {"session_id": spec.session_id}
        assert (await provider.start(spec, {}))["pid"] == state["pid"]
        assert (await provider.start(spec, lost))["pid"] == state["pid"]
        await wait_ready(provider, lost)
        await provider.delete(lost)
        assert not alive(state)

    asyncio.run(scenario())


def test_concurrent_starts_get_distinct_displays_and_ports(provider: local.LocalProvider) -> None:
    specs = [make_spec() for _ in range(3)]

    async def scenario() -> list[base.ProviderState]:
        states = await asyncio.gather(*(provider.start(spec, {}) for spec in specs))
        await asyncio.gather(*(wait_ready(provider, state) for state in states))
        return list(states)

    states = asyncio.run(scenario())
    assert len({state["display"] for state in states}) == 3
    assert len({state["port"] for state in states}) == 3
    assert all(rfb_greeting(state["port"]).startswith(b"RFB ") for state in states)

    async def cleanup() -> None:
        await asyncio.gather(*(provider.delete(state) for state in states))

    asyncio.run(cleanup())
    assert not any(alive(state) for state in states)


def test_starts_of_one_session_at_once_end_with_one_desktop(runtime_dir: pathlib.Path) -> None:
    """Three starts of one session at once, from two providers of one host (two workers'
    reconcilers, one of them taking over a claim whose holder seemed dead) and twice from one:
    one X server, which every start reports."""
    spec = make_spec()
    first, second = support.provider_in(runtime_dir), support.provider_in(runtime_dir)

    async def scenario() -> None:
        states = await asyncio.gather(
            first.start(spec, {}), second.start(spec, {}), first.start(spec, {})
        )
        assert len({state["pid"] for state in states}) == 1, states
        assert clusters.xvnc_by_session(str(runtime_dir)) == {spec.session_id: [states[0]["pid"]]}
        await wait_ready(second, states[0])
        await second.delete(states[0])
        assert clusters.xvnc_by_session(str(runtime_dir)) == {}
        assert not (runtime_dir / local_host.SESSION_LOCKS_DIR / spec.session_id).exists()

    asyncio.run(scenario())


def test_a_fork_of_xvnc_is_not_a_second_desktop(tmp_path: pathlib.Path) -> None:
    """Xvnc forks to run xkbcomp; until the child execs, its command line is Xvnc's. The
    tests' count of a session's X servers must not take it for a second desktop."""
    code = "import os, time; os.fork(); os.write(1, b'%d\\n' % os.getpid()); time.sleep(30)"
    argv = ["bash", "-c", 'exec -a Xvnc "$@"', "bash", sys.executable, "-c", code]
    argv += ["-desktop", "opennimble-st-forked", "-auth", str(tmp_path / "Xauthority")]
    with subprocess.Popen(argv, stdout=subprocess.PIPE, start_new_session=True) as xvnc:
        try:
            assert xvnc.stdout is not None
            pids = {int(xvnc.stdout.readline()), int(xvnc.stdout.readline())}
            assert xvnc.pid in pids and len(pids) == 2  # Xvnc and its child, one command line
            assert clusters.xvnc_by_session(str(tmp_path)) == {"st-forked": [xvnc.pid]}
        finally:
            os.killpg(xvnc.pid, signal.SIGKILL)


STARTER = """
import asyncio, json, pathlib, sys, time
from opennimble.providers import base, local

async def main():
    provider = local.LocalProvider(runtime_dir=pathlib.Path(sys.argv[1]))
    owner, kind = sys.argv[4], "g4dn.xlarge"
    spec = base.DesktopSpec(sys.argv[2], "stid-1", owner, "alice", kind, "ami-1", "lp-1")
    print(json.dumps(await provider.start(spec, {})), flush=True)

asyncio.run(main())
if sys.argv[3] == "hang":
    time.sleep(60)
"""


@pytest.mark.parametrize("ending", ["exit", "sigkill"])
def test_reattach_after_server_restart(
    provider: local.LocalProvider, runtime_dir: pathlib.Path, ending: str
) -> None:
    spec = make_spec()
    argv = [sys.executable, "-c", STARTER, str(runtime_dir), spec.session_id]
    with subprocess.Popen(
        [*argv, "hang" if ending == "sigkill" else "exit", spec.owned_by], stdout=subprocess.PIPE
    ) as server:
        assert server.stdout is not None
        started = json.loads(server.stdout.readline())
        if ending == "sigkill":
            server.send_signal(signal.SIGKILL)
        server.wait(timeout=30)
    state = json.loads((runtime_dir / spec.session_id / "desktop.json").read_text())
    assert state["pid"] == started["pid"]
    assert os.getppid() != state["pid"] and alive(state)  # not a child of this process

    async def scenario() -> None:
        assert (await provider.start(spec, state))["pid"] == state["pid"]
        await wait_ready(provider, state)
        await provider.delete(state)

    asyncio.run(scenario())
    assert local_process.start_time_of(state["pid"]) is None
    assert not (runtime_dir / spec.session_id).exists()


def test_stop_keeps_the_runtime_dir_and_start_comes_back(
    provider: local.LocalProvider, runtime_dir: pathlib.Path
) -> None:
    spec = make_spec()

    async def scenario() -> None:
        state = await provider.start(spec, {})
        await wait_ready(provider, state)
        kept = await provider.stop(state)
        assert "pid" not in kept
        assert not alive(state)
        assert (runtime_dir / spec.session_id / "xvnc.log").exists()
        assert (await provider.poll(state)).health is base.Health.GONE
        assert (await provider.poll(kept)).health is base.Health.GONE
        assert await provider.stop(kept) == kept  # already stopped: fine
        again = await provider.start(spec, kept)
        assert again["pid"] != state["pid"]
        await wait_ready(provider, again)
        await provider.delete(again)

    asyncio.run(scenario())


def test_delete_removes_everything_and_tolerates_gone_desktops(
    provider: local.LocalProvider, runtime_dir: pathlib.Path
) -> None:
    spec = make_spec()

    async def scenario() -> None:
        state = await provider.start(spec, {})
        await wait_ready(provider, state)
        os.kill(state["pid"], signal.SIGKILL)  # it dies behind our back after being READY
        assert wait_gone(state["pid"])
        result = await provider.poll(state)
        assert result.health is base.Health.GONE
        assert "signal 9" in result.message
        await provider.delete(state)
        assert not (runtime_dir / spec.session_id).exists()
        await provider.delete(state)
        await provider.delete({})

    asyncio.run(scenario())


def write_script(path: pathlib.Path, body: str) -> str:
    path.write_text("#!/bin/sh\n" + body)
    path.chmod(0o755)
    return str(path)


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ("exit 1\n", "Xvnc exited with status 1: (no output"),
        (
            "echo '(EE) Fatal server error:' >&2\necho '(EE) No screens found' >&2\nexit 1\n",
            "Xvnc exited with status 1: Fatal server error: / No screens found",
        ),
    ],
)
def test_failing_xvnc_is_a_permanent_failure(
    runtime_dir: pathlib.Path, tmp_path: pathlib.Path, body: str, expected: str
) -> None:
    xvnc = write_script(tmp_path / "Xvnc", body)
    provider = local.LocalProvider(runtime_dir=runtime_dir, xvnc=xvnc, isolate=False)
    with pytest.raises(base.PermanentFailure) as failure:
        asyncio.run(provider.start(make_spec(), {}))
    assert failure.value.status_code == "INTERNAL_ERROR"
    assert expected in failure.value.message


@pytest.mark.host_wide  # each display found taken evicts the host's squatters
def test_an_xvnc_that_finds_every_display_taken_fails_for_now(
    runtime_dir: pathlib.Path, tmp_path: pathlib.Path
) -> None:
    """Xvnc exits saying the display it was given is taken, every time: each start of it gets
    another display, and after LAUNCH_ATTEMPTS the start fails as temporary (retried later)."""
    tried = tmp_path / "displays"
    body = (
        f'echo "$1" >> {tried}\n'
        "echo '(EE) Fatal server error:' >&2\n"
        "echo \"(EE) Cannot establish any listening sockets - Make sure an X server isn't "
        'already running" >&2\nexit 1\n'
    )
    xvnc = write_script(tmp_path / "Xvnc", body)
    provider = local.LocalProvider(runtime_dir=runtime_dir, xvnc=xvnc, isolate=False)
    with pytest.raises(base.TemporaryFailure) as failure:
        asyncio.run(provider.start(make_spec(), {}))
    assert "at each of 5 attempts" in failure.value.message
    displays = tried.read_text().split()
    assert len(displays) == local.LAUNCH_ATTEMPTS == len(set(displays))
    assert all(display.startswith(":") for display in displays)


def test_xvnc_dying_after_start_fails_the_poll(
    runtime_dir: pathlib.Path, tmp_path: pathlib.Path
) -> None:
    body = (
        'while [ $# -gt 0 ]; do [ "$1" = -displayfd ] && fd=$2; shift; done\n'
        'echo 42 > "/proc/self/fd/$fd"\nsleep 0.2\necho "(EE) vncExtInit: boom" >&2\nexit 3\n'
    )
    xvnc = write_script(tmp_path / "x", body)
    provider = local.LocalProvider(runtime_dir=runtime_dir, xvnc=xvnc, isolate=False)

    async def scenario() -> None:
        state = await provider.start(make_spec(), {})
        assert state["display"] == 42
        with pytest.raises(base.PermanentFailure) as failure:
            await wait_ready(provider, state)
        assert failure.value.message == "Xvnc exited with status 3: vncExtInit: boom"
        await provider.delete(state)

    asyncio.run(scenario())


def test_xvnc_that_never_gets_ready_is_ended(
    runtime_dir: pathlib.Path, tmp_path: pathlib.Path
) -> None:
    hanging = tmp_path / "hanging"
    hanging.write_text(
        f"#!{sys.executable}\nimport time\nprint('starting up', flush=True)\ntime.sleep(60)\n"
    )
    hanging.chmod(0o755)
    provider = local.LocalProvider(
        runtime_dir=runtime_dir, xvnc=str(hanging), ready_timeout=0.5, isolate=False
    )
    with pytest.raises(base.TemporaryFailure, match=r"not get ready within 0\.5 s: starting up"):
        asyncio.run(provider.start(make_spec(), {}))
    assert not desktop_processes(runtime_dir)


def test_missing_xvnc_says_what_to_install(runtime_dir: pathlib.Path) -> None:
    provider = local.LocalProvider(runtime_dir=runtime_dir, xvnc="no-such-Xvnc")
    with pytest.raises(base.PermanentFailure, match="tigervnc-standalone-server"):
        asyncio.run(provider.start(make_spec(), {}))


class ClashingProvider(local.LocalProvider):
    """Hands out a port that is already taken first, as if another process won the race."""

    taken: list[int]

    def _reserve_port(self) -> int:
        return self.taken.pop() if self.taken else super()._reserve_port()


def test_port_taken_before_xvnc_binds_it_is_retried(runtime_dir: pathlib.Path) -> None:
    provider = ClashingProvider(runtime_dir=runtime_dir)
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        provider.taken = [squatter.getsockname()[1]]

        async def scenario() -> None:
            state = await provider.start(make_spec(), {})
            assert state["port"] != squatter.getsockname()[1]
            await wait_ready(provider, state)
            await provider.delete(state)

        asyncio.run(scenario())


def hold_display_names(count: int) -> list[socket.socket]:
    """Bind the abstract names of the ``count`` lowest free X displays (as a squatter would)."""
    held: list[socket.socket] = []
    for display in range(local_xnames.DISPLAYS):
        if len(held) == count:
            break
        sock = socket.socket(socket.AF_UNIX)
        try:
            sock.bind(f"\0/tmp/.X11-unix/X{display}")
            held.append(sock)
        except OSError:
            sock.close()
    return held


def display_of(sock: socket.socket) -> int:
    return int(sock.getsockname()[1:].decode().removeprefix("/tmp/.X11-unix/X"))


@pytest.mark.host_wide  # evicts the host's squatters
def test_display_taken_before_xvnc_binds_it_is_retried(
    runtime_dir: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The name of the display chosen for a desktop is taken before its Xvnc binds it: Xvnc
    exits at once and the provider starts it again on another display."""
    (held,) = hold_display_names(1)
    chosen, real = display_of(held), local_xnames.free_name
    asked: list[set[int]] = []

    def late(avoid: Collection[int] = ()) -> int | None:  # chose before the name was taken
        asked.append(set(avoid))
        return chosen if len(asked) == 1 else real(avoid)

    monkeypatch.setattr(local_xnames, "free_name", late)
    provider = local.LocalProvider(runtime_dir=runtime_dir)

    async def scenario() -> None:
        state = await provider.start(make_spec(), {})
        assert state["display"] != chosen
        await wait_ready(provider, state)
        await provider.delete(state)

    with held:
        asyncio.run(scenario())
    assert chosen in asked[1]


# Binds the abstract names of the N lowest free X displays, prints their numbers and holds them
# until its standard input closes.
HOLD_NAMES = """
import resource, socket, sys
count = int(sys.argv[1])
_, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
held = {}
for display in range(59536):
    if len(held) == count:
        break
    sock = socket.socket(socket.AF_UNIX)
    try:
        sock.bind(f"\\0/tmp/.X11-unix/X{display}")
        held[display] = sock
    except OSError:
        sock.close()
print(*held, flush=True)
sys.stdin.read()
"""


@pytest.mark.host_wide  # takes 2,000 X display names
def test_taken_display_names_cost_xvnc_nothing(runtime_dir: pathlib.Path) -> None:
    """With the 2,000 lowest free display names taken, a desktop starts on the next free one at
    once: its Xvnc is given that number, instead of trying (and logging, and keeping a file
    descriptor of) every number from 0 up."""
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD_NAMES, "2000"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    provider = local.LocalProvider(runtime_dir=runtime_dir)

    async def scenario() -> None:
        state = await provider.start(make_spec(), {})
        await wait_ready(provider, state)
        log = pathlib.Path(state["runtime_dir"]) / local_host.LOG_FILE
        assert state["display"] > max(held)
        assert "_XSERVTrans" not in log.read_text()  # what Xvnc logs for each number it tries
        await provider.delete(state)

    try:
        assert holder.stdout is not None
        held = [int(display) for display in holder.stdout.readline().split()]
        assert len(held) == 2000
        asyncio.run(scenario())
    finally:
        holder.communicate("")


def test_reap_kills_desktops_of_unknown_sessions(
    provider: local.LocalProvider, runtime_dir: pathlib.Path
) -> None:
    keep, drop = make_spec(), make_spec()

    async def scenario() -> None:
        kept, dropped = await asyncio.gather(provider.start(keep, {}), provider.start(drop, {}))
        assert await provider.reap({keep.session_id}) == [drop.session_id]
        assert not alive(dropped)
        assert not (runtime_dir / drop.session_id).exists()
        assert alive(kept)
        assert await provider.reap({keep.session_id}) == []
        await provider.delete(kept)

    asyncio.run(scenario())


def test_pure_helpers() -> None:
    assert local_xvnc.is_rfb_greeting(b"RFB 003.008\n")
    assert not local_xvnc.is_rfb_greeting(b"SSH-2.0-Open")
    ticks = " ".join(str(n) for n in range(4, 22))  # fields 4 to 21
    assert local_process.parse_stat(f"42 (a) b (c)) S {ticks} 123 9") == ("S", 123)
    argv = local_xvnc.xvnc_command(
        "Xvnc",
        session_id="st-1",
        port=5999,
        geometry="800x600",
        displayfd=7,
        xauthority="/x",
        password_file="/p",
    )
    assert local_process.is_our_xvnc(argv, "st-1")
    assert not local_process.is_our_xvnc(argv, "st-2")
    assert not local_process.is_our_xvnc(["Xvnc", "-desktop"], "st-1")
    assert {"-nolisten", "tcp", "-interface", "127.0.0.1", "-SecurityTypes", "VncAuth"} <= set(argv)
    assert "-AcceptCutText=0" not in argv
