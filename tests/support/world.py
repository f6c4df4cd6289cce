"""A studio set up through the API, with users in every persona."""

from __future__ import annotations

import concurrent.futures
import contextlib
import dataclasses
import pathlib
import time
import uuid
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from tests.support.server import FAST, Server, User, kill_all, live_desktops

if TYPE_CHECKING:
    from tests.support.clocked import ControlledClock

ROLE = "arn:aws:iam::000000000000:role/studio"


@dataclasses.dataclass
class Studio:
    studio_id: str
    launch_profile_id: str
    image_id: str
    other_image_id: str  # an image of the studio that the launch profile does not offer
    component_id: str
    admin: User


@dataclasses.dataclass
class World:
    server: Server
    operator: User
    artist: User
    artist2: User
    outsider: User
    studio: Studio
    foreign: Studio  # another studio, administered by someone else


def create_studio(operator: User, admin: User, members: list[User]) -> Studio:
    op = operator.client()
    name = "s" + uuid.uuid4().hex[:12]
    studio_id = op.create_studio(
        studioName=name, displayName=name, adminRoleArn=ROLE, userRoleArn=ROLE
    )["studio"]["studioId"]
    op.get_waiter("studio_ready").wait(studioId=studio_id, WaiterConfig=FAST)
    op.put_studio_members(
        studioId=studio_id,
        identityStoreId=admin.identity_store_id,
        members=[{"principalId": admin.user_id, "persona": "ADMINISTRATOR"}],
    )
    ad = admin.client()
    component = ad.create_studio_component(
        studioId=studio_id, name="storage", type="SHARED_FILE_SYSTEM"
    )["studioComponent"]
    images = [
        ad.create_streaming_image(studioId=studio_id, name=f"image {i}", ec2ImageId=f"ami-0{i}abc")[
            "streamingImage"
        ]
        for i in range(2)
    ]
    for image in images:
        ad.get_waiter("streaming_image_ready").wait(
            studioId=studio_id, streamingImageId=image["streamingImageId"], WaiterConfig=FAST
        )
    profile = ad.create_launch_profile(
        studioId=studio_id,
        name="workstation",
        ec2SubnetIds=[],
        launchProfileProtocolVersions=["2021-03-31"],
        studioComponentIds=[component["studioComponentId"]],
        streamConfiguration={
            "clipboardMode": "ENABLED",
            "ec2InstanceTypes": ["g4dn.xlarge", "g4dn.2xlarge"],
            "streamingImageIds": [images[0]["streamingImageId"]],
        },
    )["launchProfile"]
    lp_id = profile["launchProfileId"]
    ad.get_waiter("launch_profile_ready").wait(
        studioId=studio_id, launchProfileId=lp_id, WaiterConfig=FAST
    )
    if members:  # only an operator brings users into a studio
        op.put_launch_profile_members(
            studioId=studio_id,
            launchProfileId=lp_id,
            identityStoreId=admin.identity_store_id,
            members=[{"principalId": m.user_id, "persona": "USER"} for m in members],
        )
    return Studio(
        studio_id,
        lp_id,
        images[0]["streamingImageId"],
        images[1]["streamingImageId"],
        component["studioComponentId"],
        admin,
    )


def build(server: Server) -> World:
    # the users side by side: each is a run of the CLI, most of whose time is its start-up
    names = ("admin", "artist", "artist2", "outsider", "foreignadmin")
    with concurrent.futures.ThreadPoolExecutor(len(names) + 1) as pool:
        first = pool.submit(server.user, "operator", operator=True)
        others = list(pool.map(server.user, names))
    operator = first.result()
    admin, artist, artist2, outsider, foreign_admin = others
    studio = create_studio(operator, admin, [artist, artist2])
    foreign = create_studio(operator, foreign_admin, [])
    return World(server, operator, artist, artist2, outsider, studio, foreign)


@contextlib.contextmanager
def served(server: Server) -> Iterator[World]:
    """Start ``server``, build a world on it; at the end delete every session, stop the server
    and check that no desktop was left running."""
    server.start()
    try:
        built = build(server)
        yield built
        delete_all_sessions(built)
    finally:
        server.stop()
        leftovers = live_desktops(server.data_dir)
        kill_all(leftovers)
    assert leftovers == [], f"desktops left running: {leftovers}"


def delete_all_sessions(world: World, timeout: float = 60) -> None:
    """Delete every session of both studios and wait until all are DELETED."""
    op = world.operator.client()
    deadline = time.monotonic() + timeout
    for studio in (world.studio, world.foreign):
        while True:
            sessions = _all_sessions(op, studio.studio_id)
            pending = [s for s in sessions if s["state"] != "DELETED"]
            if not pending:
                break
            for session in pending:
                if session["state"] not in (
                    "DELETE_IN_PROGRESS",
                    "CREATE_IN_PROGRESS",
                    "START_IN_PROGRESS",
                    "STOP_IN_PROGRESS",
                ):
                    op.delete_streaming_session(
                        studioId=studio.studio_id, sessionId=session["sessionId"]
                    )
            if time.monotonic() > deadline:
                raise AssertionError(f"sessions not deleted in time: {pending}")
            time.sleep(0.3)


def _all_sessions(client: Any, studio_id: str) -> list[dict[str, Any]]:
    paginator = client.get_paginator("list_streaming_sessions")
    return [s for page in paginator.paginate(studioId=studio_id) for s in page["sessions"]]


@contextlib.contextmanager
def running_world(
    data_dir: pathlib.Path, env: dict[str, str], clock: ControlledClock | None = None
) -> Iterator[World]:
    """A server with extra settings (``env``), and a clock the test moves if given, and a world
    built on it; at the end every session is deleted, the server stopped, and no desktop may be
    left running."""
    srv = Server(data_dir, env=env, clock=clock)
    srv.start()
    try:
        built = build(srv)
        yield built
        delete_all_sessions(built)
    finally:
        srv.stop()
        leftovers = live_desktops(data_dir)
        kill_all(leftovers)
    assert leftovers == [], f"desktops left running: {leftovers}"
