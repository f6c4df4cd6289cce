"""The studio administrator's portal pages in a real browser: launch profiles, streaming images
and studio components created and edited through forms (each problem the API finds shown next
to its field), all the studio's sessions with filters, a session launched for a member that the
member then sees and opens; and members kept out of all of it, direct URLs included.
"""

from __future__ import annotations

import pathlib
import re
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from playwright import sync_api

from tests.browser.portal_support import PASSWORD, members_ready_card, open_stream, shot, sign_in
from tests.support import desktops
from tests.support import world as worlds
from tests.support.server import FAST, REGION

pytestmark = [pytest.mark.browser, pytest.mark.xvnc]
expect = sync_api.expect


@pytest.fixture(scope="module")
def portal(world: worlds.World) -> Iterator[str]:
    for user in (world.artist, world.outsider, world.studio.admin):
        world.server.set_password(user.name, PASSWORD)
    yield world.server.endpoint + "/portal/"


def field(page: sync_api.Page, path: str) -> sync_api.Locator:
    return page.locator(f"[data-field='{path}']")


def named(listed: dict[str, Any], name: str) -> dict[str, Any]:
    """The one item called ``name`` of a listing operation's answer."""
    (items,) = [v for k, v in listed.items() if isinstance(v, list)]
    (item,) = [i for i in items if i["name"] == name]
    return dict(item)


def test_an_admin_creates_and_edits_a_launch_profile_with_errors_shown_by_their_fields(
    page: sync_api.Page, portal: str, world: worlds.World, artifacts: pathlib.Path
) -> None:
    studio = world.studio
    sign_in(page, portal, studio.admin.name)
    page.get_by_role("link", name="Launch profiles").click()
    expect(page.get_by_role("heading", name="launch profiles")).to_be_visible()
    page.get_by_role("link", name="New launch profile").click()
    form = page.locator("form.resource")
    # the model's constraints: no name, no image, a length that is not a number
    form.get_by_label("Max session length in minutes").fill("long")
    form.get_by_role("button", name="Create").click()
    expect(field(page, "name").locator(".field-error")).to_contain_text("must not be null")
    expect(
        field(page, "streamConfiguration.streamingImageIds").locator(".field-error")
    ).to_contain_text("streamingImageIds' failed to satisfy constraint")
    expect(
        field(page, "streamConfiguration.maxSessionLengthInMinutes").locator(".field-error")
    ).to_contain_text("must be of type integer")
    expect(
        field(page, "streamConfiguration.ec2InstanceTypes").locator(".field-error")
    ).to_be_visible()
    shot(page, artifacts, "launch-profile-errors")

    # the domain's rule: a volume needs session persistence
    form.get_by_label("Name", exact=True).fill("lighting")
    field(page, "streamConfiguration.streamingImageIds").get_by_label("image 0").check()
    field(page, "studioComponentIds").locator("input").first.check()
    field(page, "streamConfiguration.ec2InstanceTypes").get_by_label("g4dn.xlarge").check()
    form.get_by_label("Max session length in minutes").fill("120")
    form.get_by_label("Max stopped session length in minutes").fill("60")
    volume = field(page, "streamConfiguration.volumeConfiguration")
    volume.get_by_label("Size").fill("200")
    form.get_by_role("button", name="Create").click()
    expect(form.locator(".field-error")).to_have_count(1)
    expect(volume.locator(".field-error")).to_contain_text("sessionPersistenceMode is ACTIVATED")
    # what was typed is kept
    expect(form.get_by_label("Name", exact=True)).to_have_value("lighting")
    expect(form.get_by_label("Max session length in minutes")).to_have_value("120")

    volume.get_by_label("Size").fill("")
    form.get_by_role("button", name="Create").click()
    expect(page.locator("table.listing tr[data-name='lighting']")).to_be_visible()
    shot(page, artifacts, "launch-profiles")

    admin = studio.admin.client()
    created = named(admin.list_launch_profiles(studioId=studio.studio_id), "lighting")
    stream = created["streamConfiguration"]
    assert stream["maxSessionLengthInMinutes"] == 120
    assert stream["maxStoppedSessionLengthInMinutes"] == 60
    assert stream["streamingImageIds"] == [studio.image_id]
    assert stream["ec2InstanceTypes"] == ["g4dn.xlarge"]

    # edit: the form shows what the API has, and saves what changed
    page.get_by_role("link", name="lighting").click()
    form = page.locator("form.resource")
    expect(form.get_by_label("Max session length in minutes")).to_have_value("120")
    expect(
        field(page, "streamConfiguration.ec2InstanceTypes").get_by_label("g4dn.xlarge")
    ).to_be_checked()
    form.get_by_label("Description").fill("for the lighting team")
    field(page, "streamConfiguration.ec2InstanceTypes").get_by_label("g4dn.2xlarge").check()
    shot(page, artifacts, "launch-profile-edit")
    form.get_by_role("button", name="Save").click()
    expect(page.locator("table.listing tr[data-name='lighting']")).to_be_visible()
    ids = {"studioId": studio.studio_id, "launchProfileId": created["launchProfileId"]}
    edited = admin.get_launch_profile(**ids)["launchProfile"]
    assert edited["description"] == "for the lighting team"
    assert sorted(edited["streamConfiguration"]["ec2InstanceTypes"]) == [
        "g4dn.2xlarge",
        "g4dn.xlarge",
    ]


