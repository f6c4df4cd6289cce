"""Sessions on a real Slurm cluster: ``provider = "slurm"`` end to end.

A single-node cluster of Debian's slurm-wlm (tests/support/slurm.py) runs each desktop as a
batch job of its owner; the API is used through boto3 and the stream through its URL, as a
user would. Covered: create -> READY with a stream that speaks RFB; the job's resources from
the instance type; stop, start, delete (no job left); a job cancelled outside opennimble; a job
pending past the limit (INSUFFICIENT_CAPACITY); a server killed with SIGKILL and restarted,
which re-attaches to its running job with no orphan; backups and restore; the stream drawn in
Chromium.
"""

from __future__ import annotations

import pathlib
import pwd
import subprocess
import time
from collections.abc import Iterator
from typing import Any

import pytest
import requests
from playwright import sync_api

from tests.browser.conftest import ARTIFACTS, CHROMIUM
from tests.support import desktops, slurm, vnc
from tests.support import world as worlds
from tests.support.server import FAST

pytestmark = [pytest.mark.slurm, pytest.mark.xvnc, pytest.mark.browser]
if (why := slurm.available()) is not None:
    pytestmark.append(pytest.mark.skip(reason=why))

PENDING_TIMEOUT = 4


@pytest.fixture(scope="module")
def world(
    cluster: slurm.Cluster, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[worlds.World]:
    env = cluster.server_env(resource_scale=0.25, pending_timeout=PENDING_TIMEOUT)
    with worlds.running_world(tmp_path_factory.mktemp("slurm") / "data", env) as built:
        yield built
    assert cluster.live_jobs() == [], "jobs left running"


def create(world: worlds.World) -> dict[str, str]:
    studio = world.studio
    session = world.artist.client().create_streaming_session(
        studioId=studio.studio_id, launchProfileId=studio.launch_profile_id
    )["session"]
    return {"studioId": studio.studio_id, "sessionId": session["sessionId"]}


def ready(world: worlds.World) -> dict[str, str]:
    ids = create(world)
    found = wait_state(world, ids, "READY", "CREATE_FAILED")
    assert found["state"] == "READY", (found["statusCode"], found["statusMessage"])
    return ids


def job_of(cluster: slurm.Cluster, session_id: str) -> dict[str, Any]:
    jobs = [j for j in cluster.live_jobs() if j["name"] == f"opennimble-{session_id}"]
    assert len(jobs) == 1, f"jobs of {session_id}: {jobs}"
    return jobs[0]


def session(world: worlds.World, ids: dict[str, str]) -> dict[str, Any]:
    return dict(world.artist.client().get_streaming_session(**ids)["session"])


def wait_state(world: worlds.World, ids: dict[str, str], *states: str) -> dict[str, Any]:
    deadline = time.monotonic() + 60
    while (found := session(world, ids))["state"] not in states:
        lines = [
            line for line in world.server.log().splitlines() if "GetStreamingSession" not in line
        ]
        assert time.monotonic() < deadline, (found["state"], "\n".join(lines[-30:]))
        time.sleep(0.3)
    return found


def streams(world: worlds.World, ids: dict[str, str]) -> str:
    """Open a new stream of the session as a browser would; the desktop's name over RFB."""
    client = world.artist.client()
    stream = client.create_streaming_session_stream(**ids)["stream"]
    waiter = client.get_waiter("streaming_session_stream_ready")
    waiter.wait(**ids, streamId=stream["streamId"], WaiterConfig=FAST)
    url = client.get_streaming_session_stream(**ids, streamId=stream["streamId"])["stream"]["url"]
    page = requests.get(url, timeout=10)
    assert page.status_code == 200, page.text
    socket = url.split("?")[0].replace("http://", "ws://") + "/websocket"
    cookie = f"opennimble_stream={page.cookies['opennimble_stream']}"
    with vnc.connect(
        socket, cookie, socket.replace("ws://", "http://").split("/streams/")[0]
    ) as ws:
        return vnc.RfbClient(ws).handshake().name


def delete(world: worlds.World, ids: dict[str, str]) -> None:
    client = world.artist.client()
    client.delete_streaming_session(**ids)
    client.get_waiter("streaming_session_deleted").wait(**ids, WaiterConfig=FAST)


def test_a_session_is_a_job_of_its_owner_with_its_instance_types_resources(
    world: worlds.World, cluster: slurm.Cluster
) -> None:
    ids = ready(world)
    job = job_of(cluster, ids["sessionId"])
    assert job["job_state"] == "RUNNING"
    assert job["user_name"].startswith("on-artist")
    # g4dn.xlarge (4 vCPUs, 16 GiB) at resource_scale 0.25
    assert "cpu=1" in job["tres_req_str"] and "mem=4G" in job["tres_req_str"]
    assert ids["sessionId"] in streams(world, ids)
    delete(world, ids)
    assert [j for j in cluster.live_jobs() if ids["sessionId"] in j["name"]] == []


def test_stop_cancels_the_job_and_start_submits_a_new_one(
    world: worlds.World, cluster: slurm.Cluster
) -> None:
    client = world.artist.client()
    studio = world.studio
    profile = desktops.stoppable(studio.admin, studio, [world.artist])
    session_id = client.create_streaming_session(
        studioId=studio.studio_id, launchProfileId=profile
    )["session"]["sessionId"]
    ids = {"studioId": studio.studio_id, "sessionId": session_id}
    client.get_waiter("streaming_session_ready").wait(**ids, WaiterConfig=FAST)
    first = job_of(cluster, session_id)["job_id"]
    client.stop_streaming_session(**ids)
    client.get_waiter("streaming_session_stopped").wait(**ids, WaiterConfig=FAST)
    assert [j for j in cluster.live_jobs() if session_id in j["name"]] == []
    client.start_streaming_session(**ids)
    client.get_waiter("streaming_session_ready").wait(**ids, WaiterConfig=FAST)
    assert job_of(cluster, session_id)["job_id"] != first
    assert session_id in streams(world, ids)
    delete(world, ids)


def test_a_job_cancelled_outside_opennimble_stops_its_session_with_slurms_reason(
    world: worlds.World, cluster: slurm.Cluster
) -> None:
    ids = ready(world)
    cluster.cancel(job_of(cluster, ids["sessionId"])["job_id"])
    stopped = wait_state(world, ids, "STOPPED")
    assert "CANCELLED" in stopped["statusMessage"], stopped
    delete(world, ids)


def test_a_job_pending_too_long_fails_with_insufficient_capacity(
    world: worlds.World, cluster: slurm.Cluster
) -> None:
    blocker = cluster.submit(f"--cpus-per-task={cluster.cpus}", "--mem=100M", wrap="sleep 600")
    try:
        ids = create(world)
        failed = wait_state(world, ids, "CREATE_FAILED", "READY")
        assert failed["state"] == "CREATE_FAILED", failed
        assert failed["statusCode"] == "INSUFFICIENT_CAPACITY"
        assert "No node had room" in failed["statusMessage"]
        assert [j for j in cluster.live_jobs() if ids["sessionId"] in j["name"]] == []
    finally:
        cluster.cancel(blocker)
    delete(world, ids)


def test_a_killed_server_reattaches_to_its_running_job(
    world: worlds.World, cluster: slurm.Cluster
) -> None:
    ids = ready(world)
    job = job_of(cluster, ids["sessionId"])["job_id"]
    world.server.kill9()
    world.server.start()
    time.sleep(2)  # a few reconciler passes of the new process
    assert session(world, ids)["state"] == "READY"
    assert job_of(cluster, ids["sessionId"])["job_id"] == job  # the same job, no second one
    assert ids["sessionId"] in streams(world, ids)
    delete(world, ids)


def test_the_stream_of_a_slurm_desktop_draws_in_chromium(
    world: worlds.World, cluster: slurm.Cluster
) -> None:
    ids = ready(world)
    client = world.artist.client()
    stream = client.create_streaming_session_stream(**ids)["stream"]
    waiter = client.get_waiter("streaming_session_stream_ready")
    waiter.wait(**ids, streamId=stream["streamId"], WaiterConfig=FAST)
    url = client.get_streaming_session_stream(**ids, streamId=stream["streamId"])["stream"]["url"]
    with sync_api.sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, headless=True)
        try:
            page = chromium.new_context(viewport={"width": 1024, "height": 700}).new_page()
            page.goto(url)
            page.wait_for_selector("body[data-state='connected']", state="attached", timeout=20_000)
            width, height = page.evaluate(
                "(() => { const c = document.querySelector('#screen canvas');"
                " return [c.width, c.height]; })()"
            )
            assert (width, height) != (0, 0)
            ARTIFACTS.mkdir(exist_ok=True)
            page.screenshot(path=str(ARTIFACTS / "slurm-stream.png"))
        finally:
            chromium.close()
    delete(world, ids)


