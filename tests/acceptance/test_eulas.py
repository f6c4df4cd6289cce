"""EULAs: the installation's catalogue (from its settings file), acceptances per studio and
user, and images whose EULAs must be accepted by a session's owner."""

from __future__ import annotations

import pathlib
import time
from collections.abc import Iterator

import pytest

from tests.support import expect
from tests.support import world as worlds
from tests.support.server import FAST

MAYA_AMI = "ami-0maya2024"
HOUDINI_TEXT = "Houdini license terms.\nUse for good only.\n"


def write_config(path: pathlib.Path, maya_content: str, with_houdini: bool = True) -> None:
    houdini = path.parent / "houdini.txt"
    houdini.write_text(HOUDINI_TEXT)
    text = f"""
[eulas.maya]
name = "Autodesk Maya"
content = '''{maya_content}'''
images = ["{MAYA_AMI}"]
"""
    if with_houdini:
        text += f"""
[eulas.houdini-20]
name = "SideFX Houdini"
file = "{houdini}"
images = ["{MAYA_AMI}", "ami-0houdini"]
"""
    path.write_text(text)


@pytest.fixture(scope="module")
def eula_world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[worlds.World]:
    base = tmp_path_factory.mktemp("eulas")
    config = base / "opennimble.toml"
    write_config(config, "Maya terms v1")
    env = {"OPENNIMBLE_PAGE_SIZE": "1", "OPENNIMBLE_CONFIG": str(config)}
    with worlds.running_world(base / "data", env) as built:
        yield built


@pytest.fixture(scope="module")
def maya(eula_world: worlds.World) -> dict[str, str]:
    """A launch profile offering an image that requires both EULAs; the artists use it."""
    w = eula_world
    admin = w.studio.admin.client()
    sid = w.studio.studio_id
    image = admin.create_streaming_image(studioId=sid, name="maya", ec2ImageId=MAYA_AMI)
    image_id = image["streamingImage"]["streamingImageId"]
    admin.get_waiter("streaming_image_ready").wait(
        studioId=sid, streamingImageId=image_id, WaiterConfig=FAST
    )
    profile = admin.create_launch_profile(
        studioId=sid,
        name="maya",
        ec2SubnetIds=[],
        launchProfileProtocolVersions=["2021-03-31"],
        studioComponentIds=[w.studio.component_id],
        streamConfiguration={
            "clipboardMode": "ENABLED",
            "ec2InstanceTypes": ["g4dn.xlarge"],
            "streamingImageIds": [image_id],
        },
    )["launchProfile"]
    lp_id = profile["launchProfileId"]
    admin.get_waiter("launch_profile_ready").wait(
        studioId=sid, launchProfileId=lp_id, WaiterConfig=FAST
    )
    admin.put_launch_profile_members(
        studioId=sid,
        launchProfileId=lp_id,
        identityStoreId=w.artist.identity_store_id,
        members=[{"principalId": u.user_id, "persona": "USER"} for u in (w.artist, w.artist2)],
    )
    return {"image": image_id, "launch_profile": lp_id}


def test_any_user_reads_the_catalogue(eula_world: worlds.World) -> None:
    outsider = eula_world.outsider.client()
    pages = list(outsider.get_paginator("list_eulas").paginate())
    assert len(pages) == 2  # page size 1
    eulas = {e["eulaId"]: e for page in pages for e in page["eulas"]}
    assert set(eulas) == {"maya", "houdini-20"}
    assert eulas["maya"]["name"] == "Autodesk Maya"
    assert eulas["maya"]["content"] == "Maya terms v1"
    assert eulas["houdini-20"]["content"] == HOUDINI_TEXT
    assert eulas["maya"]["createdAt"] == eulas["maya"]["updatedAt"]
    only = outsider.list_eulas(eulaIds=["maya"])["eulas"]
    assert [e["eulaId"] for e in only] == ["maya"]
    assert outsider.get_eula(eulaId="houdini-20")["eula"]["name"] == "SideFX Houdini"
    expect.error(lambda: outsider.get_eula(eulaId="nope"), "ResourceNotFoundException", "nope")


def test_images_list_the_eulas_of_their_machine_image(
    eula_world: worlds.World, maya: dict[str, str]
) -> None:
    admin = eula_world.studio.admin.client()
    sid = eula_world.studio.studio_id
    image = admin.get_streaming_image(studioId=sid, streamingImageId=maya["image"])
    assert sorted(image["streamingImage"]["eulaIds"]) == ["houdini-20", "maya"]
    plain = admin.get_streaming_image(studioId=sid, streamingImageId=eula_world.studio.image_id)
    assert plain["streamingImage"]["eulaIds"] == []


