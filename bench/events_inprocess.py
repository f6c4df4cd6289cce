"""What lifecycle events cost a session's creation, in-process: CreateStreamingSession through
the API's dispatcher and the reconciler's READY (its action on the instant provider) run in
this process against a real installation's database, alternating with and without events in
short batches, timed by this process's CPU clock; then what a webhook costs per delivery.

Run: ``.venv/bin/python -m bench.events_inprocess [--batches 30] [--batch 50]
[--backend sqlite]``.

"Without events" is ``store.events.paused()``: the same code, whose changes then record no
event (no number, no webhook deliveries queued, nothing for the live views; a state change is
a plain compare-and-set, without the RETURNING of what its event tells). It exists for this
benchmark only.

What is timed, per session created:

- **CreateStreamingSession**: ``Dispatcher.invoke`` as the server runs it (the audit trail on,
  on SQLite through the group commit); with events it records ``session.create_in_progress``.
- **READY**: the reconciler's action for the new sessions (``Actions.run``: the provider's
  start and poll, then the READY transition with the provider's state, through ``Writes``'
  batches, 32 sessions at a time as a claim brings them); with events it records
  ``session.ready``.

Then two webhooks of the studio taking every event are registered (``opennimble webhooks
add``), CreateStreamingSession is measured with them against without events again (each create
queues two deliveries), and the deliveries are made by the webhook worker
(``Deliverer.round``) in this process to a receiver in another process: the CPU per delivery.
The installation's server only sets the studio up: it is stopped before anything is timed, so
that this process is the database's only writer.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import http.server
import logging
import pathlib
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import sqlalchemy as sa
from tests.support import receiver as receivers
from tests.support import server as support

from bench import instant, telemetry_inprocess
from bench import scale_common as common
from opennimble import clock
from opennimble.reconciler import actions, webhooks
from opennimble.store import events, group_commit, sessions

CLAIM = 32  # sessions brought up at once (as one claim of the reconciler brings them)
SECRET = "bench-webhook-secret-0123456789"


def paused(run: Callable[[int], int]) -> Callable[[int], int]:
    """``run`` without events."""

    def without(count: int) -> int:
        with events.paused():
            return run(count)

    return without


def creates(h: telemetry_inprocess.Harness, runner: Any) -> Callable[[int], int]:
    def run(count: int) -> int:
        for _ in range(count):
            h.create(runner)
        return count

    return run


class Bringing:
    """The reconciler's actions for the sessions waiting in CREATE_IN_PROGRESS, in this
    process's event loop, ``CLAIM`` at a time."""

    def __init__(
        self, h: telemetry_inprocess.Harness, group: group_commit.GroupCommit | None
    ) -> None:
        self.loop = asyncio.new_event_loop()
        self.actions = actions.Actions(
            h.db,
            instant.InstantProvider(),
            now=clock.system_now,
            ready_timeout=60.0,
            cipher=h.cipher,
            writes=group_commit.Writes(h.db, group),
        )
        with h.db.read() as conn:
            self.waiting = sessions.in_states(conn, ["CREATE_IN_PROGRESS"])
            self.specs = self.actions.specs(conn, self.waiting)

    def run(self, count: int) -> int:
        taken, self.waiting = self.waiting[:count], self.waiting[count:]
        for start in range(0, len(taken), CLAIM):
            self.loop.run_until_complete(self._bring_up(taken[start : start + CLAIM]))
        return len(taken)

    async def _bring_up(self, rows: list[dict[str, Any]]) -> None:
        await asyncio.gather(*(self.actions.run(r, self.specs[r["session_id"]]) for r in rows))

    def close(self) -> None:
        self.actions.writes.close()
        self.loop.close()


