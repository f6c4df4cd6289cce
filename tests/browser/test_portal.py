"""The studio portal in a real browser, walked as a newcomer would: sign in, launch a desktop,
watch its card become READY without reloading, open it, stop, start and delete it; and what the
portal refuses (another member's session, a form without its CSRF token, wrong passwords).

Screenshots of each page go to the browser tests' artifacts directory.
"""

from __future__ import annotations

import pathlib
import re
from collections.abc import Iterator

import pytest
import requests
from playwright import sync_api

from tests.browser.portal_support import (
    PASSWORD,
    READY_WITHIN,
    members_ready_card,
    open_stream,
    shot,
    sign_in,
)
from tests.support import desktops
from tests.support import world as worlds
from tests.support.server import FAST

pytestmark = [pytest.mark.browser, pytest.mark.xvnc]


@pytest.fixture(scope="module")
def portal(world: worlds.World) -> Iterator[str]:
    """The portal's URL; the artists have passwords and a launch profile whose sessions may
    be stopped (a backup is taken at each stop)."""
    for user in (world.artist, world.artist2, world.outsider, world.studio.admin):
        world.server.set_password(user.name, PASSWORD)
    studio = world.studio
    admin = studio.admin.client()
    profile = admin.create_launch_profile(
        studioId=studio.studio_id,
        name="stoppable",
        ec2SubnetIds=[],
        launchProfileProtocolVersions=["2021-03-31"],
        studioComponentIds=[studio.component_id],
        streamConfiguration={
            "clipboardMode": "ENABLED",
            "ec2InstanceTypes": ["g4dn.xlarge", "g4dn.2xlarge"],
            "streamingImageIds": [studio.image_id],
            "maxStoppedSessionLengthInMinutes": 60,
            "sessionBackup": {"mode": "AUTOMATIC", "maxBackupsToRetain": 2},
        },
    )["launchProfile"]
    ids = {"studioId": studio.studio_id, "launchProfileId": profile["launchProfileId"]}
    admin.get_waiter("launch_profile_ready").wait(**ids, WaiterConfig=FAST)
    admin.put_launch_profile_members(
        **ids,
        identityStoreId=studio.admin.identity_store_id,
        members=[{"principalId": world.artist.user_id, "persona": "USER"}],
    )
    yield world.server.endpoint + "/portal/"


def test_an_artist_launches_opens_stops_starts_and_deletes_a_desktop(
    page: sync_api.Page, portal: str, world: worlds.World, artifacts: pathlib.Path
) -> None:
    sign_in(page, portal, world.artist.name)
    expect = sync_api.expect
    expect(page.get_by_role("heading", name="Your studios")).to_be_visible()
    form = page.locator("form.launch[data-profile='stoppable']")
    expect(form.get_by_label("Instance type")).to_have_value("g4dn.xlarge")  # the default
    shot(page, artifacts, "home")
    form.get_by_role("button", name="Launch").click()

    expect(page.get_by_role("heading", name="My sessions")).to_be_visible()
    card = page.locator("article.card").first
    expect(card.locator(".state")).to_have_text("CREATE_IN_PROGRESS")
    shot(page, artifacts, "sessions-creating")
    page.evaluate("window.notReloaded = true")
    expect(card.locator(".state")).to_have_text("READY", timeout=READY_WITHIN)
    assert page.evaluate("window.notReloaded") is True  # it changed live
    expect(card).to_contain_text("g4dn.xlarge")
    expect(card).to_contain_text("image 0")  # the image's name
    shot(page, artifacts, "sessions-ready")

    stream = open_stream(card)
    assert re.search(r"/streams/[^?]+$", stream.url)  # the used token is out of the address
    expect(stream).not_to_have_title(re.compile("^Desktop "))  # the desktop's own name
    desktop = stream.title()
    shot(stream, artifacts, "stream")
    # a reload comes back to the same desktop (no "link not valid")
    stream.reload()
    stream.wait_for_selector("body[data-state='connected']", state="attached", timeout=20_000)
    expect(stream).to_have_title(desktop)

    card.get_by_role("button", name="Stop").click()
    expect(card.locator(".state")).to_have_text("STOPPED", timeout=READY_WITHIN)
    # the stream's tab says why it ended and offers the way to a new stream: the portal's
    # page of the session (a Start here, as it is stopped)
    expect(stream.locator("#status")).to_contain_text("stopped")
    stream.locator("#renew").click()
    expect(stream.get_by_role("heading", name="Open this session again")).to_be_visible()
    expect(stream.locator("article.card .state")).to_have_text("STOPPED")
    expect(stream.locator("article.card").get_by_role("button", name="Start")).to_be_visible()
    shot(stream, artifacts, "stream-renew")
    stream.close()
    expect(card.get_by_role("button", name="Open")).to_have_count(0)
    # the stop took a backup: the card offers to start from it
    studio_id = world.studio.studio_id
    session_id = card.get_attribute("data-session")
    client = world.artist.client()
    backups = client.list_streaming_session_backups(
        studioId=studio_id, ownedBy=world.artist.user_id
    )["streamingSessionBackups"]
    backup_id = next(b["backupId"] for b in backups if b["sessionId"] == session_id)
    from_backup = card.locator("form.from-backup")
    expect(from_backup.get_by_label("Backup").locator("option")).to_have_count(1)
    shot(page, artifacts, "sessions-stopped")
    from_backup.get_by_label("Backup").select_option(backup_id)
    from_backup.get_by_role("button", name="Start from backup").click()
    expect(card.locator(".state")).to_have_text("READY", timeout=READY_WITHIN)
    expect(card).to_contain_text(backup_id)
    started = client.get_streaming_session(studioId=studio_id, sessionId=session_id)["session"]
    assert started["startedFromBackupId"] == backup_id
    card.get_by_role("button", name="Delete").click()
    expect(page.locator("article.card")).to_have_count(0, timeout=READY_WITHIN)


