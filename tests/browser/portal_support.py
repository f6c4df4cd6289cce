"""What the portal's browser tests share: signing in and saving a page's screenshot."""

from __future__ import annotations

import pathlib

from playwright import sync_api

PASSWORD = "correct horse battery"
READY_WITHIN = 60_000  # ms: a desktop start on a busy machine


def sign_in(page: sync_api.Page, portal: str, name: str, password: str = PASSWORD) -> None:
    page.goto(portal)
    page.get_by_label("User name").fill(name)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Sign in").click()


def shot(page: sync_api.Page, artifacts: pathlib.Path, name: str) -> None:
    page.screenshot(path=str(artifacts / f"portal-{name}.png"), full_page=True)


def open_stream(card: sync_api.Locator) -> sync_api.Page:
    """Press a session card's Open and return the stream's tab once its desktop is connected."""
    with card.page.context.expect_page() as opened:
        card.get_by_role("button", name="Open").click()
    stream = opened.value
    stream.wait_for_selector("body[data-state='connected']", state="attached", timeout=20_000)
    return stream


def members_ready_card(browser: sync_api.Browser, portal: str, name: str) -> sync_api.Locator:
    """A new browser of the member ``name``, signed in, on My sessions, whose one card is
    READY (close its page's context when done)."""
    page = browser.new_context(viewport={"width": 1024, "height": 700}).new_page()
    sign_in(page, portal, name)
    page.get_by_role("link", name="My sessions").click()
    card = page.locator("article.card")
    sync_api.expect(card).to_have_count(1)
    sync_api.expect(card.locator(".state")).to_have_text("READY", timeout=READY_WITHIN)
    return card
