"""What the metrics and the audit trail cost GetStreamingSession and CreateStreamingSession.

Run: ``.venv/bin/python -m bench.telemetry_cost [--seconds 4] [--rounds 3]``; needs wrk.

Four SQLite installations run side by side, alike but for two settings: everything on (the
defaults), ``metrics = false``, ``audit = false``, and both off. Sessions are provisioned by
the instant provider (bench/instant.py), so the figures are the API's and the database's.
Signed requests are replayed with wrk (as in bench.scale_throughput), round after round, the
installations taking turns within each round (each run once no reconciler has sessions left to
provision) so that the machine's drift hits them alike; the
medians are compared with the installation that has the feature off, in the same run. Two
figures: requests answered per second, and the server process's CPU time per answer (from
/proc, its own utime and stime). On a machine shared with other work the throughput moves with
their load; the CPU per answer hardly does, so the target (each under 10%) is judged on it. Get
is a read: the audit trail records nothing for it. Create writes a session and, with the
audit trail, an entry in the same transaction (the instant provider's reconciler work, the
same everywhere, is in the CPU figure too).
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import pathlib
import statistics
import sys
import tempfile
import time
from collections.abc import Iterable
from typing import Any

from tests.support import server as support

from bench import api_latency
from bench import scale_common as common
from bench import scale_throughput as throughput

CONFIGS = {
    "all on": {},
    "metrics off": {"OPENNIMBLE_METRICS": "false"},
    "audit off": {"OPENNIMBLE_AUDIT": "false"},
    "both off": {"OPENNIMBLE_METRICS": "false", "OPENNIMBLE_AUDIT": "false"},
}
TARGET = 0.10  # the most each may cost
GETS = 400  # signed GetStreamingSession requests replayed
CREATES = 3000  # unique CreateStreamingSession requests per run (more than a run answers)


@dataclasses.dataclass
class Figures:
    """One installation's runs: requests/s and the server's CPU microseconds per answer."""

    rps: list[float] = dataclasses.field(default_factory=list)
    cpu_us: list[float] = dataclasses.field(default_factory=list)

    def add(self, rps: float, cpu_us: float) -> None:
        self.rps.append(rps)
        self.cpu_us.append(cpu_us)


def measured(srv: support.Server, requests: list[Any], seconds: float) -> tuple[float, float]:
    """Replay ``requests`` for ``seconds``: (answers/s, the server's CPU us per answer)."""
    assert srv.process is not None
    before = api_latency.cpu_seconds(srv.process.pid)
    run = common.replay([srv], requests, seconds=seconds, connections=throughput.CONNECTIONS)[0]
    spent = api_latency.cpu_seconds(srv.process.pid) - before
    return run.rps, spent / max(1, run.requests) * 1e6


def settle(installations: Iterable[common.Installation], timeout: float = 60) -> None:
    """Wait until no reconciler has sessions to provision (the creates of the run before),
    so that each run has the machine's CPU to itself as far as the benchmark goes."""
    deadline = time.monotonic() + timeout
    for installation in installations:
        while installation.count("state = 'CREATE_IN_PROGRESS'") and time.monotonic() < deadline:
            time.sleep(0.2)


def cost(on: float, off: float) -> float:
    """The share of the work a feature adds (negative: within noise)."""
    return on / off - 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=2.0, help="seconds per wrk run")
    parser.add_argument("--rounds", type=int, default=7, help="rounds (medians are reported)")
    args = parser.parse_args(argv)
    gets = {name: Figures() for name in CONFIGS}
    creates = {name: Figures() for name in CONFIGS}
    with (
        tempfile.TemporaryDirectory(prefix="opennimble-bench-") as tmp,
        contextlib.ExitStack() as stack,
    ):
        made: dict[str, common.Installation] = {}
        for index, (name, extra) in enumerate(CONFIGS.items()):
            workdir = pathlib.Path(tmp) / f"install{index}"
            made[name] = stack.enter_context(common.installation("sqlite", workdir, **extra))
            made[name].add_server()
            common.build_world(made[name])
            common.log(f"{name}: ready")
        reads = {name: throughput.get_requests(m, m.servers[:1], GETS) for name, m in made.items()}
        for round_ in range(args.rounds):
            for name, installation in made.items():
                settle(made.values())
                gets[name].add(*measured(installation.servers[0], reads[name], args.seconds))
            for name, installation in made.items():
                requests = throughput.create_requests(
                    installation, installation.servers[:1], CREATES
                )
                settle(made.values())
                creates[name].add(*measured(installation.servers[0], requests, args.seconds))
            common.log(
                f"round {round_ + 1}: "
                + "; ".join(
                    f"{name} Get {gets[name].rps[-1]:,.0f}/s {gets[name].cpu_us[-1]:,.0f} us, "
                    f"Create {creates[name].rps[-1]:,.0f}/s {creates[name].cpu_us[-1]:,.0f} us"
                    for name in made
                )
            )
    return report(gets, creates, args)


def report(gets: dict[str, Figures], creates: dict[str, Figures], args: Any) -> int:
    med = statistics.median
    print(f"\nSQLite, instant provider, wrk {throughput.CONNECTIONS} connections, "
          f"{args.seconds:g} s runs, median of {args.rounds} interleaved rounds:")  # fmt: skip
    print("| installation | Get /s | Get: server CPU us each | Create /s | Create: CPU us each |")
    print("|---|---|---|---|---|")
    for name in CONFIGS:
        g, c = gets[name], creates[name]
        print(f"| {name} | {med(g.rps):,.0f} | {med(g.cpu_us):,.0f} | {med(c.rps):,.0f} | "
              f"{med(c.cpu_us):,.0f} |")  # fmt: skip
    print("\nthe cost of each, against the installation that has it off (same run):")
    print("| feature | Get: CPU per request | Get: throughput | Create: CPU per request | "
          "Create: throughput | target |")  # fmt: skip
    print("|---|---|---|---|---|---|")
    within = True
    for feature, off in (
        ("metrics", "metrics off"),
        ("audit trail", "audit off"),
        ("both", "both off"),
    ):
        on_g, off_g, on_c, off_c = gets["all on"], gets[off], creates["all on"], creates[off]
        cpu_g, cpu_c = (
            cost(med(on_g.cpu_us), med(off_g.cpu_us)),
            cost(med(on_c.cpu_us), med(off_c.cpu_us)),
        )
        tput_g, tput_c = 1 - med(on_g.rps) / med(off_g.rps), 1 - med(on_c.rps) / med(off_c.rps)
        if feature != "both":
            within = within and cpu_g < TARGET and cpu_c < TARGET
        target = "" if feature == "both" else f"< {TARGET:.0%} (CPU)"
        print(
            f"| {feature} | {cpu_g:+.1%} | {tput_g:+.1%} | {cpu_c:+.1%} | {tput_c:+.1%} "
            f"| {target} |"
        )
    print("\nwithin the target" if within else "\nOVER THE TARGET")
    return 0 if within else 1


if __name__ == "__main__":
    sys.exit(main())
