"""Throughput and latency of authenticated session reads, against a bare ASGI baseline.

Run: ``.venv/bin/python -m bench.api_latency`` (``make bench``); needs ``wrk`` (Debian's wrk
package) and TigerVNC's ``Xvnc``. See bench/README.md for what the figures mean.

1. Starts a real ``opennimble serve`` process on a fresh data directory and sets up, through
   the API, a studio, a launch profile, an artist member and 16 streaming sessions (real Xvnc
   desktops, all READY): one owned by the artist, the others owned by other members. (16 is
   the per-server desktop limit, ``max_desktops``, that the local provider is getting.)
2. Starts the baseline (``bench.bare_server``: a bare ASGI callable on the same uvicorn stack)
   in a separate process.
3. Captures the requests boto3 sends for GetStreamingSession and ListStreamingSessions(ownedBy)
   as the artist (and ListStreamingSessions as the studio admin, unfiltered), re-signs a few
   hundred copies of each with botocore's SigV4Auth, and replays them with wrk
   (bench/wrk_replay.lua), several interleaved rounds per target; every answer must be a 200.
4. Prints the medians and the ratios to the baseline, then deletes the sessions, stops the
   servers, checks that no Xvnc of the data directory is left and removes the temp directory.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import datetime
import http.client
import importlib.metadata
import itertools
import os
import pathlib
import platform
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from typing import Any
from unittest import mock
from urllib.parse import urlsplit

import botocore
import botocore.auth
import botocore.awsrequest
import botocore.compat
import botocore.credentials
from tests.support import server as support
from tests.support import world as worlds

HERE = pathlib.Path(__file__).resolve().parent
WRK_SCRIPT = HERE / "wrk_replay.lua"
SERVICE = "nimble"
# headers of a captured boto3 request that the re-signing replaces
SIGNATURE_HEADERS = {"authorization", "x-amz-date", "x-amz-security-token", "host"}
# states in which a session may be deleted, and how often the bench asks for one
DELETABLE = {"READY", "STOPPED", "CREATE_FAILED", "START_FAILED", "STOP_FAILED", "DELETE_FAILED"}
DELETE_REQUESTS = 3
# CPU (in cores) used besides the server and wrk above which a round counts as disturbed (on a
# quiet machine the rest, mostly the kernel's loopback work, stays under ~0.15 core)
OTHER_LOAD_WARNING = 0.4


class BenchError(Exception):
    """The benchmark cannot give trustworthy figures."""


# --- requests --------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Template:
    """A request as boto3 sent it, without its signature."""

    method: str
    target: str  # path and query exactly as on the wire
    headers: tuple[tuple[str, str], ...]
    body: bytes


@dataclasses.dataclass(frozen=True)
class Target:
    name: str
    template: Template
    credentials: botocore.credentials.Credentials
    note: str


def capture(client: Any, operation: str, **params: Any) -> tuple[Template, dict[str, Any]]:
    """Make one real call; return the request boto3 sent (unsigned) and the parsed answer."""
    sent: list[Any] = []
    event = f"before-send.{SERVICE}.{operation}"

    def record(request: Any, **_: Any) -> None:
        sent.append(request)

    client.meta.events.register(event, record)
    try:
        answer = getattr(client, botocore.xform_name(operation))(**params)
    finally:
        client.meta.events.unregister(event, record)
    request = sent[-1]
    url = urlsplit(request.url)
    headers = tuple(
        (str(name), value.decode() if isinstance(value, bytes) else str(value))
        for name, value in request.headers.items()
        if name.lower() not in SIGNATURE_HEADERS
    )
    body = request.body or b""
    if isinstance(body, str):
        body = body.encode()
    target = url.path + (f"?{url.query}" if url.query else "")
    return Template(request.method, target, headers, body), answer


def sign(
    template: Template,
    credentials: botocore.credentials.Credentials,
    host: str,
    region: str,
    count: int,
) -> list[tuple[str, str, dict[str, str], bytes]]:
    """``count`` copies of the request, each signed with SigV4Auth at its own second.

    The signing times are spread around now (-count/2 .. +count/2 seconds), well inside the
    15-minute window, so each copy carries a distinct X-Amz-Date and signature (as requests of
    real clients do) and none expires during a round.
    """
    now = botocore.compat.get_current_datetime()
    times = iter([now + datetime.timedelta(seconds=i - count // 2) for i in range(count)])
    signer = botocore.auth.SigV4Auth(credentials, SERVICE, region)
    signed = []
    with mock.patch("botocore.auth.get_current_datetime", side_effect=lambda: next(times)):
        for _ in range(count):
            headers = dict(template.headers)
            headers["amz-sdk-invocation-id"] = str(uuid.uuid4())
            request = botocore.awsrequest.AWSRequest(
                method=template.method,
                url=f"http://{host}{template.target}",
                headers=headers,
                data=template.body,
            )
            signer.add_auth(request)
            out = {"Host": host}
            out.update({str(k): _text(v) for k, v in request.headers.items()})
            signed.append((template.method, template.target, out, template.body))
    return signed


def _text(value: str | bytes) -> str:
    return value.decode() if isinstance(value, bytes) else value


def lua_string(text: str) -> str:
    if any(ord(c) < 0x20 or ord(c) > 0x7E for c in text):
        raise BenchError(f"not printable ASCII, cannot replay: {text!r}")
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def write_requests(
    path: pathlib.Path, signed: list[tuple[str, str, dict[str, str], bytes]]
) -> None:
    """Write the requests as the Lua table bench/wrk_replay.lua loads."""
    lines = ["return {"]
    for method, target, headers, body in signed:
        fields = ", ".join(f"[{lua_string(k)}] = {lua_string(v)}" for k, v in headers.items())
        lua_body = lua_string(body.decode()) if body else "nil"
        lines.append(f"  {{{lua_string(method)}, {lua_string(target)}, {{{fields}}}, {lua_body}}},")
    lines.append("}")
    path.write_text("\n".join(lines) + "\n")


def replay_once(port: int, signed: tuple[str, str, dict[str, str], bytes]) -> tuple[int, bytes]:
    """Send one signed request as is; return the status and the body."""
    method, target, headers, body = signed
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.putrequest(method, target, skip_host=True, skip_accept_encoding=True)
        for name, value in headers.items():
            conn.putheader(name, value)
        if body:
            conn.putheader("Content-Length", str(len(body)))
        conn.endheaders(body or None)
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


# --- load ------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Run:
    requests: int
    seconds: float
    bytes: int
    p50_us: int
    p90_us: int
    p99_us: int
    max_us: int
    cpu: float  # the server process's CPU time during the run, in cores (1.0 = one core)
    wrk_cpu: float  # wrk's CPU time, in cores
    busy: float  # the whole machine's CPU time, in cores (at most nproc)

    @property
    def rps(self) -> float:
        return self.requests / self.seconds

    @property
    def other(self) -> float:
        """CPU used by neither the server nor wrk: the kernel's loopback work, other load."""
        return max(0.0, self.busy - self.cpu - self.wrk_cpu)


