"""The operator's command line against a running server: users, keys, studios and sessions,
as the boto3 clients of those users see the effect."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import Any

import opennimble
from tests.support import databases, expect
from tests.support.server import FAST, User, cli
from tests.support.world import World


def opennimble_cli(world: World, *args: str) -> subprocess.CompletedProcess[str]:
    data_dir = world.server.data_dir
    return subprocess.run(
        [sys.executable, "-m", "opennimble", *args, "--data-dir", str(data_dir)],
        capture_output=True,
        text=True,
        env={**os.environ, **databases.env_for(data_dir), **world.server.env},
        timeout=60,
    )


def listed(world: World, *args: str) -> Any:
    result = opennimble_cli(world, *args)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def refused_key(user: User, studio_id: str) -> None:
    expect.error(
        lambda: user.client().get_studio(studioId=studio_id),
        "UnrecognizedClientException",
        "identity",
    )


def test_version() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "opennimble", "--version"], capture_output=True, text=True
    )
    assert out.returncode == 0 and opennimble.__version__ in out.stdout


def test_users_list_show_disable_enable(world: World) -> None:
    sid = world.studio.studio_id
    someone = world.server.user("someone")
    everyone = {u["name"]: u for u in listed(world, "users", "list")}
    assert everyone["someone"]["userId"] == someone.user_id
    assert everyone["someone"]["accessKeys"] == 1 and everyone["someone"]["disabled"] is False
    assert everyone[world.operator.name]["operator"] is True
    shown = listed(world, "users", "show", "someone")
    assert [k["accessKeyId"] for k in shown["accessKeys"]] == [someone.access_key_id]
    table = opennimble_cli(world, "users", "list", "--output", "table").stdout.splitlines()
    assert table[0].split() == ["userId", "name", "operator", "disabled", "accessKeys", "createdAt"]
    assert any(line.split()[:2] == [someone.user_id, "someone"] for line in table[1:])

    world.artist.client().get_studio(studioId=sid)  # the server knows the key now
    assert listed(world, "users", "disable", world.artist.name)["disabled"] is True
    refused_key(world.artist, sid)  # as if deleted, though the server had seen the key
    assert listed(world, "users", "enable", world.artist.user_id)["disabled"] is False
    assert world.artist.client().get_studio(studioId=sid)["studio"]["studioId"] == sid


def test_a_user_created_with_a_key_signs_at_once(world: World) -> None:
    plain = listed(world, "users", "create", "keyless")
    assert "secretAccessKey" not in plain
    assert listed(world, "users", "show", "keyless")["accessKeys"] == []
    made = listed(world, "users", "create", "keyed", "--key")
    assert made["name"] == "keyed" and made["userId"] and made["accessKeyId"]
    user = User(
        "keyed",
        made["userId"],
        made["identityStoreId"],
        made["accessKeyId"],
        made["secretAccessKey"],
        world.server,
    )
    world.operator.client().put_studio_members(
        studioId=world.studio.studio_id,
        identityStoreId=user.identity_store_id,
        members=[{"principalId": user.user_id, "persona": "ADMINISTRATOR"}],
    )
    assert user.client().get_studio(studioId=world.studio.studio_id)["studio"]["studioId"]
    shown = listed(world, "users", "show", "keyed")
    assert [k["accessKeyId"] for k in shown["accessKeys"]] == [made["accessKeyId"]]


def test_revoking_one_key(world: World) -> None:
    sid = world.studio.studio_id
    user = world.server.user("twokeys")
    operator = world.operator.client()  # an operator brings a new user into the studio
    operator.put_studio_members(
        studioId=sid,
        identityStoreId=user.identity_store_id,
        members=[{"principalId": user.user_id, "persona": "ADMINISTRATOR"}],
    )
    second = cli(world.server.data_dir, "keys", "create", "twokeys", env=world.server.env)
    other = User(
        user.name,
        user.user_id,
        user.identity_store_id,
        second["accessKeyId"],
        second["secretAccessKey"],
        world.server,
    )
    user.client().get_studio(studioId=sid)
    keys = listed(world, "keys", "list", "twokeys")
    assert {k["accessKeyId"] for k in keys} == {user.access_key_id, other.access_key_id}
    assert all("secretAccessKey" not in k for k in keys)

    gone = listed(world, "keys", "delete", user.access_key_id)
    assert gone == {"accessKeyId": user.access_key_id, "userId": user.user_id, "deleted": True}
    refused_key(user, sid)
    assert other.client().get_studio(studioId=sid)["studio"]["studioId"] == sid
    again = opennimble_cli(world, "keys", "delete", user.access_key_id)
    assert again.returncode == 1 and "no access key" in again.stderr


def test_studios_and_sessions(world: World) -> None:
    sid = world.studio.studio_id
    studios = {s["studioId"] for s in listed(world, "studios", "list")}
    assert {sid, world.foreign.studio_id} <= studios
    artist = world.artist.client()
    session = artist.create_streaming_session(
        studioId=sid, launchProfileId=world.studio.launch_profile_id
    )["session"]
    session_id = session["sessionId"]
    artist.get_waiter("streaming_session_ready").wait(
        studioId=sid, sessionId=session_id, WaiterConfig=FAST
    )

    mine = listed(world, "sessions", "list", "--owner", world.artist.name, "--state", "ready")
    assert session_id in {s["sessionId"] for s in mine}
    assert all(s["ownedBy"] == world.artist.user_id and s["state"] == "READY" for s in mine)
    stopped = listed(world, "sessions", "list", "--studio", sid, "--state", "STOPPED")
    assert session_id not in {s["sessionId"] for s in stopped}
    others = listed(world, "sessions", "list", "--owner", world.artist2.name)
    assert session_id not in {s["sessionId"] for s in others}

    deleted = listed(world, "sessions", "delete", sid, session_id)
    assert deleted[0]["sessionId"] == session_id
    assert deleted[0]["state"] == "DELETE_IN_PROGRESS"
    artist.get_waiter("streaming_session_deleted").wait(
        studioId=sid, sessionId=session_id, WaiterConfig=FAST
    )
    missing = opennimble_cli(world, "sessions", "delete", sid, "no-such-session")
    assert missing.returncode == 1 and "DeleteStreamingSession" in missing.stderr