def test_streaming_images_and_studio_components_forms(
    page: sync_api.Page, portal: str, world: worlds.World, artifacts: pathlib.Path
) -> None:
    studio = world.studio
    sign_in(page, portal, studio.admin.name)
    page.goto(portal + f"studios/{studio.studio_id}/streaming-images")
    page.get_by_role("link", name="New streaming image").click()
    form = page.locator("form.resource")
    form.get_by_label("Name", exact=True).fill("compositing")
    form.get_by_label("Ec2 image id").fill("not-an-ami")
    form.get_by_role("button", name="Create").click()
    expect(field(page, "ec2ImageId").locator(".field-error")).to_contain_text(
        "regular expression pattern"
    )
    shot(page, artifacts, "streaming-image-errors")
    form.get_by_label("Ec2 image id").fill("ami-0compositing")
    form.get_by_role("button", name="Create").click()
    expect(page.locator("table.listing tr[data-name='compositing']")).to_be_visible()
    shot(page, artifacts, "streaming-images")

    page.get_by_role("link", name="Studio components").first.click()
    page.get_by_role("link", name="New studio component").click()
    form = page.locator("form.resource")
    field(page, "name").locator("input").fill("licences")
    scripts = field(page, "initializationScripts")
    scripts.get_by_label("Script").fill("echo hello > $HOME/hello.txt")
    scripts.get_by_label("Platform").select_option("LINUX")
    scripts.get_by_label("Run context").select_option("USER_INITIALIZATION")
    scripts.get_by_label("Launch profile protocol version").fill("2021-03-31")
    parameters = field(page, "scriptParameters")
    parameters.get_by_label("Key").fill("9bad key")
    parameters.get_by_label("Value").fill("27000@licence")
    form.get_by_role("button", name="Create").click()
    expect(field(page, "scriptParameters.1.member.key").locator(".field-error")).to_contain_text(
        "regular expression pattern"
    )
    shot(page, artifacts, "studio-component-errors")
    field(page, "scriptParameters.1.member.key").locator("input").fill("LICENCE_SERVER")
    form.get_by_role("button", name="Create").click()
    expect(page.locator("table.listing tr[data-name='licences']")).to_be_visible()
    shot(page, artifacts, "studio-components")
    admin = studio.admin.client()
    component = named(admin.list_studio_components(studioId=studio.studio_id), "licences")
    assert component["scriptParameters"] == [{"key": "LICENCE_SERVER", "value": "27000@licence"}]
    assert component["initializationScripts"][0]["script"] == "echo hello > $HOME/hello.txt"

    # the edit form shows the script as a row, and a new empty row
    page.get_by_role("link", name="licences").click()
    rows = field(page, "initializationScripts").locator("fieldset.row")
    expect(rows).to_have_count(2)


