"""What runs inside a local desktop's X display, as its owner: the *session*.

Every process of the session gets a minimal environment (nothing of the server's settings or
secrets), the owner's identity, the display and the recipe's environment, and runs in the
desktop's control group (:mod:`local_cgroups`). Before the window manager and the applications
start, the session's storage ``~/sessions/<session id>`` is made and the
``USER_INITIALIZATION`` scripts run. The session script is started while the desktop's X
server is still starting (what it takes to start a confined process then costs no time) and
waits for the display's number on a pipe, its *gate*. Work in the owner's home is always done
as the owner, so that nothing the owner placed there (a symbolic link, say) can turn it against
someone else's files.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import pathlib
import subprocess
import threading
import time
from collections.abc import Mapping
from typing import Any

from opennimble import config
from opennimble.providers import (
    base,
    local_confine,
    local_display,
    local_process,
    local_recipes,
    local_scripts,
    local_xvnc,
)
from opennimble.providers.local_accounts import Account
from opennimble.providers.local_host import Host

SESSION_FILE = "session.sh"
SESSION_LOG = "session.log"
# while the window manager is not up, whether the session script still runs is looked at this
# often (seconds)
WINDOW_MANAGER_LOOK = 1.0
XAUTHORITY_FILE = "Xauthority"
STORAGE_DIR = "sessions"


def base_environment() -> dict[str, str]:
    """A minimal environment for desktop processes: none of the server's settings or secrets."""
    keep = ("PATH", "LANG", "LC_ALL", "TZ")
    env = {name: os.environ[name] for name in keep if name in os.environ}
    env.setdefault("PATH", "/usr/local/bin:/usr/bin:/bin")
    return env


def storage_dir(account: Account, session_id: str) -> pathlib.Path:
    """The session's storage: what ``volumeRetentionMode`` DELETE and deletion discard."""
    return account.home / STORAGE_DIR / session_id


def owner_of(account: Account) -> tuple[int, int] | None:
    """(uid, gid) to give the account's files to, or None if it is the server's own user."""
    return (account.uid, account.gid) if account.isolated else None


