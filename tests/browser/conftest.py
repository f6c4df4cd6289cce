"""Browser tests: Debian's Chromium, headless, driven by Playwright, against a real server.

Playwright's own browser downloads are not used: it drives the system's ``chromium``. Every
module gets a server and a studio set up through the API (``world``), deleted at the end with
no desktop left running.
"""

from __future__ import annotations

import os
import pathlib
import shutil
from collections.abc import Iterator

import pytest
from playwright import sync_api

from tests.support import server as support
from tests.support import slurm
from tests.support import world as worlds

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
# screenshots: OPENNIMBLE_TEST_ARTIFACTS, else test-artifacts/ of the checkout (not committed)
ARTIFACTS = pathlib.Path(
    os.environ.get("OPENNIMBLE_TEST_ARTIFACTS")
    or pathlib.Path(__file__).resolve().parents[2] / "test-artifacts"
)


@pytest.fixture(scope="package")
def browser() -> Iterator[sync_api.Browser]:
    # Playwright's sync API runs an event loop in this thread while it is open: it must be
    # closed before other packages' tests (asyncio.run) run
    with sync_api.sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, headless=True)
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.fixture
def page(browser: sync_api.Browser) -> Iterator[sync_api.Page]:
    """A fresh browser profile (no cookies), with a window of 1024x700."""
    context = browser.new_context(viewport={"width": 1024, "height": 700})
    try:
        yield context.new_page()
    finally:
        context.close()


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[worlds.World]:
    """A server on the provider the run asks for (``OPENNIMBLE_TEST_PROVIDER``)."""
    with slurm.chosen_provider() as provider:
        server = support.Server(tmp_path_factory.mktemp("browser") / "data", env=provider)
        with worlds.served(server) as built:
            yield built


@pytest.fixture(scope="session")
def artifacts() -> pathlib.Path:
    ARTIFACTS.mkdir(exist_ok=True)
    return ARTIFACTS