def test_an_admin_launches_for_a_member_who_sees_and_opens_it_and_all_sessions_filter(
    page: sync_api.Page,
    browser: sync_api.Browser,
    portal: str,
    world: worlds.World,
    artifacts: pathlib.Path,
) -> None:
    studio = world.studio
    # an operator brings the newcomer into the studio (the standing rule)
    desktops.create_launch_profile(world.operator, studio, [world.outsider])
    sign_in(page, portal, studio.admin.name)
    page.get_by_role("link", name="Manage members").click()
    section = page.locator("section.profile[data-profile='workstation']")
    section.get_by_label("User name").fill(world.outsider.name)
    section.get_by_role("button", name="Add as USER").click()
    expect(section.locator("table.members")).to_contain_text(world.outsider.name)

    page.get_by_role("link", name="Home").click()
    form = page.locator("form.launch[data-profile='workstation']")
    form.get_by_label("For").fill(world.outsider.name)
    form.get_by_role("button", name="Launch").click()
    expect(page.get_by_role("heading", name="My sessions")).to_be_visible()

    page.goto(portal + f"studios/{studio.studio_id}/sessions")
    rows = page.locator("table.sessions tbody tr[data-session]")
    expect(rows).to_have_count(1)
    expect(rows.locator(".owner")).to_have_text(world.outsider.name)
    expect(rows).to_contain_text(studio.admin.name)  # created by
    session_id = rows.get_attribute("data-session")
    ids = {"studioId": studio.studio_id, "sessionId": session_id}
    admin = studio.admin.client()
    admin.get_waiter("streaming_session_ready").wait(**ids, WaiterConfig=FAST)
    page.reload()
    expect(rows.locator(".state")).to_contain_text("READY")
    shot(page, artifacts, "all-sessions")
    # filters: by owner, by state, and a name nobody has
    page.get_by_label("Owner").fill(world.artist.name)
    page.get_by_role("button", name="Filter").click()
    expect(page.locator("table.sessions")).to_contain_text("No sessions match these filters")
    page.get_by_label("Owner").fill(world.outsider.name)
    page.get_by_label("State").select_option("READY")
    page.get_by_role("button", name="Filter").click()
    expect(rows).to_have_count(1)
    page.get_by_label("State").select_option("STOPPED")
    page.get_by_role("button", name="Filter").click()
    expect(rows).to_have_count(0)
    page.get_by_label("Owner").fill("nobody-at-all")
    page.get_by_label("State").select_option("")
    page.get_by_role("button", name="Filter").click()
    expect(field(page, "owner").locator(".field-error")).to_contain_text("No user named")
    # the admin may not open another's desktop: the page does not offer it
    page.get_by_label("Owner").fill("")
    page.get_by_role("button", name="Filter").click()
    expect(rows.get_by_role("button", name="Open")).to_have_count(0)
    expect(rows.get_by_role("button", name="Delete")).to_have_count(1)

    card = members_ready_card(browser, portal, world.outsider.name)
    member = card.page
    try:
        open_stream(card).close()
        # the admin pages stay closed to a member, direct URLs included
        for path in ("sessions", "launch-profiles", "launch-profiles/new", "streaming-images"):
            answer = member.goto(portal + f"studios/{studio.studio_id}/{path}")
            assert answer is not None and answer.status == 403
            expect(member.locator(".error")).to_contain_text("Only the operator")
    finally:
        member.context.close()

    # the admin deletes it from the all sessions page, and comes back to it
    rows.get_by_role("button", name="Delete").click()
    expect(page).to_have_url(re.compile(re.escape(f"{portal}studios/{studio.studio_id}/sessions?")))
    # (DELETE_IN_PROGRESS, or already gone: a desktop may end before the page is back)
    admin.get_waiter("streaming_session_deleted").wait(**ids, WaiterConfig=FAST)
    page.reload()
    expect(rows).to_have_count(0)
    page.get_by_label("State").select_option("DELETED")
    page.get_by_role("button", name="Filter").click()
    expect(rows.locator(".state")).to_contain_text("DELETED")


