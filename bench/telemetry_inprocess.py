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
import logging
import pathlib
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable

from bench import scale_common as common
from opennimble import clock, config
from opennimble.api import context, dispatch, telemetry, throttle
from opennimble.domain import audit, paging, quotas, stream_tokens
from opennimble.domain.identity import Caller
from opennimble.protocol import model
from opennimble.store import crypto, database

TARGET = 0.10


def per_op(batches: int, size: int, variants: dict[str, Callable[[], None]]) -> dict[str, float]:
    """Median over ``batches`` of each variant's CPU microseconds per call, alternated."""
    times: dict[str, list[float]] = {name: [] for name in variants}
    for _ in range(batches):
        for name, call in variants.items():
            started = time.process_time()
            for _ in range(size):
                call()
            times[name].append((time.process_time() - started) / size * 1e6)
    return {name: statistics.median(values) for name, values in times.items()}


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
        world = common.build_world(made)
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
            wake_reconciler=lambda: None,
            quotas=quotas.Quotas.from_settings(unlimited),
        )
        no_limit = throttle.Throttle(0, 1)
        with_trail = dispatch.Dispatcher(db, install, clock.system_now, no_limit, audit.Trail(db))
        without = dispatch.Dispatcher(db, install, clock.system_now, no_limit, None)
        artist = world.artist
        caller = Caller(artist.user_id, artist.name, False, artist.access_key_id, "127.0.0.1")
        ops = model.operations()
        studio, profile = world.studio.studio_id, world.studio.launch_profile_id

        def create(runner: dispatch.Dispatcher) -> Callable[[], None]:
            def call() -> None:
                params = {
                    "studioId": studio,
                    "launchProfileId": profile,
                    "clientToken": uuid.uuid4().hex,
                }
                runner.invoke(ops["CreateStreamingSession"], caller, params)

            return call

        session = without.invoke(
            ops["CreateStreamingSession"],
            caller,
            {"studioId": studio, "launchProfileId": profile, "clientToken": "get"},
        )["session"]["sessionId"]
        scope = {
            "method": "GET",
            "path": f"/2020-08-01/studios/{studio}/streaming-sessions/{session}",
            "client": ("127.0.0.1", 1),
            "headers": [(b"authorization", f"Credential={artist.access_key_id}/".encode())],
            telemetry.CALLER: caller,
        }

        def get(count: bool) -> Callable[[], None]:
            def call() -> None:
                started = time.perf_counter()
                params = {"studioId": studio, "sessionId": session}
                without.invoke(ops["GetStreamingSession"], caller, params)
                telemetry.finished(scope, "r", "GetStreamingSession", 200, started, count)

            return call

        creates = per_op(
            args.batches,
            args.batch,
            {"audit on": create(with_trail), "audit off": create(without)},
        )
        gets = per_op(
            args.batches, args.batch * 5, {"metrics on": get(True), "metrics off": get(False)}
        )
        db.dispose()
    audit_cost = creates["audit on"] / creates["audit off"] - 1
    metrics_cost = gets["metrics on"] / gets["metrics off"] - 1
    print(f"\nin-process CPU per call, median of {args.batches} alternated batches:")
    print("| call | with | without | cost | target |")
    print("|---|---|---|---|---|")
    print(f"| CreateStreamingSession, audit trail | {creates['audit on']:,.0f} us | "
          f"{creates['audit off']:,.0f} us | {audit_cost:+.1%} | < {TARGET:.0%} |")  # fmt: skip
    print(f"| GetStreamingSession + telemetry, metrics | {gets['metrics on']:,.0f} us | "
          f"{gets['metrics off']:,.0f} us | {metrics_cost:+.1%} | < {TARGET:.0%} |")  # fmt: skip
    within = audit_cost < TARGET and metrics_cost < TARGET
    print("\nwithin the target" if within else "\nOVER THE TARGET")
    return 0 if within else 1


if __name__ == "__main__":
    sys.exit(main())
