"""GetLaunchProfileDetails and GetLaunchProfileInitialization answer what a launch profile
really provides: its images, its components, their scripts, security groups and directory."""

from __future__ import annotations

from typing import Any

import pytest

from tests.support import expect
from tests.support.server import FAST
from tests.support.world import World

ROLE = "arn:aws:iam::000000000000:role/init"
SCRIPTS = [
    {
        "launchProfileProtocolVersion": "2021-03-31",
        "platform": "LINUX",
        "runContext": "SYSTEM_INITIALIZATION",
        "script": "mount /projects",
    },
    {
        "launchProfileProtocolVersion": "2021-03-31",
        "platform": "LINUX",
        "runContext": "USER_INITIALIZATION",
        "script": "ln -s /projects ~/projects",
    },
    {
        "launchProfileProtocolVersion": "2021-03-31",
        "platform": "WINDOWS",
        "runContext": "SYSTEM_INITIALIZATION",
        "script": "net use P: \\\\server\\projects",
    },
]
DIRECTORY = {
    "directoryId": "d-1234567890",
    "organizationalUnitDistinguishedName": "OU=Workstations,DC=studio,DC=example",
    "computerAttributes": [{"name": "location", "value": "paris"}],
}


@pytest.fixture(scope="module")
def profile(world: World) -> dict[str, Any]:
    """A launch profile with a storage component (scripts, security groups) and a directory."""
    admin = world.studio.admin.client()
    sid = world.studio.studio_id
    storage = admin.create_studio_component(
        studioId=sid,
        name="projects",
        type="SHARED_FILE_SYSTEM",
        description="the projects share",
        initializationScripts=SCRIPTS,
        ec2SecurityGroupIds=["sg-0storage", "sg-0shared"],
        runtimeRoleArn=ROLE,
    )["studioComponent"]
    directory = admin.create_studio_component(
        studioId=sid,
        name="directory",
        type="ACTIVE_DIRECTORY",
        configuration={"activeDirectoryConfiguration": DIRECTORY},
        ec2SecurityGroupIds=["sg-0shared", "sg-0directory"],
    )["studioComponent"]
    for component in (storage, directory):
        admin.get_waiter("studio_component_ready").wait(
            studioId=sid, studioComponentId=component["studioComponentId"], WaiterConfig=FAST
        )
    made = admin.create_launch_profile(
        studioId=sid,
        name="initialized",
        ec2SubnetIds=[],
        launchProfileProtocolVersions=["2021-03-31"],
        studioComponentIds=[storage["studioComponentId"], directory["studioComponentId"]],
        streamConfiguration={
            "clipboardMode": "DISABLED",
            "ec2InstanceTypes": ["g4dn.xlarge"],
            "streamingImageIds": [world.studio.image_id, world.studio.other_image_id],
        },
    )["launchProfile"]
    lp = {"studioId": sid, "launchProfileId": made["launchProfileId"]}
    admin.get_waiter("launch_profile_ready").wait(**lp, WaiterConfig=FAST)
    admin.put_launch_profile_members(
        **lp,
        identityStoreId=world.artist.identity_store_id,
        members=[{"principalId": world.artist.user_id, "persona": "USER"}],
    )
    return {"lp": lp, "storage": storage, "directory": directory}


def init_args(profile: dict[str, Any], **changes: Any) -> dict[str, Any]:
    return {
        **profile["lp"],
        "launchProfileProtocolVersions": ["2021-03-31"],
        "launchPurpose": "WORKSTATION",
        "platform": "LINUX",
        **changes,
    }


def test_details_list_the_images_and_components(world: World, profile: dict[str, Any]) -> None:
    artist = world.artist.client()
    details = artist.get_launch_profile_details(**profile["lp"])
    assert details["launchProfile"]["launchProfileId"] == profile["lp"]["launchProfileId"]
    images = [(i["streamingImageId"], i["name"]) for i in details["streamingImages"]]
    assert images == [(world.studio.image_id, "image 0"), (world.studio.other_image_id, "image 1")]
    summaries = details["studioComponentSummaries"]
    assert [(s["name"], s["type"]) for s in summaries] == [
        ("projects", "SHARED_FILE_SYSTEM"),
        ("directory", "ACTIVE_DIRECTORY"),
    ]
    assert summaries[0]["description"] == "the projects share"
    assert summaries[0]["createdBy"] == world.studio.admin.user_id


