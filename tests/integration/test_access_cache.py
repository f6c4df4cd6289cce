"""What a server remembers of users, access keys, memberships and studios holds only until they
change: a change made through one server, or with the CLI, holds on every server for the very
next request (no time window). On PostgreSQL two API servers share the database and a worker
reconciles; on SQLite one server and the CLI (another process) share it."""

from __future__ import annotations

import pathlib
from collections.abc import Iterator
from typing import Any

import pytest

from opennimble.store import database, sessions
from tests.support import databases, expect, rows
from tests.support import world as worlds
from tests.support.cluster import Cluster
from tests.support.server import FAST, Server, User, cli


@pytest.fixture
def servers(tmp_path: pathlib.Path) -> Iterator[list[Server]]:
    if databases.postgresql():
        cluster = Cluster.make(tmp_path, servers=2, workers=1)
        cluster.start()
        try:
            yield cluster.servers
        finally:
            cluster.stop()
    else:
        srv = Server(tmp_path / "data")
        srv.start()
        try:
            yield [srv]
        finally:
            srv.stop()


def as_on(user: User, server: Server) -> Any:
    """``user``'s client of ``server`` (the user was made through another server)."""
    return User(
        user.name,
        user.user_id,
        user.identity_store_id,
        user.access_key_id,
        user.secret_access_key,
        server,
    ).client()


def test_changes_hold_on_every_server_at_once(servers: list[Server]) -> None:
    a, b = servers[0], servers[-1]
    operator, admin, artist = a.user("operator", operator=True), a.user("admin"), a.user("artist")
    studio = worlds.create_studio(operator, admin, [artist])
    sid, lp = studio.studio_id, studio.launch_profile_id
    on_a, on_b, op = as_on(artist, a), as_on(artist, b), operator.client()

    def lists(client: Any, **params: Any) -> Any:
        return client.list_streaming_sessions(studioId=sid, **params)["sessions"]

    for client in (on_a, on_b, on_b):  # both servers remember the artist's standing
        assert lists(client) == []
        assert client.get_launch_profile(studioId=sid, launchProfileId=lp)["launchProfile"]
    with pytest.raises(on_b.exceptions.AccessDeniedException):
        lists(on_b, ownedBy=admin.user_id)  # not an administrator (remembered too)

    # a membership removed through server A: refused by server B at once
    op.delete_launch_profile_member(studioId=sid, launchProfileId=lp, principalId=artist.user_id)
    expect.error(lambda: lists(on_b), "AccessDeniedException", artist.user_id)
    # ... and given back, as an ADMINISTRATOR of the studio: allowed at once
    op.put_studio_members(
        studioId=sid,
        identityStoreId=admin.identity_store_id,
        members=[{"principalId": artist.user_id, "persona": "ADMINISTRATOR"}],
    )
    assert lists(on_b, ownedBy=admin.user_id) == []

    # the user disabled with the CLI (another process): refused at once, and enabled again
    cli(a.data_dir, "users", "disable", artist.user_id, env=a.env)
    expect.error(lambda: lists(on_b), "UnrecognizedClientException", "disabled")
    cli(a.data_dir, "users", "enable", artist.user_id, env=a.env)
    assert lists(on_b) == []

    # the access key revoked: refused at once
    cli(a.data_dir, "keys", "delete", artist.access_key_id, env=a.env)
    expect.error(lambda: lists(on_b), "UnrecognizedClientException", artist.user_id)

    # the studio changed through server A: server B shows the change at once
    on_b_admin = as_on(admin, b)
    assert on_b_admin.get_studio(studioId=sid)["studio"]["state"] == "READY"
    admin.client().update_studio(studioId=sid, displayName="renamed")
    studio_on_b = on_b_admin.get_studio(studioId=sid)["studio"]
    assert studio_on_b["displayName"] == "renamed"


