"""The audit trail, as operators (``opennimble audit``) and studio administrators (the portal)
read it, after real requests: boto3 over HTTP, a stream URL opened as a browser would, a
request with a wrong signature. The server's clock is the tests' (tests/support/clocked.py), so
that the retention's pruning is seen without waiting 90 days.
"""

from __future__ import annotations

import os
import pathlib
import re
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from typing import Any

import boto3
import botocore.auth
import botocore.config
import pytest
import requests

from tests.support import databases, expect
from tests.support import world as worlds
from tests.support.clocked import ControlledClock
from tests.support.server import FAST, cli_lines

pytestmark = pytest.mark.xvnc

SERVER_ENV = {"OPENNIMBLE_RECONCILE_INTERVAL": "0.1", "OPENNIMBLE_AUDIT_RETENTION_DAYS": "30"}
PASSWORD = "a long password for the portal"


@pytest.fixture(scope="module")
def world(
    clock: ControlledClock, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[worlds.World]:
    data_dir: pathlib.Path = tmp_path_factory.mktemp("audit") / "data"
    with worlds.running_world(data_dir, SERVER_ENV, clock) as built:
        yield built


def audit(world: worlds.World, *args: str) -> list[dict[str, Any]]:
    """``opennimble audit ARGS`` of the world's installation: its JSON lines."""
    return cli_lines(world.server.data_dir, "audit", *args, env=world.server.env)


def eventually(read: Callable[[], list[dict[str, Any]]], timeout: float = 10) -> list[Any]:
    """What ``read`` returns once it is not empty (refusals are written within a moment)."""
    deadline = time.monotonic() + timeout
    while True:
        found = read()
        if found or time.monotonic() > deadline:
            return found
        time.sleep(0.2)


@pytest.fixture(scope="module")
def session_ids(world: worlds.World) -> dict[str, str]:
    client = world.artist.client()
    session = client.create_streaming_session(
        studioId=world.studio.studio_id, launchProfileId=world.studio.launch_profile_id
    )["session"]
    ids = {"studioId": world.studio.studio_id, "sessionId": session["sessionId"]}
    client.get_waiter("streaming_session_ready").wait(**ids, WaiterConfig=FAST)
    return ids


def test_a_stream_opened_is_recorded_with_its_user_and_address(
    world: worlds.World, session_ids: dict[str, str]
) -> None:
    stream = world.artist.client().create_streaming_session_stream(**session_ids)["stream"]
    assert requests.get(stream["url"], timeout=10).status_code == 200
    assert requests.get(stream["url"], timeout=10).status_code == 403  # used already

    opened = audit(world, "--operation", "OpenStreamingSessionStream")
    assert [(e["outcome"], e["status"]) for e in opened] == [("accepted", 200), ("refused", 403)]
    first = opened[0]
    assert first["userId"] == world.artist.user_id and first["userName"] == "artist"
    assert first["persona"] == "USER" and first["client"] == "127.0.0.1"
    assert first["studioId"] == world.studio.studio_id
    assert first["resourceId"] == f"{session_ids['sessionId']}/{stream['streamId']}"
    assert "used already" in opened[1]["message"]
    created = audit(world, "--operation", "CreateStreamingSessionStream", "--user", "artist")
    assert [e["resourceId"] for e in created] == [stream["streamId"]]
    assert created[0]["accessKeyId"] == world.artist.access_key_id


def test_refused_and_accepted_deletes_are_recorded_with_caller_key_and_address(
    world: worlds.World, session_ids: dict[str, str]
) -> None:
    expect.error(
        lambda: world.artist2.client().delete_streaming_session(**session_ids),
        "AccessDeniedException",
    )
    wrong = _client_with_secret(world, "not the secret")
    expect.error(lambda: wrong.delete_streaming_session(**session_ids), "InvalidSignatureException")
    world.artist.client().delete_streaming_session(**session_ids)

    deletes = eventually(
        lambda: [
            e
            for e in audit(world, "--operation", "DeleteStreamingSession")
            if e["outcome"] == "refused"
        ]
    )
    assert len(deletes) == 2, deletes
    by_key = {e["errorCode"]: e for e in deletes}
    denied = by_key["AccessDeniedException"]
    assert denied["userId"] == world.artist2.user_id and denied["userName"] == "artist2"
    assert denied["accessKeyId"] == world.artist2.access_key_id
    assert denied["client"] == "127.0.0.1" and denied["status"] == 403
    assert denied["persona"] == "USER"
    assert denied["resourceId"] == session_ids["sessionId"]
    unsigned = by_key["InvalidSignatureException"]
    assert unsigned["userId"] is None and unsigned["persona"] == "anonymous"
    assert unsigned["accessKeyId"] == world.artist.access_key_id
    assert unsigned["client"] == "127.0.0.1"

    accepted = audit(world, "--operation", "DeleteStreamingSession", "--outcome", "accepted")
    assert len(accepted) == 1
    entry = accepted[0]
    assert (entry["userId"], entry["userName"]) == (world.artist.user_id, "artist")
    assert entry["accessKeyId"] == world.artist.access_key_id
    assert entry["client"] == "127.0.0.1" and entry["status"] == 200
    assert entry["resourceId"] == session_ids["sessionId"]
    assert entry["studioId"] == world.studio.studio_id

    # filters: by studio, user, time and outcome; a table for people
    mine = audit(world, "--studio", world.studio.studio_id, "--user", world.artist2.user_id)
    assert {e["operation"] for e in mine} == {"DeleteStreamingSession"}
    assert audit(world, "--since", "1h", "--user", "artist2") == mine
    assert audit(world, "--until", "2000-01-01T00:00:00Z") == []
    assert audit(world, "--studio", world.foreign.studio_id, "--user", "artist2") == []
    table = subprocess.run(
        [
            sys.executable,
            "-m",
            "opennimble",
            "audit",
            "--output",
            "table",
            "--user",
            "artist2",
            "--data-dir",
            str(world.server.data_dir.resolve()),
        ],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, **databases.env_for(world.server.data_dir.resolve())},
    ).stdout.splitlines()
    assert table[0].split()[:3] == ["at", "operation", "outcome"]
    assert "AccessDeniedException" in table[1]