@contextlib.contextmanager
def receiver_process() -> Iterator[str]:
    """A webhook receiver (tests.support.receiver) in another process: its URL."""
    child = subprocess.Popen(
        [sys.executable, "-m", "bench.events_inprocess", "--receiver"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert child.stdout is not None
        yield child.stdout.readline().strip()
    finally:
        assert child.stdin is not None
        child.stdin.close()  # it ends when its standard input does
        child.wait(timeout=20)


def serve_receiver() -> int:
    # the worker POSTs up to webhooks.BATCH at once: a listen backlog for all of them (the
    # standard library's default, 5, resets connections beyond it)
    http.server.ThreadingHTTPServer.request_queue_size = 128
    receiver = receivers.Receiver(SECRET)
    receiver.start()
    print(receiver.url, flush=True)
    sys.stdin.read()
    receiver.stop()
    return 0


def deliver_all(h: telemetry_inprocess.Harness) -> tuple[int, float]:
    """Make every pending delivery with the webhook worker: (deliveries, CPU us per one)."""
    deliverer = webhooks.Deliverer(h.db, h.cipher, now=clock.system_now, host_id="bench")

    async def rounds() -> int:
        async with httpx.AsyncClient(timeout=webhooks.TIMEOUT) as client:
            total = 0
            while done := await deliverer.round(client):
                total += done
            return total

    started = time.process_time()
    delivered = asyncio.run(rounds())
    return delivered, (time.process_time() - started) / max(delivered, 1) * 1e6


def delivered_ok(h: telemetry_inprocess.Harness) -> tuple[int, int]:
    """(deliveries DELIVERED, deliveries in any other state)."""
    d = events.deliveries
    with h.db.read() as conn:
        rows = conn.execute(sa.select(d.c.state, sa.func.count()).group_by(d.c.state)).all()
    ok = sum(int(n) for state, n in rows if state == "DELIVERED")
    return ok, sum(int(n) for _state, n in rows) - ok


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--batches", type=int, default=30)
    parser.add_argument("--batch", type=int, default=50, help="sessions per batch")
    parser.add_argument("--backend", choices=("sqlite", "postgresql"), default="sqlite")
    parser.add_argument("--receiver", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.receiver:
        return serve_receiver()
    logging.disable(logging.WARNING)  # the log lines of each READY are built, not written
    with (
        tempfile.TemporaryDirectory(prefix="opennimble-bench-") as tmp,
        common.installation(args.backend, pathlib.Path(tmp) / "install") as made,
        receiver_process() as url,
    ):
        made.add_server()
        h = telemetry_inprocess.harness(made, common.build_world(made))
        made.stop()  # this process is the only writer from here on
        group = group_commit.GroupCommit(h.db) if h.db.is_sqlite else None
        runner = h.dispatcher(trail=True, group=group)
        per = telemetry_inprocess.samples
        create = creates(h, runner)
        created = per(args.batches, args.batch, {"events": create, "no events": paused(create)})
        bringing = Bringing(h, group)
        ready = per(
            args.batches, args.batch, {"events": bringing.run, "no events": paused(bringing.run)}
        )
        bringing.close()
        secret_file = pathlib.Path(tmp) / "webhook-secret"
        secret_file.write_text(SECRET)
        for _ in range(2):
            support.cli(
                made.servers[0].data_dir,
                *("webhooks", "add", "--studio", h.studio, "--url", url, "--events", "*"),
                *("--secret-file", str(secret_file)),
                env=made.env,
            )
        hooked = per(args.batches, args.batch, {"events": create, "no events": paused(create)})
        delivered, per_delivery = deliver_all(h)
        ok, not_ok = delivered_ok(h)
        if group is not None:
            group.close()
        h.db.dispose()
    both = {
        name: [c + r for c, r in zip(created[name], ready[name], strict=True)] for name in created
    }
    measured = {
        "CreateStreamingSession, events": created,
        "READY (the reconciler's action), events": ready,
        "a session's creation (the two), events": both,
    }
    print(
        f"\n{args.backend}, in-process CPU per session: medians of {args.batches} rounds of "
        f"{args.batch}, with and without alternated; cost: the median of the rounds' ratios"
    )
    print(report(measured))
    print("\nwebhooks (not the events' target: each delivery is an HTTP POST of its own):")
    print(report({"CreateStreamingSession, events + 2 webhooks": hooked}))
    per_create = statistics.median(created["events"])
    print(
        f"webhook deliveries: {delivered:,} POSTed by the webhook worker ({ok:,} DELIVERED, "
        f"{not_ok:,} not), {per_delivery:,.0f} us of CPU per delivery (claim, signed POST, "
        f"outcome), {per_delivery / per_create:.0%} of a CreateStreamingSession's"
    )
    # judged on the Create benchmark's call, and on the whole of a session's creation
    within = all(cost(measured[name]) < telemetry_inprocess.TARGET for name in list(measured)[::2])
    print("\nevents within the target" if within else "\nevents OVER THE TARGET")
    return 0 if within and not not_ok else 1


def cost(found: dict[str, list[float]]) -> float:
    """The median of the rounds' ratios, with events to without, less one: a round's two
    batches ran under the same load of the machine's other work."""
    pairs = zip(found["events"], found["no events"], strict=True)
    return statistics.median(w / wo for w, wo in pairs) - 1


def report(measured: dict[str, dict[str, list[float]]]) -> str:
    rows = [
        (name, statistics.median(found["events"]), statistics.median(found["no events"]))
        for name, found in measured.items()
    ]
    return telemetry_inprocess.table(rows, [cost(found) for found in measured.values()])


if __name__ == "__main__":
    sys.exit(main())
