"""A real opennimble server in a subprocess, and real boto3 clients for it."""

from __future__ import annotations

import atexit
import contextlib
import dataclasses
import json
import os
import pathlib
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import boto3
import botocore.config
import requests

from opennimble import config
from opennimble.providers import local_accounts, local_cgroups, local_home_images, local_network
from tests.support import databases

if TYPE_CHECKING:
    from tests.support.clocked import ControlledClock

REGION = "us-west-2"
SOURCE_TREE = pathlib.Path(__file__).resolve().parents[2]  # where `tests` imports from
# waiter config for tests: the model's waiters, polled faster (a desktop is READY in a quarter
# of a second: polling every second made each wait cost the suite most of a second) and given
# as long as before (a minute)
FAST = {"Delay": 0.2, "MaxAttempts": 300}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def cli(data_dir: pathlib.Path, *args: str, env: dict[str, str] | None = None) -> dict[str, Any]:
    """Run ``opennimble ARGS --data-dir DIR`` and parse the JSON it prints."""
    return dict(json.loads(cli_text(data_dir, *args, env=env)))


def cli_lines(
    data_dir: pathlib.Path, *args: str, env: dict[str, str] | None = None
) -> list[dict[str, Any]]:
    """Run ``opennimble ARGS --data-dir DIR``: the JSON documents it prints, one a line."""
    return [json.loads(line) for line in cli_text(data_dir, *args, env=env).splitlines()]


def cli_text(data_dir: pathlib.Path, *args: str, env: dict[str, str] | None = None) -> str:
    data_dir = data_dir.resolve()  # the same installation as its Server (see reachable)
    out = subprocess.run(
        [sys.executable, "-m", "opennimble", *args, "--data-dir", str(data_dir)],
        check=True,
        capture_output=True,
        text=True,
        env={**os.environ, **databases.env_for(data_dir), **(env or {})},
    )
    return out.stdout


def reachable(data_dir: pathlib.Path) -> pathlib.Path:
    """The data directory, as given (private temporary directories work: what desktop
    accounts reach lives in the installation's ``desktops_dir``). Run as root, the desktop
    accounts, network filter and desktops directory of the installation are removed when the
    test process ends. Returns the directory to give the server."""
    if os.geteuid() == 0:
        atexit.register(_remove_installation, data_dir)
    return data_dir


def desktops_dir(data_dir: pathlib.Path, env: dict[str, str] | None = None) -> pathlib.Path:
    """The desktops directory of the installation in ``data_dir``."""
    env = env or {}
    given = env.get("OPENNIMBLE_PROVIDERS__LOCAL__DESKTOPS_DIR", env.get("OPENNIMBLE_DESKTOPS_DIR"))
    return pathlib.Path(given) if given else config.default_desktops_dir(data_dir)


def shared_dir(name: str) -> pathlib.Path:
    """A directory that desktop accounts can reach, for several hosts of one test (their
    shared homes) or an installation whose data directory desktops must meet on their way (not
    in /tmp, /var/tmp or /dev/shm, of which every desktop has its own): under the provider's
    system location, removed when the test process ends."""
    directory = config.DESKTOPS_ROOT / f"test-{name}-{uuid.uuid4().hex[:8]}"
    directory.mkdir(parents=True)
    for made in (config.DESKTOPS_ROOT, directory):
        made.chmod(0o711)
    atexit.register(_remove_shared, directory)
    return directory


def _remove_shared(directory: pathlib.Path) -> None:
    local_home_images.unmount_all(directory)
    local_accounts.remove_accounts(directory)
    shutil.rmtree(directory, ignore_errors=True)


def _remove_installation(data_dir: pathlib.Path) -> None:
    desktops = config.default_desktops_dir(data_dir)
    remove_groups(desktops)
    local_home_images.unmount_all(desktops)
    local_accounts.remove_accounts(desktops)
    remove_filter(data_dir)
    shutil.rmtree(desktops, ignore_errors=True)


def remove_groups(desktops: pathlib.Path) -> None:
    """End and remove the control groups left by an installation whose desktops_dir is
    ``desktops`` (a test that failed before deleting its sessions)."""
    groups = local_cgroups.hierarchy(desktops)
    for name in groups.names():
        groups.group(name).kill()


def remove_filter(data_dir: pathlib.Path) -> None:
    """Remove the desktops' network filter of the installation in ``data_dir``."""
    local_network.Firewall(local_network.table_name(data_dir)).remove()