def test_a_get_holds_access_changes_on_every_server_at_once(servers: list[Server]) -> None:
    """A GetStreamingSession reads the access generation with the session's row (one
    statement): what its server remembers still gives way to a change at once, and a disabled
    caller is refused as such whether the session exists or not."""
    a, b = servers[0], servers[-1]
    operator, admin, artist = a.user("operator", operator=True), a.user("admin"), a.user("artist")
    studio = worlds.create_studio(operator, admin, [artist])
    sid, lp = studio.studio_id, studio.launch_profile_id
    row = rows.session(  # a DELETED session: no desktop, nothing for the reconciler to do
        studio_id=sid,
        launch_profile_id=lp,
        owned_by=artist.user_id,
        created_by=artist.user_id,
        state="DELETED",
        status_code="STREAMING_SESSION_DELETED",
    )
    db = database.Database(databases.url_for(a.data_dir))
    try:
        with db.write() as conn:
            sessions.insert(conn, row)
    finally:
        db.dispose()
    on_b, op = as_on(artist, b), operator.client()

    def get(session_id: str = row["session_id"]) -> Any:
        return on_b.get_streaming_session(studioId=sid, sessionId=session_id)["session"]

    for _ in range(2):  # server B remembers the artist's standing
        assert get()["ownedBy"] == artist.user_id
    op.delete_launch_profile_member(studioId=sid, launchProfileId=lp, principalId=artist.user_id)
    expect.error(get, "AccessDeniedException", artist.user_id)
    op.put_launch_profile_members(
        studioId=sid,
        launchProfileId=lp,
        identityStoreId=artist.identity_store_id,
        members=[{"principalId": artist.user_id, "persona": "USER"}],
    )
    assert get()["state"] == "DELETED"

    cli(a.data_dir, "users", "disable", artist.user_id, env=a.env)
    expect.error(get, "UnrecognizedClientException", "disabled")
    expect.error(lambda: get("no-such-session"), "UnrecognizedClientException", "disabled")
    cli(a.data_dir, "users", "enable", artist.user_id, env=a.env)
    expect.error(lambda: get("no-such-session"), "ResourceNotFoundException", "no-such-session")


def test_launch_profile_changes_hold_for_creates_on_every_server_at_once(
    servers: list[Server],
) -> None:
    """A create reads the launch profile, its image and the EULA catalogue from what its server
    remembers: a change of the launch profile through server A holds for server B's next
    create (each attempt here is refused, so that no desktop is started)."""
    a, b = servers[0], servers[-1]
    operator, admin, artist = a.user("operator", operator=True), a.user("admin"), a.user("artist")
    studio = worlds.create_studio(operator, admin, [artist])
    sid, lp = studio.studio_id, studio.launch_profile_id
    on_b, ad = as_on(artist, b), admin.client()

    def create() -> None:
        on_b.create_streaming_session(
            studioId=sid,
            launchProfileId=lp,
            ec2InstanceType="g5.xlarge",
            streamingImageId=studio.other_image_id,
        )

    for _ in range(2):  # server B remembers the launch profile: neither value is allowed
        expect.error(create, "ValidationException", "ec2InstanceType", "streamingImageId")

    # the instance type allowed through server A: server B refuses only the image, at once
    ad.update_launch_profile(
        studioId=sid,
        launchProfileId=lp,
        streamConfiguration={
            "clipboardMode": "ENABLED",
            "ec2InstanceTypes": ["g4dn.xlarge", "g5.xlarge"],
            "streamingImageIds": [studio.image_id],
        },
    )
    ad.get_waiter("launch_profile_ready").wait(studioId=sid, launchProfileId=lp, WaiterConfig=FAST)
    response = expect.error(create, "ValidationException", "streamingImageId")
    assert "ec2InstanceType'" not in response["Error"]["Message"]

    # the launch profile deleted through server A: server B no longer finds it, at once
    ad.delete_launch_profile(studioId=sid, launchProfileId=lp)
    with pytest.raises(on_b.exceptions.ClientError) as refused:
        create()
    assert refused.value.response["Error"]["Code"] in (
        "ConflictException",  # DELETE_IN_PROGRESS
        "ResourceNotFoundException",  # DELETED
    )