def test_an_operator_manages_users_their_keys_and_studios(
    page: sync_api.Page,
    browser: sync_api.Browser,
    portal: str,
    world: worlds.World,
    artifacts: pathlib.Path,
) -> None:
    world.server.set_password(world.operator.name, PASSWORD)
    sign_in(page, portal, world.operator.name)
    page.get_by_role("link", name="Users").click()
    form = page.locator("form.resource")
    form.get_by_label("User name").fill("newcomer")
    form.get_by_label("Portal password").fill("short")
    form.get_by_role("button", name="Create user").click()
    expect(field(page, "password").locator(".field-error")).to_contain_text("at least")
    form.get_by_label("User name").fill(world.artist.name)
    form.get_by_label("Portal password").fill("")
    form.get_by_role("button", name="Create user").click()
    expect(field(page, "name").locator(".field-error")).to_contain_text("exists already")
    form.get_by_label("User name").fill("newcomer")
    form.get_by_label("Portal password").fill("a first password")
    form.get_by_role("button", name="Create user").click()
    expect(page.get_by_role("heading", name="User newcomer")).to_be_visible()

    # an access key, its secret shown once, that works until it is revoked
    page.get_by_role("button", name="Create an access key").click()
    key_id = page.locator(".secret .access-key").inner_text()
    secret = page.locator(".secret .secret-key").inner_text()
    shot(page, artifacts, "user")
    client = boto3.client(
        "nimble",
        endpoint_url=world.server.endpoint,
        region_name=REGION,
        aws_access_key_id=key_id,
        aws_secret_access_key=secret,
    )
    assert client.list_studios()["studios"] == []  # a newcomer without memberships
    page.goto(portal + "users/newcomer")  # the user page, later
    expect(page.locator(".secret")).to_have_count(0)  # never shown again
    page.get_by_role("button", name=f"Revoke {key_id}").click()
    expect(page.locator("table.keys")).to_contain_text("No access keys")
    with pytest.raises(Exception, match="UnrecognizedClient"):
        client.list_studios()

    # disabled: signing in is refused; enabled again with a reset password: it works
    page.get_by_role("button", name="Disable newcomer").click()
    expect(page.locator(".user-state")).to_have_text("disabled")
    other = browser.new_context().new_page()
    try:
        sign_in(other, portal, "newcomer", "a first password")
        expect(other.locator(".error")).to_be_visible()
        page.get_by_role("button", name="Enable newcomer").click()
        page.get_by_label("New password").fill("a second password")
        page.get_by_role("button", name="Set password").click()
        expect(page.locator(".user-state")).to_have_text("enabled")
        sign_in(other, portal, "newcomer", "a second password")
        expect(other.get_by_text("You are not a member of any studio yet")).to_be_visible()
        # and a user who is no operator does not get these pages
        for path in ("users", "studios", "users/newcomer"):
            answer = other.goto(portal + path)
            assert answer is not None and answer.status == 403
    finally:
        other.context.close()

    page.get_by_role("link", name="Users").click()
    expect(page.locator("table.users tr[data-name='newcomer']")).to_be_visible()
    shot(page, artifacts, "users")

    # studios: CreateStudio's form, its problems by their fields
    page.get_by_role("link", name="Studios").click()
    form = page.locator("form.resource")
    form.get_by_label("Studio name").fill("Not Valid!")
    form.get_by_label("Display name").fill("Compositing")
    form.get_by_label("Admin role arn").fill("arn:aws:iam::000000000000:role/admin")
    form.get_by_label("User role arn").fill("arn:aws:iam::000000000000:role/user")
    form.get_by_role("button", name="Create studio").click()
    expect(field(page, "studioName").locator(".field-error")).to_contain_text("pattern")
    form.get_by_label("Studio name").fill("compositing")
    form.get_by_role("button", name="Create studio").click()
    expect(page.locator("table.studios tr[data-name='compositing']")).to_be_visible()
    shot(page, artifacts, "studios")


def test_the_stream_page_comes_back_to_the_same_desktop_after_a_server_restart(
    browser: sync_api.Browser, portal: str, world: worlds.World, artifacts: pathlib.Path
) -> None:
    studio = world.studio
    client = world.artist.client()
    session = client.create_streaming_session(
        studioId=studio.studio_id, launchProfileId=studio.launch_profile_id
    )["session"]
    ids = {"studioId": studio.studio_id, "sessionId": session["sessionId"]}
    try:
        card = members_ready_card(browser, portal, world.artist.name)
        stream = open_stream(card)
        expect(stream).not_to_have_title(re.compile("^Desktop "))  # the desktop's own name
        desktop = stream.title()
        # a short outage: the server stops (closing the stream's connection) and comes back
        world.server.stop()
        try:
            expect(stream.locator("body")).to_have_attribute("data-state", "reconnecting")
            shot(stream, artifacts, "stream-reconnecting")
        finally:
            world.server.start()
        expect(stream.locator("body")).to_have_attribute("data-state", "connected", timeout=30_000)
        expect(stream).to_have_title(desktop)
        card.page.context.close()
    finally:
        client.delete_streaming_session(**ids)
        client.get_waiter("streaming_session_deleted").wait(**ids, WaiterConfig=FAST)
