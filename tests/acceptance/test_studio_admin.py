"""Running a studio through the API: updates and deletes of studios, launch profiles, streaming
images and studio components with the model's states and waiters, the dependency rules that
refuse a delete, and changes of memberships; each with its permissions and errors."""

from __future__ import annotations

from typing import Any

from tests.support import expect
from tests.support.server import FAST, REGION, User
from tests.support.world import ROLE, Studio, World, create_studio

UNKNOWN = "AAAAAAAAAAAAAAAAAAAAAA"


def stream_configuration(image_id: str) -> dict[str, Any]:
    return {
        "clipboardMode": "ENABLED",
        "ec2InstanceTypes": ["g4dn.xlarge"],
        "streamingImageIds": [image_id],
    }


def new_launch_profile(admin: Any, studio: Studio, **extra: Any) -> dict[str, Any]:
    profile = admin.create_launch_profile(
        studioId=studio.studio_id,
        name="extra",
        ec2SubnetIds=[],
        launchProfileProtocolVersions=["2021-03-31"],
        studioComponentIds=[studio.component_id],
        streamConfiguration=stream_configuration(studio.image_id),
        **extra,
    )["launchProfile"]
    admin.get_waiter("launch_profile_ready").wait(
        studioId=studio.studio_id, launchProfileId=profile["launchProfileId"], WaiterConfig=FAST
    )
    return dict(profile)


# ---- studios -----------------------------------------------------------------------------------


def test_an_administrator_updates_the_studio(world: World) -> None:
    admin = world.studio.admin.client()
    sid = world.studio.studio_id
    updated = admin.update_studio(studioId=sid, displayName="Renamed", userRoleArn=ROLE + "2")
    studio = updated["studio"]
    assert studio["state"] == "UPDATE_IN_PROGRESS"
    assert studio["statusCode"] == "STUDIO_UPDATE_IN_PROGRESS"
    admin.get_waiter("studio_ready").wait(studioId=sid, WaiterConfig=FAST)
    now = admin.get_studio(studioId=sid)["studio"]
    assert (now["displayName"], now["userRoleArn"]) == ("Renamed", ROLE + "2")
    assert now["statusCode"] == "STUDIO_UPDATED"
    assert now["updatedAt"] > now["createdAt"]


def test_studio_updates_are_for_administrators_and_need_a_change(world: World) -> None:
    sid = world.studio.studio_id
    for user in (world.artist, world.outsider):
        client = user.client()
        expect.error(
            lambda c=client: c.update_studio(studioId=sid, displayName="mine"),
            "AccessDeniedException",
            user.user_id,
        )
    admin = world.studio.admin.client()
    response = expect.error(
        lambda: admin.update_studio(studioId=sid), "ValidationException", "displayName"
    )
    assert "displayName" in response["context"]["fields"]
    expect.error(
        lambda: admin.update_studio(studioId=f"{REGION}:stid-000000000000", displayName="x"),
        "ResourceNotFoundException",
        "stid-000000000000",
    )
    assert admin.get_studio(studioId=sid)["studio"]["displayName"] != "mine"


