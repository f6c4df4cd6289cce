"""Reconciler throughput: sessions per second taken from CREATE_IN_PROGRESS to READY with a
provider whose start is instant, so that the control plane's own cost is visible.

Run: ``.venv/bin/python -m bench.scale_reconciler [--sessions 2000]``.

Installations: SQLite (the reconciler of one ``serve``) and PostgreSQL (one, then two
``worker`` processes as hosts, next to a ``serve --no-reconciler`` that set up the studio).
The sessions are inserted in bulk, as the API records them (CREATE_IN_PROGRESS, bound to no
host); the clock starts at the commit and stops when the last one is READY. Every figure is
the median of three rounds. The baseline, from the same run and database, is the floor of
that work: one single-row UPDATE transaction per session, from one client.
"""

from __future__ import annotations

import argparse
import pathlib
import statistics
import sys
import tempfile
import time

import sqlalchemy as sa

from bench import scale_common as common
from opennimble import clock

ROUNDS = 3
SETTINGS = {
    "OPENNIMBLE_MAX_CONCURRENT_PROVISIONS": "32",
    "OPENNIMBLE_PROVIDERS__LOCAL__MAX_DESKTOPS": "1000000",
    "OPENNIMBLE_PROVIDERS__LOCAL__MAX_DESKTOPS_PER_OWNER": "1000000",
    "OPENNIMBLE_RECONCILE_INTERVAL": "1.0",
}


def one_round(made: common.Installation, count: int, start: int) -> float:
    """Sessions per second from the insert's commit until all are READY."""
    assert made.world is not None
    studio, now = made.world.studio, clock.system_now()
    rows = common.session_rows(
        made.studio_id,
        count,
        [made.world.artist.user_id],
        start=start,
        state="CREATE_IN_PROGRESS",
        status_code="STREAMING_SESSION_CREATE_IN_PROGRESS",
        host_id=None,
        launch_profile_id=studio.launch_profile_id,
        streaming_image_id=studio.image_id,
        ec2_instance_type="g4dn.xlarge",
        work_started_at=now,
    )
    started = time.monotonic()
    common.bulk_insert(made, rows)
    engine = made.engine()
    query = sa.text("SELECT count(*) FROM sessions WHERE state = 'CREATE_IN_PROGRESS'")
    try:
        while True:
            with engine.connect() as conn:
                if conn.execute(query).scalar_one() == 0:
                    break
            if time.monotonic() - started > 600:
                raise RuntimeError("sessions not READY within 10 minutes")
            time.sleep(0.02)
    finally:
        engine.dispose()
    ready = made.count("state = 'READY' AND host_id IS NOT NULL AND host_id != 'bench-filler'")
    assert ready >= count, f"only {ready} READY"
    return count / (time.monotonic() - started)


def floor(made: common.Installation, count: int) -> float:
    """Single-row UPDATE transactions per second on the same database (the baseline)."""
    engine = made.engine()
    t = sa.table("sessions", sa.column("session_id"), sa.column("updated_at"))
    with engine.connect() as conn:
        ids = conn.execute(sa.select(t.c.session_id).limit(count)).scalars().all()
    started = time.monotonic()
    for session_id in ids:
        with engine.begin() as conn:
            conn.execute(t.update().where(t.c.session_id == session_id).values(updated_at=1))
    engine.dispose()
    return len(ids) / (time.monotonic() - started)


def rounds(made: common.Installation, count: int, offset: int) -> float:
    return statistics.median(one_round(made, count, offset + i * count) for i in range(ROUNDS))


def bench(backend: str, count: int, workdir: pathlib.Path) -> list[str]:
    lines = []
    with common.installation(backend, workdir / backend, **SETTINGS) as made:
        if backend == "sqlite":
            made.add_server()
            common.build_world(made)
            rate = rounds(made, count, 0)
            lines.append(
                f"| {backend} | serve (1 reconciler) | {rate:,.0f} | {floor(made, count):,.0f} |"
            )
            return lines
        made.add_server(reconciler=False)
        made.add_worker()
        common.build_world(made)
        one = rounds(made, count, 0)
        made.add_worker()
        two = rounds(made, count, ROUNDS * count)
        base = floor(made, count)
        lines.append(f"| {backend} | 1 worker | {one:,.0f} | {base:,.0f} |")
        lines.append(f"| {backend} | 2 workers | {two:,.0f} | {base:,.0f} |")
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sessions", type=int, default=2000, help="sessions per round")
    parser.add_argument("--backends", default="sqlite,postgresql")
    args = parser.parse_args(argv)
    lines = [
        "| database | reconcilers | sessions/s to READY | baseline: single-row UPDATE txns/s |",
        "|---|---|---|---|",
    ]
    with tempfile.TemporaryDirectory(prefix="opennimble-bench-") as tmp:
        for backend in common.backends(args.backends):
            lines += bench(backend, args.sessions, pathlib.Path(tmp))
    print(f"\nCREATE_IN_PROGRESS -> READY, instant provider, {args.sessions} sessions a round:")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
