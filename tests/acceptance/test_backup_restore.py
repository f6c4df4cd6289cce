"""Backup and restore of an installation: `opennimble backup` while the server runs, `opennimble
restore` into a fresh data directory (and, on PostgreSQL, a fresh database), and a server
started there serves the same sessions to the same users' keys (boto3 over HTTP)."""

from __future__ import annotations

import json
import os
import pathlib
import subprocess
import sys
from typing import Any

import pytest

from tests.support import databases, desktops
from tests.support import world as worlds
from tests.support.server import FAST, Server, User, live_desktops, running

pytestmark = pytest.mark.xvnc


def opennimble(data_dir: pathlib.Path, *args: str) -> subprocess.CompletedProcess[str]:
    data_dir = data_dir.resolve()
    return subprocess.run(
        [sys.executable, "-m", "opennimble", *args, "--data-dir", str(data_dir)],
        capture_output=True,
        text=True,
        env={**os.environ, **databases.env_for(data_dir)},
    )


def sessions_of(client: Any, studio_id: str) -> dict[str, str]:
    paginator = client.get_paginator("list_streaming_sessions")
    pages = paginator.paginate(studioId=studio_id)
    return {s["sessionId"]: s["state"] for page in pages for s in page["sessions"]}


def on(user: User, srv: Server) -> User:
    """The same user (same access key) as a client of another server."""
    return User(
        user.name,
        user.user_id,
        user.identity_store_id,
        user.access_key_id,
        user.secret_access_key,
        srv,
    )


def test_a_restored_installation_serves_the_same_sessions(
    world: worlds.World, tmp_path: pathlib.Path
) -> None:
    studio, artist = world.studio, world.artist
    profile = desktops.stoppable(studio.admin, studio, [artist])
    client = artist.client()
    stopped = desktops.create_session(artist, studio, profile)
    ids = {"studioId": studio.studio_id, "sessionId": stopped}
    client.get_waiter("streaming_session_ready").wait(**ids, WaiterConfig=FAST)
    client.stop_streaming_session(**ids)
    client.get_waiter("streaming_session_stopped").wait(**ids, WaiterConfig=FAST)
    deleted = desktops.create_session(artist, studio, profile)
    gone = {"studioId": studio.studio_id, "sessionId": deleted}
    client.get_waiter("streaming_session_ready").wait(**gone, WaiterConfig=FAST)
    client.delete_streaming_session(**gone)
    client.get_waiter("streaming_session_deleted").wait(**gone, WaiterConfig=FAST)
    before = sessions_of(client, studio.studio_id)
    assert before[stopped] == "STOPPED" and before[deleted] == "DELETED"
    session_before = client.get_streaming_session(**ids)["session"]

    backup = tmp_path / "backup"
    made = opennimble(world.server.data_dir, "backup", str(backup))  # the server runs
    assert made.returncode == 0, made.stderr
    manifest = json.loads(made.stdout)
    assert manifest["database"] == databases.backend()
    assert manifest["schema"] and "secret.key" in manifest["files"]
    assert (backup / "secret.key").stat().st_mode & 0o077 == 0
    again = opennimble(world.server.data_dir, "backup", str(backup))
    assert again.returncode == 1 and "is not an empty directory" in again.stderr

    fresh = tmp_path / "restored"
    restored = opennimble(fresh, "restore", str(backup))
    assert restored.returncode == 0, restored.stderr
    refused = opennimble(fresh, "restore", str(backup))
    assert refused.returncode == 1
    assert "this installation is not empty" in refused.stderr and "--force" in refused.stderr
    forced = opennimble(fresh, "restore", str(backup), "--force")
    assert forced.returncode == 0, forced.stderr

    with running(Server(fresh)) as srv:
        there = on(artist, srv).client()
        assert sessions_of(there, studio.studio_id) == before
        session = there.get_streaming_session(**ids)["session"]
        assert session == session_before
        assert there.get_streaming_session(**gone)["session"]["state"] == "DELETED"
        # the restored installation works on: its operator deletes the stopped session
        operator = on(world.operator, srv).client()
        operator.delete_streaming_session(**ids)
        operator.get_waiter("streaming_session_deleted").wait(**ids, WaiterConfig=FAST)
    assert live_desktops(fresh) == []


def test_restore_refuses_what_is_not_a_backup(tmp_path: pathlib.Path) -> None:
    source = tmp_path / "not-a-backup"
    source.mkdir()
    answer = opennimble(tmp_path / "data", "restore", str(source))
    assert answer.returncode == 1
    assert "is not a backup of `opennimble backup`: it has no manifest.json" in answer.stderr
    nothing = opennimble(tmp_path / "none", "backup", str(tmp_path / "b"))
    assert nothing.returncode == 1 and "Error:" in nothing.stderr
    assert not (tmp_path / "b").exists()
