"""The metrics' and the audit trail's own cost, in-process: the API's dispatcher and request
telemetry run in this process against a real installation's SQLite database, alternating with
and without each feature in short batches, timed by this process's CPU clock.

Run: ``.venv/bin/python -m bench.telemetry_inprocess [--batches 15] [--batch 100]``.

Other processes' load moves throughput a lot on a shared machine (see bench.telemetry_cost); a
process's own CPU time per operation, alternated batch by batch, hardly. What is timed:
CreateStreamingSession through ``Dispatcher.invoke`` (its transaction, with the audit trail's
persona lookup and entry, or without a trail), and GetStreamingSession through
``Dispatcher.invoke`` followed by the request's telemetry (its log event, and its metrics or
not). A server of the installation runs meanwhile (its reconciler provisions the sessions with
the instant provider, in its own process).
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import pathlib
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable

from tests.support import world as worlds

from bench import scale_common as common
from opennimble import clock, config
from opennimble.api import context, dispatch, telemetry, throttle
from opennimble.domain import audit, paging, quotas, stream_tokens
from opennimble.domain.identity import Caller
from opennimble.protocol import model
from opennimble.store import crypto, database, group_commit

TARGET = 0.10


def per_op(batches: int, size: int, variants: dict[str, Callable[[], None]]) -> dict[str, float]:
    """Median over ``batches`` of each variant's CPU microseconds per call, alternated."""

    def repeated(call: Callable[[], None]) -> Callable[[int], int]:
        def run(count: int) -> int:
            for _ in range(count):
                call()
            return count

        return run

    return per_batch(batches, size, {name: repeated(call) for name, call in variants.items()})


def per_batch(
    batches: int, size: int, variants: dict[str, Callable[[int], int]]
) -> dict[str, float]:
    """Median over ``batches`` of each variant's CPU microseconds per operation, alternated
    (see :func:`samples`)."""
    found = samples(batches, size, variants)
    return {name: statistics.median(values) for name, values in found.items()}


def samples(
    batches: int, size: int, variants: dict[str, Callable[[int], int]]
) -> dict[str, list[float]]:
    """Each variant's CPU microseconds per operation in each of ``batches`` rounds: a round
    calls every variant with ``size`` (it returns how many operations it did), the variants
    taking turns at going first from round to round."""
    times: dict[str, list[float]] = {name: [] for name in variants}
    names = list(variants)
    for round_ in range(batches):
        shift = round_ % len(names)
        for name in names[shift:] + names[:shift]:
            started = time.process_time()
            done = variants[name](size)
            times[name].append((time.process_time() - started) / max(done, 1) * 1e6)
    return times


@dataclasses.dataclass
class Harness:
    """The API's dispatcher in this process, on an installation's database, as its artist."""

    db: database.Database
    cipher: crypto.Cipher
    install: context.Installation
    caller: Caller
    studio: str
    profile: str
    ops: dict[str, model.Operation]

    def dispatcher(
        self, trail: bool, group: group_commit.GroupCommit | None = None
    ) -> dispatch.Dispatcher:
        """A dispatcher as the server's, with or without the audit trail; ``group``: the
        server's group commit (SQLite)."""
        no_limit = throttle.Throttle(0, 1)
        return dispatch.Dispatcher(
            self.db,
            self.install,
            clock.system_now,
            no_limit,
            audit.Trail(self.db) if trail else None,
            group,
        )

    def create(self, runner: dispatch.Dispatcher, token: str | None = None) -> str:
        """CreateStreamingSession as the artist (a new client token unless given): its id."""
        params = {
            "studioId": self.studio,
            "launchProfileId": self.profile,
            "clientToken": token or uuid.uuid4().hex,
        }
        made = runner.invoke(self.ops["CreateStreamingSession"], self.caller, params)
        return str(made["session"]["sessionId"])

    def creating(self, runner: dispatch.Dispatcher) -> Callable[[], None]:
        """A call that creates a session through ``runner``."""

        def call() -> None:
            self.create(runner)

        return call


