"""Quotas hold exactly under a burst: 200 CreateStreamingSession calls at once, through boto3,
at the limit of a studio's and an owner's sessions, admit exactly as many sessions as the
quotas allow, on one server (SQLite) or two API servers sharing a PostgreSQL database; the
others are refused with ServiceQuotaExceededException, and a deleted session gives its place
back."""

from __future__ import annotations

import collections
import concurrent.futures
import dataclasses
import uuid
from collections.abc import Iterator
from typing import Any

import botocore.exceptions
import pytest

from tests.support import cluster as clusters
from tests.support import databases
from tests.support import server as support
from tests.support import world as worlds
from tests.support.server import FAST

PER_STUDIO, PER_OWNER = 4, 2
BURST = 200
LIMITS = {
    "OPENNIMBLE_MAX_SESSIONS_PER_STUDIO": str(PER_STUDIO),
    "OPENNIMBLE_MAX_SESSIONS_PER_OWNER": str(PER_OWNER),
    "OPENNIMBLE_THROTTLE_RATE": "0",  # the burst must reach the quotas, not the rate limit
    "OPENNIMBLE_DESKTOP_GEOMETRY": "640x480",
}


@dataclasses.dataclass
class Installation:
    world: worlds.World
    servers: list[support.Server]


@pytest.fixture(scope="module")
def installation(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Installation]:
    root = tmp_path_factory.mktemp("quota-burst")
    if not databases.postgresql():
        with worlds.running_world(root / "data", LIMITS) as built:
            yield Installation(built, [built.server])
        return
    made = clusters.Cluster.make(root, servers=2, workers=1, env=LIMITS)
    with clusters.served(made) as built:
        yield Installation(built, made.servers)


def burst(made: Installation, studio: worlds.Studio, owners: list[support.User]) -> list[Any]:
    """BURST creates at once, spread over the owners and the servers; each outcome is the new
    session or the error code."""
    clients = [
        dataclasses.replace(user, server=srv).client(max_pool_connections=64)
        for user in owners
        for srv in made.servers
    ]
    request = {"studioId": studio.studio_id, "launchProfileId": studio.launch_profile_id}

    def create(i: int) -> Any:
        client = clients[i % len(clients)]
        try:
            return client.create_streaming_session(**request, clientToken=uuid.uuid4().hex)[
                "session"
            ]
        except botocore.exceptions.ClientError as exc:
            return exc.response["Error"]["Code"]

    with concurrent.futures.ThreadPoolExecutor(64) as pool:
        return list(pool.map(create, range(BURST)))


def live(world: worlds.World, studio: worlds.Studio) -> list[dict[str, Any]]:
    return [
        s
        for s in worlds._all_sessions(world.operator.client(), studio.studio_id)
        if s["state"] != "DELETED"
    ]


def test_a_burst_at_the_quotas_admits_exactly_the_limit(installation: Installation) -> None:
    world = installation.world
    studio = world.studio
    owners = [studio.admin, world.artist, world.artist2]  # 3 owners x 2 > 4 per studio
    outcomes = burst(installation, studio, owners)
    made = [o for o in outcomes if isinstance(o, dict)]
    refused = collections.Counter(o for o in outcomes if not isinstance(o, dict))
    assert len(made) == PER_STUDIO, refused
    assert refused == {"ServiceQuotaExceededException": BURST - PER_STUDIO}
    per_owner = collections.Counter(s["ownedBy"] for s in made)
    assert max(per_owner.values()) <= PER_OWNER, per_owner
    listed = live(world, studio)
    assert sorted(s["sessionId"] for s in listed) == sorted(s["sessionId"] for s in made)

    # the owner's quota alone: one owner in the other studio gets exactly PER_OWNER
    foreign = world.foreign
    outcomes = burst(installation, foreign, [foreign.admin])
    assert len([o for o in outcomes if isinstance(o, dict)]) == PER_OWNER
    assert len(live(world, foreign)) == PER_OWNER

    # a deleted session gives its place back, exactly one
    gone = made[0]
    admin = dataclasses.replace(world.operator, server=installation.servers[-1]).client()
    ids = {"studioId": studio.studio_id, "sessionId": gone["sessionId"]}
    admin.get_waiter("streaming_session_ready").wait(**ids, WaiterConfig=FAST)
    admin.delete_streaming_session(**ids)
    admin.get_waiter("streaming_session_deleted").wait(**ids, WaiterConfig=FAST)
    owner = next(u for u in owners if u.user_id == gone["ownedBy"])
    outcomes = burst(installation, studio, [owner])
    assert len([o for o in outcomes if isinstance(o, dict)]) == 1
    assert len(live(world, studio)) == PER_STUDIO
