"""The ``slurm`` provider: each session's desktop is a Slurm batch job of its owner.

The job runs the desktop launcher (:mod:`desktop_job`), the same Xvnc, recipes and scripts as
the local provider's desktops, on whichever node Slurm picks, as the owner's Unix account
(``sbatch --uid``: the server runs as root, as Slurm's own tools need for that). The job asks
for what the session's instance type stands for (:mod:`opennimble.domain.instance_types`, scaled
by ``resource_scale``): ``--cpus-per-task``, ``--mem`` and, where a GRES name is configured, its
GPUs; partition and QoS come from the settings (per launch profile, per instance type, or for
all), the time limit from the launch profile's session length. The launcher reports its port in
the desktop's runtime directory in the owner's home, which the nodes and the servers share
(``homes_dir``); the node's address comes from ``sinfo``.

A job pending for longer than ``pending_timeout`` is cancelled and the session fails with
``INSUFFICIENT_CAPACITY``. A job that ends while its session is READY (cancelled outside
opennimble, failed, out of its time) is reported as ended for good, with Slurm's state and
reason, and the reconciler stops the session instead of starting it again. A restarted server
finds its jobs again by the id in the provider state; ``reap`` cancels the jobs of sessions it
does not know (jobs are named ``<job_name_prefix>-<session id>``: installations that share a
cluster need prefixes of their own).
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import math
import pathlib
import re
import secrets
import time
from collections.abc import Mapping
from typing import Any

import pydantic

from opennimble import config
from opennimble.domain import instance_types
from opennimble.providers import (
    base,
    desktop_job,
    local_accounts,
    local_backups,
    local_recipes,
    local_session,
    local_settings,
    local_xvnc,
    slurm_jobs,
)
from opennimble.providers.local_accounts import Account

log = logging.getLogger("opennimble.providers.slurm")

RUNTIME = ".opennimble/desktops"  # under the owner's home: the launcher's files
STOP_WAIT = 15.0  # seconds a cancelled job may take to end before stop is retried
GRACE_MINUTES = 5  # the job's time limit is the session's length plus this
_SESSION_ID = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9_.-]{0,127}")
_STATE_KEYS = ("session_id", "job_id", "user", "uid", "gid", "home")


class Placement(pydantic.BaseModel):
    """Where jobs of one launch profile or instance type go."""

    model_config = pydantic.ConfigDict(extra="forbid")

    partition: str = ""
    qos: str = ""


class SlurmSettings(local_settings.DesktopSettings):
    """The ``[providers.slurm]`` table of the configuration (with the desktop launcher's
    settings, as the local provider has them)."""

    partition: str = ""  # Slurm's default partition when empty
    qos: str = ""
    # launch profile id -> placement, instance type -> placement (the profile's wins)
    launch_profiles: dict[str, Placement] = pydantic.Field(default_factory=dict)
    instance_types: dict[str, Placement] = pydantic.Field(default_factory=dict)
    # the GRES that stands for GPUs (e.g. "gpu"); empty: jobs ask for no GPUs
    gpu_gres: str = ""
    # instance type resources are multiplied by this (a small cluster runs big profiles)
    resource_scale: float = pydantic.Field(default=1.0, gt=0, le=1.0)
    # seconds a job may wait for resources before the session fails (INSUFFICIENT_CAPACITY)
    pending_timeout: float = pydantic.Field(default=300.0, gt=0)
    # seconds a Slurm command may take
    command_timeout: float = pydantic.Field(default=30.0, gt=0)
    job_name_prefix: str = pydantic.Field(default="opennimble", pattern=r"^[A-Za-z0-9_.-]{1,40}$")
    # the Python 3 the nodes run the launcher with (its standard library is all it needs)
    python: str = pydantic.Field(default="/usr/bin/python3", pattern=r"^/[^\s]+$")
    slurm_conf: str = ""  # SLURM_CONF for Slurm's commands; empty: Slurm's own default
    bin_dir: str = ""  # where sbatch, squeue, sinfo and scancel are; empty: the PATH

    @pydantic.field_validator("instance_types")
    @classmethod
    def _known_types(cls, value: dict[str, Placement]) -> dict[str, Placement]:
        unknown = sorted(set(value) - set(instance_types.TABLE))
        if unknown:
            raise ValueError(f"not instance types of the model: {', '.join(unknown)}")
        return value

    def placement(self, launch_profile_id: str, instance_type: str) -> Placement:
        for found in (
            self.launch_profiles.get(launch_profile_id),
            self.instance_types.get(instance_type),
        ):
            if found is not None:
                return Placement(
                    partition=found.partition or self.partition, qos=found.qos or self.qos
                )
        return Placement(partition=self.partition, qos=self.qos)


class SlurmProvider(base.Provider):
    """Desktops as Slurm batch jobs of their owners."""

    name = "slurm"

    def __init__(
        self,
        settings: SlurmSettings,
        *,
        homes_dir: pathlib.Path,
        backups_dir: pathlib.Path,
        xvnc: str = "Xvnc",
        geometry: str = "1280x800",
        interface: str = "127.0.0.1",
        ready_timeout: float = 60.0,
        recipes: Mapping[str, config.DesktopRecipe] | None = None,
        max_file_size: int | None = None,
        now: Any = time.time,
    ) -> None:
        if not local_accounts.can_isolate():
            raise RuntimeError(
                "the slurm provider submits jobs as the desktops' owners (sbatch --uid), which "
                "needs root: run opennimble as root, or use the local provider"
            )
        self.settings = settings
        self._slurm = slurm_jobs.Slurm(
            bin_dir=settings.bin_dir,
            slurm_conf=settings.slurm_conf,
            timeout=settings.command_timeout,
        )
        self._accounts = local_accounts.Accounts(homes_dir, isolate=True)
        self._backups = local_backups.Backups(backups_dir)
        self._xvnc, self._geometry, self._interface = xvnc, geometry, interface
        self._ready_timeout = self.ready_timeout = ready_timeout
        self.capacity = settings.max_desktops
        self._recipes = dict(recipes or {})
        self._max_file_size = max_file_size
        self._now = now

    @classmethod
    def from_settings(cls, settings: config.Settings) -> SlurmProvider:
        own = local_settings.table(settings, cls.name, SlurmSettings, local_settings.DESKTOP_KEYS)
        options = own.launcher_options(settings)
        local_accounts.make_searchable(options["homes_dir"])  # the owners search it
        problem = local_accounts.reachability_problem(options["homes_dir"])
        if problem is not None:  # refused at start, not at the first session
            raise base.PermanentFailure(problem)
        return cls(own, **options)

    # ---- the contract -----------------------------------------------------------------------

    def start_timeout(self, ready_timeout: float) -> float:
        return ready_timeout + self.settings.pending_timeout

    async def start(self, spec: base.DesktopSpec, state: base.ProviderState) -> base.ProviderState:
        sid = _session_id(spec.session_id)
        job = await self._job_of(state)
        if job is not None and not job.ended:
            return _public(state)  # submitted by an earlier attempt or process: re-attach
        chosen = local_recipes.choose(self._recipes, spec.ec2_image_id)
        account = await asyncio.to_thread(
            self._accounts.ensure, spec.studio_id, spec.owned_by, spec.owner_name
        )
        runtime = _runtime_dir(account, sid)
        env = local_session.owner_environment(account, sid)
        await local_session.run_as(account, ["rm", "-rf", "--", str(runtime)], env)
        await local_session.run_as(account, ["mkdir", "-p", "-m", "700", str(runtime)], env)
        password = local_xvnc.new_password()
        obfuscated = await asyncio.to_thread(local_xvnc.password_file_content, password)
        described = self._description(spec, account, runtime, chosen.recipe, obfuscated)
        described["password"] = password  # reported back with the port, never stored here
        options = self._options(spec, account, runtime)
        job_id = await self._slurm.submit(self._script(described), options)
        log.info("session %s: Slurm job %d submitted as %s", sid, job_id, account.name)
        return {"session_id": sid, "job_id": job_id, **account.as_state()}

    async def poll(self, state: base.ProviderState) -> base.PollResult:
        job = await self._job_of(state)
        if job is None:
            message = "the desktop's Slurm job is no longer known to Slurm"
            return base.PollResult(
                base.Health.ENDED if state.get("job_id") else base.Health.GONE, message=message
            )
        if job.pending:
            return await self._pending(job)
        account = Account.from_state(state)
        if job.ended or account is None:
            return await self._ended(job, account, str(state.get("session_id")))
        endpoint = await self._endpoint(account, str(state["session_id"]))
        if endpoint is None:
            return base.PollResult(base.Health.STARTING, message=f"starting on {job.node}")
        address = (await self._slurm.node_addresses()).get(job.node, job.node)
        if not await local_xvnc.rfb_ready(address, endpoint["port"]):
            return base.PollResult(base.Health.STARTING, message="VNC port not answering yet")
        found = {"host": address, **endpoint}
        return base.PollResult(base.Health.READY, endpoint=found)

    async def stop(
        self, state: base.ProviderState, *, discard_storage: bool = False
    ) -> base.ProviderState:
        sid = state.get("session_id")
        if not isinstance(sid, str):
            return {}
        sid = _session_id(sid)
        await self._end_job(state)
        account = Account.from_state(state)
        if discard_storage and account is not None:
            await local_session.discard_storage(account, sid)
        kept: base.ProviderState = {"session_id": sid}
        kept.update(account.as_state() if account is not None else {})
        return kept

    async def delete(self, state: base.ProviderState) -> None:
        kept = await self.stop(state, discard_storage=True)
        account = Account.from_state(kept)
        if account is not None:
            sid = kept["session_id"]
            env = local_session.owner_environment(account, sid)
            runtime = str(_runtime_dir(account, sid))
            await local_session.run_as(account, ["rm", "-rf", "--", runtime], env)

    async def back_up(self, state: base.ProviderState, backup_id: str) -> base.ProviderState:
        sid = _session_id(str(state.get("session_id", "")))
        account = Account.from_state(state)
        if account is None:
            raise base.PermanentFailure(f"no desktop account is known for session {sid}")
        return await self._backups.take(account, sid, _session_id(backup_id))

    async def restore(
        self, spec: base.DesktopSpec, state: base.ProviderState, backup: base.ProviderState
    ) -> None:
        sid = _session_id(spec.session_id)
        if backup.get("session_id") != sid:
            raise base.PermanentFailure(f"backup {backup.get('path')} is not of session {sid}")
        job = await self._job_of(state)
        if job is not None and not job.ended:
            return  # restored and submitted by an earlier attempt
        account = await asyncio.to_thread(
            self._accounts.ensure, spec.studio_id, spec.owned_by, spec.owner_name
        )
        await self._backups.restore(account, sid, backup)

    async def delete_backup(self, backup: base.ProviderState) -> None:
        await self._backups.delete(backup)

    async def reap(self, known: set[str]) -> list[str]:
        prefix = f"{self.settings.job_name_prefix}-"
        reaped = []
        for job in (await self._slurm.jobs()).values():
            sid = job.name.removeprefix(prefix)
            if job.name.startswith(prefix) and not job.ended and sid not in known:
                await self._slurm.cancel(job.job_id)
                reaped.append(sid)
        return reaped

    # ---- jobs -------------------------------------------------------------------------------

    def _options(
        self, spec: base.DesktopSpec, account: Account, runtime: pathlib.Path
    ) -> list[str]:
        wanted = instance_types.resources(spec.ec2_instance_type, self.settings.resource_scale)
        minutes = (spec.max_session_minutes or 24 * 60) + GRACE_MINUTES
        options = [
            f"--job-name={self.settings.job_name_prefix}-{spec.session_id}",
            f"--uid={account.uid}",
            f"--gid={account.gid}",
            f"--chdir={account.home}",
            f"--output={runtime / 'job.log'}",
            "--export=NONE",
            "--nodes=1",
            "--ntasks=1",
            f"--cpus-per-task={wanted.vcpus}",
            f"--mem={wanted.memory_mib}M",
            f"--time={minutes}",
        ]
        placement = self.settings.placement(spec.launch_profile_id, spec.ec2_instance_type)
        if placement.partition:
            options.append(f"--partition={placement.partition}")
        if placement.qos:
            options.append(f"--qos={placement.qos}")
        if self.settings.gpu_gres and wanted.gpus:
            options.append(f"--gres={self.settings.gpu_gres}:{wanted.gpus}")
        return options

    def _description(
        self,
        spec: base.DesktopSpec,
        account: Account,
        runtime: pathlib.Path,
        recipe: config.DesktopRecipe,
        password_file: bytes,
    ) -> dict[str, Any]:
        """What the launcher is told about the desktop."""
        sid = spec.session_id
        env = {**local_session.base_environment(), **recipe.environment}
        env.update(account.environment(), OPENNIMBLE_SESSION_DIR=str(_storage(account, sid)))
        xvnc = local_xvnc.xvnc_command(
            self._xvnc,
            session_id=sid,
            port=0,
            geometry=self._geometry,
            displayfd=0,
            xauthority=str(runtime / "Xauthority"),
            password_file=str(runtime / "passwd"),
            interface=self._interface,
            clipboard=spec.clipboard,
        )
        fill = {"-rfbport": "{port}", "-displayfd": "{displayfd}"}
        xvnc = [fill.get(xvnc[i - 1], arg) if i else arg for i, arg in enumerate(xvnc)]
        cookie = secrets.token_bytes(16)
        return {
            "runtime_dir": str(runtime),
            "storage_dir": str(_storage(account, sid)),
            "environment": env,
            "interface": self._interface,
            "xvnc_command": xvnc,
            "password_file": base64.b64encode(password_file).decode(),
            "xauthority": base64.b64encode(local_xvnc.xauthority_entry(cookie)).decode(),
            "x_cookie": base64.b64encode(cookie).decode(),
            "wait_for_window": local_recipes.has_window(recipe, spec.clipboard),
            "session_script": local_recipes.session_script(
                recipe, spec.clipboard, gate_fd=desktop_job.GATE_FD
            ),
            "timeout": self._ready_timeout,
            "max_file_size": self._max_file_size,
            "scripts": [
                {
                    "component": s.component,
                    "run_context": s.run_context,
                    "script": s.script,
                    "parameters": [list(p) for p in s.parameters],
                }
                for s in spec.init_scripts
            ],
        }

    def _script(self, described: dict[str, Any]) -> str:
        """The batch script: the launcher's own text, run by the nodes' Python, with the
        desktop's description in place of its empty one."""
        source = pathlib.Path(desktop_job.__file__).read_text(encoding="utf-8")
        body = source.split("\n", 1)[1]
        literal = f"DESCRIPTION: dict[str, Any] = json.loads({json.dumps(described)!r})"
        marker = f"\n{desktop_job.EMPTY_DESCRIPTION}  #"
        if marker not in body:
            raise base.PermanentFailure("the desktop launcher has no description to fill in")
        return f"#!{self.settings.python}\n" + body.replace(marker, f"\n{literal}  #", 1)

    async def _job_of(self, state: base.ProviderState) -> slurm_jobs.Job | None:
        job_id = state.get("job_id")
        if not isinstance(job_id, int):
            return None
        job = (await self._slurm.jobs()).get(job_id)
        expected = f"{self.settings.job_name_prefix}-{state.get('session_id')}"
        return job if job is not None and job.name == expected else None

    async def _end_job(self, state: base.ProviderState) -> None:
        job = await self._job_of(state)
        if job is None or job.ended:
            return
        await self._slurm.cancel(job.job_id)
        deadline = time.monotonic() + STOP_WAIT
        while time.monotonic() < deadline:
            await asyncio.sleep(0.2)
            job = await self._job_of(state)
            if job is None or job.ended:
                return
        raise base.TemporaryFailure(f"Slurm job {job.job_id if job else '?'} is still ending")

    async def _pending(self, job: slurm_jobs.Job) -> base.PollResult:
        waited = self._now() - job.submitted
        if waited < self.settings.pending_timeout:
            return base.PollResult(
                base.Health.STARTING, message=f"waiting for Slurm ({job.reason})"
            )
        await self._slurm.cancel(job.job_id)
        raise base.PermanentFailure(
            f"No node had room for the desktop within {math.ceil(waited)} seconds (Slurm job "
            f"{job.job_id} pending: {job.reason})",
            "INSUFFICIENT_CAPACITY",
        )

    async def _ended(
        self, job: slurm_jobs.Job, account: Account | None, sid: str
    ) -> base.PollResult:
        failure = await self._read(account, sid, desktop_job.FAILURE_FILE) if account else None
        if failure is not None and isinstance(failure.get("message"), str):
            code = str(failure.get("status_code") or "INTERNAL_ERROR")
            return base.PollResult(base.Health.ENDED, message=failure["message"], status_code=code)
        reason = "" if job.reason in ("", "None") else f", {job.reason}"
        message = f"The desktop's Slurm job {job.job_id} ended: {job.state}{reason}"
        output = await self._tail(account, sid, "job.log") if account else ""
        return base.PollResult(
            base.Health.ENDED, message=message + (f": {output}" if output else "")
        )

    async def _endpoint(self, account: Account, sid: str) -> dict[str, Any] | None:
        """The port and VNC password the launcher reported (the password is the desktop's
        owner's to know; the server keeps it only sealed, in the session's endpoint)."""
        found = await self._read(account, sid, desktop_job.ENDPOINT_FILE)
        if found is None or not isinstance(found.get("port"), int):
            return None
        if not isinstance(found.get("password"), str):
            return None
        return {"port": int(found["port"]), "password": found["password"]}

    async def _contents(self, account: Account, sid: str, argv: list[str]) -> bytes | None:
        """What ``argv`` prints about a file of the desktop's runtime directory, run as the
        owner (whose home it is in: nothing placed there can make the server read anything
        else)."""
        env = local_session.owner_environment(account, sid)
        done = await asyncio.to_thread(local_session.run_owned, account, argv, env)
        return done.stdout if done.returncode == 0 else None

    async def _tail(self, account: Account, sid: str, name: str) -> str:
        path = str(_runtime_dir(account, sid) / name)
        found = await self._contents(account, sid, ["tail", "-c", "600", "--", path])
        lines = (found or b"").decode(errors="replace").splitlines()
        return " / ".join(line.strip() for line in lines if line.strip())[-400:]

    async def _read(self, account: Account, sid: str, name: str) -> dict[str, Any] | None:
        """A JSON file of the desktop's runtime directory."""
        path = str(_runtime_dir(account, sid) / name)
        found = await self._contents(account, sid, ["head", "-c", "4096", "--", path])
        if found is None:
            return None
        try:
            data = json.loads(found)
        except ValueError:
            return None
        return data if isinstance(data, dict) else None


def _storage(account: Account, sid: str) -> pathlib.Path:
    return local_session.storage_dir(account, sid)


def _runtime_dir(account: Account, sid: str) -> pathlib.Path:
    return account.home / RUNTIME / sid


def _public(state: base.ProviderState) -> base.ProviderState:
    return {key: state.get(key) for key in _STATE_KEYS}


def _session_id(value: str) -> str:
    if not _SESSION_ID.fullmatch(value):
        raise base.PermanentFailure(f"unusable session id for a desktop: {value!r}")
    return value
