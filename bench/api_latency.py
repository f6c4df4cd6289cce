"""Throughput and latency of authenticated session reads, against a bare ASGI baseline.

Run: ``.venv/bin/python -m bench.api_latency`` (``make bench``); needs ``wrk`` (Debian's wrk
package); PostgreSQL at ``OPENNIMBLE_BENCH_DATABASE_URL`` (default
``postgresql://postgres@127.0.0.1:5432/postgres``) for its rows. See bench/README.md for what
the figures mean.

1. Starts the baseline (``bench.bare_server``: a bare ASGI callable on the same uvicorn stack)
   in a separate process, and with ``--servers`` naming granian (the default when it is
   installed) a second one on granian, run as ``serve`` runs it with ``http_server = granian``.
2. Per database (``--backends``): a fresh installation whose servers use the instant provider
   (``bench/instant.py``: the read path is measured, not desktops): one ``serve`` (and on
   PostgreSQL a second, ``--no-reconciler``), a studio set up through the API, one session
   created by the artist through the API (READY), and ``--sessions`` - 1 READY sessions of the
   other members inserted in bulk (so the admin's unfiltered page holds 100); with granian, one
   more ``serve`` on granian on the same database, measured the same way (its rows are named
   ``DATABASE/granian`` and compared to its own bare baseline and to uvicorn's row).
3. Captures the requests boto3 sends for GetStreamingSession and
   ListStreamingSessions(ownedBy) as the artist and ListStreamingSessions as the studio admin
   (unfiltered, a page of 100), re-signs a few hundred copies of each with botocore's
   SigV4Auth, and replays them with wrk (bench/wrk_replay.lua), several interleaved rounds per
   target, each next to a round of the baseline; every answer must be a 200.
4. Prints the medians, the ratios to the baseline and the targets, and the server CPU per
   request; deletes the API-made session through the API, stops the servers, drops the
   PostgreSQL database and removes the temp directory.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import datetime
import http.client
import importlib.metadata
import importlib.util
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

from bench import floor_server

HERE = pathlib.Path(__file__).resolve().parent
WRK_SCRIPT = HERE / "wrk_replay.lua"
SERVICE = "nimble"
# headers of a captured boto3 request that the re-signing replaces
SIGNATURE_HEADERS = {"authorization", "x-amz-date", "x-amz-security-token", "host"}
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
def bare_server(
    workdir: pathlib.Path, server: str = "uvicorn", *, floor: str | None = None
) -> Iterator[tuple[int, int]]:
    """The baseline on ``server`` in its own process; yields (port, pid). With ``floor`` (an
    installation's SQLite file), the floor baseline (``bench.floor_server``) on uvicorn."""
    port = support.free_port()
    module, extra = (
        ("bench.floor_server", ["--database", floor])
        if floor
        else ("bench.bare_server", ["--server", server])
    )
    log_path = workdir / f"{module.rsplit('.', 1)[1]}-{server}.log"
    log = open(log_path, "wb")  # noqa: SIM115 - handed to the child
    process = subprocess.Popen(
        [sys.executable, "-m", module, "--port", str(port), *extra],
        stdout=log,
        stderr=subprocess.STDOUT,
        cwd=HERE.parent,
    )
    log.close()
    try:
        deadline = time.monotonic() + 20
        while True:
            if process.poll() is not None:
                raise BenchError(f"bare server exited: {log_path.read_text()}")
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


# --- the installation ------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Measured:
    """A row of the figures: what is asked of which servers, and the target against bare."""

    name: str
    template: Template
    credentials: botocore.credentials.Credentials
    endpoints: list[tuple[int, int]]  # (port, pid) of each server
    target: float  # the least req/s ratio to the bare baseline the issue asks for (0: none)
    note: str = ""


def populate(made: Any, sessions: int, progress: Any) -> str:
    """The artist's session through the API (READY), and ``sessions`` - 1 READY sessions of the
    other members in bulk; returns the artist's session id."""
    from bench import scale_common as common

    world = made.world
    studio = world.studio
    client = world.artist.client()
    sid = client.create_streaming_session(
        studioId=studio.studio_id, launchProfileId=studio.launch_profile_id
    )["session"]["sessionId"]
    deadline = time.monotonic() + 60
    while (
        client.get_streaming_session(studioId=studio.studio_id, sessionId=sid)["session"]["state"]
        != "READY"
    ):
        if time.monotonic() > deadline:
            raise BenchError("the artist's session was not READY in 60 s")
        time.sleep(0.1)
    others = [world.artist2.user_id, studio.admin.user_id]
    common.bulk_insert(
        made,
        common.session_rows(
            studio.studio_id, sessions - 1, others, launch_profile_id=studio.launch_profile_id
        ),
    )
    progress(f"{made.backend}: 1 session through the API and {sessions - 1} in bulk")
    return str(sid)


def targets_of(
    made: Any, session_id: str, sessions: int, granian: tuple[int, int] | None = None
) -> list[Measured]:
    """The measured requests on the uvicorn servers (the first one or two of ``made``), and
    with ``granian`` (port, pid) the same requests on that granian server."""
    from bench import scale_common as common

    world = made.world
    studio = world.studio
    artist, admin = world.artist, studio.admin
    get, got = capture(
        artist.client(), "GetStreamingSession", studioId=studio.studio_id, sessionId=session_id
    )
    mine, listed = capture(
        artist.client(), "ListStreamingSessions", studioId=studio.studio_id, ownedBy=artist.user_id
    )
    everything, page = capture(admin.client(), "ListStreamingSessions", studioId=studio.studio_id)
    if got["session"]["state"] != "READY":
        raise BenchError(f"the artist's session is {got['session']['state']}")
    if [s["sessionId"] for s in listed["sessions"]] != [session_id]:
        raise BenchError(f"ListStreamingSessions(ownedBy=artist) gave {listed['sessions']}")
    if len(page["sessions"]) != min(100, sessions):
        raise BenchError(f"the admin's ListStreamingSessions gave {len(page['sessions'])}")
    uvicorn = [srv for srv in made.servers if "OPENNIMBLE_HTTP_SERVER" not in srv.env]
    both = [(srv.port, srv.process.pid) for srv in uvicorn]
    one = both[:1]
    a, b = common.credentials(artist), common.credentials(admin)
    db = made.backend
    if db == "sqlite":
        rows = [
            Measured(f"{db}: GetStreamingSession", get, a, one, 0.5, " (artist, own session)"),
            Measured(f"{db}: ListStreamingSessions", mine, a, one, 0.4, " (ownedBy=self: 1)"),
            Measured(
                f"{db}: ListStreamingSessions, all", everything, b, one, 0.15, " (admin: 100)"
            ),
        ]
    else:
        rows = [
            Measured(f"{db}: GetStreamingSession", get, a, one, 0.25, " (1 process)"),
            Measured(
                f"{db}: GetStreamingSession, 2 processes", get, a, both, 0.0, " (2 processes)"
            ),
            Measured(f"{db}: ListStreamingSessions, all", everything, b, one, 0.0, " (admin: 100)"),
        ]
    if granian is None:
        return rows
    return rows + [
        dataclasses.replace(m, name=on_granian(m.name), endpoints=[granian])
        for m in rows
        if len(m.endpoints) == 1
    ]


def on_granian(name: str) -> str:
    """The name of a row's counterpart on granian: ``sqlite: X`` -> ``sqlite/granian: X``."""
    database, _, request = name.partition(":")
    return f"{database}/granian:{request}"


def on_uvicorn(name: str) -> str | None:
    """The uvicorn row a granian row is compared to (None for a uvicorn row)."""
    database, _, request = name.partition(":")
    if not database.endswith("/granian"):
        return None
    return f"{database.removesuffix('/granian')}:{request}"


def run_target(
    measured: Measured, args: argparse.Namespace, workdir: pathlib.Path, seconds: float
) -> Run:
    """One round against the target's servers (all at once, the connections split among them);
    the server CPU is measured when there is one server."""
    from bench import scale_common as common

    signed = []
    for port, _ in measured.endpoints:
        host = f"127.0.0.1:{port}"
        copies = sign(measured.template, measured.credentials, host, "us-west-2", args.signed)
        status, body = replay_once(port, copies[0])
        if status != 200:
            raise BenchError(f"{measured.name}: a pre-signed request got {status}: {body[:300]!r}")
        signed.append(copies)
    if len(measured.endpoints) == 1:
        path = workdir / "requests.lua"
        write_requests(path, signed[0])
        port, pid = measured.endpoints[0]
        return run_wrk(port, path, args, seconds, pid)
    connections = max(1, args.connections // len(measured.endpoints))
    runs = common.replay(
        [support.Server(workdir, port=port) for port, _ in measured.endpoints],
        [r for copies in signed for r in copies],
        seconds=seconds,
        connections=connections,
    )
    total = sum(r.requests for r in runs)
    return dataclasses.replace(
        runs[0],
        requests=total,
        seconds=max(r.seconds for r in runs),
        bytes=sum(r.bytes for r in runs),
        p50_us=max(r.p50_us for r in runs),
        p99_us=max(r.p99_us for r in runs),
    )


def bare_target(
    backend: str, port: int, pid: int, template: Template, server: str = "uvicorn"
) -> Measured:
    """The bare baseline, as a target: it answers the same requests with a fixed body. Its
    rounds run between those of ``backend``'s targets, whose ratios are taken to them."""
    credentials = botocore.credentials.Credentials("AKIDBARE", "bare")
    name = f"{backend}: bare" if server == "uvicorn" else on_granian(f"{backend}: bare")
    return Measured(name, template, credentials, [(port, pid)], 0.0, " (same requests as Get)")


def floor_target(endpoint: tuple[int, int], template: Template) -> Measured:
    """The floor baseline (``bench.floor_server``): the Get's requests, signed with the floor's
    own key, answered with the least work a Get must do. Its ratio is to the bare baseline."""
    credentials = botocore.credentials.Credentials(
        floor_server.FLOOR_KEY, floor_server.FLOOR_SECRET
    )
    return Measured(
        "sqlite: floor", template, credentials, [endpoint], 0.0, " (SigV4, 1 row, orjson)"
    )


def baseline_of(name: str) -> str:
    return name.split(":", 1)[0] + ": bare"


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
    for package in ("uvicorn", "granian", "uvloop", "httptools", "sqlalchemy", "botocore"):
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


def table(results: dict[str, list[Run]], measured: list[Measured]) -> str:
    """The figures (medians over the rounds) next to the bare baseline and the targets, then
    where the CPU time went (measured for one server process)."""

    def median(name: str, value: Any) -> float:
        return statistics.median(value(r) for r in results[name])

    lines = [
        "| request | req/s | p50 ms | p99 ms | req/s vs bare | target | p50 vs bare "
        "| req/s vs uvicorn |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for m in measured:
        base = baseline_of(m.name)
        base_rps = median(base, lambda r: r.rps)
        base_p50 = median(base, lambda r: r.p50_us)
        rps, p50 = median(m.name, lambda r: r.rps), median(m.name, lambda r: r.p50_us)
        p99 = median(m.name, lambda r: r.p99_us)
        ratio = rps / base_rps
        target = f">= {m.target:g}x {'met' if ratio >= m.target else 'NOT met'}" if m.target else ""
        uvicorn_row = on_uvicorn(m.name)
        versus = ""
        if uvicorn_row in results:
            versus = f"{rps / median(uvicorn_row, lambda r: r.rps):.2f}x"
        lines.append(
            f"| {m.name}{m.note} | {rps:,.0f} | {p50 / 1000:.2f} | {p99 / 1000:.2f} "
            f"| {ratio:.3f} | {target} | {p50 / base_p50:.1f}x | {versus} |"
        )
    if "sqlite: floor" in results:
        floor = median("sqlite: floor", lambda r: r.rps)
        lines += [""] + [
            f"{m.name}: {median(m.name, lambda r: r.rps) / floor:.2f}x the floor baseline"
            for m in measured
            if m.name.startswith("sqlite: ") and m.name not in ("sqlite: floor", "sqlite: bare")
        ]
    lines += [
        "",
        "| request | req/s per round | server CPU | server CPU per request | wrk CPU "
        "| other CPU | bytes per response |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for m in measured:
        if len(m.endpoints) != 1:
            continue
        runs = results[m.name]
        per_round = ", ".join(f"{r.rps:,.0f}" for r in runs)
        cpu, wrk_cpu = median(m.name, lambda r: r.cpu), median(m.name, lambda r: r.wrk_cpu)
        other = median(m.name, lambda r: r.other)
        per_request = median(m.name, lambda r: r.cpu / r.rps * 1e6)
        size = sum(r.bytes for r in runs) / sum(r.requests for r in runs)
        lines.append(
            f"| {m.name} | {per_round} | {cpu:.0%} | {per_request:,.0f} us | {wrk_cpu:.0%} "
            f"| {other:.0%} | {size:,.0f} |"
        )
    return "\n".join(lines)


# --- main ------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.api_latency", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--rounds", type=int, default=3, help="measured rounds per request")
    parser.add_argument("--duration", type=float, default=5, help="seconds per wrk round")
    parser.add_argument("--warmup", type=float, default=2, help="seconds of unmeasured warm-up")
    parser.add_argument("--threads", type=int, default=1, help="wrk threads (-t)")
    parser.add_argument("--connections", type=int, default=32, help="wrk connections (-c)")
    parser.add_argument("--sessions", type=int, default=100, help="sessions in the studio")
    parser.add_argument(
        "--signed", type=int, default=300, help="distinct pre-signed requests per target"
    )
    parser.add_argument("--backends", default="sqlite,postgresql", help="databases to measure")
    parser.add_argument(
        "--only",
        default="",
        help="measure only the requests whose names contain one of these (comma-separated: "
        "e.g. GetStreamingSession); the bare baseline always",
    )
    parser.add_argument(
        "--servers",
        default="uvicorn,granian",
        help="HTTP servers to measure: uvicorn (always), granian (when installed)",
    )
    args = parser.parse_args(argv)
    unknown = set(args.servers.split(",")) - {"uvicorn", "granian"}
    if unknown:
        parser.error(f"--servers: unknown {', '.join(sorted(unknown))} (uvicorn, granian)")
    for name, least in (("rounds", 1), ("sessions", 1), ("signed", 2), ("connections", 2)):
        if getattr(args, name) < least:
            parser.error(f"--{name} must be at least {least}")
    if args.duration <= 0 or args.warmup <= 0:
        parser.error("--duration and --warmup must be positive")
    return args


def wrk_missing() -> bool:
    """Whether wrk is missing (then says how to install it): the benchmarks that replay
    requests with it call this first."""
    if shutil.which("wrk") is not None:
        return False
    print("wrk not found: install Debian's wrk package (apt-get install wrk)", file=sys.stderr)
    return True


def main(argv: list[str] | None = None) -> int:
    from bench import scale_common as common

    args = parse_args(argv)
    if wrk_missing():
        return 2
    started = time.monotonic()
    signal.signal(signal.SIGTERM, _interrupt)  # clean up (servers, database) when terminated

    def progress(message: str) -> None:
        print(f"[{time.monotonic() - started:6.1f}s] {message}", flush=True)

    workdir = pathlib.Path(tempfile.mkdtemp(prefix="opennimble-bench-"))
    results: dict[str, list[Run]] = {}
    measured: list[Measured] = []
    idle_load = background_load()
    granian = "granian" in args.servers.split(",") and granian_installed(progress)
    try:
        with contextlib.ExitStack() as stack:
            bare_port, bare_pid = stack.enter_context(bare_server(workdir))
            progress(f"bare ASGI baseline serving on port {bare_port}")
            if granian:
                granian_bare = stack.enter_context(bare_server(workdir, "granian"))
                progress(f"bare ASGI baseline on granian serving on port {granian_bare[0]}")
            for backend in common.backends(args.backends):
                with common.installation(backend, workdir / backend) as made:
                    made.add_server()
                    if backend == "postgresql":
                        made.add_server(reconciler=False)
                    # on PostgreSQL one reconciler per host: the first server's
                    granian_server = (
                        made.add_server(http_server="granian", reconciler=backend == "sqlite")
                        if granian
                        else None
                    )
                    common.build_world(made)
                    session_id = populate(made, args.sessions, progress)
                    targets = targets_of(
                        made,
                        session_id,
                        args.sessions,
                        None
                        if granian_server is None
                        else (granian_server.port, granian_server.process.pid),  # type: ignore[union-attr]
                    )
                    template = targets[0].template
                    if args.only:
                        wanted = [w for w in args.only.split(",") if w]
                        targets = [t for t in targets if any(w in t.name for w in wanted)]
                    floors = stack.enter_context(contextlib.ExitStack())  # closed below
                    if backend == "sqlite" and (not args.only or "floor" in args.only):
                        database = made.database_url.split(":///", 1)[1]
                        floor = floors.enter_context(bare_server(workdir, floor=database))
                        targets.insert(0, floor_target(floor, template))
                    bares = [bare_target(backend, bare_port, bare_pid, template)]
                    if granian:
                        bares.append(bare_target(backend, *granian_bare, template, "granian"))
                    ordered = interleaved(bares, targets)
                    measure(args, ordered, results, workdir, progress)
                    measured += ordered
                    floors.close()
                    made.world.artist.client().delete_streaming_session(  # type: ignore[union-attr]
                        studioId=made.studio_id, sessionId=session_id
                    )
    except (BenchError, OSError) as exc:
        print(f"bench failed: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    print()
    for name, value in machine_facts():
        print(f"{name}: {value}")
    print(
        f"load: wrk -t{args.threads} -c{args.connections} -d{args.duration:g}s, median of "
        f"{args.rounds} rounds, {args.signed} distinct pre-signed requests per target; "
        f"{args.sessions} sessions in the studio; machine CPU while idle before the runs: "
        f"{idle_load:.0%}"
    )
    print()
    print(table(results, measured))
    print()
    disturbed = [
        r for runs in results.values() for r in runs if r.cpu and r.other > OTHER_LOAD_WARNING
    ]
    if disturbed or idle_load > OTHER_LOAD_WARNING:
        print(
            f"WARNING: other processes used the CPU during {len(disturbed)} rounds (more than "
            f"{OTHER_LOAD_WARNING:.0%} of a core besides the server and wrk): on "
            f"{len(os.sched_getaffinity(0))} cores the figures are lower and noisier than on a "
            "quiet machine; the ratios to the baseline of the same run are what count."
        )
    progress("done")
    return 0


def granian_installed(progress: Any) -> bool:
    if importlib.util.find_spec("granian") is None:
        progress("granian is not installed (pip install 'opennimble[granian]'): not measured")
        return False
    return True


def interleaved(bares: list[Measured], targets: list[Measured]) -> list[Measured]:
    """Each bare baseline followed by the rows on its server (uvicorn's, then granian's)."""
    ordered = []
    for bare in bares:
        ordered.append(bare)
        ordered += [t for t in targets if baseline_of(t.name) == bare.name]
    return ordered


def _interrupt(signum: int, _frame: Any) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def background_load(seconds: float = 1.0) -> float:
    """The machine's CPU use (in cores) while the benchmark itself is idle."""
    before = machine_busy_seconds()
    time.sleep(seconds)
    return (machine_busy_seconds() - before) / seconds


def measure(
    args: argparse.Namespace,
    targets: list[Measured],
    results: dict[str, list[Run]],
    workdir: pathlib.Path,
    progress: Any,
) -> None:
    """Warm every target up, then interleaved rounds: the baseline, then each target."""
    for target in targets:
        run_target(target, args, workdir, args.warmup)
    progress(f"warmed up; {args.rounds} rounds of {args.duration:g} s per request follow")
    for round_no in range(1, args.rounds + 1):
        for target in targets:
            run = run_target(target, args, workdir, args.duration)
            results.setdefault(target.name, []).append(run)
            progress(
                f"round {round_no} {target.name}: {run.rps:,.0f} req/s, p50 "
                f"{run.p50_us / 1000:.2f} ms, p99 {run.p99_us / 1000:.2f} ms; CPU: server "
                f"{run.cpu:.0%}, wrk {run.wrk_cpu:.0%}, other {run.other:.0%}"
            )


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt as exc:
        print(f"bench interrupted ({exc or 'Ctrl-C'}); cleaned up", file=sys.stderr)
        sys.exit(130)