def test_deletes_follow_the_dependency_rules_and_the_deleted_waiters(world: World) -> None:
    """A whole studio taken down through the API, in the only order the rules allow."""
    operator = world.operator.client()
    admin_user = world.server.user("teardownadmin")
    studio = create_studio(world.operator, admin_user, [world.artist])
    sid = studio.studio_id
    admin, artist = admin_user.client(), world.artist.client()
    session_id = artist.create_streaming_session(
        studioId=sid, launchProfileId=studio.launch_profile_id
    )["session"]["sessionId"]

    refused = expect.error(
        lambda: operator.delete_studio(studioId=sid),
        "ConflictException",
        studio.launch_profile_id,
        studio.component_id,
        studio.image_id,
        studio.other_image_id,
    )
    assert refused["Error"]["Code"] == "ConflictException"
    expect.error(lambda: admin.delete_studio(studioId=sid), "AccessDeniedException", "operator")
    expect.error(
        lambda: admin.delete_studio_component(studioId=sid, studioComponentId=studio.component_id),
        "ConflictException",
        studio.launch_profile_id,
    )
    expect.error(
        lambda: admin.delete_streaming_image(studioId=sid, streamingImageId=studio.image_id),
        "ConflictException",
        studio.launch_profile_id,
        session_id,
    )
    expect.error(
        lambda: admin.delete_launch_profile(studioId=sid, launchProfileId=studio.launch_profile_id),
        "ConflictException",
        session_id,
    )
    expect.error(
        lambda: artist.delete_launch_profile(
            studioId=sid, launchProfileId=studio.launch_profile_id
        ),
        "AccessDeniedException",
        world.artist.user_id,
    )

    artist.get_waiter("streaming_session_ready").wait(
        studioId=sid, sessionId=session_id, WaiterConfig=FAST
    )
    artist.delete_streaming_session(studioId=sid, sessionId=session_id)
    artist.get_waiter("streaming_session_deleted").wait(
        studioId=sid, sessionId=session_id, WaiterConfig=FAST
    )

    lp = {"studioId": sid, "launchProfileId": studio.launch_profile_id}
    deleting = admin.delete_launch_profile(**lp)["launchProfile"]
    assert (deleting["state"], deleting["statusCode"]) == (
        "DELETE_IN_PROGRESS",
        "LAUNCH_PROFILE_DELETE_IN_PROGRESS",
    )
    admin.get_waiter("launch_profile_deleted").wait(**lp, WaiterConfig=FAST)
    gone = admin.get_launch_profile(**lp)["launchProfile"]
    assert (gone["state"], gone["statusCode"]) == ("DELETED", "LAUNCH_PROFILE_DELETED")
    assert admin.delete_launch_profile(**lp)["launchProfile"]["state"] == "DELETED"
    expect.error(
        lambda: admin.update_launch_profile(**lp, description="too late"),
        "ConflictException",
        "DELETED",
    )
    expect.error(
        lambda: artist.create_streaming_session(**lp),
        "ResourceNotFoundException",
        lp["launchProfileId"],
    )

    component = {"studioId": sid, "studioComponentId": studio.component_id}
    assert admin.delete_studio_component(**component)["studioComponent"]["state"] == (
        "DELETE_IN_PROGRESS"
    )
    admin.get_waiter("studio_component_deleted").wait(**component, WaiterConfig=FAST)
    assert admin.get_studio_component(**component)["studioComponent"]["statusCode"] == (
        "STUDIO_COMPONENT_DELETED"
    )
    for image_id in (studio.image_id, studio.other_image_id):
        image = {"studioId": sid, "streamingImageId": image_id}
        admin.delete_streaming_image(**image)
        admin.get_waiter("streaming_image_deleted").wait(**image, WaiterConfig=FAST)
        assert admin.get_streaming_image(**image)["streamingImage"]["statusCode"] == (
            "STREAMING_IMAGE_DELETED"
        )
    expect.error(
        lambda: admin.update_streaming_image(**image, name="too late"),
        "ConflictException",
        "DELETED",
    )

    deleting = operator.delete_studio(studioId=sid)["studio"]
    assert (deleting["state"], deleting["statusCode"]) == (
        "DELETE_IN_PROGRESS",
        "STUDIO_DELETE_IN_PROGRESS",
    )
    operator.get_waiter("studio_deleted").wait(studioId=sid, WaiterConfig=FAST)
    assert operator.get_studio(studioId=sid)["studio"]["statusCode"] == "STUDIO_DELETED"
    assert operator.delete_studio(studioId=sid)["studio"]["state"] == "DELETED"
    expect.error(
        lambda: operator.create_streaming_image(studioId=sid, name="x", ec2ImageId="ami-0late"),
        "ResourceNotFoundException",
        sid,
    )
    expect.error(
        lambda: operator.update_studio(studioId=sid, displayName="x"),
        "ResourceNotFoundException",
        sid,
    )


def test_a_deleted_studios_name_can_be_used_again(world: World) -> None:
    operator = world.operator.client()
    args = {"displayName": "again", "adminRoleArn": ROLE, "userRoleArn": ROLE}
    first = operator.create_studio(studioName="reusedname", **args)["studio"]["studioId"]
    operator.get_waiter("studio_ready").wait(studioId=first, WaiterConfig=FAST)
    expect.error(
        lambda: operator.create_studio(studioName="reusedname", **args),
        "ConflictException",
        "reusedname",
    )
    operator.delete_studio(studioId=first)
    operator.get_waiter("studio_deleted").wait(studioId=first, WaiterConfig=FAST)
    second = operator.create_studio(studioName="reusedname", **args)["studio"]["studioId"]
    assert second != first
    operator.get_waiter("studio_ready").wait(studioId=second, WaiterConfig=FAST)
    operator.delete_studio(studioId=second)


