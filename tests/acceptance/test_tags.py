"""Tags by ARN on every taggable resource: given at creation, added, removed and listed, with
the permissions of the resource they are on and the limits on tags."""

from __future__ import annotations

from typing import Any

from tests.support import expect
from tests.support.server import FAST, REGION
from tests.support.world import World

ACCOUNT = "000000000000"


def tags_of(client: Any, arn: str) -> dict[str, str]:
    return dict(client.list_tags_for_resource(resourceArn=arn)["tags"])


def test_tags_given_at_creation_show_on_the_resource_and_by_arn(world: World) -> None:
    admin = world.studio.admin.client()
    sid = world.studio.studio_id
    component = admin.create_studio_component(
        studioId=sid, name="farm", type="COMPUTE_FARM", tags={"team": "fx"}
    )["studioComponent"]
    image = admin.create_streaming_image(
        studioId=sid, name="tagged", ec2ImageId="ami-0tagged", tags={"os": "linux"}
    )["streamingImage"]
    admin.get_waiter("streaming_image_ready").wait(
        studioId=sid, streamingImageId=image["streamingImageId"], WaiterConfig=FAST
    )
    profile = admin.create_launch_profile(
        studioId=sid,
        name="tagged",
        ec2SubnetIds=[],
        launchProfileProtocolVersions=["2021-03-31"],
        studioComponentIds=[component["studioComponentId"]],
        streamConfiguration={
            "clipboardMode": "ENABLED",
            "ec2InstanceTypes": ["g4dn.xlarge"],
            "streamingImageIds": [image["streamingImageId"]],
        },
        tags={"show": "pilot"},
    )["launchProfile"]
    for made, tags in (
        (component, {"team": "fx"}),
        (image, {"os": "linux"}),
        (profile, {"show": "pilot"}),
    ):
        assert made["tags"] == tags
        assert tags_of(admin, made["arn"]) == tags
    artist = world.artist.client()
    session = artist.create_streaming_session(
        studioId=sid, launchProfileId=world.studio.launch_profile_id, tags={"shot": "010"}
    )["session"]
    assert session["arn"] == (
        f"arn:aws:nimble:{REGION}:{ACCOUNT}:streaming-session/{session['sessionId']}"
    )
    assert tags_of(artist, session["arn"]) == {"shot": "010"}
    got = artist.get_streaming_session(studioId=sid, sessionId=session["sessionId"])["session"]
    assert got["tags"] == {"shot": "010"}


def test_tag_and_untag_every_kind_of_resource(world: World) -> None:
    admin = world.studio.admin.client()
    operator = world.operator.client()
    sid = world.studio.studio_id
    studio = operator.get_studio(studioId=sid)["studio"]
    profile = admin.get_launch_profile(
        studioId=sid, launchProfileId=world.studio.launch_profile_id
    )["launchProfile"]
    image = admin.get_streaming_image(studioId=sid, streamingImageId=world.studio.image_id)
    component = admin.get_studio_component(
        studioId=sid, studioComponentId=world.studio.component_id
    )
    arns = [
        studio["arn"],
        profile["arn"],
        image["streamingImage"]["arn"],
        component["studioComponent"]["arn"],
    ]
    for arn in arns:
        admin.tag_resource(resourceArn=arn, tags={"cost": "a", "keep": "yes"})
        admin.tag_resource(resourceArn=arn, tags={"cost": "b"})  # overwrites one, keeps others
        assert tags_of(admin, arn) == {"cost": "b", "keep": "yes"}
        admin.untag_resource(resourceArn=arn, tagKeys=["cost", "not-there"])
        assert tags_of(admin, arn) == {"keep": "yes"}
    assert operator.get_studio(studioId=sid)["studio"]["tags"] == {"keep": "yes"}
    got = admin.get_launch_profile(studioId=sid, launchProfileId=world.studio.launch_profile_id)
    assert got["launchProfile"]["tags"] == {"keep": "yes"}


def test_tag_permissions_follow_the_resource(world: World) -> None:
    sid = world.studio.studio_id
    admin = world.studio.admin.client()
    artist, artist2, outsider = (u.client() for u in (world.artist, world.artist2, world.outsider))
    profile_arn = admin.get_launch_profile(
        studioId=sid, launchProfileId=world.studio.launch_profile_id
    )["launchProfile"]["arn"]
    studio_arn = admin.get_studio(studioId=sid)["studio"]["arn"]
    # an artist reads the tags of what it may read, and changes none of the studio's
    tags_of(artist, profile_arn)
    tags_of(artist, studio_arn)
    expect.error(
        lambda: artist.tag_resource(resourceArn=profile_arn, tags={"mine": "1"}),
        "AccessDeniedException",
        world.artist.user_id,
    )
    expect.error(
        lambda: artist.untag_resource(resourceArn=studio_arn, tagKeys=["keep"]),
        "AccessDeniedException",
        world.artist.user_id,
    )
    expect.error(
        lambda: outsider.list_tags_for_resource(resourceArn=studio_arn),
        "AccessDeniedException",
        world.outsider.user_id,
    )
    # a session's tags are its owner's (and the administrators') to change
    session = artist.create_streaming_session(
        studioId=sid, launchProfileId=world.studio.launch_profile_id
    )["session"]
    artist.tag_resource(resourceArn=session["arn"], tags={"shot": "020"})
    admin.tag_resource(resourceArn=session["arn"], tags={"review": "yes"})
    assert tags_of(artist, session["arn"]) == {"shot": "020", "review": "yes"}
    for call in (
        lambda: artist2.list_tags_for_resource(resourceArn=session["arn"]),
        lambda: artist2.tag_resource(resourceArn=session["arn"], tags={"x": "y"}),
        lambda: artist2.untag_resource(resourceArn=session["arn"], tagKeys=["shot"]),
    ):
        expect.error(call, "AccessDeniedException", world.artist2.user_id)
    # another studio's administrator sees nothing of this one
    foreign = world.foreign.admin.client()
    expect.error(
        lambda: foreign.tag_resource(resourceArn=profile_arn, tags={"x": "y"}),
        "AccessDeniedException",
        world.foreign.admin.user_id,
    )