def test_a_member_cannot_see_or_act_on_another_members_session(
    page: sync_api.Page, browser: sync_api.Browser, portal: str, world: worlds.World
) -> None:
    studio = world.studio
    client = world.artist.client()
    session = client.create_streaming_session(
        studioId=studio.studio_id, launchProfileId=studio.launch_profile_id
    )["session"]
    ids = {"studioId": studio.studio_id, "sessionId": session["sessionId"]}
    try:
        sign_in(page, portal, world.artist2.name)
        page.goto(portal + "sessions")
        sync_api.expect(page.get_by_text("No sessions yet")).to_be_visible()
        assert session["sessionId"] not in page.content()
        # a direct post of another's action, with artist2's own valid CSRF token
        token = page.locator("input[name='csrf_token']").first.get_attribute("value")
        for action in ("open", "delete", "stop"):
            answer = page.request.post(
                f"{portal}sessions/{studio.studio_id}/{session['sessionId']}/{action}",
                form={"csrf_token": token or ""},
            )
            assert "/portal/sessions?error=" in answer.url
            page.goto(answer.url)
            sync_api.expect(page.locator(".error")).to_contain_text("AccessDenied")
        assert client.get_streaming_session(**ids)["session"]["state"] != "DELETE_IN_PROGRESS"
        # nor the portal's page of the owner's stream (where a stream page sends its owner)
        client.get_waiter("streaming_session_ready").wait(**ids, WaiterConfig=FAST)
        stream = client.create_streaming_session_stream(**ids)["stream"]
        answer = page.goto(f"{portal}streams/{stream['streamId']}")
        assert answer is not None and answer.status == 403
        sync_api.expect(page.locator(".error")).to_contain_text("AccessDenied")
    finally:
        client.get_waiter("streaming_session_ready").wait(**ids, WaiterConfig=FAST)
        client.delete_streaming_session(**ids)
        client.get_waiter("streaming_session_deleted").wait(**ids, WaiterConfig=FAST)


def test_a_form_without_its_csrf_token_is_refused(
    page: sync_api.Page, portal: str, world: worlds.World, artifacts: pathlib.Path
) -> None:
    sign_in(page, portal, world.artist.name)
    sync_api.expect(page.get_by_role("heading", name="Your studios")).to_be_visible()
    page.evaluate(
        "document.querySelectorAll(\"input[name='csrf_token']\").forEach(e => e.remove())"
    )
    page.locator("form.launch").first.get_by_role("button", name="Launch").click()
    sync_api.expect(page.locator(".error")).to_contain_text("CSRF token is missing or wrong")
    shot(page, artifacts, "csrf-refused")
    sessions = world.artist.client().list_streaming_sessions(studioId=world.studio.studio_id)
    assert [s for s in sessions["sessions"] if s["state"] != "DELETED"] == []
    # and from another site, with the portal's cookie but no token
    answer = requests.post(portal + "signin", data={"name": "artist", "password": PASSWORD})
    assert answer.status_code == 403