# ---- launch profiles, images, components ------------------------------------------------------


def test_an_administrator_updates_a_launch_profile(world: World) -> None:
    admin = world.studio.admin.client()
    sid = world.studio.studio_id
    profile = new_launch_profile(admin, world.studio)
    lp = {"studioId": sid, "launchProfileId": profile["launchProfileId"]}
    new_stream = {
        **stream_configuration(world.studio.other_image_id),
        "ec2InstanceTypes": ["g5.xlarge"],
        "maxSessionLengthInMinutes": 60,
    }
    updating = admin.update_launch_profile(
        **lp, name="renamed", description="for lighting", streamConfiguration=new_stream
    )["launchProfile"]
    assert (updating["state"], updating["statusCode"]) == (
        "UPDATE_IN_PROGRESS",
        "LAUNCH_PROFILE_UPDATE_IN_PROGRESS",
    )
    admin.get_waiter("launch_profile_ready").wait(**lp, WaiterConfig=FAST)
    now = admin.get_launch_profile(**lp)["launchProfile"]
    assert (now["name"], now["description"]) == ("renamed", "for lighting")
    assert now["statusCode"] == "LAUNCH_PROFILE_UPDATED"
    stream = now["streamConfiguration"]
    assert stream["streamingImageIds"] == [world.studio.other_image_id]
    assert (stream["ec2InstanceTypes"], stream["maxSessionLengthInMinutes"]) == (["g5.xlarge"], 60)
    assert now["studioComponentIds"] == [world.studio.component_id]  # not given: unchanged


def test_launch_profile_updates_are_checked(world: World) -> None:
    admin = world.studio.admin.client()
    lp = {"studioId": world.studio.studio_id, "launchProfileId": world.studio.launch_profile_id}
    response = expect.error(
        lambda: admin.update_launch_profile(
            **lp,
            studioComponentIds=[UNKNOWN],
            streamConfiguration=stream_configuration(UNKNOWN),
        ),
        "ValidationException",
        "studioComponentIds.1.member",
        "streamConfiguration.streamingImageIds.1.member",
        UNKNOWN,
    )
    assert response["Error"]["Message"].startswith("2 validation errors")
    expect.error(lambda: admin.update_launch_profile(**lp), "ValidationException", "Nothing")
    artist = world.artist.client()
    expect.error(
        lambda: artist.update_launch_profile(**lp, description="mine"),
        "AccessDeniedException",
        world.artist.user_id,
    )
    expect.error(
        lambda: admin.update_launch_profile(
            studioId=world.studio.studio_id, launchProfileId=UNKNOWN, description="x"
        ),
        "ResourceNotFoundException",
        UNKNOWN,
    )
    # the launch profile is unchanged and still serves sessions
    profile = admin.get_launch_profile(**lp)["launchProfile"]
    assert profile["state"] == "READY" and "description" not in profile


def test_an_administrator_updates_images_and_components(world: World) -> None:
    admin = world.studio.admin.client()
    sid = world.studio.studio_id
    image = {"studioId": sid, "streamingImageId": world.studio.other_image_id}
    updating = admin.update_streaming_image(**image, name="renamed image", description="v2")
    assert updating["streamingImage"]["statusCode"] == "STREAMING_IMAGE_UPDATE_IN_PROGRESS"
    admin.get_waiter("streaming_image_ready").wait(**image, WaiterConfig=FAST)
    now = admin.get_streaming_image(**image)["streamingImage"]
    assert (now["name"], now["description"], now["state"]) == ("renamed image", "v2", "READY")

    component = {"studioId": sid, "studioComponentId": world.studio.component_id}
    admin.get_waiter("studio_component_ready").wait(**component, WaiterConfig=FAST)
    mount = {"sharedFileSystemConfiguration": {"fileSystemId": "fs-1", "linuxMountPoint": "/mnt"}}
    updating = admin.update_studio_component(
        **component, description="projects", configuration=mount
    )
    assert updating["studioComponent"]["state"] == "UPDATE_IN_PROGRESS"
    admin.get_waiter("studio_component_ready").wait(**component, WaiterConfig=FAST)
    now = admin.get_studio_component(**component)["studioComponent"]
    assert now["description"] == "projects"
    assert now["configuration"] == mount
    assert (now["type"], now["statusCode"]) == ("SHARED_FILE_SYSTEM", "STUDIO_COMPONENT_UPDATED")


