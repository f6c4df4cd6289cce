"""What a studio member may read of the studio's setup: the components (scripts, licence tokens
in `scriptParameters`) and the member lists of the launch profiles they use, nothing of the
others. Studio administrators read everything."""

from __future__ import annotations

from typing import Any

import pytest

from tests.support import expect
from tests.support.server import FAST, REGION
from tests.support.world import World

TOKEN = "licence-token-7f3a"


@pytest.fixture(scope="module")
def licensed(world: World) -> dict[str, str]:
    """A component with a licence token, used only by a second launch profile whose only member
    is artist2 (the artist is a member of the studio's first launch profile only)."""
    admin = world.studio.admin.client()
    sid = world.studio.studio_id
    component = admin.create_studio_component(
        studioId=sid,
        name="licences",
        type="CUSTOM",
        scriptParameters=[{"key": "LICENSE_TOKEN", "value": TOKEN}],
        initializationScripts=[
            {
                "launchProfileProtocolVersion": "2021-03-31",
                "platform": "LINUX",
                "runContext": "USER_INITIALIZATION",
                "script": f"echo {TOKEN} > ~/.licence",
            }
        ],
    )["studioComponent"]["studioComponentId"]
    profile = admin.create_launch_profile(
        studioId=sid,
        name="licensed",
        ec2SubnetIds=[],
        launchProfileProtocolVersions=["2021-03-31"],
        studioComponentIds=[component],
        streamConfiguration={
            "clipboardMode": "ENABLED",
            "ec2InstanceTypes": ["g4dn.xlarge"],
            "streamingImageIds": [world.studio.image_id],
        },
    )["launchProfile"]["launchProfileId"]
    admin.get_waiter("launch_profile_ready").wait(
        studioId=sid, launchProfileId=profile, WaiterConfig=FAST
    )
    admin.put_launch_profile_members(
        studioId=sid,
        launchProfileId=profile,
        identityStoreId=world.artist2.identity_store_id,
        members=[{"principalId": world.artist2.user_id, "persona": "USER"}],
    )
    return {"component": component, "profile": profile}


def component_ids(client: Any, studio_id: str, **filters: Any) -> set[str]:
    pages = client.get_paginator("list_studio_components").paginate(studioId=studio_id, **filters)
    return {c["studioComponentId"] for page in pages for c in page["studioComponents"]}


def test_a_component_is_read_only_by_admins_and_members_of_profiles_that_use_it(
    world: World, licensed: dict[str, str]
) -> None:
    sid = world.studio.studio_id
    ids = {"studioId": sid, "studioComponentId": licensed["component"]}
    artist = world.artist.client()
    expect.error(
        lambda: artist.get_studio_component(**ids),
        "AccessDeniedException",
        world.artist.user_id,
        licensed["component"],
    )
    arn = f"arn:aws:nimble:{REGION}:000000000000:studio-component/{licensed['component']}"
    expect.error(
        lambda: artist.list_tags_for_resource(resourceArn=arn),
        "AccessDeniedException",
        world.artist.user_id,
    )
    # the artist still reads the component its own launch profile uses
    own = artist.get_studio_component(studioId=sid, studioComponentId=world.studio.component_id)
    assert own["studioComponent"]["studioComponentId"] == world.studio.component_id
    for client in (world.artist2.client(), world.studio.admin.client()):
        seen = client.get_studio_component(**ids)["studioComponent"]
        assert seen["scriptParameters"] == [{"key": "LICENSE_TOKEN", "value": TOKEN}]
        client.list_tags_for_resource(resourceArn=arn)


def test_a_members_component_listing_holds_only_what_its_profiles_use(
    world: World, licensed: dict[str, str]
) -> None:
    sid = world.studio.studio_id
    artist = world.artist.client()
    assert component_ids(artist, sid) == {world.studio.component_id}
    assert component_ids(artist, sid, types=["CUSTOM"]) == set()
    assert component_ids(artist, sid, types=["SHARED_FILE_SYSTEM"]) == {world.studio.component_id}
    both = {world.studio.component_id, licensed["component"]}
    assert component_ids(world.artist2.client(), sid) == both
    assert both <= component_ids(world.studio.admin.client(), sid)
    assert licensed["component"] in component_ids(
        world.studio.admin.client(), sid, types=["CUSTOM"]
    )


def test_a_member_sees_nothing_of_another_launch_profile(
    world: World, licensed: dict[str, str]
) -> None:
    artist = world.artist.client()
    who = world.artist.user_id
    lp = {"studioId": world.studio.studio_id, "launchProfileId": licensed["profile"]}
    calls = [
        lambda: artist.list_launch_profile_members(**lp),
        lambda: artist.get_launch_profile_member(**lp, principalId=world.artist2.user_id),
        lambda: artist.get_launch_profile_details(**lp),
        lambda: artist.get_launch_profile_initialization(
            **lp,
            launchProfileProtocolVersions=["2021-03-31"],
            launchPurpose="WORK",
            platform="LINUX",
        ),
    ]
    for call in calls:
        refused = expect.error(call, "AccessDeniedException", who, licensed["profile"])
        assert TOKEN not in str(refused)
    # its own launch profile's members it may list, and an administrator every profile's
    own = {"studioId": world.studio.studio_id, "launchProfileId": world.studio.launch_profile_id}
    listed = artist.list_launch_profile_members(**own)["members"]
    assert who in {m["principalId"] for m in listed}
    admin = world.studio.admin.client()
    listed = admin.list_launch_profile_members(**lp)["members"]
    assert {m["principalId"] for m in listed} == {world.artist2.user_id}
