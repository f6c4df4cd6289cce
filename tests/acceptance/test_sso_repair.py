"""StartStudioSSOConfigurationRepair: a studio's memberships checked against the identity store
after a user left it (``opennimble users delete``)."""

from __future__ import annotations

import subprocess
from typing import Any

import pytest

from tests.support import expect
from tests.support.server import FAST, cli
from tests.support.world import World, create_studio


def member_ids(client: Any, studio_id: str, launch_profile_id: str) -> set[str]:
    listed = client.list_launch_profile_members(
        studioId=studio_id, launchProfileId=launch_profile_id
    )
    return {m["principalId"] for m in listed["members"]}


def test_a_repair_removes_the_memberships_of_users_who_left(world: World) -> None:
    admin_user = world.server.user("repairadmin")
    leaver = world.server.user("leaver")
    studio = create_studio(world.operator, admin_user, [world.artist, leaver])
    sid = studio.studio_id
    admin = admin_user.client()
    expect.error(  # nothing is broken yet: nothing to repair, as on AWS
        lambda: admin.start_studio_sso_configuration_repair(studioId=sid),
        "ValidationException",
        "valid",
    )
    leaver_client = leaver.client()
    leaver_client.get_studio(studioId=sid)

    gone = cli(world.server.data_dir, "users", "delete", leaver.user_id)
    assert gone["userId"] == leaver.user_id and gone["accessKeysDeleted"] == 1
    expect.error(  # the key stops working at once
        lambda: leaver_client.get_studio(studioId=sid),
        "UnrecognizedClientException",
        "identity store",
    )
    assert leaver.user_id in member_ids(admin, sid, studio.launch_profile_id)
    before = admin.get_studio(studioId=sid)["studio"]

    expect.error(
        lambda: world.artist.client().start_studio_sso_configuration_repair(studioId=sid),
        "AccessDeniedException",
        world.artist.user_id,
    )
    repairing = admin.start_studio_sso_configuration_repair(studioId=sid)["studio"]
    assert repairing["state"] == "UPDATE_IN_PROGRESS"
    assert repairing["statusCode"] == "AWS_SSO_CONFIGURATION_REPAIR_IN_PROGRESS"
    assert leaver.user_id in repairing["statusMessage"]
    admin.get_waiter("studio_ready").wait(studioId=sid, WaiterConfig=FAST)
    repaired = admin.get_studio(studioId=sid)["studio"]
    assert repaired["statusCode"] == "AWS_SSO_CONFIGURATION_REPAIRED"
    assert "removed 1 memberships" in repaired["statusMessage"]
    assert repaired["ssoClientId"] != before["ssoClientId"]
    assert member_ids(admin, sid, studio.launch_profile_id) == {world.artist.user_id}
    expect.error(
        lambda: admin.start_studio_sso_configuration_repair(studioId=sid),
        "ValidationException",
        "nothing to repair",
    )
    operator = world.operator.client()
    operator.delete_launch_profile(studioId=sid, launchProfileId=studio.launch_profile_id)
    operator.get_waiter("launch_profile_deleted").wait(
        studioId=sid, launchProfileId=studio.launch_profile_id, WaiterConfig=FAST
    )


def test_deleting_an_unknown_user_fails_clearly(world: World) -> None:
    with pytest.raises(subprocess.CalledProcessError) as info:
        cli(world.server.data_dir, "users", "delete", "no-such-user")
    assert "no user" in info.value.stderr
