"""Running studio components' initialization scripts as a local desktop starts.

Each script is written to a file of the session's runtime directory (readable only by the user
that runs it) and run with ``bash``, or with the interpreter its ``#!`` line names, in a
process group of its own so that a script that outlasts the time limit is ended with
everything it started in the foreground. Its output goes to a log file next to it; a failure
names the component, the run context and the exit status, with the end of that output.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
import pathlib
import signal
import subprocess
from collections.abc import Sequence

from opennimble.providers import base, local_cgroups, local_confine, local_xvnc

TAIL = 300  # characters of a failed script's output quoted in the session's statusMessage


@dataclasses.dataclass(frozen=True)
class Runner:
    """How the scripts of one run context run: as whom, where and with what environment."""

    directory: pathlib.Path  # the session's runtime directory
    env: dict[str, str]
    cwd: pathlib.Path
    timeout: float
    # as whom, with which X sockets and file size limit (:mod:`local_confine`)
    confinement: local_confine.Confinement
    owner: tuple[int, int] | None = None  # (uid, gid) to give the script files to
    group: local_cgroups.Group | None = None  # the desktop's control group


async def run_all(
    scripts: Sequence[base.InitScript],
    run_context: str,
    runner: Runner,
    privileged: Runner | None = None,
) -> None:
    """Run the scripts of ``run_context`` in order; PermanentFailure at the first failure.
    Scripts marked ``privileged`` run with ``privileged`` if given, all others with ``runner``."""
    chosen = [s for s in scripts if s.run_context == run_context]
    for number, script in enumerate(chosen, start=1):
        name = f"{run_context.lower()}-{number}"
        await _run(script, name, privileged if script.privileged and privileged else runner)


async def _run(script: base.InitScript, name: str, runner: Runner) -> None:
    path = runner.directory / f"{name}.sh"
    log_path = runner.directory / f"{name}.log"
    _write(path, script.script, 0o700, runner.owner)
    argv = [str(path)] if script.script.startswith("#!") else ["/bin/bash", str(path)]
    env = {**runner.env, **dict(script.parameters)}
    # subprocess.Popen in a thread: the event loop's own subprocesses (uvloop's) cannot switch
    # to another user
    process = await asyncio.to_thread(_start, argv, log_path, env, runner)
    try:
        status = await asyncio.to_thread(process.wait, runner.timeout)
    except subprocess.TimeoutExpired:
        await asyncio.to_thread(_kill_group, process)
        message = f"did not finish within {runner.timeout:g} seconds"
        raise _failure(script, message, log_path) from None
    except BaseException:  # cancelled: leave nothing running
        await asyncio.shield(asyncio.to_thread(_kill_group, process))
        raise
    if status != 0:
        how = f"exit status {status}" if status > 0 else f"signal {-status}"
        raise _failure(script, f"failed with {how}", log_path)


def _start(
    argv: list[str], log_path: pathlib.Path, env: dict[str, str], runner: Runner
) -> subprocess.Popen[bytes]:
    with open(_create(log_path, runner.owner), "wb") as log:
        return local_confine.popen(
            runner.group,
            runner.confinement,
            argv,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=runner.cwd,
            env=env,
            start_new_session=True,
        )


def _failure(script: base.InitScript, what: str, log_path: pathlib.Path) -> base.PermanentFailure:
    output = _tail(log_path)
    message = (
        f"Initialization script of studio component '{script.component}' "
        f"({script.run_context}) {what}" + (f": {output}" if output else "")
    )
    return base.PermanentFailure(message, "INITIALIZATION_SCRIPT_ERROR")


def _tail(path: pathlib.Path) -> str:
    try:
        text = local_xvnc.read_end(path)
    except OSError:
        return ""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return " / ".join(lines)[-TAIL:]


def _kill_group(process: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait()


def _create(path: pathlib.Path, owner: tuple[int, int] | None) -> int:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    if owner is not None:
        os.fchown(fd, *owner)
    return fd


def _write(path: pathlib.Path, text: str, mode: int, owner: tuple[int, int] | None) -> None:
    with contextlib.suppress(FileNotFoundError):
        path.unlink()  # a fresh file: never write through what a previous run left there
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    if owner is not None:
        os.fchown(fd, *owner)
    with os.fdopen(fd, "w") as out:
        out.write(text)
