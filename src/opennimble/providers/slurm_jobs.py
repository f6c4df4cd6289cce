"""Slurm, as the Slurm provider talks to it: its commands' JSON output, never their tables.

``sbatch --parsable`` submits (as the desktop's owner: ``--uid``/``--gid``, which needs root),
``squeue --json`` and ``sinfo --json`` report jobs and nodes, ``scancel`` ends a job. Every
command runs under a time limit; a command that cannot be run, times out or fails is a
:class:`~opennimble.providers.base.TemporaryFailure` (the controller may be restarting), except
a submission Slurm refuses outright (an impossible request), which is permanent.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
from collections.abc import Mapping, Sequence
from typing import Any

from opennimble.providers import base

# job states after which nothing runs any more
ENDED = frozenset(
    {
        "BOOT_FAIL", "CANCELLED", "COMPLETED", "DEADLINE", "FAILED", "NODE_FAIL",
        "OUT_OF_MEMORY", "PREEMPTED", "TIMEOUT", "SPECIAL_EXIT", "REVOKED",
    }
)  # fmt: skip
PENDING = frozenset({"PENDING", "REQUEUED", "REQUEUE_HOLD", "REQUEUE_FED", "SUSPENDED"})
# what sbatch says when a request can never be satisfied (no retry helps)
_IMPOSSIBLE = (
    "Requested node configuration is not available",
    "Invalid partition name",
    "Invalid qos specification",
    "Invalid generic resource",
    "Memory required by task is not available",
    "More processors requested than permitted",
    "Invalid account",
)


@dataclasses.dataclass(frozen=True)
class Job:
    """One job as ``squeue --json`` reports it."""

    job_id: int
    name: str
    state: str  # job_state: PENDING, RUNNING, CANCELLED, ...
    reason: str  # state_reason: Resources, Priority, NonZeroExitCode, None, ...
    node: str  # batch_host: the node the batch script runs on ("" while pending)
    submitted: int  # submit_time, seconds since the epoch
    exit_code: int | None

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Job:
        exit_code = data.get("exit_code")
        return cls(
            job_id=int(data["job_id"]),
            name=str(data.get("name") or ""),
            state=str(data.get("job_state") or ""),
            reason=str(data.get("state_reason") or ""),
            node=str(data.get("batch_host") or ""),
            submitted=int(data.get("submit_time") or 0),
            exit_code=exit_code if isinstance(exit_code, int) else None,
        )

    @property
    def ended(self) -> bool:
        return self.state in ENDED

    @property
    def pending(self) -> bool:
        return self.state in PENDING


class Slurm:
    """The Slurm commands of one cluster (``SLURM_CONF`` names its configuration, if set)."""

    def __init__(self, *, bin_dir: str = "", slurm_conf: str = "", timeout: float = 30.0) -> None:
        self._bin_dir = bin_dir
        self._env = {**os.environ, **({"SLURM_CONF": slurm_conf} if slurm_conf else {})}
        self._timeout = timeout

    async def submit(self, script: str, options: Sequence[str]) -> int:
        """Submit a batch script (given on standard input) and return the job id."""
        code, out, err = await self._run("sbatch", "--parsable", *options, stdin=script)
        if code != 0:
            message = f"Slurm refused the desktop's job: {err.strip() or out.strip()}"
            if any(reason in err for reason in _IMPOSSIBLE):
                raise base.PermanentFailure(message, "INSUFFICIENT_CAPACITY")
            raise base.TemporaryFailure(message)
        try:
            return int(out.strip().split(";")[0])
        except ValueError:
            raise base.TemporaryFailure(f"sbatch printed no job id: {out!r}") from None

    async def jobs(self) -> dict[int, Job]:
        """Every job the controller still knows (also ended ones, for ``MinJobAge``), by id.

        ``squeue --json`` reports all jobs whatever filter it is given, so filtering is ours.
        """
        data = await self._json("squeue", "--json")
        return {job.job_id: job for job in map(Job.from_json, data.get("jobs") or [])}

    async def node_addresses(self) -> dict[str, str]:
        """Each node's address (NodeAddr), by node name."""
        data = await self._json("sinfo", "--json")
        return {
            str(node["name"]): str(node.get("address") or node["name"])
            for node in data.get("nodes") or []
            if "name" in node
        }

    async def cancel(self, job_id: int) -> None:
        code, out, err = await self._run("scancel", str(job_id))
        if code != 0 and "Invalid job id" not in err:  # a job already purged is ended
            raise base.TemporaryFailure(f"scancel {job_id} failed: {err.strip() or out.strip()}")

    async def _json(self, *argv: str) -> dict[str, Any]:
        code, out, err = await self._run(*argv)
        if code != 0:
            raise base.TemporaryFailure(f"{argv[0]} failed: {err.strip() or out.strip()}")
        try:
            data = json.loads(out)
        except ValueError:
            raise base.TemporaryFailure(f"{argv[0]} --json printed no JSON") from None
        if not isinstance(data, dict):
            raise base.TemporaryFailure(f"{argv[0]} --json printed no JSON object")
        return data

    async def _run(
        self, program: str, *args: str, stdin: str | None = None
    ) -> tuple[int, str, str]:
        path = os.path.join(self._bin_dir, program) if self._bin_dir else program
        try:
            process = await asyncio.create_subprocess_exec(
                path,
                *args,
                # no pipe for commands that read nothing: writing to one they never read
                # fails once they exit (uvloop: "the handler is closed")
                stdin=asyncio.subprocess.DEVNULL if stdin is None else asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                env=self._env,
            )
        except OSError as exc:
            raise base.TemporaryFailure(f"cannot run {path}: {exc}") from exc
        try:
            async with asyncio.timeout(self._timeout):
                out, err = await process.communicate(None if stdin is None else stdin.encode())
        except TimeoutError:
            process.kill()
            await process.wait()
            raise base.TemporaryFailure(
                f"{program} did not answer within {self._timeout:g} s", retry_in=self._timeout
            ) from None
        return process.returncode or 0, out.decode(errors="replace"), err.decode(errors="replace")
