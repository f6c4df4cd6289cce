"""Who may call what, for every operation of the model, through boto3.

A user with no role in a studio may call none of its operations; a launch profile USER may not
administer the studio. The arguments name real resources of the studio, so a refusal is about
the caller, not about what the request names; each call is one that an administrator's
identical call would carry out (or refuse for its arguments, never for its caller). What each
persona may do inside the rules is in the other modules (sessions, streams, backups, tags...).
"""

from __future__ import annotations

from typing import Any

import botocore.session
import pytest
from botocore.exceptions import ClientError

from tests.support.server import REGION
from tests.support.world import ROLE, World

FAKE_ID = "AAAAAAAAAAAAAAAAAAAAAA"  # 22 characters, the form of every resource id
MODEL = botocore.session.get_session().get_service_model("nimble")

# open to every user of the installation: their answers hold only what the caller may see
OPEN = {"ListStudios", "ListEulas", "GetEula"}

# a studio's administration: studio ADMINISTRATORs and operators only (CreateStudio and
# DeleteStudio: operators only)
ADMINISTRATION = {
    "CreateLaunchProfile",
    "UpdateLaunchProfile",
    "DeleteLaunchProfile",
    "PutLaunchProfileMembers",
    "UpdateLaunchProfileMember",
    "DeleteLaunchProfileMember",
    "CreateStreamingImage",
    "UpdateStreamingImage",
    "DeleteStreamingImage",
    "CreateStudioComponent",
    "UpdateStudioComponent",
    "DeleteStudioComponent",
    "PutStudioMembers",
    "DeleteStudioMember",
    "CreateStudio",
    "UpdateStudio",
    "DeleteStudio",
    "StartStudioSSOConfigurationRepair",
    "TagResource",  # of the studio
    "UntagResource",  # of the studio
}


def arguments(world: World, operation: str) -> dict[str, Any]:
    """Arguments valid for the model that name real resources of the world's studio."""
    sid = world.studio.studio_id
    arn = f"arn:aws:nimble:{REGION}:000000000000:studio/{sid}"
    studio = {"studioId": sid}
    profile = {**studio, "launchProfileId": world.studio.launch_profile_id}
    session = {**studio, "sessionId": FAKE_ID}
    image = {**studio, "streamingImageId": world.studio.other_image_id}
    component = {**studio, "studioComponentId": world.studio.component_id}
    member = {"principalId": world.artist2.user_id}
    identity = {"identityStoreId": world.artist2.identity_store_id}
    stream = {
        "clipboardMode": "ENABLED",
        "ec2InstanceTypes": ["g4dn.xlarge"],
        "streamingImageIds": [world.studio.image_id],
    }
    return {
        "AcceptEulas": {**studio, "eulaIds": ["eula-1"]},
        "CreateLaunchProfile": {
            **studio,
            "name": "denied",
            "ec2SubnetIds": [],
            "launchProfileProtocolVersions": ["2021-03-31"],
            "studioComponentIds": [world.studio.component_id],
            "streamConfiguration": stream,
        },
        "CreateStreamingImage": {**studio, "name": "denied", "ec2ImageId": "ami-0denied"},
        "CreateStreamingSession": profile,
        "CreateStreamingSessionStream": session,
        "CreateStudio": {
            "studioName": "denied",
            "displayName": "denied",
            "adminRoleArn": ROLE,
            "userRoleArn": ROLE,
        },
        "CreateStudioComponent": {**studio, "name": "denied", "type": "CUSTOM"},
        "DeleteLaunchProfile": profile,
        "DeleteLaunchProfileMember": {**profile, **member},
        "DeleteStreamingImage": image,
        "DeleteStreamingSession": session,
        "DeleteStudio": studio,
        "DeleteStudioComponent": component,
        "DeleteStudioMember": {**studio, **member},
        "GetEula": {"eulaId": "eula-1"},
        "GetLaunchProfile": profile,
        "GetLaunchProfileDetails": profile,
        "GetLaunchProfileInitialization": {
            **profile,
            "launchProfileProtocolVersions": ["2021-03-31"],
            "launchPurpose": "WORKSTATION",
            "platform": "LINUX",
        },
        "GetLaunchProfileMember": {**profile, **member},
        "GetStreamingImage": image,
        "GetStreamingSession": session,
        "GetStreamingSessionBackup": {**studio, "backupId": FAKE_ID},
        "GetStreamingSessionStream": {**session, "streamId": FAKE_ID},
        "GetStudio": studio,
        "GetStudioComponent": component,
        "GetStudioMember": {**studio, **member},
        "ListEulaAcceptances": studio,
        "ListEulas": {},
        "ListLaunchProfileMembers": profile,
        "ListLaunchProfiles": studio,
        "ListStreamingImages": studio,
        "ListStreamingSessionBackups": studio,
        "ListStreamingSessions": studio,
        "ListStudioComponents": studio,
        "ListStudioMembers": studio,
        "ListStudios": {},
        "ListTagsForResource": {"resourceArn": arn},
        "PutLaunchProfileMembers": {
            **profile,
            **identity,
            "members": [{**member, "persona": "USER"}],
        },
        "PutStudioMembers": {
            **studio,
            **identity,
            "members": [{**member, "persona": "ADMINISTRATOR"}],
        },
        "StartStreamingSession": session,
        "StartStudioSSOConfigurationRepair": studio,
        "StopStreamingSession": session,
        "TagResource": {"resourceArn": arn, "tags": {"team": "lighting"}},
        "UntagResource": {"resourceArn": arn, "tagKeys": ["team"]},
        "UpdateLaunchProfile": {**profile, "description": "denied"},
        "UpdateLaunchProfileMember": {**profile, **member, "persona": "USER"},
        "UpdateStreamingImage": {**image, "description": "denied"},
        "UpdateStudio": {**studio, "displayName": "denied"},
        "UpdateStudioComponent": {**component, "description": "denied"},
    }[operation]


def call(client: Any, operation: str, args: dict[str, Any]) -> dict[str, Any]:
    result: dict[str, Any] = getattr(client, botocore.xform_name(operation))(**args)
    return result


def denied(client: Any, operation: str, args: dict[str, Any]) -> str:
    with pytest.raises(ClientError) as raised:
        call(client, operation, args)
    error = raised.value.response["Error"]
    assert error["Code"] == "AccessDeniedException", (operation, error)
    assert raised.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403
    return str(error["Message"])


def test_the_lists_cover_the_model() -> None:
    assert set(MODEL.operation_names) >= OPEN | ADMINISTRATION


@pytest.mark.parametrize("operation", sorted(set(MODEL.operation_names) - OPEN))
def test_a_user_without_a_role_in_the_studio_is_denied(world: World, operation: str) -> None:
    args = arguments(world, operation)
    message = denied(world.outsider.client(), operation, args)
    assert world.outsider.user_id in message


@pytest.mark.parametrize("operation", sorted(ADMINISTRATION))
def test_a_launch_profile_user_may_not_administer_the_studio(world: World, operation: str) -> None:
    message = denied(world.artist.client(), operation, arguments(world, operation))
    assert world.artist.user_id in message


def test_open_operations_show_a_user_without_a_role_nothing_of_the_studio(world: World) -> None:
    outsider = world.outsider.client()
    studios = call(outsider, "ListStudios", {})["studios"]
    assert world.studio.studio_id not in {s["studioId"] for s in studios}
    call(outsider, "ListEulas", {})  # the installation's EULA catalogue is public to its users