def test_initialization_gives_the_scripts_for_the_platform(
    world: World, profile: dict[str, Any]
) -> None:
    artist = world.artist.client()
    init = artist.get_launch_profile_initialization(**init_args(profile))
    init = init["launchProfileInitialization"]
    storage_id = profile["storage"]["studioComponentId"]
    assert init["launchProfileId"] == profile["lp"]["launchProfileId"]
    assert (init["name"], init["platform"], init["launchPurpose"]) == (
        "initialized",
        "LINUX",
        "WORKSTATION",
    )
    assert init["launchProfileProtocolVersion"] == "2021-03-31"
    assert init["systemInitializationScripts"] == [
        {
            "studioComponentId": storage_id,
            "studioComponentName": "projects",
            "script": "mount /projects",
            "runtimeRoleArn": ROLE,
        }
    ]
    assert [s["script"] for s in init["userInitializationScripts"]] == [
        "ln -s /projects ~/projects"
    ]
    assert init["ec2SecurityGroupIds"] == ["sg-0storage", "sg-0shared", "sg-0directory"]
    directory = init["activeDirectory"]
    assert directory["directoryId"] == DIRECTORY["directoryId"]
    assert (
        directory["organizationalUnitDistinguishedName"]
        == (DIRECTORY["organizationalUnitDistinguishedName"])
    )
    assert directory["computerAttributes"] == DIRECTORY["computerAttributes"]
    assert directory["studioComponentName"] == "directory"
    assert "directoryName" not in directory and "dnsIpAddresses" not in directory


def test_initialization_requests_are_checked(world: World, profile: dict[str, Any]) -> None:
    artist = world.artist.client()
    response = expect.error(
        lambda: artist.get_launch_profile_initialization(
            **init_args(
                profile,
                platform="WINDOWS",
                launchPurpose="not valid",
                launchProfileProtocolVersions=["2020-01-01"],
            )
        ),
        "ValidationException",
        "platform",
        "launchPurpose",
        "launchProfileProtocolVersions",
        "LINUX",
    )
    assert response["Error"]["Message"].startswith("3 validation errors")


def test_only_members_and_administrators_see_a_launch_profile(
    world: World, profile: dict[str, Any]
) -> None:
    for user in (world.artist2, world.outsider):
        client = user.client()
        for call in (
            lambda c=client: c.get_launch_profile_details(**profile["lp"]),
            lambda c=client: c.get_launch_profile_initialization(**init_args(profile)),
        ):
            expect.error(call, "AccessDeniedException", user.user_id)
    admin = world.studio.admin.client()
    unknown = {**profile["lp"], "launchProfileId": "AAAAAAAAAAAAAAAAAAAAAA"}
    expect.error(
        lambda: admin.get_launch_profile_details(**unknown),
        "ResourceNotFoundException",
        "AAAAAAAAAAAAAAAAAAAAAA",
    )
    expect.error(
        lambda: admin.get_launch_profile_initialization(**init_args({"lp": unknown})),
        "ResourceNotFoundException",
        "AAAAAAAAAAAAAAAAAAAAAA",
    )


def test_a_deleted_launch_profile_initializes_nothing(
    world: World, profile: dict[str, Any]
) -> None:
    admin = world.studio.admin.client()
    admin.delete_launch_profile(**profile["lp"])
    admin.get_waiter("launch_profile_deleted").wait(**profile["lp"], WaiterConfig=FAST)
    for call in (
        lambda: admin.get_launch_profile_initialization(**init_args(profile)),
        lambda: admin.get_launch_profile_details(**profile["lp"]),
    ):
        expect.error(call, "ResourceNotFoundException", profile["lp"]["launchProfileId"])
    # its components are free to go now
    component = {"studioId": world.studio.studio_id}
    component["studioComponentId"] = profile["directory"]["studioComponentId"]
    admin.delete_studio_component(**component)
    admin.get_waiter("studio_component_deleted").wait(**component, WaiterConfig=FAST)
