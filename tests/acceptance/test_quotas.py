"""Quotas (ServiceQuotaExceededException naming the quota) and per-caller throttling
(ThrottlingException), on servers configured with small limits."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from tests.support import expect
from tests.support import server as support
from tests.support import world as worlds
from tests.support.server import FAST

LIMITS = {
    "OPENNIMBLE_MAX_SESSIONS_PER_STUDIO": "2",
    "OPENNIMBLE_MAX_SESSIONS_PER_OWNER": "1",
    "OPENNIMBLE_MAX_LAUNCH_PROFILES_PER_STUDIO": "2",
    "OPENNIMBLE_MAX_STREAMING_IMAGES_PER_STUDIO": "3",
}


@pytest.fixture(scope="module")
def small(tmp_path_factory: pytest.TempPathFactory) -> Iterator[worlds.World]:
    data_dir = tmp_path_factory.mktemp("quotas") / "data"
    with worlds.running_world(data_dir, LIMITS) as built:
        yield built


def launch_profile_args(world: worlds.World) -> dict[str, object]:
    return {
        "studioId": world.studio.studio_id,
        "name": "more",
        "ec2SubnetIds": [],
        "launchProfileProtocolVersions": ["2021-03-31"],
        "studioComponentIds": [world.studio.component_id],
        "streamConfiguration": {
            "clipboardMode": "ENABLED",
            "ec2InstanceTypes": ["g4dn.xlarge"],
            "streamingImageIds": [world.studio.image_id],
        },
    }


def test_streaming_images_per_studio(small: worlds.World) -> None:
    admin = small.studio.admin.client()
    sid = small.studio.studio_id
    third = admin.create_streaming_image(studioId=sid, name="third", ec2ImageId="ami-03")
    response = expect.error(
        lambda: admin.create_streaming_image(studioId=sid, name="fourth", ec2ImageId="ami-04"),
        "ServiceQuotaExceededException",
        "streaming images per studio",
        "max_streaming_images_per_studio",
        "3",
    )
    assert response["context"]["quota"] == "max_streaming_images_per_studio"
    image = {"studioId": sid, "streamingImageId": third["streamingImage"]["streamingImageId"]}
    admin.get_waiter("streaming_image_ready").wait(**image, WaiterConfig=FAST)
    admin.delete_streaming_image(**image)
    admin.get_waiter("streaming_image_deleted").wait(**image, WaiterConfig=FAST)
    admin.create_streaming_image(studioId=sid, name="fourth", ec2ImageId="ami-04")
    # the other studio has its own quota
    foreign = small.foreign.admin.client()
    foreign.create_streaming_image(studioId=small.foreign.studio_id, name="x", ec2ImageId="ami-05")


def test_launch_profiles_per_studio(small: worlds.World) -> None:
    admin = small.studio.admin.client()
    admin.create_launch_profile(**launch_profile_args(small))
    expect.error(
        lambda: admin.create_launch_profile(**launch_profile_args(small)),
        "ServiceQuotaExceededException",
        "launch profiles per studio",
        "max_launch_profiles_per_studio",
    )


def test_sessions_per_owner_and_per_studio(small: worlds.World) -> None:
    sid = small.studio.studio_id
    request = {"studioId": sid, "launchProfileId": small.studio.launch_profile_id}
    artist, artist2 = small.artist.client(), small.artist2.client()
    first = artist.create_streaming_session(**request)["session"]["sessionId"]
    expect.error(
        lambda: artist.create_streaming_session(**request),
        "ServiceQuotaExceededException",
        "max_sessions_per_owner",
        small.artist.user_id,
    )
    artist2.create_streaming_session(**request)
    admin = small.studio.admin.client()
    expect.error(
        lambda: admin.create_streaming_session(**request),
        "ServiceQuotaExceededException",
        "streaming sessions per studio",
        "max_sessions_per_studio",
    )
    # a session counts until it is DELETED
    artist.get_waiter("streaming_session_ready").wait(
        studioId=sid, sessionId=first, WaiterConfig=FAST
    )
    artist.delete_streaming_session(studioId=sid, sessionId=first)
    artist.get_waiter("streaming_session_deleted").wait(
        studioId=sid, sessionId=first, WaiterConfig=FAST
    )
    artist.create_streaming_session(**request)


@pytest.fixture(scope="module")
def throttled(tmp_path_factory: pytest.TempPathFactory) -> Iterator[support.Server]:
    data_dir = tmp_path_factory.mktemp("throttle") / "data"
    env = {"OPENNIMBLE_THROTTLE_RATE": "1", "OPENNIMBLE_THROTTLE_BURST": "3"}
    with support.running(support.Server(data_dir, env=env)) as srv:
        yield srv


@pytest.fixture(scope="module")
def slow_refill(tmp_path_factory: pytest.TempPathFactory) -> Iterator[support.Server]:
    """A bucket that refills one request every 4 s: the requests of a test fit in the window
    however slow the machine, and the wait for the refill is what the server says it is."""
    data_dir = tmp_path_factory.mktemp("slow-refill") / "data"
    env = {"OPENNIMBLE_THROTTLE_RATE": "0.25", "OPENNIMBLE_THROTTLE_BURST": "3"}
    with support.running(support.Server(data_dir, env=env)) as srv:
        yield srv


def test_each_caller_has_its_own_request_rate(slow_refill: support.Server) -> None:
    fast, calm = slow_refill.user("fast", operator=True), slow_refill.user("calm", operator=True)
    client = fast.client()  # the support clients do not retry: a 429 shows as it is
    for _ in range(3):
        client.list_studios()
    response = expect.error(
        client.list_studios, "ThrottlingException", "Rate exceeded", fast.user_id, "0.25 requests"
    )
    retry_after = int(response["context"]["retryAfterMs"]) / 1000
    assert 0 < retry_after <= 4.0
    calm.client().list_studios()  # another caller is not slowed down
    time.sleep(retry_after + 0.1)  # when the server said the bucket would hold one again
    client.list_studios()


@pytest.mark.parametrize("mode", ["standard", "adaptive"])
def test_botocore_backs_off_and_gets_through_when_throttled(
    throttled: support.Server, mode: str
) -> None:
    """ThrottlingException (429) is what botocore's standard and adaptive retry modes retry
    with back-off: a caller over the rate sees its calls succeed, later, after retries."""
    user = throttled.user(f"patient{mode}", operator=True)
    client = user.client(retries={"mode": mode, "max_attempts": 10})
    began = time.monotonic()
    attempts = [client.list_studios()["ResponseMetadata"]["RetryAttempts"] for _ in range(5)]
    assert sum(attempts) > 0, attempts  # some calls were throttled and retried
    assert time.monotonic() - began >= 1.0  # 5 calls at 1/s after a burst of 3: it waited
