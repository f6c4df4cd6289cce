"""Portal sign-in with an OpenID Connect provider, in Chromium, against a real provider (authlib's
authorization server, tests/support/oidc_provider.py): the artist clicks "Sign in with Test
IdP", signs in at the provider and lands on the portal as the identity store's user; and what
is refused (an unknown user when creation is off, a disabled user, denied consent, a tampered
state, ID tokens with the wrong audience, issuer or an expired one, an unreachable provider).
"""

from __future__ import annotations

import json
import pathlib
import re
import time
from collections.abc import Iterator

import pytest
from playwright import sync_api

from tests.browser.portal_support import shot
from tests.support import oidc_provider
from tests.support import server as support
from tests.support import world as worlds

pytestmark = [pytest.mark.browser]

CALLBACK = "/portal/signin/oidc/callback"
expect = sync_api.expect


@pytest.fixture(scope="module")
def provider() -> Iterator[oidc_provider.Provider]:
    with oidc_provider.running(oidc_provider.Provider()) as running:
        yield running


def _server(
    tmp_path_factory: pytest.TempPathFactory, provider: oidc_provider.Provider, **settings: object
) -> support.Server:
    server = support.Server(tmp_path_factory.mktemp("oidc") / "data")
    provider.register(server.endpoint + CALLBACK)
    server.env["OPENNIMBLE_OIDC"] = json.dumps(provider.settings(**settings))
    return server


@pytest.fixture(scope="module")
def world(
    tmp_path_factory: pytest.TempPathFactory, provider: oidc_provider.Provider
) -> Iterator[worlds.World]:
    """A server whose portal signs in with the provider (unknown users are not created)."""
    with worlds.served(_server(tmp_path_factory, provider)) as built:
        for user in (built.artist, built.outsider):
            provider.user(user.name, email=f"{user.name}@example.com", email_verified=True)
        provider.user("newcomer")
        yield built


@pytest.fixture(autouse=True)
def behaving(provider: oidc_provider.Provider) -> Iterator[None]:
    provider.misbehave.clear()
    yield
    provider.misbehave.clear()


def sign_in_with_provider(
    page: sync_api.Page, portal: str, name: str, decision: str = "Allow"
) -> None:
    page.goto(portal)
    page.get_by_role("button", name="Sign in with Test IdP").click()
    expect(page.get_by_role("heading", name="Test IdP sign-in")).to_be_visible()
    page.get_by_label("User name").fill(name)
    page.get_by_role("button", name=decision).click()


def test_an_artist_signs_in_with_the_provider_and_sees_their_studios(
    page: sync_api.Page,
    world: worlds.World,
    provider: oidc_provider.Provider,
    artifacts: pathlib.Path,
) -> None:
    portal = world.server.endpoint + "/portal/"
    page.goto(portal)
    expect(page.get_by_role("button", name="Sign in with Test IdP")).to_be_visible()
    shot(page, artifacts, "signin-oidc")
    sign_in_with_provider(page, portal, world.artist.name)
    expect(page.get_by_role("heading", name="Your studios")).to_be_visible()
    expect(page.locator("header .who")).to_have_text(world.artist.name)
    studio = world.artist.client().get_studio(studioId=world.studio.studio_id)["studio"]
    expect(page.get_by_text(studio["displayName"]).first).to_be_visible()
    assert page.url.rstrip("/") == portal.rstrip("/")
    assert provider.signed_in[-1] == world.artist.name
    shot(page, artifacts, "home-after-oidc")
    # exactly the identity store user: the API's rules apply (no operator pages)
    expect(page.get_by_role("link", name="Users")).to_have_count(0)
    page.goto(world.server.endpoint + "/portal/users")
    expect(page.get_by_role("heading", name="Users")).to_have_count(0)


def test_the_page_asked_for_is_where_the_sign_in_goes_on_to(
    page: sync_api.Page, world: worlds.World
) -> None:
    page.goto(world.server.endpoint + "/portal/sessions")
    page.goto(world.server.endpoint + "/portal/signin?next=/portal/sessions")
    page.get_by_role("button", name="Sign in with Test IdP").click()
    page.get_by_label("User name").fill(world.artist.name)
    page.get_by_role("button", name="Allow").click()
    expect(page.get_by_role("heading", name="My sessions")).to_be_visible()


def test_an_unknown_user_is_refused_when_users_are_not_created(
    page: sync_api.Page, world: worlds.World, artifacts: pathlib.Path
) -> None:
    portal = world.server.endpoint + "/portal/"
    sign_in_with_provider(page, portal, "newcomer")
    refusal = page.get_by_role("alert")
    expect(refusal).to_contain_text("no such user in this studio's identity store")
    expect(refusal).to_contain_text("opennimble users create newcomer")
    shot(page, artifacts, "oidc-unknown-user")
    page.goto(portal)
    expect(page.get_by_role("button", name="Sign in with Test IdP")).to_be_visible()
    listed = support.cli_text(world.server.data_dir, "users", "list")
    assert "newcomer" not in listed


def test_a_disabled_user_is_refused(page: sync_api.Page, world: worlds.World) -> None:
    support.cli(world.server.data_dir, "users", "disable", world.outsider.name)
    try:
        sign_in_with_provider(page, world.server.endpoint + "/portal/", world.outsider.name)
        expect(page.get_by_role("alert")).to_contain_text("This account is disabled")
    finally:
        support.cli(world.server.data_dir, "users", "enable", world.outsider.name)
    sign_in_with_provider(page, world.server.endpoint + "/portal/", world.outsider.name)
    expect(page.locator("header .who")).to_have_text(world.outsider.name)