def test_image_and_component_updates_are_checked(world: World) -> None:
    sid = world.studio.studio_id
    image = {"studioId": sid, "streamingImageId": world.studio.image_id}
    component = {"studioId": sid, "studioComponentId": world.studio.component_id}
    artist = world.artist.client()
    expect.error(
        lambda: artist.update_streaming_image(**image, name="mine"),
        "AccessDeniedException",
        world.artist.user_id,
    )
    expect.error(
        lambda: artist.update_studio_component(**component, name="mine"),
        "AccessDeniedException",
        world.artist.user_id,
    )
    expect.error(
        lambda: artist.delete_studio_component(**component),
        "AccessDeniedException",
        world.artist.user_id,
    )
    expect.error(
        lambda: artist.delete_streaming_image(**image),
        "AccessDeniedException",
        world.artist.user_id,
    )
    admin = world.studio.admin.client(validate=False)
    expect.error(lambda: admin.update_streaming_image(**image), "ValidationException", "name")
    expect.error(
        lambda: admin.update_studio_component(**component, type="FLOPPY"),
        "ValidationException",
        "type",
    )
    expect.error(
        lambda: admin.update_streaming_image(studioId=sid, streamingImageId=UNKNOWN, name="x"),
        "ResourceNotFoundException",
        UNKNOWN,
    )
    expect.error(
        lambda: admin.delete_studio_component(studioId=sid, studioComponentId=UNKNOWN),
        "ResourceNotFoundException",
        UNKNOWN,
    )


# ---- memberships --------------------------------------------------------------------------------


def test_launch_profile_members_are_changed_and_removed(world: World) -> None:
    admin = world.studio.admin.client()
    sid = world.studio.studio_id
    profile = new_launch_profile(admin, world.studio)
    lp = {"studioId": sid, "launchProfileId": profile["launchProfileId"]}
    member: User = world.server.user("memberchange")
    world.operator.client().put_launch_profile_members(  # the operator brings them in
        **lp,
        identityStoreId=member.identity_store_id,
        members=[{"principalId": member.user_id, "persona": "USER"}],
    )
    updated = admin.update_launch_profile_member(**lp, principalId=member.user_id, persona="USER")[
        "member"
    ]
    assert (updated["principalId"], updated["persona"]) == (member.user_id, "USER")
    assert updated["identityStoreId"] == member.identity_store_id
    artist = world.artist.client()
    for call in (
        lambda: artist.update_launch_profile_member(
            **lp, principalId=member.user_id, persona="USER"
        ),
        lambda: artist.delete_launch_profile_member(**lp, principalId=member.user_id),
    ):
        expect.error(call, "AccessDeniedException", world.artist.user_id)

    mine = member.client()
    mine.get_launch_profile(**lp)  # a member may read it
    admin.delete_launch_profile_member(**lp, principalId=member.user_id)
    listed = admin.list_launch_profile_members(**lp)["members"]
    assert member.user_id not in [m["principalId"] for m in listed]
    expect.error(lambda: mine.get_launch_profile(**lp), "AccessDeniedException", member.user_id)
    for call in (
        lambda: admin.delete_launch_profile_member(**lp, principalId=member.user_id),
        lambda: admin.update_launch_profile_member(
            **lp, principalId=member.user_id, persona="USER"
        ),
    ):
        expect.error(call, "ResourceNotFoundException", member.user_id)


def test_studio_members_are_removed(world: World) -> None:
    operator = world.operator.client()
    sid = world.studio.studio_id
    helper = world.server.user("secondadmin")
    operator.put_studio_members(
        studioId=sid,
        identityStoreId=helper.identity_store_id,
        members=[{"principalId": helper.user_id, "persona": "ADMINISTRATOR"}],
    )
    client = helper.client()
    assert client.get_studio(studioId=sid)["studio"]["studioId"] == sid
    artist = world.artist.client()
    expect.error(
        lambda: artist.delete_studio_member(studioId=sid, principalId=helper.user_id),
        "AccessDeniedException",
        world.artist.user_id,
    )
    world.studio.admin.client().delete_studio_member(studioId=sid, principalId=helper.user_id)
    expect.error(
        lambda: operator.get_studio_member(studioId=sid, principalId=helper.user_id),
        "ResourceNotFoundException",
        helper.user_id,
    )
    expect.error(lambda: client.get_studio(studioId=sid), "AccessDeniedException", helper.user_id)
    expect.error(
        lambda: operator.delete_studio_member(studioId=sid, principalId=helper.user_id),
        "ResourceNotFoundException",
        helper.user_id,
    )
