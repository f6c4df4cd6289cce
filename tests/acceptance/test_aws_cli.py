"""`aws nimble ...` (the AWS CLI v1) works against opennimble once given the model that
`opennimble model` prints, as the README tells operators."""

from __future__ import annotations

import json
import os
import pathlib
import subprocess
import sys

from tests.support.server import FAST, REGION
from tests.support.world import World

AWS = pathlib.Path(sys.executable).parent / "aws"


def test_aws_nimble_list_streaming_sessions(world: World, tmp_path: pathlib.Path) -> None:
    home = tmp_path / "home"  # `aws configure add-model` writes under ~/.aws
    home.mkdir()
    model = tmp_path / "nimble.json"
    with model.open("w") as out:
        subprocess.run([sys.executable, "-m", "opennimble", "model"], stdout=out, check=True)
    artist = world.artist
    env = {
        **os.environ,
        "HOME": str(home),
        "AWS_ACCESS_KEY_ID": artist.access_key_id,
        "AWS_SECRET_ACCESS_KEY": artist.secret_access_key,
        "AWS_DEFAULT_REGION": REGION,
    }
    env.pop("AWS_PROFILE", None)

    def aws(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([str(AWS), *args], capture_output=True, text=True, env=env)

    added = aws(
        "configure", "add-model", "--service-model", f"file://{model}", "--service-name", "nimble"
    )
    assert added.returncode == 0, added.stderr
    sid = world.studio.studio_id
    client = artist.client()
    session = client.create_streaming_session(
        studioId=sid, launchProfileId=world.studio.launch_profile_id
    )["session"]
    try:
        listed = aws(
            "nimble",
            "list-streaming-sessions",
            "--studio-id",
            sid,
            "--endpoint-url",
            world.server.endpoint,
            "--output",
            "json",
        )
        assert listed.returncode == 0, listed.stderr
        sessions = json.loads(listed.stdout)["sessions"]
        assert session["sessionId"] in {s["sessionId"] for s in sessions}
    finally:
        # A session is deleted once it has been created (DeleteStreamingSession refuses one in
        # CREATE_IN_PROGRESS, as AWS did), and the test waits until it is gone.
        ids = {"studioId": sid, "sessionId": session["sessionId"]}
        client.get_waiter("streaming_session_ready").wait(**ids, WaiterConfig=FAST)
        client.delete_streaming_session(**ids)
        client.get_waiter("streaming_session_deleted").wait(**ids, WaiterConfig=FAST)