def harness(made: common.Installation, world: worlds.World) -> Harness:
    """The dispatcher's setting for ``made`` (its quotas off: the benchmark creates many)."""
    db = database.Database(made.database_url)
    key = crypto.Cipher.from_file(pathlib.Path(made.env["OPENNIMBLE_KEY_FILE"]))
    unlimited = config.Settings.model_construct(
        max_sessions_per_studio=10**9,
        max_sessions_per_owner=10**9,
        max_launch_profiles_per_studio=50,
        max_streaming_images_per_studio=10,
    )
    install = context.Installation(
        region="us-west-2",
        account_id="000000000000",
        public_url="http://127.0.0.1:1",
        page_size=100,
        codec=paging.TokenCodec(key.key),
        stream_tokens=stream_tokens.StreamTokens(key.key),
        wake_reconciler=context.no_wake,
        quotas=quotas.Quotas.from_settings(unlimited),
    )
    artist = world.artist
    caller = Caller(artist.user_id, artist.name, False, artist.access_key_id, "127.0.0.1")
    return Harness(
        db,
        key,
        install,
        caller,
        world.studio.studio_id,
        world.studio.launch_profile_id,
        model.operations(),
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--batches", type=int, default=15)
    parser.add_argument("--batch", type=int, default=100, help="calls per batch")
    args = parser.parse_args(argv)
    logging.disable(logging.INFO)  # the request's log event is built, not written
    with (
        tempfile.TemporaryDirectory(prefix="opennimble-bench-") as tmp,
        common.installation("sqlite", pathlib.Path(tmp) / "install") as made,
    ):
        made.add_server()
        h = harness(made, common.build_world(made))
        with_trail, without = h.dispatcher(trail=True), h.dispatcher(trail=False)
        session = h.create(without, "get")
        scope = {
            "method": "GET",
            "path": f"/2020-08-01/studios/{h.studio}/streaming-sessions/{session}",
            "client": ("127.0.0.1", 1),
            "headers": [(b"authorization", f"Credential={h.caller.access_key_id}/".encode())],
            telemetry.CALLER: h.caller,
        }

        def get(count: bool) -> Callable[[], None]:
            def call() -> None:
                started = time.perf_counter()
                params = {"studioId": h.studio, "sessionId": session}
                without.invoke(h.ops["GetStreamingSession"], h.caller, params)
                telemetry.finished(scope, "r", "GetStreamingSession", 200, started, count)

            return call

        creates = per_op(
            args.batches,
            args.batch,
            {"audit on": h.creating(with_trail), "audit off": h.creating(without)},
        )
        gets = per_op(
            args.batches, args.batch * 5, {"metrics on": get(True), "metrics off": get(False)}
        )
        h.db.dispose()
    audit_cost = creates["audit on"] / creates["audit off"] - 1
    metrics_cost = gets["metrics on"] / gets["metrics off"] - 1
    print(f"\nin-process CPU per call, median of {args.batches} alternated batches:")
    print(table([
        ("CreateStreamingSession, audit trail", creates["audit on"], creates["audit off"]),
        ("GetStreamingSession + telemetry, metrics", gets["metrics on"], gets["metrics off"]),
    ]))  # fmt: skip
    within = audit_cost < TARGET and metrics_cost < TARGET
    print("\nwithin the target" if within else "\nOVER THE TARGET")
    return 0 if within else 1


def table(rows: list[tuple[str, float, float]], costs: list[float] | None = None) -> str:
    """Markdown: per row what is measured, its CPU with and without the feature, the cost
    (``costs``, or with / without - 1), the target and whether it is met."""
    lines = ["| call | with | without | cost | target | met |", "|---|---|---|---|---|---|"]
    for i, (what, with_, without) in enumerate(rows):
        cost = costs[i] if costs is not None else with_ / without - 1
        met = "met" if cost < TARGET else "NOT MET"
        lines.append(
            f"| {what} | {with_:,.0f} us | {without:,.0f} us | {cost:+.1%} | < {TARGET:.0%} "
            f"| {met} |"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
