"""``serve --demo`` writes every demo user's credentials, the operator's included, to a file in
the data directory: an artist in a desktop of the demo installation must not read it."""

from __future__ import annotations

import json
import os
import pathlib
import stat
from collections.abc import Iterator
from typing import Any

import boto3
import pytest

from tests.support import desktops
from tests.support.server import (
    FAST,
    REGION,
    Server,
    kill_all,
    live_desktops,
    shared_dir,
)

pytestmark = [pytest.mark.xvnc, pytest.mark.security]


@pytest.fixture(scope="module")
def demo() -> Iterator[Server]:
    if os.geteuid() != 0:
        pytest.skip("per-owner accounts need root")
    data_dir = shared_dir("demo") / "data"  # where the artist's attempt can reach
    server = Server(data_dir, flags=["--demo"])
    server.start()
    try:
        yield server
    finally:
        server.stop()
        kill_all(live_desktops(server.data_dir))


def artist_client(server: Server, document: dict[str, Any]) -> Any:
    artist = document["users"]["artist"]
    return boto3.client(
        "nimble",
        endpoint_url=server.endpoint,
        region_name=REGION,
        aws_access_key_id=artist["accessKeyId"],
        aws_secret_access_key=artist["secretAccessKey"],
    )


def test_the_demo_artist_cannot_read_the_demo_credentials(demo: Server) -> None:
    """The file holds the operator's secret key: whoever reads it is operator of everything.
    It is the server's (mode 0600), and the demo artist's desktop account is refused."""
    path = demo.data_dir / "demo-credentials.json"
    document = json.loads(path.read_text())
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    client = artist_client(demo, document)
    ids = {"studioId": document["studioId"]}
    session = client.create_streaming_session(**ids, launchProfileId=document["launchProfileId"])[
        "session"
    ]
    try:
        client.get_waiter("streaming_session_ready").wait(
            **ids, sessionId=session["sessionId"], WaiterConfig=FAST
        )
        desktop = desktops.record(demo, session["sessionId"])
        done = desktops.run_as(desktop, "cat", str(path))
        assert done.returncode != 0 and "Permission denied" in done.stderr
        secret = document["users"]["operator"]["secretAccessKey"]
        found = desktops.run_as(desktop, "grep", "-rlF", secret, str(pathlib.Path(path).parent))
        assert not found.stdout
    finally:
        client.delete_streaming_session(**ids, sessionId=session["sessionId"])
        client.get_waiter("streaming_session_deleted").wait(
            **ids, sessionId=session["sessionId"], WaiterConfig=FAST
        )
