"""The read path's CPU cost per request, in process: the server's root ASGI app (``server.Root``,
as ``opennimble serve`` builds it, without the reconciler) called in a loop on this process's
event loop, without sockets or uvicorn, on a real SQLite installation set up like
``bench.api_latency``'s (a studio through the API, 100 READY sessions); ``--backend
postgresql`` on a PostgreSQL database of its own (see ``bench.scale_common``).

Run: ``.venv/bin/python -m bench.api_inprocess [--batches 15] [--batch 200] [--profile 2000]``.

Each of the requests of ``bench.api_latency`` (GetStreamingSession, ListStreamingSessions
ownedBy the artist, the admin's unfiltered page of 100), signed by botocore beforehand, goes
through the app; the figure is this process's CPU time (all its threads: the store thread
included) per request, the median of ``--batches`` batches alternated between the requests.
Other processes' load hardly moves it, unlike throughput (see bench/README.md). Every answer
must be a 200. ``--profile N`` also runs N Gets under cProfile, in the event loop's thread and
the store thread, and prints where the time goes (``--profile-target`` 1, 2: the listings).
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import io
import logging
import os
import pathlib
import pstats
import resource
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from typing import Any

import uvloop

from bench import api_latency
from bench import scale_common as common
from opennimble import config, installation, server

Signed = tuple[str, str, dict[str, str], bytes]


def scope_of(signed: Signed) -> dict[str, Any]:
    """The ASGI scope uvicorn gives the app for a signed request."""
    method, target, headers, _ = signed
    path, _, query = target.partition("?")
    return {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.3"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": query.encode(),
        "root_path": "",
        "headers": [(k.lower().encode(), v.encode()) for k, v in headers.items()],
        "client": ("127.0.0.1", 40000),
        "server": ("127.0.0.1", 8000),
    }


class Caller:
    """Calls the app with one of a target's signed requests after another."""

    def __init__(self, app: Callable[..., Any], signed: list[Signed]) -> None:
        self.app = app
        self.requests = [(scope_of(s), s[3]) for s in signed]
        self.index = 0
        self.status = 0

    async def receive(self) -> dict[str, Any]:
        return {"type": "http.request", "body": self.body, "more_body": False}

    async def send(self, message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            self.status = message["status"]
        elif self.status != 200:
            raise api_latency.BenchError(f"answer {self.status}: {message['body'][:300]!r}")

    async def once(self) -> None:
        scope, self.body = self.requests[self.index % len(self.requests)]
        self.index += 1
        await self.app(dict(scope), self.receive, self.send)


async def measure(
    callers: dict[str, list[Caller]], batches: int, size: int
) -> dict[str, tuple[float, float, float]]:
    """Per target: the median and the least of the batches' CPU microseconds per request
    (with several callers per target, they run at once, ``size`` requests in all), and the
    median of the process's voluntary context switches per request (a thread waking another,
    or waiting for the GIL: each costs tens of microseconds of CPU on a small VM)."""
    times: dict[str, list[float]] = {name: [] for name in callers}
    switches: dict[str, list[float]] = {name: [] for name in callers}
    for group in callers.values():  # warm-up: caches, the store thread's connection
        await _batch(group, 50 * len(group))
    for _ in range(batches):
        for name, group in callers.items():
            switched = resource.getrusage(resource.RUSAGE_SELF).ru_nvcsw
            started = time.process_time()
            await _batch(group, size)
            times[name].append((time.process_time() - started) / size * 1e6)
            switched = resource.getrusage(resource.RUSAGE_SELF).ru_nvcsw - switched
            switches[name].append(switched / size)
    return {
        name: (statistics.median(v), min(v), statistics.median(switches[name]))
        for name, v in times.items()
    }


async def _batch(group: list[Caller], size: int) -> None:
    if len(group) == 1:
        for _ in range(size):
            await group[0].once()
        return

    async def calls(caller: Caller, count: int) -> None:
        for _ in range(count):
            await caller.once()

    await asyncio.gather(*(calls(caller, size // len(group)) for caller in group))


async def profile(root: server.Root, caller: Caller, count: int, out_path: str | None) -> str:
    """Run ``count`` requests under cProfile in the loop's thread and the store thread."""
    loop_profile, store_profile = cProfile.Profile(), cProfile.Profile()
    await root.db.run(store_profile.enable)
    loop_profile.enable()
    for _ in range(count):
        await caller.once()
    loop_profile.disable()
    await root.db.run(store_profile.disable)
    out = io.StringIO()
    stats = pstats.Stats(loop_profile, stream=out)
    stats.add(store_profile)
    if out_path:
        stats.dump_stats(out_path)
    stats.sort_stats("tottime").print_stats(35)
    stats.sort_stats("cumulative").print_stats(45)
    return out.getvalue()


async def run(args: argparse.Namespace, made: common.Installation, targets: list[Any]) -> None:
    env = {**made.env, "OPENNIMBLE_RECONCILER": "false"}
    os.environ.update(env)
    settings = config.load(data_dir=str(made.workdir / "inprocess"))
    db = installation.open_database(settings)
    root = server.Root(settings, db)
    if args.no_hop:  # a measurement of the hop's cost only: the server never does this
        db._store_thread()  # this thread keeps its connection, as the store thread does

        async def direct(work: Callable[..., Any], *a: Any, **kw: Any) -> Any:
            return work(*a, **kw)

        db.run = direct  # type: ignore[method-assign]
    try:
        callers = {
            t.name: [
                Caller(
                    root,
                    api_latency.sign(t.template, t.credentials, "127.0.0.1:8000", "us-west-2", 300),
                )
                for _ in range(args.concurrency)
            ]
            for t in targets
        }
        figures = await measure(callers, args.batches, args.batch)
        print(
            f"CPU per request, in process, {args.concurrency} at once "
            f"(median / least of {args.batches} batches; context switches per request):"
        )
        for name, (median, least, switched) in figures.items():
            print(f"  {name:48s} {median:8.1f} us  {least:8.1f} us  {switched:5.2f}")
        if args.profile:
            profiled = list(callers.values())[args.profile_target][0]
            print(await profile(root, profiled, args.profile, args.profile_out))
    finally:
        root.api.close()
        db.engine.dispose()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--batches", type=int, default=15)
    parser.add_argument("--batch", type=int, default=200, help="requests per batch")
    parser.add_argument("--sessions", type=int, default=100, help="sessions in the studio")
    parser.add_argument("--backend", default="sqlite", choices=["sqlite", "postgresql"])
    parser.add_argument(
        "--profile", type=int, default=0, help="Gets to profile (0: none; SQLite only)"
    )
    parser.add_argument(
        "--profile-target", type=int, default=0, help="which request to profile (0: the Get)"
    )
    parser.add_argument("--profile-out", help="also write the profile's statistics there")
    parser.add_argument(
        "--concurrency",
        type=int,
        default=1,
        help="requests in flight at once (as wrk's connections queue them in a server)",
    )
    parser.add_argument(
        "--no-hop",
        action="store_true",
        help="run the store work on the event loop's thread (to measure the hop's cost only)",
    )
    args = parser.parse_args(argv)
    logging.disable(logging.INFO)  # as the bench's servers (log level warning)
    with (
        tempfile.TemporaryDirectory(prefix="opennimble-bench-") as tmp,
        common.installation(args.backend, pathlib.Path(tmp) / "install") as made,
    ):
        made.add_server()
        world = common.build_world(made)
        session_id = api_latency.populate(made, args.sessions, lambda m: print(m, file=sys.stderr))
        targets = api_latency.targets_of(made, session_id, args.sessions)
        try:
            asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())  # as `serve` runs
            asyncio.run(run(args, made, targets))
        finally:
            world.artist.client().delete_streaming_session(
                studioId=made.studio_id, sessionId=session_id
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
