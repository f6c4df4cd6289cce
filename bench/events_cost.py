"""The cost of lifecycle events (and of webhooks registered) on CreateStreamingSession.

Run: ``.venv/bin/python -m bench.events_cost [--seconds 4] [--rounds 3] [--base REV]``; needs
wrk and git.

Three installations per database, measured in the same run, rounds interleaved (the order
rotating from round to round):

- **without events**: the code of ``--base`` (default: the newest commit on HEAD's
  first-parent line without store/events.py), extracted with ``git archive`` and put first on the
  processes' PYTHONPATH;
- **events**: this tree; every create records its events (create, READY...);
- **events + 2 webhooks**: this tree, with two webhooks of the studio taking every event type,
  delivered during the run to a real HTTP receiver on loopback.

Sessions are provisioned by the instant provider (bench/instant.py), so the figure is the API,
the database and the reconciler's transitions; creates are counted in the database
(bench.scale_throughput.creates). Two figures: sessions created per second (the machine's
other load moves it a lot), and the server process's CPU time per session created (user +
system, from /proc: steadier on a shared machine; it includes the reconciler's work and the
webhook deliveries, which run in ``serve``, not PostgreSQL's own processes). PostgreSQL is
measured when its server answers.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import pathlib
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Iterator

from tests.support import receiver as receivers
from tests.support import server as support

from bench import api_latency, scale_throughput
from bench import scale_common as common

ROOT = pathlib.Path(__file__).resolve().parent.parent
EVENTS_MODULE = "src/opennimble/store/events.py"
VARIANTS = ("without events", "events", "events + 2 webhooks")


def base_revision() -> str:
    """The newest commit on HEAD's first-parent line without store/events.py: on a branch
    that added events, where it started; on main after the merge, main before it."""
    line = subprocess.run(
        ["git", "rev-list", "--first-parent", "HEAD"],
        cwd=ROOT,
        check=True,
        capture_output=True,
        text=True,
    ).stdout.split()
    for commit in line:
        found = subprocess.run(
            ["git", "cat-file", "-e", f"{commit}:{EVENTS_MODULE}"], cwd=ROOT, capture_output=True
        )
        if found.returncode != 0:
            return commit
    raise SystemExit(f"every commit has {EVENTS_MODULE}: give --base")


def extract(revision: str, into: pathlib.Path) -> pathlib.Path:
    """The ``src`` of ``revision``, extracted into ``into``; returns the src directory."""
    into.mkdir(parents=True)
    archive = subprocess.run(
        ["git", "archive", revision, "src"], cwd=ROOT, check=True, capture_output=True
    ).stdout
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive, check=True)
    return into / "src"


@contextlib.contextmanager
def variant(
    name: str, backend: str, workdir: pathlib.Path, base_src: pathlib.Path, secret: str, url: str
) -> Iterator[common.Installation]:
    extra = {}
    if name == "without events":
        path = [str(base_src), str(common.instant_provider_path(workdir)), str(ROOT)]
        extra["PYTHONPATH"] = os.pathsep.join(path)
    with common.installation(backend, workdir, **extra) as made:
        made.add_server()
        world = common.build_world(made)
        if name == "events + 2 webhooks":
            secret_file = workdir / "webhook-secret"
            secret_file.write_text(secret)
            for _ in range(2):
                support.cli(
                    made.servers[0].data_dir,
                    *("webhooks", "add", "--studio", world.studio.studio_id, "--url", url),
                    *("--events", "*", "--secret-file", str(secret_file)),
                    env=made.env,
                )
        yield made


def bench(
    backend: str, seconds: float, rounds: int, workdir: pathlib.Path, base_src: pathlib.Path
) -> dict[str, list[tuple[float, float]]]:
    """Per variant, per round: (sessions created/s, server CPU ms per session created)."""
    secret = "bench-webhook-secret-0123456789"
    figures: dict[str, list[tuple[float, float]]] = {name: [] for name in VARIANTS}
    with contextlib.ExitStack() as stack:
        receiver = stack.enter_context(receivers.running(secret))
        made = {
            name: stack.enter_context(
                variant(name, backend, workdir / f"{backend}-{i}", base_src, secret, receiver.url)
            )
            for i, name in enumerate(VARIANTS)
        }
        for round_ in range(rounds):
            order = VARIANTS[round_ % 3 :] + VARIANTS[: round_ % 3]  # no variant always first
            for name in order:
                server = made[name].servers[0]
                assert server.process is not None
                cpu, before = api_latency.cpu_seconds(server.process.pid), made[name].count()
                _answers, rate = scale_throughput.creates(made[name], made[name].servers, seconds)
                created = made[name].count() - before
                cpu = api_latency.cpu_seconds(server.process.pid) - cpu
                figures[name].append((rate, cpu * 1000 / max(created, 1)))
                common.log(
                    f"{backend}, round {round_ + 1}, {name}: Create {rate:,.0f}/s, "
                    f"server CPU {figures[name][-1][1]:.2f} ms per create"
                )
        common.log(f"{backend}: the receiver got {len(receiver.received):,} deliveries")
    return figures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=4.0, help="seconds per wrk round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--backends", default="sqlite,postgresql")
    parser.add_argument("--base", default=None, help="the revision without events")
    args = parser.parse_args(argv)
    base = args.base or base_revision()
    lines = [
        "| database | variant | Create /s | vs without | server CPU ms per create | vs without |",
        "|---|---|---|---|---|---|",
    ]
    with tempfile.TemporaryDirectory(prefix="opennimble-bench-") as tmp:
        base_src = extract(base, pathlib.Path(tmp) / "base")
        for backend in common.backends(args.backends):
            figures = bench(backend, args.seconds, args.rounds, pathlib.Path(tmp), base_src)
            rate0, cpu0 = (statistics.median(f) for f in zip(*figures[VARIANTS[0]], strict=True))
            for name in VARIANTS:
                rate, cpu = (statistics.median(f) for f in zip(*figures[name], strict=True))
                lines.append(
                    f"| {backend} | {name} | {rate:,.0f} | {rate / rate0:.0%} | {cpu:.2f} "
                    f"| {cpu / cpu0:.0%} |"
                )
    print(
        f"\nwrk, {scale_throughput.CONNECTIONS} connections, {args.seconds:g} s rounds, "
        f"median of {args.rounds}, interleaved; without events = {base}:"
    )
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
