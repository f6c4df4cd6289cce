"""ListStreamingSessions page latency with an ``ownedBy`` filter, at 1 thousand and at 1 million
sessions in the table, on SQLite and on PostgreSQL.

Run: ``.venv/bin/python -m bench.scale_listing [--large 1000000] [--seconds 5]``; needs wrk.

For each database: one ``opennimble serve`` (with its reconciler, the instant provider so no
desktop is started), a studio set up through the API, and an artist who owns the same ~334
sessions at both sizes; the rest of the table belongs to other owners. Rows are inserted in
bulk through the store (COPY on PostgreSQL, executemany in one transaction on SQLite), not
through the API. The artist's first page and a later page (with a ``nextToken``) are signed
beforehand and replayed by wrk on one connection, so each figure is the latency of one page
request with nothing queued. The baseline is the same measurement at 1 thousand sessions in the
same run: a page must cost the same at 1 million.
"""

from __future__ import annotations

import argparse
import pathlib
import statistics
import sys
import tempfile

from bench import api_latency
from bench import scale_common as common

ROUNDS = 3
SMALL = 1_000


def measure(made: common.Installation, seconds: float) -> tuple[float, float, float]:
    """(p50 ms, p99 ms, requests/s) of the artist's pages, medians of ROUNDS wrk rounds."""
    assert made.world is not None
    artist, srv = made.world.artist, made.servers[0]
    client = artist.client()
    params = {"studioId": made.studio_id, "ownedBy": artist.user_id}
    first, answer = api_latency.capture(client, "ListStreamingSessions", **params)
    later, _ = api_latency.capture(
        client, "ListStreamingSessions", **params, nextToken=answer["nextToken"]
    )
    host = f"127.0.0.1:{srv.port}"
    creds = common.credentials(artist)
    signed = [
        request
        for template in (first, later)
        for request in api_latency.sign(template, creds, host, "us-west-2", 100)
    ]
    runs = [common.replay([srv], signed, seconds=seconds, connections=1)[0] for _ in range(ROUNDS)]
    return (
        statistics.median(r.p50_us for r in runs) / 1000,
        statistics.median(r.p99_us for r in runs) / 1000,
        statistics.median(r.rps for r in runs),
    )


def bench(backend: str, large: int, seconds: float, workdir: pathlib.Path) -> list[str]:
    lines = []
    with common.installation(backend, workdir / backend) as made:
        made.add_server()
        world = common.build_world(made)
        mine = [world.artist.user_id, "bench-owner-1", "bench-owner-2"]
        took = common.bulk_insert(made, common.session_rows(made.studio_id, SMALL, mine))
        common.log(f"{backend}: {SMALL} sessions inserted in {took:.1f} s")
        small = measure(made, seconds)
        others = [f"bench-owner-{i}" for i in range(3, 40)]
        rows = common.session_rows(made.studio_id, large - SMALL, others, start=SMALL)
        took = common.bulk_insert(made, rows)
        common.log(f"{backend}: {large - SMALL} more sessions inserted in {took:.1f} s")
        total = made.count()
        big = measure(made, seconds)
        for size, (p50, p99, rps) in ((SMALL, small), (total, big)):
            ratio = p50 / small[0]
            lines.append(
                f"| {backend} | {size:,} | {p50:.2f} | {p99:.2f} | {rps:,.0f} | {ratio:.2f} |"
            )
        lines.append(f"| {backend} | bulk insert of {large - SMALL:,} rows | {took:.1f} s | | | |")
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--large", type=int, default=1_000_000, help="sessions in the big table")
    parser.add_argument("--seconds", type=float, default=4.0, help="seconds per wrk round")
    parser.add_argument("--backends", default="sqlite,postgresql")
    args = parser.parse_args(argv)
    if api_latency.wrk_missing():
        return 2
    lines = [
        "| database | sessions in the table | page p50 ms | page p99 ms | pages/s (1 conn) "
        f"| p50 / p50 at {SMALL:,} |",
        "|---|---|---|---|---|---|",
    ]
    with tempfile.TemporaryDirectory(prefix="opennimble-bench-") as tmp:
        for backend in common.backends(args.backends):
            lines += bench(backend, args.large, args.seconds, pathlib.Path(tmp))
    print("\nListStreamingSessions(ownedBy), one page of 100, one connection:")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
