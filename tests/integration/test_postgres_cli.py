"""The scale-out commands: what needs PostgreSQL says so, a server with another installation
key and a second reconciler for one host are refused with a clear message."""

from __future__ import annotations

import os
import pathlib
import subprocess
import sys

import pytest

from tests.support.cluster import Worker
from tests.support.server import cli, reachable


def opennimble(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "opennimble", *args],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        timeout=60,
    )


@pytest.mark.sqlite
def test_workers_and_servers_without_reconciler_need_postgresql(tmp_path: pathlib.Path) -> None:
    data = str(tmp_path / "data")
    worker = opennimble("worker", "--data-dir", data)
    assert worker.returncode == 2 and "opennimble worker needs PostgreSQL" in worker.stderr
    serve = opennimble("serve", "--no-reconciler", "--data-dir", data)
    assert serve.returncode == 2 and "--no-reconciler needs PostgreSQL" in serve.stderr


@pytest.mark.postgresql
def test_a_server_with_another_installation_key_is_refused(
    tmp_path: pathlib.Path, database_url: str
) -> None:
    first = {"OPENNIMBLE_DATABASE_URL": database_url, "OPENNIMBLE_KEY_FILE": str(tmp_path / "a")}
    user = cli(tmp_path / "one", "users", "create", "someone", "--init", env=first)
    cli(tmp_path / "one", "keys", "create", str(user["userId"]), env=first)
    other = {**first, "OPENNIMBLE_KEY_FILE": str(tmp_path / "b")}
    refused = opennimble(
        "keys", "create", str(user["userId"]), "--data-dir", str(tmp_path / "two"), env=other
    )
    assert refused.returncode == 1
    assert "is not the key this database was set up with" in refused.stderr
    assert str(tmp_path / "b") in refused.stderr
    # a worker seals desktops' VNC passwords with the key: it must be the servers' one too
    worker = opennimble("worker", "--data-dir", str(tmp_path / "host"), env=other)
    assert worker.returncode == 1
    assert "is not the key this database was set up with" in worker.stderr
    assert "Traceback" not in worker.stderr


@pytest.mark.postgresql
def test_one_reconciler_per_host(tmp_path: pathlib.Path, database_url: str) -> None:
    env = {
        "OPENNIMBLE_DATABASE_URL": database_url,
        "OPENNIMBLE_PROVIDER": "local",
        "OPENNIMBLE_KEY_FILE": str(tmp_path / "secret.key"),  # the installation's, shared
    }
    first = Worker(tmp_path / "a", "the-host", env, tmp_path)
    first.start()
    try:
        other_dir = reachable(tmp_path / "b")  # it makes its desktops directory before refusing
        again = opennimble("worker", "--host-id", "the-host", "--data-dir", str(other_dir), env=env)
        assert again.returncode == 1
        assert "another reconciler runs as host the-host" in again.stderr
        same_dir = opennimble(
            "worker", "--host-id", "other", "--data-dir", str(tmp_path / "a"), env=env
        )
        assert same_dir.returncode == 1 and "uses" in same_dir.stderr
    finally:
        first.stop()
