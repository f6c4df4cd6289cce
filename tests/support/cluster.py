"""Several opennimble processes on one PostgreSQL database: API servers and workers."""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import os
import pathlib
import subprocess
import sys
import time
from collections.abc import Iterator

from tests.support import databases
from tests.support import world as worlds
from tests.support.server import Child, Server, desktops_dir, kill_all, reachable, shared_dir


@dataclasses.dataclass
class Worker(Child):
    """An ``opennimble worker`` process: a workstation host of the installation."""

    data_dir: pathlib.Path
    host_id: str
    env: dict[str, str]
    log_dir: pathlib.Path
    process: subprocess.Popen[bytes] | None = None

    def __post_init__(self) -> None:
        self.data_dir = reachable(self.data_dir)  # its desktops directory removed at exit

    @property
    def log_path(self) -> pathlib.Path:
        return self.log_dir / f"{self.host_id}-worker.log"

    def start(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        offset = self.log_path.stat().st_size if self.log_path.exists() else 0
        log = open(self.log_path, "ab")  # noqa: SIM115 - handed to the child
        argv = ["worker", "--data-dir", str(self.data_dir), "--host-id", self.host_id]
        self.process = subprocess.Popen(
            [sys.executable, "-m", "opennimble", *argv],
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**os.environ, **self.env},
        )
        log.close()
        deadline = time.monotonic() + 30
        while b"opennimble worker for host" not in self.log_path.read_bytes()[offset:]:
            if self.process.poll() is not None:
                raise RuntimeError(f"worker exited: {self.log()[-3000:]}")
            if time.monotonic() > deadline:
                raise RuntimeError("worker did not start in 30 s")
            time.sleep(0.05)


@dataclasses.dataclass
class Cluster:
    """API servers without reconcilers and workers, sharing a database and the installation
    key, each process with a data directory of its own."""

    root: pathlib.Path
    servers: list[Server]
    workers: list[Worker]

    @classmethod
    def make(
        cls, root: pathlib.Path, servers: int, workers: int, env: dict[str, str] | None = None
    ) -> Cluster:
        url = databases.create()
        common = {
            "OPENNIMBLE_DATABASE_URL": url,
            "OPENNIMBLE_KEY_FILE": str(root / "secret.key"),
            # fault tests start many sessions of one owner: the per-owner cap is tested alone
            "OPENNIMBLE_PROVIDERS__LOCAL__MAX_DESKTOPS_PER_OWNER": "64",
            **(env or {}),
        }
        # the hosts share this machine's accounts, so they share the homes too
        common["OPENNIMBLE_PROVIDERS__LOCAL__HOMES_DIR"] = str(shared_dir("homes"))
        # and, as hosts sharing homes must, do not mount an image of their own on them
        common["OPENNIMBLE_PROVIDERS__LOCAL__HOME_SIZE"] = "0"
        made = cls(root, [], [])
        for i in range(servers):
            data_dir = reachable(root / f"server{i}")
            databases.share(data_dir, url)
            env_i = {**common, "OPENNIMBLE_RECONCILER": "false"}
            made.servers.append(Server(data_dir, env=env_i))
        for i in range(workers):
            made.workers.append(Worker(root / f"host{i}", f"host{i}", common, root))
        return made

    def start(self) -> None:
        for process in [*self.workers, *self.servers]:
            process.start()

    def stop(self) -> None:
        for process in [*self.servers, *self.workers]:
            process.stop()

    def desktops(self) -> dict[str, list[int]]:
        """Session id -> pids of the Xvnc processes of this cluster's hosts."""
        found: dict[str, list[int]] = {}
        for worker in self.workers:
            marker = str(desktops_dir(worker.data_dir, worker.env))  # in Xvnc's -auth path
            for session_id, pids in xvnc_by_session(marker).items():
                found.setdefault(session_id, []).extend(pids)
        return found


@contextlib.contextmanager
def served(made: Cluster) -> Iterator[worlds.World]:
    """Start the cluster, build a world through its first server; at the end delete every
    session, stop the processes and check that no desktop was left running."""
    try:
        made.start()
        built = worlds.build(made.servers[0])
        yield built
        worlds.delete_all_sessions(built)
    finally:
        made.stop()
        leftovers = made.desktops()
        kill_all([pid for pids in leftovers.values() for pid in pids])
    assert leftovers == {}, f"desktops left running: {leftovers}"


def xvnc_by_session(marker: str) -> dict[str, list[int]]:
    """Session id -> pids of the running Xvnc processes whose command line mentions
    ``marker``, from their ``-desktop opennimble-<session id>`` argument.

    Xvnc forks to run ``xkbcomp`` when it compiles a keymap (at start): until that child execs
    ``/bin/sh``, its command line is its parent's. Such a child of an Xvnc is not a second X
    server (a desktop's Xvnc is never started by another Xvnc), so it is left out."""
    parents: dict[str, dict[int, int]] = collections.defaultdict(dict)  # session: pid -> ppid
    for proc in pathlib.Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            argv = (proc / "cmdline").read_bytes().split(b"\0")
            stat = (proc / "stat").read_text().rsplit(")", 1)[1].split()
            if not argv[0].endswith(b"Xvnc") or marker.encode() not in b" ".join(argv):
                continue
            if stat[0] == "Z":
                continue
            name = argv[argv.index(b"-desktop") + 1].decode()
            parents[name.removeprefix("opennimble-")][int(proc.name)] = int(stat[1])
    return {
        session_id: sorted(pid for pid, ppid in pids.items() if ppid not in pids)
        for session_id, pids in parents.items()
    }
