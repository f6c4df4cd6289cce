"""CreateStreamingSession -> READY with the Slurm provider, next to the local provider and the
bare desktop, all in this run.

Run: ``.venv/bin/python -m bench.slurm_ready [--sessions 20]`` as root, with Debian's slurm-wlm
and munge installed (``make test-packages``). A single-node Slurm cluster of its own is started
(tests/support/slurm.py) and torn down at the end.

1. Baseline: the bare desktop started directly (bench.session_ready's baseline).
2. The local provider: a real ``opennimble serve``; ``--sessions`` sessions one after another,
   each timed from CreateStreamingSession to the first GetStreamingSession that reads READY.
3. The Slurm provider: the same against a server with ``provider = "slurm"``; a session's
   desktop is a batch job (submission, scheduling, the launcher on the node, Xvnc).
Every session is deleted at the end, every job cancelled, every daemon stopped.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import shutil
import sys
import tempfile
from typing import Any

from tests.support import server as support
from tests.support import slurm
from tests.support import world as worlds

from bench import session_ready
from opennimble.providers import local_accounts


def timed(env: dict[str, str], count: int) -> list[float]:
    base = pathlib.Path(tempfile.mkdtemp(prefix="opennimble-bench-"))
    base.chmod(0o711)
    env = {
        "OPENNIMBLE_PROVIDERS__LOCAL__MAX_DESKTOPS": str(count + 4),
        "OPENNIMBLE_PROVIDERS__LOCAL__MAX_DESKTOPS_PER_OWNER": str(count + 4),
        "OPENNIMBLE_MAX_SESSIONS_PER_OWNER": str(count + 4),
        "OPENNIMBLE_LOG_LEVEL": "warning",
        **env,
    }
    srv = support.Server(base / "data", env=env)
    srv.start()
    try:
        world = worlds.build(srv)
        client = world.artist.client()
        times = []
        for _ in range(count):
            seconds, _, session_id = session_ready.create_until_ready(client, world.studio)
            times.append(seconds)
            ids: dict[str, Any] = {"studioId": world.studio.studio_id, "sessionId": session_id}
            client.delete_streaming_session(**ids)  # one desktop at a time on a small node
            client.get_waiter("streaming_session_deleted").wait(**ids, WaiterConfig=support.FAST)
        return times
    finally:
        srv.stop()
        local_accounts.remove_accounts(base)
        shutil.rmtree(base, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", type=int, default=20)
    args = parser.parse_args(argv)
    if (why := slurm.available()) is not None or shutil.which("Xvnc") is None:
        print(why or "Xvnc not found: run make setup", file=sys.stderr)
        return 2
    bare, _ = session_ready.baseline(args.sessions)
    local = timed({}, args.sessions)
    with slurm.cluster() as cluster:
        settings = cluster.provider_settings(resource_scale=0.01)
        providers = json.dumps({"slurm": settings})
        on_slurm = timed(
            {"OPENNIMBLE_PROVIDER": "slurm", "OPENNIMBLE_PROVIDERS": providers}, args.sessions
        )
    rows = [
        ("baseline: Xvnc + Openbox + xterm started directly", bare),
        ("local provider: CreateStreamingSession to READY", local),
        ("slurm provider: CreateStreamingSession to READY", on_slurm),
    ]
    print(f"\n{args.sessions} sessions each, one after the other, on {os.cpu_count()} cores")
    print(f"{'':52} {'p50 ms':>8} {'p95 ms':>8}")
    for name, samples in rows:
        p50, p95 = session_ready.percentiles(samples)
        print(f"{name:52} {p50:8.1f} {p95:8.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