def test_backups_and_restore_as_with_the_local_provider(
    world: worlds.World, cluster: slurm.Cluster
) -> None:
    """A stop backs the session's storage up; StartStreamingSession with backupId puts it back
    before the new job starts."""
    studio, client = world.studio, world.artist.client()
    profile = desktops.stoppable(
        studio.admin,
        studio,
        [world.artist],
        sessionBackup={"mode": "AUTOMATIC", "maxBackupsToRetain": 2},
    )
    session_id = client.create_streaming_session(
        studioId=studio.studio_id, launchProfileId=profile
    )["session"]["sessionId"]
    ids = {"studioId": studio.studio_id, "sessionId": session_id}
    client.get_waiter("streaming_session_ready").wait(**ids, WaiterConfig=FAST)
    owner = pwd.getpwnam(job_of(cluster, session_id)["user_name"])
    work = pathlib.Path(owner.pw_dir) / "sessions" / session_id / "work.txt"

    def write(text: str) -> None:
        done = subprocess.run(
            ["sh", "-c", f"echo {text} > {work}"], user=owner.pw_uid, group=owner.pw_gid,
            extra_groups=[], capture_output=True, text=True, check=False,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr

    write("before")
    client.stop_streaming_session(**ids)
    client.get_waiter("streaming_session_stopped").wait(**ids, WaiterConfig=FAST)
    backups = client.list_streaming_session_backups(studioId=studio.studio_id)
    backup = next(b for b in backups["streamingSessionBackups"] if b["sessionId"] == session_id)
    assert backup["state"] == "READY"
    write("after")
    started = client.start_streaming_session(**ids, backupId=backup["backupId"])["session"]
    assert started["startedFromBackupId"] == backup["backupId"]
    client.get_waiter("streaming_session_ready").wait(**ids, WaiterConfig=FAST)
    assert work.read_text() == "before\n"
    delete(world, ids)
