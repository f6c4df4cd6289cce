"""Three API servers and two workers (workstation hosts) on one PostgreSQL database behave as
one service: idempotency tokens and pagination hold across servers, and when a worker and a
server are killed with SIGKILL mid-run every acknowledged session converges, none is
provisioned twice and no desktop is left behind."""

from __future__ import annotations

import concurrent.futures
import contextlib
import dataclasses
import time
import uuid
from collections.abc import Iterator
from typing import Any

import botocore.exceptions
import pytest

from tests.support import cluster as clusters
from tests.support import world as worlds
from tests.support.server import FAST

pytestmark = [pytest.mark.postgresql, pytest.mark.xvnc]
LOST = (botocore.exceptions.EndpointConnectionError, botocore.exceptions.ConnectionClosedError)


@pytest.fixture(scope="module")
def cluster(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[clusters.Cluster, worlds.World]]:
    root = tmp_path_factory.mktemp("cluster")
    env = {
        "OPENNIMBLE_CLAIM_TIMEOUT": "2",
        "OPENNIMBLE_PAGE_SIZE": "3",
        "OPENNIMBLE_MAX_SESSIONS_PER_OWNER": "100",
        "OPENNIMBLE_PROVIDERS__LOCAL__GEOMETRY": "640x480",
    }
    made = clusters.Cluster.make(root, servers=3, workers=2, env=env)
    with clusters.served(made) as built:
        yield made, built


def clients(made: clusters.Cluster, user: Any) -> list[Any]:
    """One client of ``user`` per server."""
    return [dataclasses.replace(user, server=srv).client() for srv in made.servers]


def test_an_idempotency_token_creates_one_session_across_servers(
    cluster: tuple[clusters.Cluster, worlds.World],
) -> None:
    made, world = cluster
    token = uuid.uuid4().hex
    studio = world.studio

    def create(client: Any) -> str:
        return str(
            client.create_streaming_session(
                studioId=studio.studio_id,
                launchProfileId=studio.launch_profile_id,
                clientToken=token,
            )["session"]["sessionId"]
        )

    with concurrent.futures.ThreadPoolExecutor(6) as pool:
        ids = set(pool.map(create, clients(made, world.artist) * 2))
    assert len(ids) == 1
    listed = world.operator.client().list_streaming_sessions(studioId=studio.studio_id)
    assert [s["sessionId"] for s in listed["sessions"]] == list(ids)


def test_pages_continue_on_any_server(cluster: tuple[clusters.Cluster, worlds.World]) -> None:
    made, world = cluster
    studio = world.studio
    per_server = clients(made, world.artist2)
    made_ids = {
        per_server[i % 3].create_streaming_session(
            studioId=studio.studio_id, launchProfileId=studio.launch_profile_id
        )["session"]["sessionId"]
        for i in range(7)
    }
    seen: list[str] = []
    token: str | None = None
    for page in range(10):
        args = {"studioId": studio.studio_id, "ownedBy": world.artist2.user_id}
        answer = per_server[page % 3].list_streaming_sessions(
            **args, **({"nextToken": token} if token else {})
        )
        seen += [s["sessionId"] for s in answer["sessions"]]
        token = answer.get("nextToken")
        if not token:
            break
    assert len(seen) == len(set(seen)) and set(seen) == made_ids


def test_kill9_of_a_worker_and_a_server_mid_run(
    cluster: tuple[clusters.Cluster, worlds.World],
) -> None:
    made, world = cluster
    studio = world.studio
    per_server = clients(made, world.artist)
    alive = [True, True, True]
    acknowledged: dict[str, str] = {}  # session id -> the state it must reach
    doubles: dict[str, list[int]] = {}
    events = {4.0: "kill worker", 6.0: "kill server", 9.0: "restart worker"}
    started, step = time.monotonic(), 0
    # 14 s at least, then on until three deletes are acknowledged: a loaded machine provisions
    # slowly, and a delete waits for a READY session
    while time.monotonic() - started < 14 or (
        deleted(acknowledged) < 3 and time.monotonic() - started < 90
    ):
        elapsed = time.monotonic() - started
        for at in [at for at in events if at <= elapsed]:
            what = events.pop(at)
            if what == "kill worker":
                made.workers[0].kill9()
            elif what == "kill server":
                made.servers[2].kill9()
                alive[2] = False
            else:
                made.workers[0].start()
        live = [i for i in range(3) if alive[i]]
        client = per_server[live[step % len(live)]]
        step += 1
        with contextlib.suppress(*LOST):  # not acknowledged: the server died under it
            act(client, studio, acknowledged, step)
        doubles.update({s: p for s, p in made.desktops().items() if len(p) > 1})
        time.sleep(0.25)

    assert doubles == {}, f"sessions provisioned twice: {doubles}"
    check = per_server[0]
    for session_id, target in acknowledged.items():
        waiter = "streaming_session_ready" if target == "READY" else "streaming_session_deleted"
        check.get_waiter(waiter).wait(
            studioId=studio.studio_id, sessionId=session_id, WaiterConfig=FAST
        )
    desktops = made.desktops()
    ready = {s for s, target in acknowledged.items() if target == "READY"}
    assert set(desktops) >= ready and all(len(desktops[s]) == 1 for s in ready)
    assert not set(desktops) & {s for s, t in acknowledged.items() if t == "DELETED"}
    assert deleted(acknowledged) >= 3
    worlds.delete_all_sessions(world)
    assert made.desktops() == {}, "desktops orphaned"


def deleted(acknowledged: dict[str, str]) -> int:
    return sum(target == "DELETED" for target in acknowledged.values())


def act(client: Any, studio: worlds.Studio, acknowledged: dict[str, str], step: int) -> None:
    """Every third step delete the oldest READY session (of the three oldest acknowledged),
    otherwise create one."""
    live = [s for s, target in acknowledged.items() if target == "READY"]
    if step % 3 == 0 and live:
        for session_id in live[:3]:  # the oldest may wait for its host, killed meanwhile
            session = client.get_streaming_session(studioId=studio.studio_id, sessionId=session_id)
            if session["session"]["state"] == "READY":
                client.delete_streaming_session(studioId=studio.studio_id, sessionId=session_id)
                acknowledged[session_id] = "DELETED"
                return
        return
    created = client.create_streaming_session(
        studioId=studio.studio_id, launchProfileId=studio.launch_profile_id
    )["session"]
    acknowledged[created["sessionId"]] = "READY"
