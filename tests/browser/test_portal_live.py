"""The portal's live pages in a real browser: an artist's My sessions card and the studio
administrator's All sessions row follow a session created, made READY and deleted, without
a reload, whoever made the change.

On SQLite the pages' server is the one that changes the session (its API and reconciler). On
PostgreSQL the pages are served by a second server process without a reconciler, on the same
database: every change is made by another process (the API calls and the reconciler of the
first), and reaches the pages through PostgreSQL's notifications.
"""

from __future__ import annotations

import pathlib
from collections.abc import Iterator

import pytest
from playwright import sync_api

from tests.browser.portal_support import PASSWORD, READY_WITHIN, shot, sign_in
from tests.support import databases
from tests.support import world as worlds
from tests.support.server import Server

pytestmark = [pytest.mark.browser, pytest.mark.xvnc]
expect = sync_api.expect

# records every state a page shows, in order, as the DOM changes (to see passing states too)
WATCH_STATES = """(selector) => {
  window.seenStates = [];
  const note = () => {
    for (const el of document.querySelectorAll(selector)) {
      const state = el.firstChild ? el.firstChild.textContent.trim() : "";
      if (state && window.seenStates[window.seenStates.length - 1] !== state) {
        window.seenStates.push(state);
      }
    }
  };
  new MutationObserver(note).observe(document.body, {childList: true, subtree: true});
  window.notReloaded = true;
}"""


@pytest.fixture(scope="module")
def portal(world: worlds.World, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The URL of the portal whose pages the test watches."""
    for user in (world.artist, world.studio.admin):
        world.server.set_password(user.name, PASSWORD)
    if not databases.postgresql():
        yield world.server.endpoint + "/portal/"
        return
    data_dir = tmp_path_factory.mktemp("pages") / "data"
    databases.share(data_dir, databases.url_for(world.server.data_dir))
    pages = Server(
        data_dir,
        env={
            "OPENNIMBLE_RECONCILER": "false",
            "OPENNIMBLE_KEY_FILE": str(world.server.data_dir.resolve() / "secret.key"),
        },
    )
    pages.start()
    try:
        yield pages.endpoint + "/portal/"
    finally:
        pages.stop()


def test_a_card_and_an_all_sessions_row_follow_a_session_without_reload(
    browser: sync_api.Browser, portal: str, world: worlds.World, artifacts: pathlib.Path
) -> None:
    studio = world.studio
    artist_page = browser.new_context(viewport={"width": 1024, "height": 700}).new_page()
    admin_page = browser.new_context(viewport={"width": 1024, "height": 700}).new_page()
    try:
        sign_in(artist_page, portal, world.artist.name)
        artist_page.get_by_role("link", name="My sessions").click()
        expect(artist_page.get_by_text("No sessions yet")).to_be_visible()
        sign_in(admin_page, portal, studio.admin.name)
        admin_page.goto(f"{portal}studios/{studio.studio_id}/sessions")
        expect(admin_page.get_by_role("heading", name="all sessions")).to_be_visible()
        expect(admin_page.locator("tbody#rows")).to_contain_text("No sessions")
        artist_page.evaluate(WATCH_STATES, "article.card .state")
        admin_page.evaluate(WATCH_STATES, "tbody#rows td.state")

        # the change is made through the API (on PostgreSQL: of another server process)
        client = world.artist.client()
        ids = {"studioId": studio.studio_id}
        session = client.create_streaming_session(**ids, launchProfileId=studio.launch_profile_id)[
            "session"
        ]
        ids["sessionId"] = session["sessionId"]
        card = artist_page.locator(f"article.card[data-session='{session['sessionId']}']")
        row = admin_page.locator(f"tbody#rows tr[data-session='{session['sessionId']}']")
        expect(card).to_have_count(1)
        expect(row).to_have_count(1)
        expect(card.locator(".state")).to_have_text("READY", timeout=READY_WITHIN)
        expect(row.locator(".state")).to_contain_text("READY", timeout=READY_WITHIN)
        expect(row.get_by_role("button", name="Delete")).to_be_visible()
        shot(admin_page, artifacts, "all-sessions-live")

        client.delete_streaming_session(**ids)
        expect(card).to_have_count(0, timeout=READY_WITHIN)
        expect(row).to_have_count(0, timeout=READY_WITHIN)  # DELETED is not listed by default
        for page in (artist_page, admin_page):
            assert page.evaluate("window.notReloaded") is True  # it all changed live
            seen = page.evaluate("window.seenStates")
            assert seen[:2] == ["CREATE_IN_PROGRESS", "READY"], seen
    finally:
        artist_page.context.close()
        admin_page.context.close()