def test_a_session_needs_its_owner_to_accept_the_images_eulas(
    eula_world: worlds.World, maya: dict[str, str]
) -> None:
    sid = eula_world.studio.studio_id
    artist = eula_world.artist.client()
    admin = eula_world.studio.admin.client()
    request = {"studioId": sid, "launchProfileId": maya["launch_profile"]}
    response = expect.error(
        lambda: artist.create_streaming_session(**request),
        "AccessDeniedException",
        "houdini-20",
        "maya",
        "AcceptEulas",
    )
    assert response["Error"]["Code"] == "AccessDeniedException"
    expect.error(  # an administrator cannot skip the owner's acceptance either
        lambda: admin.create_streaming_session(**request, ownedBy=eula_world.artist.user_id),
        "AccessDeniedException",
        eula_world.artist.user_id,
        "maya",
    )
    accepted = artist.accept_eulas(studioId=sid, eulaIds=["maya"])["eulaAcceptances"]
    assert [(a["eulaId"], a["acceptedBy"], a["accepteeId"]) for a in accepted] == [
        ("maya", eula_world.artist.user_id, sid)
    ]
    message = expect.error(
        lambda: artist.create_streaming_session(**request), "AccessDeniedException", "houdini-20"
    )["Error"]["Message"]
    assert "maya" not in message.split("requires:")[1]
    artist.accept_eulas(studioId=sid, eulaIds=["houdini-20"])
    session = artist.create_streaming_session(**request)["session"]
    assert session["streamingImageId"] == maya["image"]
    # the acceptance holds for the artist only
    expect.error(
        lambda: eula_world.artist2.client().create_streaming_session(**request),
        "AccessDeniedException",
        eula_world.artist2.user_id,
    )
    artist.get_waiter("streaming_session_ready").wait(
        studioId=sid, sessionId=session["sessionId"], WaiterConfig=FAST
    )
    artist.delete_streaming_session(studioId=sid, sessionId=session["sessionId"])


def test_acceptances_are_per_studio_and_user(eula_world: worlds.World) -> None:
    sid = eula_world.studio.studio_id
    artist2 = eula_world.artist2.client()
    first = artist2.accept_eulas(studioId=sid, eulaIds=["maya", "maya"])["eulaAcceptances"]
    again = artist2.accept_eulas(studioId=sid, eulaIds=["maya"])["eulaAcceptances"]
    assert len(first) == 1 and again == first  # accepting again changes nothing
    mine = artist2.list_eula_acceptances(studioId=sid)["eulaAcceptances"]
    assert {a["acceptedBy"] for a in mine} == {eula_world.artist2.user_id}
    admin = eula_world.studio.admin.client()
    pages = admin.get_paginator("list_eula_acceptances").paginate(studioId=sid)
    everyone = [a for page in pages for a in page["eulaAcceptances"]]
    assert {a["acceptedBy"] for a in everyone} >= {eula_world.artist2.user_id}
    filtered = admin.list_eula_acceptances(studioId=sid, eulaIds=["houdini-20"])["eulaAcceptances"]
    assert all(a["eulaId"] == "houdini-20" for a in filtered)
    # nothing accepted in another studio
    foreign_sid = eula_world.foreign.studio_id
    foreign_admin = eula_world.foreign.admin.client()
    assert foreign_admin.list_eula_acceptances(studioId=foreign_sid)["eulaAcceptances"] == []


def test_acceptances_are_checked(eula_world: worlds.World) -> None:
    sid = eula_world.studio.studio_id
    artist = eula_world.artist.client(validate=False)
    expect.error(
        lambda: artist.accept_eulas(studioId=sid, eulaIds=["maya", "nope"]),
        "ValidationException",
        "eulaIds.2.member",
        "nope",
    )
    expect.error(
        lambda: artist.accept_eulas(studioId=sid, eulaIds=[]), "ValidationException", "eulaIds"
    )
    outsider = eula_world.outsider.client()
    expect.error(
        lambda: outsider.accept_eulas(studioId=sid, eulaIds=["maya"]),
        "AccessDeniedException",
        eula_world.outsider.user_id,
    )
    expect.error(
        lambda: outsider.list_eula_acceptances(studioId=sid),
        "AccessDeniedException",
        eula_world.outsider.user_id,
    )


def test_the_catalogue_follows_the_settings_at_start(eula_world: worlds.World) -> None:
    server = eula_world.server
    config = pathlib.Path(server.env["OPENNIMBLE_CONFIG"])
    before = eula_world.outsider.client().get_eula(eulaId="maya")["eula"]
    server.stop()
    write_config(config, "Maya terms v2", with_houdini=False)
    time.sleep(0.01)
    server.start()
    outsider = eula_world.outsider.client()
    after = outsider.get_eula(eulaId="maya")["eula"]
    assert after["content"] == "Maya terms v2"
    assert after["createdAt"] == before["createdAt"]
    assert after["updatedAt"] > before["updatedAt"]
    assert [e["eulaId"] for e in outsider.list_eulas()["eulas"]] == ["maya"]
    expect.error(lambda: outsider.get_eula(eulaId="houdini-20"), "ResourceNotFoundException")
