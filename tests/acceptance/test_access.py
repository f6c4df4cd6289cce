"""Personas over the real API: what outsiders, artists and studio administrators may not do."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from botocore.exceptions import ClientError

from tests.support.world import ROLE, World


def denied(client: Any, call: Callable[[], Any], *words: str) -> str:
    """Assert ``call`` raises AccessDeniedException (403) whose message has ``words``."""
    with pytest.raises(client.exceptions.AccessDeniedException) as info:
        call()
    response = info.value.response
    assert response["Error"]["Code"] == "AccessDeniedException"
    assert response["ResponseMetadata"]["HTTPStatusCode"] == 403
    message = str(response["Error"]["Message"])
    for word in words:
        assert word in message, f"{word!r} not in {message!r}"
    return message


def all_studio_ids(client: Any) -> list[str]:
    pages = client.get_paginator("list_studios").paginate()
    return [s["studioId"] for page in pages for s in page["studios"]]


def studio_member_ids(client: Any, studio_id: str) -> list[str]:
    pages = client.get_paginator("list_studio_members").paginate(studioId=studio_id)
    return [m["principalId"] for page in pages for m in page["members"]]


def stream_configuration(world: World) -> dict[str, Any]:
    return {
        "clipboardMode": "ENABLED",
        "ec2InstanceTypes": ["g4dn.xlarge"],
        "streamingImageIds": [world.studio.image_id],
    }


# ---- an outsider -------------------------------------------------------------------------------


def test_an_outsider_cannot_use_the_studio(world: World) -> None:
    outsider = world.outsider.client()
    sid = world.studio.studio_id
    who = world.outsider.user_id
    denied(outsider, lambda: outsider.get_studio(studioId=sid), who, sid)
    denied(outsider, lambda: outsider.list_streaming_sessions(studioId=sid), who, sid)
    denied(
        outsider,
        lambda: outsider.create_streaming_session(
            studioId=sid, launchProfileId=world.studio.launch_profile_id
        ),
        who,
    )
    denied(
        outsider,
        lambda: outsider.get_launch_profile(
            studioId=sid, launchProfileId=world.studio.launch_profile_id
        ),
        who,
    )
    assert outsider.list_studios()["studios"] == []


# ---- an artist (launch profile USER) -------------------------------------------------------------


def test_an_artist_cannot_create_a_studio(world: World) -> None:
    artist = world.artist.client()
    message = denied(
        artist,
        lambda: artist.create_studio(
            studioName="artiststudio", displayName="mine", adminRoleArn=ROLE, userRoleArn=ROLE
        ),
        world.artist.user_id,
    )
    assert "operator" in message
    assert "artiststudio" not in [
        s["studioName"] for s in world.operator.client().list_studios()["studios"]
    ]


def test_an_artist_cannot_administer_the_studio(world: World) -> None:
    artist = world.artist.client()
    sid = world.studio.studio_id
    lp = world.studio.launch_profile_id
    me = world.artist.user_id
    store = world.artist.identity_store_id
    calls: list[Callable[[], Any]] = [
        lambda: artist.put_studio_members(
            studioId=sid,
            identityStoreId=store,
            members=[{"principalId": me, "persona": "ADMINISTRATOR"}],
        ),
        lambda: artist.put_launch_profile_members(
            studioId=sid,
            launchProfileId=lp,
            identityStoreId=store,
            members=[{"principalId": world.outsider.user_id, "persona": "USER"}],
        ),
        lambda: artist.create_launch_profile(
            studioId=sid,
            name="mine",
            ec2SubnetIds=[],
            launchProfileProtocolVersions=["2021-03-31"],
            studioComponentIds=[world.studio.component_id],
            streamConfiguration=stream_configuration(world),
        ),
        lambda: artist.create_streaming_image(studioId=sid, name="mine", ec2ImageId="ami-0mine"),
        lambda: artist.create_studio_component(studioId=sid, name="mine", type="CUSTOM"),
    ]
    for call in calls:
        message = denied(artist, call, me)
        assert "ADMINISTRATOR" in message
    # nothing changed: the artist is still no studio member, the outsider no profile member
    admin = world.studio.admin.client()
    assert me not in studio_member_ids(admin, sid)
    profile_members = [
        m["principalId"]
        for page in admin.get_paginator("list_launch_profile_members").paginate(
            studioId=sid, launchProfileId=lp
        )
        for m in page["members"]
    ]
    assert world.outsider.user_id not in profile_members


def test_an_artist_lists_only_the_studios_they_belong_to(world: World) -> None:
    assert all_studio_ids(world.artist.client()) == [world.studio.studio_id]
    assert all_studio_ids(world.studio.admin.client()) == [world.studio.studio_id]
    assert all_studio_ids(world.foreign.admin.client()) == [world.foreign.studio_id]


def test_the_operator_sees_every_studio(world: World) -> None:
    seen = all_studio_ids(world.operator.client())
    assert {world.studio.studio_id, world.foreign.studio_id} <= set(seen)
    assert len(seen) == len(set(seen))


# ---- a studio administrator in another studio ----------------------------------------------------


def test_an_administrator_cannot_act_in_a_foreign_studio(world: World) -> None:
    admin = world.studio.admin.client()
    fid = world.foreign.studio_id
    who = world.studio.admin.user_id
    denied(admin, lambda: admin.get_studio(studioId=fid), who, fid)
    denied(admin, lambda: admin.list_streaming_sessions(studioId=fid), who)
    denied(admin, lambda: admin.list_launch_profiles(studioId=fid), who)
    denied(
        admin,
        lambda: admin.create_streaming_session(
            studioId=fid, launchProfileId=world.foreign.launch_profile_id
        ),
        who,
    )
    denied(
        admin,
        lambda: admin.put_studio_members(
            studioId=fid,
            identityStoreId=world.studio.admin.identity_store_id,
            members=[{"principalId": who, "persona": "ADMINISTRATOR"}],
        ),
        who,
    )


def test_a_session_is_never_reachable_through_another_studio(world: World) -> None:
    session = world.artist.client().create_streaming_session(
        studioId=world.studio.studio_id, launchProfileId=world.studio.launch_profile_id
    )["session"]  # deleted by the world's teardown
    session_id = session["sessionId"]
    fid = world.foreign.studio_id
    for user in (world.studio.admin, world.foreign.admin, world.operator):
        client = user.client()
        for call in (
            lambda c=client: c.get_streaming_session(studioId=fid, sessionId=session_id),
            lambda c=client: c.delete_streaming_session(studioId=fid, sessionId=session_id),
            lambda c=client: c.create_streaming_session_stream(studioId=fid, sessionId=session_id),
        ):
            with pytest.raises(ClientError) as info:
                call()
            code = info.value.response["Error"]["Code"]
            assert code in ("AccessDeniedException", "ResourceNotFoundException"), (
                user.name,
                info.value.response,
            )
            assert "sessionId" not in info.value.response
    # the session itself is untouched
    got = world.artist.client().get_streaming_session(
        studioId=world.studio.studio_id, sessionId=session_id
    )["session"]
    assert got["state"] in ("CREATE_IN_PROGRESS", "READY")


# ---- membership requests naming what does not exist --------------------------------------------


def test_put_studio_members_checks_the_identity_store_and_the_users(world: World) -> None:
    admin = world.studio.admin.client()
    sid = world.studio.studio_id
    store = world.studio.admin.identity_store_id
    cases = [
        (
            store[::-1] + "x",
            world.artist2.user_id,
            "identityStoreId",
        ),
        (store, "no-such-user", "members.1.member.principalId"),
    ]
    for identity_store_id, principal, field in cases:
        with pytest.raises(admin.exceptions.ValidationException) as info:
            admin.put_studio_members(
                studioId=sid,
                identityStoreId=identity_store_id,
                members=[{"principalId": principal, "persona": "ADMINISTRATOR"}],
            )
        response = info.value.response
        assert response["ResponseMetadata"]["HTTPStatusCode"] == 400
        assert field in response["Error"]["Message"]
    with pytest.raises(admin.exceptions.ValidationException) as info:
        admin.put_launch_profile_members(
            studioId=sid,
            launchProfileId=world.studio.launch_profile_id,
            identityStoreId=store,
            members=[{"principalId": "no-such-user", "persona": "USER"}],
        )
    assert "members.1.member.principalId" in info.value.response["Error"]["Message"]
    # none of the refused requests added anybody
    principals = studio_member_ids(admin, sid)
    assert world.artist2.user_id not in principals
    assert "no-such-user" not in principals


# ---- one artist and another's session -----------------------------------------------------------


def test_an_artist_cannot_act_on_another_artists_session(world: World) -> None:
    sid = world.studio.studio_id
    artist = world.artist.client()
    session_id = artist.create_streaming_session(
        studioId=sid, launchProfileId=world.studio.launch_profile_id
    )["session"]["sessionId"]  # deleted by the world's teardown
    other = world.artist2.client()
    who = world.artist2.user_id
    denied(other, lambda: other.get_streaming_session(studioId=sid, sessionId=session_id), who)
    denied(other, lambda: other.delete_streaming_session(studioId=sid, sessionId=session_id), who)
    denied(
        other,
        lambda: other.create_streaming_session_stream(studioId=sid, sessionId=session_id),
        who,
    )
    denied(
        other,
        lambda: other.list_streaming_sessions(studioId=sid, ownedBy=world.artist.user_id),
        who,
    )
    listed = [
        s["sessionId"]
        for page in other.get_paginator("list_streaming_sessions").paginate(studioId=sid)
        for s in page["sessions"]
    ]
    assert session_id not in listed
    # nor create a session for someone else: only the operator or an ADMINISTRATOR may
    denied(
        artist,
        lambda: artist.create_streaming_session(
            studioId=sid,
            launchProfileId=world.studio.launch_profile_id,
            ownedBy=world.artist2.user_id,
        ),
        world.artist.user_id,
        world.artist2.user_id,
    )


def test_an_administrator_cannot_create_a_studio(world: World) -> None:
    admin = world.studio.admin.client()
    message = denied(
        admin,
        lambda: admin.create_studio(
            studioName="adminstudio", displayName="mine", adminRoleArn=ROLE, userRoleArn=ROLE
        ),
        world.studio.admin.user_id,
    )
    assert "operator" in message


# ---- references across studios ----------------------------------------------------------------


def test_resources_of_another_studio_cannot_be_referenced(world: World) -> None:
    admin = world.studio.admin.client()
    sid = world.studio.studio_id
    with pytest.raises(admin.exceptions.ResourceNotFoundException) as info:
        admin.create_streaming_session(
            studioId=sid, launchProfileId=world.foreign.launch_profile_id
        )
    assert world.foreign.launch_profile_id in info.value.response["Error"]["Message"]
    with pytest.raises(admin.exceptions.ResourceNotFoundException):
        admin.get_streaming_image(studioId=sid, streamingImageId=world.foreign.image_id)
    with pytest.raises(admin.exceptions.ValidationException) as info:
        admin.create_streaming_session(
            studioId=sid,
            launchProfileId=world.studio.launch_profile_id,
            streamingImageId=world.foreign.image_id,
        )
    assert "streamingImageId" in info.value.response["Error"]["Message"]
    with pytest.raises(admin.exceptions.ValidationException) as info:
        admin.create_launch_profile(
            studioId=sid,
            name="borrowed",
            ec2SubnetIds=[],
            launchProfileProtocolVersions=["2021-03-31"],
            studioComponentIds=[world.foreign.component_id],
            streamConfiguration={
                "clipboardMode": "ENABLED",
                "ec2InstanceTypes": ["g4dn.xlarge"],
                "streamingImageIds": [world.foreign.image_id],
            },
        )
    message = info.value.response["Error"]["Message"]
    assert "studioComponentIds.1.member" in message
    assert "streamConfiguration.streamingImageIds.1.member" in message
    assert message.startswith("2 validation errors detected"), message
