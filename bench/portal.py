"""The studio portal at scale: time to first paint of "My sessions" with 1,000 sessions, and
the delay from a change of a session in the database to its appearance in an open page, next
to the API's own GetStreamingSession latency in the same run.

Run: ``.venv/bin/python -m bench.portal [--sessions 1000] [--backends sqlite,postgresql]``;
needs Debian's Chromium (Playwright drives it).

For each database: one ``opennimble serve`` (instant provider: no desktop), a studio set up
through the API, and ``--sessions`` READY sessions all owned by the artist, inserted in bulk
through the store. Chromium signs in as the artist and loads "My sessions" ``ROUNDS`` times
(first contentful paint, from the browser's paint timing). Then, with the page open, the
status message of one session at a time is changed in the database by another process, through
the store as the reconciler changes it (with its lifecycle event), and the time until the page
shows it is measured ``CHANGES`` times. The API figure is boto3's
GetStreamingSession as the artist, ``ROUNDS`` x 10 calls. Last, the studio's admin loads
All sessions (50 a page, keyset paging) ``ROUNDS`` times, then walks every further page: a
page deep in the listing should paint as fast as the first.
"""

from __future__ import annotations

import argparse
import pathlib
import random
import statistics
import sys
import tempfile
import time

from playwright import sync_api
from tests.browser.conftest import CHROMIUM

from bench import scale_common as common
from opennimble import clock
from opennimble.store import sessions as session_store

ROUNDS = 10
CHANGES = 30
PASSWORD = "bench portal password"


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def first_paints(page: sync_api.Page, url: str) -> list[float]:
    paints = []
    for _ in range(ROUNDS):
        page.goto(url)
        page.wait_for_selector("article.card")
        paints.append(
            page.evaluate("performance.getEntriesByName('first-contentful-paint')[0].startTime")
        )
    return paints


def sign_in(browser: sync_api.Browser, portal: str, name: str) -> sync_api.Page:
    page = browser.new_page()
    page.goto(portal + "signin")
    page.get_by_label("User name").fill(name)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_selector("h1")
    return page


def all_sessions_paints(page: sync_api.Page, url: str) -> tuple[list[float], list[float]]:
    """First paints of the admin's All sessions: its first page ``ROUNDS`` times, then every
    further page, followed through "Next page" (keyset pages)."""
    rows = "table.sessions tr[data-session]"
    first = []
    for _ in range(ROUNDS):
        page.goto(url)
        page.wait_for_selector(rows)
        first.append(painted(page))
    later = []
    while page.get_by_role("link", name="Next page").count():
        with page.expect_navigation():
            page.get_by_role("link", name="Next page").click()
        page.wait_for_selector(rows)
        later.append(painted(page))
    return first, later


def painted(page: sync_api.Page) -> float:
    """The page's first contentful paint (ms from its navigation), once it happened."""
    entry = "performance.getEntriesByName('first-contentful-paint')"
    page.wait_for_function(f"{entry}.length > 0")
    return float(page.evaluate(f"{entry}[0].startTime"))


def change_delays(page: sync_api.Page, made: common.Installation, sessions: int) -> list[float]:
    engine = made.engine()
    delays = []
    try:
        for i in range(CHANGES):
            session_id = f"bench{(i * 7) % sessions:017d}"
            message = f"bench change {i}"
            time.sleep(random.uniform(0.1, 0.7))  # no lock-step with the server's looks
            started = time.monotonic()
            with engine.begin() as conn:
                # through the store, as the reconciler writes a session's new status (with
                # its lifecycle event, which is what announces the change to live views)
                session_store.transition(
                    conn,
                    session_id,
                    ("READY",),
                    state="READY",
                    status_message=message,
                    updated_at=clock.system_now(),
                )
            page.wait_for_function(
                "([id, text]) => { const c = document.getElementById('session-' + id);"
                " return c && c.textContent.includes(text); }",
                arg=[session_id, message],
                polling="raf",
                timeout=30_000,
            )
            delays.append((time.monotonic() - started) * 1000)
    finally:
        engine.dispose()
    return delays


def api_gets(made: common.Installation) -> list[float]:
    assert made.world is not None
    client = made.world.artist.client()
    ids = {"studioId": made.studio_id, "sessionId": f"bench{0:017d}"}
    took = []
    for _ in range(ROUNDS * 10):
        started = time.perf_counter()
        client.get_streaming_session(**ids)
        took.append((time.perf_counter() - started) * 1000)
    return took


def bench(backend: str, sessions: int, workdir: pathlib.Path) -> list[str]:
    with common.installation(backend, workdir / backend) as made:
        srv = made.add_server()
        world = common.build_world(made)
        owner = [world.artist.user_id]
        took = common.bulk_insert(made, common.session_rows(made.studio_id, sessions, owner))
        common.log(f"{backend}: {sessions} sessions inserted in {took:.1f} s")
        srv.set_password(world.artist.name, PASSWORD)
        srv.set_password(world.studio.admin.name, PASSWORD)
        portal = srv.endpoint + "/portal/"
        with sync_api.sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True)
            try:
                page = sign_in(browser, portal, world.artist.name)
                paints = first_paints(page, portal + "sessions")
                cards = page.locator("article.card").count()
                assert cards == sessions, f"{cards} cards, not {sessions}"
                delays = change_delays(page, made, sessions)
                admin = sign_in(browser, portal, world.studio.admin.name)
                listing = f"{portal}studios/{made.studio_id}/sessions"
                first, later = all_sessions_paints(admin, listing)
            finally:
                browser.close()
        gets = api_gets(made)
    return [
        f"| {backend} | {sessions:,} | {statistics.median(paints):.0f} "
        f"| {percentile(delays, 0.5):.0f} | {percentile(delays, 0.95):.0f} "
        f"| {percentile(gets, 0.5):.1f} | {percentile(gets, 0.95):.1f} "
        f"| {statistics.median(first):.0f} | {statistics.median(later):.0f} ({len(later)}) |"
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sessions", type=int, default=1_000)
    parser.add_argument("--backends", default="sqlite,postgresql")
    args = parser.parse_args(argv)
    lines = [
        "| database | the artist's sessions | My sessions first paint ms (median) "
        "| change shown p50 ms | p95 ms | API Get p50 ms | p95 ms "
        "| admin's All sessions first page paint ms | later pages (how many) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    with tempfile.TemporaryDirectory(prefix="opennimble-bench-") as tmp:
        for backend in common.backends(args.backends):
            lines += bench(backend, args.sessions, pathlib.Path(tmp))
    print("\nThe studio portal (Chromium, one open page):")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
