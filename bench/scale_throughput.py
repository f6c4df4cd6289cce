"""GetStreamingSession and CreateStreamingSession throughput with 1 and with 2 API processes.

Run: ``.venv/bin/python -m bench.scale_throughput [--seconds 4]``; needs wrk.

Installations: SQLite (one ``serve`` with its reconciler: SQLite has one process per database)
and PostgreSQL (``serve --no-reconciler`` processes and one ``worker``). Sessions are provisioned
by the instant provider (bench/instant.py), so CreateStreamingSession measures the API and the
database, not desktops. Requests are signed beforehand (every Create with its own client token)
and replayed by wrk, one wrk per API process; creates are counted in the database. The
baseline, from the same run and the same wrk settings, is a bare ASGI callable on the same
server stack (bench/bare_server.py).
"""

from __future__ import annotations

import argparse
import dataclasses
import pathlib
import statistics
import sys
import tempfile
import uuid
from typing import Any

from tests.support import server as support

from bench import api_latency
from bench import scale_common as common

CONNECTIONS = 16
ROUNDS = 2
CREATES_PER_SERVER = 8000


def signed_for(
    template: api_latency.Template, user: support.User, srv: support.Server, count: int
) -> list[tuple[str, str, dict[str, str], bytes]]:
    host = f"127.0.0.1:{srv.port}"
    return api_latency.sign(template, common.credentials(user), host, "us-west-2", count)


def unique_creates(
    template: api_latency.Template, user: support.User, srv: support.Server, count: int
) -> list[tuple[str, str, dict[str, str], bytes]]:
    """``count`` CreateStreamingSession requests, each with a client token of its own."""
    out = []
    for _ in range(count):
        headers = tuple(
            (k, uuid.uuid4().hex if k.lower() == "x-amz-client-token" else v)
            for k, v in template.headers
        )
        out += signed_for(dataclasses.replace(template, headers=headers), user, srv, 1)
    return out


def rounds(servers: list[support.Server], requests: list[Any], seconds: float) -> float:
    """Median over ROUNDS of the requests/s of all servers together."""
    per = max(1, CONNECTIONS // len(servers))
    return statistics.median(
        common.total_rps(common.replay(servers, requests, seconds=seconds, connections=per))
        for _ in range(ROUNDS)
    )


def get_requests(
    made: common.Installation, servers: list[support.Server], count: int = 400
) -> list[tuple[str, str, dict[str, str], bytes]]:
    """``count`` signed GetStreamingSession requests per server, of a new session of the
    artist's."""
    assert made.world is not None
    artist = made.world.artist
    client = artist.client()
    session = client.create_streaming_session(
        studioId=made.studio_id, launchProfileId=made.world.studio.launch_profile_id
    )["session"]
    template, _ = api_latency.capture(
        client, "GetStreamingSession", studioId=made.studio_id, sessionId=session["sessionId"]
    )
    return [r for srv in servers for r in signed_for(template, artist, srv, count)]


def create_requests(
    made: common.Installation, servers: list[support.Server], count: int
) -> list[tuple[str, str, dict[str, str], bytes]]:
    """``count`` CreateStreamingSession requests per server, each with its own client token."""
    assert made.world is not None
    artist = made.world.artist
    params = {"studioId": made.studio_id, "launchProfileId": made.world.studio.launch_profile_id}
    template, _ = api_latency.capture(artist.client(), "CreateStreamingSession", **params)
    return [r for srv in servers for r in unique_creates(template, artist, srv, count)]


def gets(made: common.Installation, servers: list[support.Server], seconds: float) -> float:
    return rounds(servers, get_requests(made, servers), seconds)


def creates(
    made: common.Installation, servers: list[support.Server], seconds: float
) -> tuple[float, float]:
    """(answers/s, sessions created/s): once the unique requests run out, wrk replays them and
    the answers are idempotent replays, so the sessions created are counted in the database,
    per second of wrk's run (not of its start, which reads thousands of requests first)."""
    requests = create_requests(made, servers, CREATES_PER_SERVER)
    before = made.count()
    runs = common.replay(
        servers, requests, seconds=seconds, connections=max(1, CONNECTIONS // len(servers))
    )
    made_count = made.count() - before
    return common.total_rps(runs), made_count / max(run.seconds for run in runs)


def bench(backend: str, seconds: float, workdir: pathlib.Path) -> list[str]:
    lines = []
    with common.installation(backend, workdir / backend) as made:
        if backend == "sqlite":
            made.add_server()
            counts = [1]
        else:
            made.add_worker()
            made.add_server(reconciler=False)
            made.add_server(reconciler=False)
            counts = [1, 2]
        common.build_world(made)
        for n in counts:
            servers = made.servers[:n]
            get_rps = gets(made, servers, seconds)
            common.log(f"{backend}, {n} API process(es): Get {get_rps:,.0f}/s")
            answers, created = creates(made, servers, seconds)
            common.log(f"{backend}, {n}: Create {created:,.0f}/s ({answers:,.0f} answers/s)")
            lines.append(f"| {backend} | {n} | {get_rps:,.0f} | {created:,.0f} |")
    return lines


def baseline(seconds: float, workdir: pathlib.Path) -> float:
    with api_latency.bare_server(workdir) as (port, _pid):
        srv = support.Server(workdir / "bare", port=port)
        request = ("GET", "/", {"Host": f"127.0.0.1:{port}"}, b"")
        return rounds([srv], [request], seconds)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=4.0, help="seconds per wrk round")
    parser.add_argument("--backends", default="sqlite,postgresql")
    args = parser.parse_args(argv)
    if api_latency.wrk_missing():
        return 2
    lines = [
        "| database | API processes | GetStreamingSession /s | CreateStreamingSession /s |",
        "|---|---|---|---|",
    ]
    with tempfile.TemporaryDirectory(prefix="opennimble-bench-") as tmp:
        bare = baseline(args.seconds, pathlib.Path(tmp))
        for backend in common.backends(args.backends):
            lines += bench(backend, args.seconds, pathlib.Path(tmp))
    print(
        f"\nwrk, {CONNECTIONS} connections in all, {args.seconds:g} s rounds (median of {ROUNDS}):"
    )
    print(f"baseline: bare ASGI callable on the same stack, 1 process: {bare:,.0f} requests/s")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