class Child:
    """What the test's opennimble processes share: a child process that logs to a file."""

    process: subprocess.Popen[bytes] | None

    @property
    def log_path(self) -> pathlib.Path:
        raise NotImplementedError

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None

    def kill9(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait()
        self.process = None

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


@dataclasses.dataclass
class Server(Child):
    data_dir: pathlib.Path
    env: dict[str, str] = dataclasses.field(default_factory=dict)
    port: int = dataclasses.field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None
    # a clock the test moves (tests/support/clocked.py) instead of the system's
    clock: ControlledClock | None = None
    flags: list[str] = dataclasses.field(default_factory=list)  # more flags of `serve`

    def __post_init__(self) -> None:
        self.data_dir = reachable(self.data_dir)

    @property
    def desktops_dir(self) -> pathlib.Path:
        return desktops_dir(self.data_dir, self.env)

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def log_path(self) -> pathlib.Path:
        return self.data_dir.parent / f"{self.data_dir.name}-server.log"

    def start(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        log = open(self.log_path, "ab")  # noqa: SIM115 - handed to the child
        self.process = subprocess.Popen(
            [
                *self._command(),
                "serve",
                "--data-dir",
                str(self.data_dir),
                "--port",
                str(self.port),
                *self.flags,
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**os.environ, **databases.env_for(self.data_dir), **self._clock_env(), **self.env},
        )
        log.close()
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"server exited: {self.log_path.read_text()[-3000:]}")
            # a busy machine may answer the first look slowly: ask again until the deadline
            with contextlib.suppress(requests.ConnectionError, requests.Timeout):
                if requests.get(f"{self.endpoint}/healthz", timeout=1).ok:
                    return
            time.sleep(0.05)
        raise RuntimeError("server did not start in 30 s")

    def _command(self) -> list[str]:
        """The real `opennimble` command; with a controlled clock, run through its launcher."""
        if self.clock is None:
            return [sys.executable, "-m", "opennimble"]
        return [sys.executable, "-m", "tests.support.clocked", str(self.clock.offset_file)]

    def _clock_env(self) -> dict[str, str]:
        if self.clock is None:
            return {}
        path = os.pathsep.join(p for p in (str(SOURCE_TREE), os.environ.get("PYTHONPATH")) if p)
        return {"PYTHONPATH": path}

    def set_password(self, name: str, password: str) -> None:
        """``opennimble users passwd NAME``, the password on standard input (portal sign-in)."""
        data_dir = self.data_dir.resolve()
        subprocess.run(
            [
                sys.executable,
                "-m",
                "opennimble",
                "users",
                "passwd",
                name,
                "--data-dir",
                str(data_dir),
            ],
            input=password + "\n",
            check=True,
            capture_output=True,
            text=True,
            env={**os.environ, **databases.env_for(data_dir), **self.env},
        )

    def user(self, name: str, operator: bool = False) -> User:
        flags = ["--operator"] if operator else []
        created = cli(
            self.data_dir, "users", "create", name, "--init", "--key", *flags, env=self.env
        )
        return User(
            name,
            str(created["userId"]),
            str(created["identityStoreId"]),
            str(created["accessKeyId"]),
            str(created["secretAccessKey"]),
            self,
        )


@dataclasses.dataclass
class User:
    name: str
    user_id: str
    identity_store_id: str
    access_key_id: str
    secret_access_key: str
    server: Server

    def client(self, validate: bool = True, **config: Any) -> Any:
        """A nimble client of this user; it does not retry unless ``retries`` says so."""
        options = {"retries": {"mode": "standard", "max_attempts": 1}, **config}
        return boto3.client(
            "nimble",
            endpoint_url=self.server.endpoint,
            region_name=REGION,
            aws_access_key_id=self.access_key_id,
            aws_secret_access_key=self.secret_access_key,
            config=botocore.config.Config(parameter_validation=validate, **options),
        )


def live_desktops(data_dir: pathlib.Path) -> list[int]:
    """Pids of the installation's desktops (in its desktops_dir) that are still running."""
    pids = []
    for record in desktops_dir(data_dir).glob("desktops/*/desktop.json"):
        with contextlib.suppress(ValueError, OSError):
            pid = json.loads(record.read_text()).get("pid")
            if pid and _running(int(pid), record.parent.name):
                pids.append(int(pid))
    return pids


def xvnc_pids(marker: str) -> list[int]:
    """Pids of every Xvnc whose command line mentions ``marker`` (a desktops_dir path)."""
    found = []
    for proc in pathlib.Path("/proc").iterdir():
        if proc.name.isdigit():
            with contextlib.suppress(OSError):
                argv = (proc / "cmdline").read_bytes().split(b"\0")
                if argv and argv[0].endswith(b"Xvnc") and marker.encode() in b" ".join(argv):
                    found.append(int(proc.name))
    return found


def _running(pid: int, session_id: str) -> bool:
    try:
        argv = pathlib.Path(f"/proc/{pid}/cmdline").read_bytes()
        status = pathlib.Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return session_id.encode() in argv and status != "Z"


def kill_all(pids: list[int]) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


@contextlib.contextmanager
def running(server: Server) -> Iterator[Server]:
    server.start()
    try:
        yield server
    finally:
        server.stop()


def announced(server: subprocess.Popen[str]) -> tuple[str, str]:
    """The endpoint a `serve` started with a piped stdout says it serves (the line it prints
    at start), and everything it printed until then."""
    assert server.stdout is not None
    output = ""
    while line := server.stdout.readline():
        output += line
        found = re.search(r"serving the nimble API at (http://\S+) ", line)
        if found:
            return found.group(1), output
    raise AssertionError(f"the server ended: {output}")
