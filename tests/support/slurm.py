"""A real single-node Slurm cluster for tests: Debian's slurm-wlm and munge, own everything.

The cluster gets its own directory, munge key and socket, slurm.conf, free controller and node
ports, and state and spool directories; this machine is its one node. Nothing of a system
Slurm or munge is used or touched. ``cluster()`` starts it and, at the end, cancels every job
and stops the daemons.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import pathlib
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from typing import Any

from tests.support.server import free_port

DAEMONS = ("munged", "slurmctld", "slurmd")


def available() -> str | None:
    """Why no test cluster can run here (None when it can)."""
    missing = [name for name in (*DAEMONS, "sbatch") if shutil.which(name) is None]
    if missing:
        return f"missing {', '.join(missing)}: install Debian's slurm-wlm and munge (make test)"
    if os.geteuid() != 0:
        return "the Slurm provider's tests run as root (jobs are submitted as other users)"
    return None


PROVIDER_ENV = "OPENNIMBLE_TEST_PROVIDER"


@dataclasses.dataclass
class Cluster:
    base: pathlib.Path
    node: str
    cpus: int
    memory_mib: int
    processes: list[subprocess.Popen[bytes]] = dataclasses.field(default_factory=list)

    @property
    def conf(self) -> pathlib.Path:
        return self.base / "slurm.conf"

    @property
    def env(self) -> dict[str, str]:
        return {**os.environ, "SLURM_CONF": str(self.conf)}

    def run(self, *argv: str) -> str:
        done = subprocess.run(argv, env=self.env, capture_output=True, text=True, check=True)
        return done.stdout

    def jobs(self) -> list[dict[str, Any]]:
        return list(json.loads(self.run("squeue", "--json"))["jobs"])

    def live_jobs(self) -> list[dict[str, Any]]:
        ended = {"CANCELLED", "COMPLETED", "FAILED", "TIMEOUT", "NODE_FAIL", "OUT_OF_MEMORY"}
        return [job for job in self.jobs() if job["job_state"] not in ended]

    def submit(self, *options: str, wrap: str) -> int:
        argv = ["sbatch", "--parsable", "--output=/dev/null", f"--chdir={self.base}", *options]
        return int(self.run(*argv, "--wrap", wrap).split(";")[0])

    def cancel(self, job_id: int) -> None:
        self.run("scancel", str(job_id))

    def wait_idle(self, timeout: float = 30) -> None:
        """Until the node takes jobs and no job of an earlier test still runs."""
        deadline = time.monotonic() + timeout
        while True:
            nodes = json.loads(self.run("sinfo", "--json"))["nodes"]
            if nodes and nodes[0]["state"] == "idle" and not self.live_jobs():
                return
            assert time.monotonic() < deadline, f"the test cluster is not idle: {nodes}"
            time.sleep(0.2)

    def provider_settings(self, **extra: Any) -> dict[str, Any]:
        return {"slurm_conf": str(self.conf), **extra}

    def server_env(self, **extra: Any) -> dict[str, str]:
        """The environment of a server whose provider is this cluster (``extra``: more keys of
        its [providers.slurm] table)."""
        table = self.provider_settings(**extra)
        return {
            "OPENNIMBLE_PROVIDER": "slurm",
            "OPENNIMBLE_PROVIDERS": json.dumps({"slurm": table}),
        }


def _config(base: pathlib.Path, node: str, cpus: int, memory_mib: int) -> str:
    return "\n".join(
        [
            "ClusterName=opennimble-test",
            f"SlurmctldHost={node}(127.0.0.1)",
            f"SlurmctldPort={free_port()}",
            f"SlurmdPort={free_port()}",
            "SlurmUser=root",
            "AuthType=auth/munge",
            "CredType=cred/munge",
            f"AuthInfo=socket={base / 'munge' / 'munge.socket'}",
            f"StateSaveLocation={base / 'state'}",
            f"SlurmdSpoolDir={base / 'spool'}",
            f"SlurmctldPidFile={base / 'slurmctld.pid'}",
            f"SlurmdPidFile={base / 'slurmd.pid'}",
            f"SlurmctldLogFile={base / 'slurmctld.log'}",
            f"SlurmdLogFile={base / 'slurmd.log'}",
            "ProctrackType=proctrack/linuxproc",
            "TaskPlugin=task/none",
            # every job gets a /tmp (and /dev/shm) of its own: X sockets of desktops too
            "JobContainerType=job_container/tmpfs",
            "PrologFlags=Contain",
            "SchedulerType=sched/backfill",
            "SelectType=select/cons_tres",
            "SelectTypeParameters=CR_Core_Memory",
            "ReturnToService=2",
            "MpiDefault=none",
            "SlurmdParameters=config_overrides",  # the node has the CPUs this file says
            "JobAcctGatherType=jobacct_gather/none",
            "AccountingStorageType=accounting_storage/none",
            "MinJobAge=600",
            "KillWait=5",
            f"NodeName={node} NodeAddr=127.0.0.1 CPUs={cpus} RealMemory={memory_mib} State=UNKNOWN",
            "PartitionName=desktops Nodes=ALL Default=YES MaxTime=INFINITE State=UP",
            "",
        ]
    )


def _memory_mib() -> int:
    for line in pathlib.Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            return int(line.split()[1]) // 1024 * 3 // 4
    raise RuntimeError("no MemTotal in /proc/meminfo")


@contextlib.contextmanager
def cluster(cpus: int | None = None) -> Iterator[Cluster]:
    """A single-node cluster; with ``cpus``, its node claims that many CPUs whatever the
    machine has (so that many small desktops run at once, as the acceptance tests start)."""
    # not under /tmp: every job has a /tmp of its own (job_container/tmpfs), where the spool
    # (the job scripts) would not be
    base = pathlib.Path(tempfile.mkdtemp(prefix="opennimble-slurm-", dir="/var/tmp"))
    # a cluster's spool is searchable by the users whose job scripts it holds
    base.chmod(0o755)
    node = socket.gethostname().split(".")[0]
    found = Cluster(base, node, cpus or os.cpu_count() or 1, _memory_mib())
    for name in ("state", "spool", "munge"):
        (base / name).mkdir(mode=0o755)
    key = base / "munge" / "munge.key"
    key.write_bytes(os.urandom(1024))
    key.chmod(0o400)
    found.conf.write_text(_config(base, node, found.cpus, found.memory_mib))
    (base / "job_container.conf").write_text(f"AutoBasePath=true\nBasePath={base / 'jobs'}\n")
    try:
        _start(found)
        found.wait_idle()
        yield found
    finally:
        _stop(found)
        shutil.rmtree(base, ignore_errors=True)


def _start(found: Cluster) -> None:
    munge = found.base / "munge"
    commands = [
        ["munged", "--foreground", "--force", f"--socket={munge / 'munge.socket'}",
         f"--key-file={munge / 'munge.key'}", f"--pid-file={munge / 'munged.pid'}",
         f"--log-file={munge / 'munged.log'}", f"--seed-file={munge / 'seed'}"],
        ["slurmctld", "-D", "-f", str(found.conf)],
        ["slurmd", "-D", "-f", str(found.conf)],
    ]  # fmt: skip
    for argv in commands:
        log = open(found.base / f"{argv[0]}.out", "wb")  # noqa: SIM115 - handed to the child
        found.processes.append(
            subprocess.Popen(argv, env=found.env, stdout=log, stderr=subprocess.STDOUT)
        )
        log.close()
        if argv[0] == "munged":
            _wait_for(munge / "munge.socket")


def _wait_for(path: pathlib.Path, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert time.monotonic() < deadline, f"{path} did not appear"
        time.sleep(0.05)


def _stop(found: Cluster) -> None:
    with contextlib.suppress(subprocess.CalledProcessError, OSError):
        found.run("scancel", "--full", "--user=root")
        for job in found.live_jobs():
            found.run("scancel", str(job["job_id"]))
        deadline = time.monotonic() + 20
        while found.live_jobs() and time.monotonic() < deadline:
            time.sleep(0.2)
    for process in reversed(found.processes):
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


@contextlib.contextmanager
def chosen_provider() -> Iterator[dict[str, str]]:
    """The server settings (environment) of the provider the test run asks for with
    ``OPENNIMBLE_TEST_PROVIDER``: ``local`` (the default, nothing to set) or ``slurm`` (a
    cluster of its own, torn down afterwards with no job left), so that the acceptance tests
    run against either."""
    chosen = os.environ.get(PROVIDER_ENV, "local")
    if chosen == "local":
        yield {}
        return
    if chosen != "slurm":
        raise ValueError(f"{PROVIDER_ENV} is {chosen!r}: local or slurm")
    why = available()
    if why is not None:
        raise RuntimeError(f"{PROVIDER_ENV}=slurm, but {why}")
    with cluster(cpus=64) as found:
        yield found.server_env(resource_scale=0.01)
        left = found.live_jobs()
        for job in left:
            found.cancel(job["job_id"])
    assert left == [], f"jobs left running: {[job['job_id'] for job in left]}"