def test_wrong_passwords_are_refused_and_lock_the_account(
    page: sync_api.Page, portal: str, world: worlds.World, artifacts: pathlib.Path
) -> None:
    name = world.outsider.name
    sign_in(page, portal, name, "not the password")
    sync_api.expect(page.locator(".error")).to_have_text("Wrong user name or password.")
    shot(page, artifacts, "signin-refused")
    for _ in range(4):
        sign_in(page, portal, name, "still not it")
    sync_api.expect(page.locator(".error")).to_contain_text("locked for 15 minutes")
    sign_in(page, portal, name)  # the right password, while locked
    sync_api.expect(page.locator(".error")).to_contain_text("This account is locked")
    shot(page, artifacts, "signin-locked")
    world.server.set_password(name, PASSWORD)  # an operator's reset lifts it
    sign_in(page, portal, name)
    sync_api.expect(page.get_by_text("You are not a member of any studio yet")).to_be_visible()


def test_an_admin_adds_a_member_and_launches_a_session_the_member_opens(
    page: sync_api.Page,
    browser: sync_api.Browser,
    portal: str,
    world: worlds.World,
    artifacts: pathlib.Path,
) -> None:
    expect = sync_api.expect
    # an operator brings the newcomer into the studio (a launch profile of their team): only
    # then may the studio's admin add them to more (the API's standing rule)
    desktops.create_launch_profile(world.operator, world.studio, [world.outsider])
    sign_in(page, portal, world.studio.admin.name)
    page.get_by_role("link", name="Manage members").click()
    section = page.locator("section.profile[data-profile='workstation']")
    section.get_by_label("User name").fill("nobody")
    section.get_by_role("button", name="Add as USER").click()
    expect(page.locator(".error")).to_contain_text("no user named 'nobody'")
    section.get_by_label("User name").fill(world.outsider.name)
    section.get_by_role("button", name="Add as USER").click()
    expect(section.locator("table.members")).to_contain_text(world.outsider.name)
    shot(page, artifacts, "studio-members")

    page.get_by_role("link", name="Home").click()
    form = page.locator("form.launch[data-profile='workstation']")
    form.get_by_label("For").fill(world.outsider.name)
    form.get_by_role("button", name="Launch").click()
    expect(page.get_by_role("heading", name="My sessions")).to_be_visible()
    expect(page.locator("article.card")).to_have_count(0)  # the admin's own: none

    card = members_ready_card(browser, portal, world.outsider.name)
    member = card.page
    try:
        open_stream(card).close()
        card.get_by_role("button", name="Delete").click()
        expect(member.locator("article.card")).to_have_count(0, timeout=READY_WITHIN)
    finally:
        member.context.close()

    page.goto(portal + f"studios/{world.studio.studio_id}")
    section.get_by_role("button", name=f"Remove {world.outsider.name}").click()
    expect(section.locator("table.members")).not_to_contain_text(world.outsider.name)


def test_a_member_does_not_see_or_reach_the_studio_admin_page(
    page: sync_api.Page, portal: str, world: worlds.World
) -> None:
    sign_in(page, portal, world.artist.name)
    sync_api.expect(page.get_by_role("heading", name="Your studios")).to_be_visible()
    sync_api.expect(page.get_by_role("link", name="Manage members")).to_have_count(0)
    sync_api.expect(page.get_by_label("For")).to_have_count(0)
    answer = page.goto(portal + f"studios/{world.studio.studio_id}")
    assert answer is not None and answer.status == 403
    sync_api.expect(page.locator(".error")).to_contain_text("Only the operator")


def test_the_sign_in_cookie_is_http_only_and_sign_out_ends_it(
    page: sync_api.Page, portal: str, world: worlds.World
) -> None:
    sign_in(page, portal, world.artist.name)
    sync_api.expect(page.get_by_role("heading", name="Your studios")).to_be_visible()
    (cookie,) = page.context.cookies()
    assert cookie["httpOnly"] is True and cookie["sameSite"] == "Lax"
    assert cookie["secure"] is False  # served over http here; Secure when public_url is https
    assert page.evaluate("document.cookie") == ""
    page.get_by_role("button", name="Sign out").click()
    sync_api.expect(
        page.get_by_role("heading", name="Sign in to the studio portal")
    ).to_be_visible()
    page.goto(portal + "sessions")
    sync_api.expect(
        page.get_by_role("heading", name="Sign in to the studio portal")
    ).to_be_visible()