def test_refusals_of_any_input_are_recorded_and_do_not_lose_the_others(
    world: worlds.World,
) -> None:
    """A refused request's values are the client's: a NUL character (which PostgreSQL's text
    refuses) or a studio id longer than the trail's column. They once made the whole batch
    of refusals written with them fail (all lost), and a long studio id made an idempotent
    request fail with a server error on PostgreSQL (its idempotency record's scope)."""
    studio_id, long_id = world.studio.studio_id, "s" * 300
    operator = world.operator.client()
    expect.error(lambda: operator.delete_studio(studioId=long_id), "ResourceNotFoundException")
    artist = world.artist.client()
    expect.error(
        lambda: artist.delete_streaming_session(studioId=studio_id, sessionId="nul\x00here"),
        "ValidationException",
        "NUL",
    )
    expect.error(
        lambda: artist.delete_streaming_session(studioId=studio_id, sessionId="no-such-session"),
        "ResourceNotFoundException",
    )

    def refused() -> list[dict[str, Any]]:
        entries = audit(world, "--outcome", "refused", "--since", "1h")
        return [e for e in entries if e["operation"] in ("DeleteStudio", "DeleteStreamingSession")]

    deadline = time.monotonic() + 10
    while len(found := refused()) < 3 and time.monotonic() < deadline:
        time.sleep(0.2)
    by_resource = {e["resourceId"]: e for e in found}
    assert "no-such-session" in by_resource, found
    nul = by_resource["nul\ufffdhere"]  # its message quotes the value: NUL replaced there too
    assert nul["errorCode"] == "ValidationException" and "\x00" not in nul["message"]
    (studio_entry,) = [e for e in found if e["operation"] == "DeleteStudio"]
    assert studio_entry["errorCode"] == "ResourceNotFoundException"
    assert studio_entry["studioId"] == long_id[:256]  # cut to the column, not refused


def test_a_bad_time_filter_is_a_clear_error(world: worlds.World) -> None:
    data_dir = str(world.server.data_dir.resolve())
    answer = subprocess.run(
        [
            sys.executable,
            "-m",
            "opennimble",
            "audit",
            "--since",
            "yesterday",
            "--data-dir",
            data_dir,
        ],
        capture_output=True,
        text=True,
        env={**os.environ, **databases.env_for(world.server.data_dir.resolve())},
    )
    assert answer.returncode == 2
    assert "--since" in answer.stderr and "neither an ISO-8601 time" in answer.stderr


def sign_in(world: worlds.World, name: str) -> requests.Session:
    world.server.set_password(name, PASSWORD)
    browser = requests.Session()
    portal = world.server.endpoint + "/portal/"
    token = re.search(r'name="csrf_token" value="([^"]+)"', browser.get(portal + "signin").text)
    assert token is not None
    signed_in = browser.post(
        portal + "signin", data={"csrf_token": token.group(1), "name": name, "password": PASSWORD}
    )
    assert signed_in.url == portal
    return browser


def test_studio_administrators_read_their_studios_trail_in_the_portal(
    world: worlds.World,
) -> None:
    page_of = world.server.endpoint + "/portal/studios/{}/audit"
    admin = sign_in(world, "admin")
    page = admin.get(page_of.format(world.studio.studio_id))
    assert page.status_code == 200
    assert "DeleteStreamingSession" in page.text and "AccessDeniedException" in page.text
    assert world.artist2.access_key_id in page.text
    # not another studio's, and not for artists
    assert admin.get(page_of.format(world.foreign.studio_id)).status_code == 403
    artist = sign_in(world, "artist")
    refused = artist.get(page_of.format(world.studio.studio_id))
    assert refused.status_code == 403
    assert "administrators may read this studio&#39;s audit trail" in refused.text
    assert "DeleteStreamingSession" not in refused.text


def test_entries_past_their_retention_are_pruned(
    world: worlds.World, clock: ControlledClock
) -> None:
    assert audit(world, "--operation", "DeleteStreamingSession")
    clock.advance(days=31)  # the retention here is 30 days
    expect.error(
        lambda: world.artist.client().tag_resource(
            resourceArn=_studio_arn(world), tags={"after": "the retention"}
        ),
        "AccessDeniedException",
    )
    deadline = time.monotonic() + 20
    while audit(world, "--operation", "DeleteStreamingSession"):
        assert time.monotonic() < deadline, "entries older than the retention were kept"
        time.sleep(0.3)
    # what happened since is kept
    assert audit(world, "--operation", "TagResource", "--outcome", "refused")


def _studio_arn(world: worlds.World) -> str:
    studio = world.operator.client().get_studio(studioId=world.studio.studio_id)["studio"]
    return str(studio["arn"])


def _client_with_secret(world: worlds.World, secret: str) -> Any:
    """The artist's access key with a wrong secret: requests with a wrong signature."""
    return boto3.client(
        "nimble",
        endpoint_url=world.server.endpoint,
        region_name="us-west-2",
        aws_access_key_id=world.artist.access_key_id,
        aws_secret_access_key=secret,
        config=botocore.config.Config(retries={"mode": "standard", "max_attempts": 1}),
    )
