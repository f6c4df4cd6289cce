"""What a bounded home (``home_size``) costs a session's start: the same sessions with homes on
the host's file system and with homes as ext4 images, in one run, and the mount itself.

Run: ``.venv/bin/python -m bench.home_images [--sessions 8]`` as root (images are mounted as
root), with Xvnc and the built-in desktop's packages (``make setup``).

1. Two servers side by side, each on a fresh data directory: ``home_size`` 0 and
   ``home_size`` 10240 (the default). On each, the artist creates ``--sessions`` sessions one
   after the other, taking turns with the other server, each deleted once READY: every start
   is then the account's only desktop, so with images every start checks and mounts the home
   (``e2fsck -p``, ``mount -o loop``) and every deletion unmounts it, the costliest case (a
   desktop started while another of the account runs mounts nothing). A warm-up session
   first makes the account (and its image). Timed from CreateStreamingSession to the first
   GetStreamingSession that reads READY.
2. The mount alone: a 10 GiB image made, then checked and mounted and unmounted
   ``--sessions`` times, through the provider's own module.
3. Prints a table; deletes every session, stops the servers, removes the data, accounts,
   images and mounts.
"""

from __future__ import annotations

import argparse
import os
import pathlib
import shutil
import sys
import tempfile
import time

from bench import session_ready
from opennimble.providers import (
    local_accounts,
    local_cgroups,
    local_home_images,
    local_host,
    local_process,
)

SIZE_MIB = 10240


def sessions(count: int) -> tuple[list[float], list[float]]:
    """Seconds to READY of ``count`` sessions, one at a time, on a server with ``home_size`` 0
    and on one with ``home_size`` SIZE_MIB, running side by side, taking turns (so that both
    meet the same load)."""
    unbounded = {"OPENNIMBLE_PROVIDERS__LOCAL__HOME_SIZE": "0"}
    bounded = {"OPENNIMBLE_PROVIDERS__LOCAL__HOME_SIZE": str(SIZE_MIB)}
    with session_ready.served(unbounded, 4) as plain, session_ready.served(bounded, 4) as imaged:
        times: tuple[list[float], list[float]] = ([], [])
        for world in (plain, imaged):  # warm-up: the accounts (and the image)
            session_ready.one_after_another(world, 1, keep=False)
        for _ in range(count):
            for world, samples in zip((plain, imaged), times, strict=True):
                samples += session_ready.one_after_another(world, 1, keep=False).ready
        return times


def mounts(count: int) -> tuple[float, list[float], list[float]]:
    """(seconds to make the image, seconds of each check and mount, of each unmount)."""
    base = pathlib.Path(tempfile.mkdtemp(prefix="opennimble-bench-home-"))
    home = base / "home"
    home.mkdir(mode=0o700)
    account = local_accounts.Account("bench", 0, 0, home, True)
    host = local_host.Host(
        base / "desktops",
        max_desktops=1,
        ending=local_process.Ending(grace=1.0),
        groups=local_cgroups.hierarchy(base),
    )
    images = local_home_images.HomeImages(base / "images", SIZE_MIB * 2**20, host)
    mounted, unmounted = [], []
    try:
        began = time.monotonic()
        images.mount(account)
        made = time.monotonic() - began
        images.unmount(account)
        for _ in range(count):
            began = time.monotonic()
            images.mount(account)
            mounted.append(time.monotonic() - began)
            began = time.monotonic()
            images.unmount(account)
            unmounted.append(time.monotonic() - began)
    finally:
        local_home_images.unmount_all(base)
        shutil.rmtree(base, ignore_errors=True)
    return made, mounted, unmounted


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", type=int, default=8, help="sessions (and mounts) each")
    args = parser.parse_args(argv)
    if os.geteuid() != 0:
        print("home images are mounted as root: run as root", file=sys.stderr)
        return 2
    made, mounted, unmounted = mounts(args.sessions)
    unbounded, bounded = sessions(args.sessions)
    load = os.getloadavg()
    print(f"\n{args.sessions} each, on {os.cpu_count()} cores, load {load[0]:.2f} {load[1]:.2f}")
    print(f"{'':58} {'p50 ms':>8} {'p95 ms':>8}")
    rows = [
        ("local: CreateStreamingSession to READY, home_size 0", unbounded),
        (f"local: CreateStreamingSession to READY, home_size {SIZE_MIB}", bounded),
        ("e2fsck -p and mount -o loop of a 10 GiB image", mounted),
        ("its unmount", unmounted),
    ]
    for name, samples in rows:
        p50, p95 = session_ready.percentiles(samples)
        print(f"{name:58} {p50:8.1f} {p95:8.1f}")
    print(f"making the 10 GiB image (mkfs.ext4, once per account): {made * 1000:.0f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