def environment(
    host: Host,
    account: Account,
    sid: str,
    display: int | None = None,
    extra: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """The environment of every process of the desktop."""
    env = {**base_environment(), **(extra or {}), **account.environment()}
    env["OPENNIMBLE_SESSION_DIR"] = str(storage_dir(account, sid))
    if display is not None:
        env["DISPLAY"] = f":{display}"
        env["XAUTHORITY"] = str(host.session_dir(sid) / XAUTHORITY_FILE)
    return env


def system_runners(
    host: Host,
    spec: base.DesktopSpec,
    account: Account,
    timeout: float,
    confinements: tuple[local_confine.Confinement, local_confine.Confinement],
) -> tuple[local_scripts.Runner, local_scripts.Runner]:
    """How SYSTEM_INITIALIZATION scripts run, told whose desktop: (unprivileged, privileged).
    Scripts an operator wrote run as the provider's user (root), all others as the owner's
    account, in its home: a studio administrator's script gets no more than the desktop.
    ``confinements``: the owner's and the provider's user's in this desktop."""
    env = {
        **base_environment(),
        "OPENNIMBLE_OWNER": account.name,
        "OPENNIMBLE_OWNER_HOME": str(account.home),
        "OPENNIMBLE_SESSION_DIR": str(storage_dir(account, spec.session_id)),
        "OPENNIMBLE_STUDIO_ID": spec.studio_id,
        "OPENNIMBLE_LAUNCH_PROFILE_ID": spec.launch_profile_id,
    }
    directory = host.session_dir(spec.session_id)
    group = host.groups.group(spec.session_id)
    owned, own = confinements
    privileged = local_scripts.Runner(directory, env, pathlib.Path("/"), timeout, own, group=group)
    owned_env = {**env, **account.environment()}
    unprivileged = local_scripts.Runner(
        directory, owned_env, account.home, timeout, owned, owner_of(account), group
    )
    return unprivileged, privileged


async def launch(
    host: Host,
    spec: base.DesktopSpec,
    account: Account,
    recipe: config.DesktopRecipe,
    confinement: local_confine.Confinement,
) -> Gate:
    """Make the session's storage and start the session script (the window manager and the
    applications) as the owner in the desktop's ``confinement``, while the desktop's X server
    may still be starting: the script waits for the display's number (:func:`begin`). Returns
    its gate, for :func:`begin`, which the caller closes."""
    sid, directory = spec.session_id, host.session_dir(spec.session_id)
    env = environment(host, account, sid, extra=recipe.environment)
    env["XAUTHORITY"] = str(directory / XAUTHORITY_FILE)  # DISPLAY comes through the gate
    await make_storage(account, sid, env)
    script = directory / SESSION_FILE
    gate, opener = os.pipe()
    try:
        text = local_recipes.session_script(recipe, spec.clipboard, gate, display_first=True)
        local_xvnc.write_private(script, text.encode(), owner_of(account))
        # bash, not sh: dash reads no file descriptor above 9 (``<&12``), and the gate's
        # number is whatever the server's next free one is
        argv, log_path = ["/bin/bash", str(script)], directory / SESSION_LOG
        pid, started = await asyncio.to_thread(
            host.spawn,
            sid,
            argv,
            log_path,
            env=env,
            account=account,
            confinement=confinement,
            remember=False,
            pass_fds=(gate,),
        )
    except BaseException:
        os.close(opener)
        raise
    finally:
        os.close(gate)
    return Gate(opener, pid, started)


async def begin(
    host: Host,
    spec: base.DesktopSpec,
    account: Account,
    recipe: config.DesktopRecipe,
    display: int,
    timeout: float,
    confinement: local_confine.Confinement,
    gate: Gate,
) -> None:
    """Once the X server runs on ``display``: run the user scripts, as the owner in the
    desktop's ``confinement``, then let the session launched with ``gate`` (:func:`launch`)
    start the window manager and, once it manages the screen, the applications."""
    sid, directory = spec.session_id, host.session_dir(spec.session_id)
    env = environment(host, account, sid, display, recipe.environment)
    group = host.groups.group(sid)
    runner = local_scripts.Runner(
        directory, env, account.home, timeout, confinement, owner_of(account), group
    )
    await local_scripts.run_all(spec.init_scripts, base.USER_INITIALIZATION, runner)
    gate.send(f"{display}\n")
    # the applications wait until the window manager manages the screen (a window mapped
    # before stays unmanaged, without the focus: keystrokes would be lost); its start-up and
    # theirs then overlap, and it is asked until it answers, which wakes it for theirs too
    # (they start anyway if it never does: then the desktop's poll says what it lacks)
    auth = directory / local_display.AUTH_FILE
    deadline = time.monotonic() + timeout
    while True:  # in slices, so that a session script that ended is noticed (then the poll fails)
        until = min(deadline, time.monotonic() + WINDOW_MANAGER_LOOK)
        lacking = await asyncio.to_thread(
            local_display.wait_window_manager, display, auth, until - time.monotonic(), gate.go
        )
        now = time.monotonic()
        if lacking is None or now < until or now >= deadline or gate.ended():
            break  # managing; or it gave up early (the display went away), or out of time
    gate.go()


class Gate:
    """The writing end of a session script's gate: the display's number, then ``go`` for the
    applications. Usable from a thread that outlives its caller: once closed, it sends
    nothing (its file descriptor's number may be another file's by then). ``pid`` and
    ``start_time``: the session script's process."""

    def __init__(self, fd: int, pid: int, start_time: int | None) -> None:
        self._fd = fd
        self.pid, self.start_time = pid, start_time  # the session script's
        self._lock = threading.Lock()
        self._gone = False

    def ended(self) -> bool:
        """Whether the session script has ended."""
        return session_ended({"session_pid": self.pid, "session_start_time": self.start_time})

    def send(self, line: str) -> None:
        with self._lock, contextlib.suppress(BrokenPipeError):  # the session ended already
            if self._fd >= 0:
                os.write(self._fd, line.encode())

    def go(self) -> None:
        """Start the applications (once)."""
        with self._lock:
            if self._gone:
                return
            self._gone = True
        self.send("go\n")

    def close(self) -> None:
        with self._lock:
            if self._fd >= 0:
                os.close(self._fd)
                self._fd = -1


def owner_environment(account: Account, sid: str) -> dict[str, str]:
    """The environment of the provider's own work as the owner on a session's files (its
    storage, its backups)."""
    del sid  # the same for every session of the owner
    return {**base_environment(), **account.environment()}


def session_ended(record: dict[str, Any]) -> bool:
    """Whether the session script of a desktop's ``record`` (its process, noted at the start)
    has ended."""
    pid, started = record.get("session_pid"), record.get("session_start_time")
    return isinstance(pid, int) and local_process.start_time_of(pid) != started


def log_tail(host: Host, sid: str) -> str:
    """The end of the session script's log (the window manager's and applications' output)."""
    return local_xvnc.log_tail(host.session_dir(sid) / SESSION_LOG)


async def discard_storage(account: Account, sid: str) -> None:
    """Remove the session's storage, as the owner (whose home it is in)."""
    path = str(storage_dir(account, sid))
    env = owner_environment(account, sid)
    await run_as(account, ["chmod", "-R", "u+rwX", path], env, check=False)
    await run_as(account, ["rm", "-rf", "--", path], env)


async def has_storage(account: Account, sid: str) -> bool:
    """Whether the session's storage exists, as the owner sees it."""
    argv = ["test", "-d", str(storage_dir(account, sid))]
    done = await asyncio.to_thread(run_owned, account, argv, owner_environment(account, sid))
    return done.returncode == 0


async def make_storage(account: Account, sid: str, env: dict[str, str]) -> None:
    """Create the session's storage (mode 0700), as the owner."""
    await run_as(account, ["mkdir", "-p", "-m", "700", str(storage_dir(account, sid))], env)


def run_owned(
    account: Account,
    argv: list[str],
    env: dict[str, str],
    *,
    stdin: Any = subprocess.DEVNULL,
    stdout: Any = subprocess.PIPE,
) -> subprocess.CompletedProcess[bytes]:
    """Run a command as ``account`` in its home and wait for it (blocking: call it in a
    thread; the event loop's own subprocesses, uvloop's, cannot change user). Its standard
    error goes with its output, unless ``stdout`` is redirected."""
    return subprocess.run(
        argv,
        stdin=stdin,
        stdout=stdout,
        stderr=subprocess.STDOUT if stdout is subprocess.PIPE else subprocess.PIPE,
        cwd=account.home,
        env=env,
        check=False,
        **account.popen_options(),
    )


async def run_as(
    account: Account, argv: list[str], env: dict[str, str], *, check: bool = True
) -> None:
    """Run a short command as ``account``; TemporaryFailure if it fails and ``check``."""
    done = await asyncio.to_thread(run_owned, account, argv, env)
    if check and done.returncode != 0:
        output = done.stdout.decode(errors="replace")
        raise base.TemporaryFailure(f"{' '.join(argv[:-1])} failed for {account.name}: {output}")