def machine_busy_seconds() -> float:
    """CPU seconds spent by the whole machine (all cores) so far, idle and iowait excluded."""
    fields = [int(x) for x in pathlib.Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    return (sum(fields[:8]) - fields[3] - fields[4]) / os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    fields = pathlib.Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime


def run_wrk(
    port: int, requests_file: pathlib.Path, args: argparse.Namespace, seconds: float, pid: int
) -> Run:
    command = [
        "wrk",
        f"-t{args.threads}",
        f"-c{args.connections}",
        f"-d{seconds:g}s",
        "--timeout",
        "5s",
        "-s",
        str(WRK_SCRIPT),
        f"http://127.0.0.1:{port}/",
        "--",
        str(requests_file),
    ]
    cpu_before, busy_before = cpu_seconds(pid), machine_busy_seconds()
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.monotonic()
    out = subprocess.run(command, capture_output=True, text=True, timeout=seconds + 60)
    wall = time.monotonic() - started
    cpu = (cpu_seconds(pid) - cpu_before) / wall
    busy = (machine_busy_seconds() - busy_before) / wall
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    wrk_cpu = (after.ru_utime + after.ru_stime - children.ru_utime - children.ru_stime) / wall
    if out.returncode != 0:
        raise BenchError(f"wrk failed ({out.returncode}): {out.stderr.strip() or out.stdout}")
    line = next((x for x in out.stdout.splitlines() if x.startswith("BENCH-RESULT ")), None)
    if line is None:
        raise BenchError(f"wrk printed no result:\n{out.stdout}\n{out.stderr}")
    fields = {k: int(v) for k, v in (part.split("=") for part in line.split()[1:])}
    problems = {
        k: fields[k]
        for k in ("non200", "connect", "read", "write", "status", "timeout")
        if fields[k]
    }
    if problems or fields["requests"] == 0:
        raise BenchError(f"wrk against port {port}: {fields['requests']} requests, {problems}")
    return Run(
        fields["requests"],
        fields["duration_us"] / 1e6,
        fields["bytes"],
        fields["p50_us"],
        fields["p90_us"],
        fields["p99_us"],
        fields["max_us"],
        cpu,
        wrk_cpu,
        busy,
    )


# --- processes -------------------------------------------------------------------------------


@contextlib.contextmanager
def bare_server(workdir: pathlib.Path) -> Iterator[tuple[int, int]]:
    """The baseline in its own process; yields (port, pid)."""
    port = support.free_port()
    log = open(workdir / "bare-server.log", "wb")  # noqa: SIM115 - handed to the child
    process = subprocess.Popen(
        [sys.executable, "-m", "bench.bare_server", "--port", str(port)],
        stdout=log,
        stderr=subprocess.STDOUT,
        cwd=HERE.parent,
    )
    log.close()
    try:
        deadline = time.monotonic() + 20
        while True:
            if process.poll() is not None:
                raise BenchError(f"bare server exited: {(workdir / 'bare-server.log').read_text()}")
            with contextlib.suppress(OSError):
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            if time.monotonic() > deadline:
                raise BenchError("bare server did not start in 20 s")
            time.sleep(0.05)
        yield port, process.pid
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@dataclasses.dataclass
class Setup:
    studio_id: str
    launch_profile_id: str
    operator: support.User
    admin: support.User
    artist: support.User
    owners: list[support.User]
    session_id: str = ""
    session_count: int = 0


def create_studio(srv: support.Server, progress: Any) -> Setup:
    operator = srv.user("operator", operator=True)
    admin = srv.user("admin")
    artist = srv.user("artist")
    owners = [srv.user(f"owner{i}") for i in range(1, 4)]
    progress(f"users created ({3 + len(owners)}, through the CLI)")
    studio = worlds.create_studio(operator, admin, [artist, *owners])
    progress("studio, streaming images and launch profile READY")
    return Setup(studio.studio_id, studio.launch_profile_id, operator, admin, artist, owners)


def create_sessions(setup: Setup, total: int, progress: Any) -> None:
    """One session owned by the artist, the others by the other members; wait until READY."""
    studio_id, profile = setup.studio_id, setup.launch_profile_id
    mine = setup.artist.client().create_streaming_session(
        studioId=studio_id, launchProfileId=profile
    )
    setup.session_id = mine["session"]["sessionId"]
    for owner in itertools.islice(itertools.cycle(setup.owners), total - 1):
        owner.client().create_streaming_session(studioId=studio_id, launchProfileId=profile)
    setup.session_count = total
    wait_all(setup.admin.client(), studio_id, total, {"READY"}, timeout=120)
    progress(f"{total} streaming sessions READY (one owned by the artist)")


def all_sessions(client: Any, studio_id: str) -> list[dict[str, Any]]:
    pages = client.get_paginator("list_streaming_sessions").paginate(studioId=studio_id)
    return [s for page in pages for s in page["sessions"]]


def wait_all(client: Any, studio_id: str, count: int, states: set[str], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while True:
        sessions = all_sessions(client, studio_id)
        failed = [s for s in sessions if s["state"].endswith("FAILED")]
        if failed:
            raise BenchError(f"{len(failed)} sessions failed: {describe(failed)}")
        done = [s for s in sessions if s["state"] in states]
        if len(done) >= count and len(done) == len(sessions):
            return
        if time.monotonic() > deadline:
            waiting = sorted({s["state"] for s in sessions} - states)
            raise BenchError(
                f"{len(done)}/{count} sessions {states} after {timeout:.0f} s: {waiting}"
            )
        time.sleep(0.3)


def delete_sessions(operator: support.User, studio_id: str, timeout: float = 60) -> None:
    """Delete every session of the studio and wait until all are DELETED (no desktop left).

    A session whose deletion failed is asked again, up to DELETE_REQUESTS times in all.
    """
    client = operator.client()
    deadline = time.monotonic() + timeout
    asked: dict[str, int] = {}
    while True:
        pending = [s for s in all_sessions(client, studio_id) if s["state"] != "DELETED"]
        if not pending:
            return
        for session in pending:
            sid, state = session["sessionId"], session["state"]
            if state in DELETABLE and asked.get(sid, 0) < DELETE_REQUESTS:
                asked[sid] = asked.get(sid, 0) + 1
                with contextlib.suppress(client.exceptions.ConflictException):
                    client.delete_streaming_session(studioId=studio_id, sessionId=sid)
        given_up = all(
            s["state"].endswith("FAILED") and asked.get(s["sessionId"], 0) >= DELETE_REQUESTS
            for s in pending
        )
        if given_up or time.monotonic() > deadline:
            raise BenchError(f"{len(pending)} sessions not deleted: {describe(pending)}")
        time.sleep(0.3)


def describe(sessions: list[dict[str, Any]], most: int = 3) -> str:
    """A short account of sessions: id, state and status message of the first few."""
    shown = "; ".join(
        f"{s['sessionId']} {s['state']} ({s.get('statusMessage', '')[:120]})"
        for s in sessions[:most]
    )
    return shown + (f"; and {len(sessions) - most} more" if len(sessions) > most else "")


# --- report ----------------------------------------------------------------------------------


def machine_facts() -> list[tuple[str, str]]:
    cpu_model = "?"
    with contextlib.suppress(OSError):
        for line in pathlib.Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu_model = line.split(":", 1)[1].strip()
                break
    wrk_version = subprocess.run(["wrk", "-v"], capture_output=True, text=True)
    versions = []
    for package in ("uvicorn", "uvloop", "httptools", "sqlalchemy", "botocore"):
        try:
            versions.append(f"{package} {importlib.metadata.version(package)}")
        except importlib.metadata.PackageNotFoundError:
            versions.append(f"{package} (not installed)")
    return [
        ("date", datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")),
        ("nproc", f"{len(os.sched_getaffinity(0))} (cpu_count {os.cpu_count()})"),
        ("cpu", cpu_model),
        ("python", f"{platform.python_implementation()} {platform.python_version()}"),
        ("kernel", platform.release()),
        ("packages", ", ".join(versions)),
        ("wrk", (wrk_version.stdout or wrk_version.stderr).splitlines()[0].strip()),
    ]


def table(results: dict[str, list[Run]], names: list[str], notes: dict[str, str]) -> str:
    """The figures (medians over the rounds), then where the CPU time went."""

    def median(name: str, value: Any) -> float:
        return statistics.median(value(r) for r in results[name])

    base_rps = median(names[0], lambda r: r.rps)
    base_p50 = median(names[0], lambda r: r.p50_us)
    lines = [
        "| request | req/s | p50 ms | p99 ms | req/s vs bare | p50 vs bare |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for name in names:
        rps, p50 = median(name, lambda r: r.rps), median(name, lambda r: r.p50_us)
        p99 = median(name, lambda r: r.p99_us)
        lines.append(
            f"| {name}{notes.get(name, '')} | {rps:,.0f} | {p50 / 1000:.2f} | {p99 / 1000:.2f} "
            f"| {rps / base_rps:.3f} | {p50 / base_p50:.1f}x |"
        )
    lines += [
        "",
        "| request | req/s per round | server CPU | server CPU per request | wrk CPU "
        "| other CPU | bytes per response |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for name in names:
        runs = results[name]
        per_round = ", ".join(f"{r.rps:,.0f}" for r in runs)
        cpu, wrk_cpu = median(name, lambda r: r.cpu), median(name, lambda r: r.wrk_cpu)
        other = median(name, lambda r: r.other)
        per_request = median(name, lambda r: r.cpu / r.rps * 1e6)
        size = sum(r.bytes for r in runs) / sum(r.requests for r in runs)
        lines.append(
            f"| {name} | {per_round} | {cpu:.0%} | {per_request:,.0f} us | {wrk_cpu:.0%} "
            f"| {other:.0%} | {size:,.0f} |"
        )
    return "\n".join(lines)


# --- main ------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.api_latency", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--rounds", type=int, default=3, help="measured rounds per request")
    parser.add_argument("--duration", type=float, default=10, help="seconds per wrk round")
    parser.add_argument("--warmup", type=float, default=2, help="seconds of unmeasured warm-up")
    parser.add_argument("--threads", type=int, default=1, help="wrk threads (-t)")
    parser.add_argument("--connections", type=int, default=32, help="wrk connections (-c)")
    parser.add_argument(
        "--sessions", type=int, default=16, help="streaming sessions (Xvnc desktops) in total"
    )
    parser.add_argument(
        "--signed", type=int, default=300, help="distinct pre-signed requests per target"
    )
    parser.add_argument(
        "--keep", action="store_true", help="keep the temp directory (logs, requests)"
    )
    args = parser.parse_args(argv)
    for name, least in (("rounds", 1), ("sessions", 1), ("signed", 2), ("connections", 1)):
        if getattr(args, name) < least:
            parser.error(f"--{name} must be at least {least}")
    if args.duration <= 0 or args.warmup <= 0:
        parser.error("--duration and --warmup must be positive")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if shutil.which("wrk") is None:
        print("wrk not found: install Debian's wrk package (apt-get install wrk)", file=sys.stderr)
        return 2
    if shutil.which("Xvnc") is None:
        print("Xvnc not found: install tigervnc-standalone-server", file=sys.stderr)
        return 2
    started = time.monotonic()
    signal.signal(signal.SIGTERM, _interrupt)  # clean up (sessions, desktops) when terminated

    def progress(message: str) -> None:
        print(f"[{time.monotonic() - started:6.1f}s] {message}", flush=True)

    workdir = pathlib.Path(tempfile.mkdtemp(prefix="opennimble-bench-"))
    data_dir = workdir / "data"
    srv = support.Server(data_dir)
    failure: str | None = None
    setup: Setup | None = None
    try:
        srv.start()
        assert srv.process is not None
        progress(f"opennimble serving on port {srv.port} (data {data_dir})")
        setup = create_studio(srv, progress)
        create_sessions(setup, args.sessions, progress)
        with bare_server(workdir) as (bare_port, bare_pid):
            progress(f"bare ASGI baseline serving on port {bare_port}")
            measure(args, srv, setup, bare_port, bare_pid, workdir, progress)
    except Exception as exc:
        failure = f"{type(exc).__name__}: {exc}"
    finally:
        failure = tear_down(srv, setup, data_dir, failure, progress)
        if args.keep:
            progress(f"kept {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    progress("done" if failure is None else "FAILED")
    if failure is not None:
        print(f"bench failed: {failure}", file=sys.stderr)
        return 1
    return 0


def _interrupt(signum: int, _frame: Any) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def background_load(seconds: float = 1.0) -> float:
    """The machine's CPU use (in cores) while the benchmark itself is idle."""
    before = machine_busy_seconds()
    time.sleep(seconds)
    return (machine_busy_seconds() - before) / seconds


def measure(
    args: argparse.Namespace,
    srv: support.Server,
    setup: Setup,
    bare_port: int,
    bare_pid: int,
    workdir: pathlib.Path,
    progress: Any,
) -> None:
    assert srv.process is not None
    artist, admin, studio_id = setup.artist, setup.admin, setup.studio_id
    get, got = capture(
        artist.client(), "GetStreamingSession", studioId=studio_id, sessionId=setup.session_id
    )
    listed, answer = capture(
        artist.client(), "ListStreamingSessions", studioId=studio_id, ownedBy=artist.user_id
    )
    everything, all_answer = capture(admin.client(), "ListStreamingSessions", studioId=studio_id)
    if got["session"]["state"] != "READY":
        raise BenchError(f"the artist's session is {got['session']['state']}")
    if [s["sessionId"] for s in answer["sessions"]] != [setup.session_id]:
        raise BenchError(f"ListStreamingSessions(ownedBy=artist) gave {answer['sessions']}")
    if len(all_answer["sessions"]) != setup.session_count:
        raise BenchError(f"admin's ListStreamingSessions gave {len(all_answer['sessions'])}")

    def creds(user: support.User) -> botocore.credentials.Credentials:
        return botocore.credentials.Credentials(user.access_key_id, user.secret_access_key)

    n = setup.session_count
    targets = [
        Target("bare", get, creds(artist), " (same requests as Get)"),
        Target("GetStreamingSession", get, creds(artist), " (artist, own session)"),
        Target("ListStreamingSessions", listed, creds(artist), " (artist, ownedBy=self: 1 item)"),
        Target("ListStreamingSessions, all", everything, creds(admin), f" (admin: {n} items)"),
    ]
    ports = {t.name: (bare_port, bare_pid) for t in targets[:1]}
    ports.update({t.name: (srv.port, srv.process.pid) for t in targets[1:]})

    def prepared(index: int, target: Target) -> pathlib.Path:
        port = ports[target.name][0]
        signed = sign(
            target.template, target.credentials, f"127.0.0.1:{port}", "us-west-2", args.signed
        )
        for request in (signed[0], signed[-1]):
            status, body = replay_once(port, request)
            if status != 200:
                raise BenchError(
                    f"{target.name}: a pre-signed request got {status}: {body[:300]!r}"
                )
        path = workdir / f"requests-{index}.lua"
        write_requests(path, signed)
        return path

    results: dict[str, list[Run]] = {t.name: [] for t in targets}
    idle_load = background_load()
    for index, target in enumerate(targets):
        port, pid = ports[target.name]
        run_wrk(port, prepared(index, target), args, args.warmup, pid)
    progress(f"warmed up; {args.rounds} rounds of {args.duration:g} s per request follow")
    for round_no in range(1, args.rounds + 1):
        for index, target in enumerate(targets):
            port, pid = ports[target.name]
            run = run_wrk(port, prepared(index, target), args, args.duration, pid)
            results[target.name].append(run)
            progress(
                f"round {round_no} {target.name}: {run.rps:,.0f} req/s, p50 "
                f"{run.p50_us / 1000:.2f} ms, p99 {run.p99_us / 1000:.2f} ms; CPU: server "
                f"{run.cpu:.0%}, wrk {run.wrk_cpu:.0%}, other {run.other:.0%}"
            )

    print()
    for name, value in machine_facts():
        print(f"{name}: {value}")
    print(
        f"load: wrk -t{args.threads} -c{args.connections} -d{args.duration:g}s, median of "
        f"{args.rounds} rounds, {args.signed} distinct pre-signed requests per target; "
        f"{n} sessions in the studio; machine CPU while idle before the runs: {idle_load:.0%}"
    )
    print()
    print(table(results, [t.name for t in targets], {t.name: t.note for t in targets}))
    print()
    disturbed = [r for runs in results.values() for r in runs if r.other > OTHER_LOAD_WARNING]
    if disturbed or idle_load > OTHER_LOAD_WARNING:
        print(
            f"WARNING: other processes used the CPU during {len(disturbed)} of "
            f"{sum(map(len, results.values()))} rounds (more than {OTHER_LOAD_WARNING:.0%} of a "
            f"core besides the server and wrk): on {len(os.sched_getaffinity(0))} cores the "
            "figures are lower and noisier than on a quiet machine; run again when it is quiet."
        )
        print()


def tear_down(
    srv: support.Server,
    setup: Setup | None,
    data_dir: pathlib.Path,
    failure: str | None,
    progress: Any,
) -> str | None:
    """Delete the sessions, stop the server, make sure no desktop is left."""
    problems = [failure] if failure else []
    if setup is not None and srv.process is not None:
        try:
            delete_sessions(setup.operator, setup.studio_id)
            progress("sessions deleted")
        except Exception as exc:
            problems.append(f"deleting sessions: {type(exc).__name__}: {exc}")
    if problems and srv.process is not None:
        with contextlib.suppress(OSError):
            print(f"--- server log (tail) ---\n{srv.log()[-3000:]}", file=sys.stderr)
    srv.stop()
    leftovers = sorted(set(support.xvnc_pids(str(data_dir))) | set(support.live_desktops(data_dir)))
    if leftovers:
        support.kill_all(leftovers)
        problems.append(f"Xvnc processes left running (killed now): {leftovers}")
    else:
        progress("server stopped; no Xvnc of the data directory left")
    return "; ".join(problems) if problems else None


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt as exc:
        print(f"bench interrupted ({exc or 'Ctrl-C'}); cleaned up", file=sys.stderr)
        sys.exit(130)