def test_bad_arns_and_tags_are_refused(world: World) -> None:
    admin = world.studio.admin.client(validate=False)
    sid = world.studio.studio_id
    arn = admin.get_studio(studioId=sid)["studio"]["arn"]
    expect.error(
        lambda: admin.list_tags_for_resource(resourceArn="not-an-arn"),
        "ValidationException",
        "resourceArn",
        "not-an-arn",
    )
    expect.error(
        lambda: admin.list_tags_for_resource(
            resourceArn=f"arn:aws:nimble:{REGION}:{ACCOUNT}:streaming-session-stream/x"
        ),
        "ValidationException",
        "streaming-session-stream",
        "taggable",
    )
    other_region = arn.replace(f":{REGION}:{ACCOUNT}:", f":eu-west-1:{ACCOUNT}:", 1)
    expect.error(
        lambda: admin.list_tags_for_resource(resourceArn=other_region),
        "ResourceNotFoundException",
        REGION,
    )
    unknown = f"arn:aws:nimble:{REGION}:{ACCOUNT}:launch-profile/AAAAAAAAAAAAAAAAAAAAAA"
    expect.error(
        lambda: admin.tag_resource(resourceArn=unknown, tags={"a": "b"}),
        "ResourceNotFoundException",
        "AAAAAAAAAAAAAAAAAAAAAA",
    )
    response = expect.error(
        lambda: admin.tag_resource(resourceArn=arn, tags={"aws:owner": "me", "k": "v" * 257}),
        "ValidationException",
        "aws:",
        "256",
    )
    assert response["Error"]["Message"].startswith("2 validation errors")
    expect.error(
        lambda: admin.tag_resource(resourceArn=arn, tags={}), "ValidationException", "tags"
    )
    too_many = {f"key{i}": "v" for i in range(51)}
    expect.error(
        lambda: admin.tag_resource(resourceArn=arn, tags=too_many), "ValidationException", "50"
    )
    expect.error(
        lambda: admin.create_studio_component(
            studioId=sid, name="bad", type="CUSTOM", tags={"aws:x": "y"}
        ),
        "ValidationException",
        "aws:",
    )
    assert "aws:owner" not in tags_of(admin, arn)


def _listed(client: Any, studio_id: str, owner: str, session_id: str) -> dict[str, Any] | None:
    pages = client.get_paginator("list_streaming_sessions").paginate(
        studioId=studio_id, ownedBy=owner
    )
    found = [s for page in pages for s in page["sessions"] if s["sessionId"] == session_id]
    assert len(found) <= 1
    return dict(found[0]) if found else None


def test_a_listed_session_shows_each_change_at_once_as_its_get_does(world: World) -> None:
    """Servers keep listed sessions written (by their whole row): a change of any kind shows
    in the next listing, exactly as in a Get."""
    artist = world.artist.client()
    sid, owner = world.studio.studio_id, world.artist.user_id
    session = artist.create_streaming_session(
        studioId=sid, launchProfileId=world.studio.launch_profile_id, tags={"shot": "010"}
    )["session"]
    ident, arn = session["sessionId"], session["arn"]
    deleted = False
    try:
        artist.get_waiter("streaming_session_ready").wait(
            studioId=sid, sessionId=ident, WaiterConfig=FAST
        )
        changes = [
            lambda: None,
            lambda: artist.tag_resource(resourceArn=arn, tags={"shot": "020", "take": "3"}),
            lambda: artist.untag_resource(resourceArn=arn, tagKeys=["shot"]),
        ]
        for change in changes:
            change()
            for _ in range(2):  # listed afresh, then as remembered
                got = artist.get_streaming_session(studioId=sid, sessionId=ident)["session"]
                assert _listed(artist, sid, owner, ident) == got
        assert got["tags"] == {"take": "3"}
        assert got["state"] == "READY"
        artist.delete_streaming_session(studioId=sid, sessionId=ident)
        deleted = True
        listed = _listed(artist, sid, owner, ident)
        assert listed is None or listed["state"] in ("DELETE_IN_PROGRESS", "DELETED")
    finally:
        if not deleted:
            artist.delete_streaming_session(studioId=sid, sessionId=ident)
        artist.get_waiter("streaming_session_deleted").wait(
            studioId=sid, sessionId=ident, WaiterConfig=FAST
        )