def test_denied_consent_is_said_on_the_sign_in_page(
    page: sync_api.Page, world: worlds.World
) -> None:
    sign_in_with_provider(page, world.server.endpoint + "/portal/", world.artist.name, "Deny")
    expect(page.get_by_role("alert")).to_contain_text("Test IdP did not sign you in")
    expect(page.get_by_role("alert")).to_contain_text("access_denied")
    expect(page.get_by_label("Password")).to_be_visible()


def test_a_tampered_state_is_refused(page: sync_api.Page, world: worlds.World) -> None:
    def tamper(route: sync_api.Route) -> None:
        """The provider's answer to the login form, its redirect's state replaced."""
        if route.request.method != "POST":
            route.continue_()
            return
        answer = route.fetch(max_redirects=0)
        location = re.sub(r"state=[^&]+", "state=forged", answer.headers["location"])
        route.fulfill(response=answer, headers={**answer.headers, "location": location})

    page.route(re.compile(r"/authorize\?"), tamper)
    sign_in_with_provider(page, world.server.endpoint + "/portal/", world.artist.name)
    expect(page.get_by_role("alert")).to_contain_text("did not start in this browser")
    assert "state=forged" in page.url
    page.unroute(re.compile(r"/authorize\?"))
    page.goto(world.server.endpoint + "/portal/")
    expect(page.get_by_role("heading", name="Your studios")).to_have_count(0)


@pytest.mark.parametrize(
    ("claims", "words"),
    [
        ({"aud": ["someone-else"]}, "not valid for this portal (Invalid claim: 'aud')"),
        ({"iss": "https://impostor.example"}, "not valid for this portal (Invalid claim: 'iss')"),
        ({"exp": "past", "iat": "past"}, "has expired"),
    ],
    ids=["wrong audience", "wrong issuer", "expired"],
)
def test_an_id_token_not_for_this_portal_is_refused(
    page: sync_api.Page,
    world: worlds.World,
    provider: oidc_provider.Provider,
    claims: dict[str, object],
    words: str,
) -> None:
    past = int(time.time()) - 3600
    provider.misbehave.update({k: past if v == "past" else v for k, v in claims.items()})
    sign_in_with_provider(page, world.server.endpoint + "/portal/", world.artist.name)
    expect(page.get_by_role("alert")).to_contain_text(words)
    page.goto(world.server.endpoint + "/portal/")
    expect(page.get_by_role("heading", name="Your studios")).to_have_count(0)


def test_unknown_users_are_created_when_the_settings_say_so(
    page: sync_api.Page,
    tmp_path_factory: pytest.TempPathFactory,
    provider: oidc_provider.Provider,
    artifacts: pathlib.Path,
) -> None:
    provider.user("fresh", email="fresh@example.com", email_verified=True)
    server = _server(tmp_path_factory, provider, create_users=True, claim="email")
    with support.running(server):
        support.cli(server.data_dir, "users", "create", "operator", "--operator", "--init")
        sign_in_with_provider(page, server.endpoint + "/portal/", "fresh")
        expect(page.get_by_role("heading", name="Your studios")).to_be_visible()
        expect(page.locator("header .who")).to_have_text("fresh@example.com")
        shot(page, artifacts, "home-oidc-created-user")
        created = support.cli(server.data_dir, "users", "show", "fresh@example.com")
        assert created["operator"] is False

        provider.user("unsure", email="unsure@example.com", email_verified=False)
        page.context.clear_cookies()
        sign_in_with_provider(page, server.endpoint + "/portal/", "unsure")
        expect(page.get_by_role("alert")).to_contain_text(
            "Test IdP has not verified the email address unsure@example.com"
        )
        listed = support.cli_text(server.data_dir, "users", "list")
        assert "unsure" not in listed


def test_a_claim_only_the_userinfo_endpoint_sends_is_looked_up_there(
    page: sync_api.Page, tmp_path_factory: pytest.TempPathFactory, provider: oidc_provider.Provider
) -> None:
    # the provider puts `studio_login` in no ID token: only its userinfo endpoint has it
    provider.user("legal-name", studio_login="ldap7")
    server = _server(tmp_path_factory, provider, claim="studio_login")
    with support.running(server):
        support.cli(server.data_dir, "users", "create", "ldap7", "--init")
        sign_in_with_provider(page, server.endpoint + "/portal/", "legal-name")
        expect(page.locator("header .who")).to_have_text("ldap7")


def test_a_discovery_document_of_another_issuer_is_refused(
    page: sync_api.Page, tmp_path_factory: pytest.TempPathFactory
) -> None:
    impostor = oidc_provider.Provider()
    impostor.misbehave["discovery_issuer"] = "https://impostor.example"
    server = _server(tmp_path_factory, impostor)
    with oidc_provider.running(impostor), support.running(server):
        page.goto(server.endpoint + "/portal/")
        page.get_by_role("button", name="Sign in with Test IdP").click()
        expect(page.get_by_role("alert")).to_contain_text(
            "discovery document names the issuer 'https://impostor.example'"
        )


def test_an_unreachable_provider_is_said_on_the_sign_in_page(
    page: sync_api.Page, tmp_path_factory: pytest.TempPathFactory
) -> None:
    nobody = oidc_provider.Provider()  # never started: nothing listens on its port
    server = _server(tmp_path_factory, nobody)
    with support.running(server):
        page.goto(server.endpoint + "/portal/")
        page.get_by_role("button", name="Sign in with Test IdP").click()
        alert = page.get_by_role("alert")
        expect(alert).to_contain_text(f"Could not reach Test IdP at {nobody.issuer}")
        expect(page.get_by_label("Password")).to_be_visible()
