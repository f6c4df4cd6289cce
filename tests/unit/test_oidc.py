"""Portal sign-in with an OpenID Connect provider: the [oidc] settings are checked when they
are read (each mistake names the setting and how to put it right), and each way the flow can
fail (authlib's, joserfc's and httpx's errors) is told in words, never as a traceback. The
flow itself runs against a real provider in tests/browser/test_portal_oidc.py."""

from __future__ import annotations

import pathlib
from typing import Any

import httpx2
import joserfc.errors
import pytest
from authlib.integrations.base_client import errors as oauth_errors
from joserfc import jwt

from opennimble import config
from opennimble.portal import oidc


def load(tmp_path: pathlib.Path, table: str) -> config.Settings:
    path = tmp_path / "opennimble.toml"
    path.write_text("[oidc]\n" + table)
    return config.load(str(path))


def test_a_keycloak_style_table(tmp_path: pathlib.Path) -> None:
    settings = load(
        tmp_path,
        'issuer = "https://sso.example.com/realms/studio/"\nclient_id = "portal"\n'
        'client_secret = "s3cret"\nname = "Studio SSO"\nclaim = "email"\ncreate_users = true\n',
    )
    oidc = settings.oidc
    assert oidc is not None
    assert oidc.issuer == "https://sso.example.com/realms/studio"  # the trailing / dropped
    assert oidc.discovery_url == (
        "https://sso.example.com/realms/studio/.well-known/openid-configuration"
    )
    assert (oidc.claim, oidc.create_users, oidc.scopes) == (
        "email",
        True,
        ["openid", "profile", "email"],
    )
    assert config.Settings().oidc is None  # none by default: passwords only


@pytest.mark.parametrize(
    ("table", "words"),
    [
        ('issuer = "https://a.example"\nclient_secret = "s"\n', ["`oidc.client_id`", "missing"]),
        ('issuer = "https://a.example"\nclient_id = ""\nclient_secret = "s"\n', ["client_id"]),
        (
            'issuer = "https://a.example"\nclient_id = "c"\nclient_secret = " "\n',
            ["`oidc.client_secret`", "empty: give the secret"],
        ),
        (
            'issuer = "sso.example.com"\nclient_id = "c"\nclient_secret = "s"\n',
            ["`oidc.issuer`", "not an issuer URL", "https://"],
        ),
        (
            'issuer = "http://sso.example.com"\nclient_id = "c"\nclient_secret = "s"\n',
            ["`oidc.issuer`", "must be https://"],
        ),
        (
            'issuer = "https://a.example"\nclient_id = "c"\nclient_secret = "s"\n'
            'scopes = ["email"]\n',
            ["`oidc.scopes`", "openid"],
        ),
        (
            'issuer = "https://a.example"\nclient_id = "c"\nclient_secret = "s"\n'
            'claim = "a claim"\n',
            ["`oidc.claim`"],
        ),
        (
            'issuer = "https://a.example"\nclient_id = "c"\nclient_secret = "s"\nsecret = "x"\n',
            ["`oidc.secret`", "not a setting"],
        ),
    ],
)
def test_mistakes_are_named(tmp_path: pathlib.Path, table: str, words: list[str]) -> None:
    with pytest.raises(config.Invalid) as info:
        load(tmp_path, table)
    for word in words:
        assert word in str(info.value)


ISSUER = "https://sso.example.com/realms/studio"


def refused_claims(claims: dict[str, object], **options: Any) -> joserfc.errors.JoseError:
    """What joserfc raises for ID token ``claims`` that ``options`` refuse."""
    with pytest.raises(joserfc.errors.JoseError) as info:
        jwt.JWTClaimsRegistry(**options).validate(claims)
    return info.value


TOKEN = httpx2.Request("POST", ISSUER + "/token")


@pytest.mark.parametrize(
    ("failure", "words", "status"),
    [
        (oauth_errors.MismatchingStateError(), "did not start in this browser", 401),
        (
            oauth_errors.OAuthError("access_denied", "The user said no"),
            "SSO did not sign you in: access_denied (The user said no).",
            401,
        ),
        (oauth_errors.OAuthError("invalid_grant"), "SSO refused the sign-in: invalid_grant.", 401),
        (refused_claims({"exp": 1}), "has expired", 401),
        (refused_claims({"aud": "else"}, aud={"value": "portal"}), "(Invalid claim: 'aud')", 401),
        (joserfc.errors.BadSignatureError(), "not valid for this portal", 401),
        (
            httpx2.ConnectError("Connection refused", request=TOKEN),
            f"Could not reach SSO at {ISSUER} (ConnectError: Connection refused)",
            502,
        ),
        (
            httpx2.HTTPStatusError("", request=TOKEN, response=httpx2.Response(503, request=TOKEN)),
            f"SSO answered 503 at {ISSUER}/token",
            502,
        ),
        (RuntimeError('Missing "jwks_uri" in metadata'), "could not be used", 502),
    ],
)
def test_each_failure_of_the_flow_is_told_in_words(
    failure: Exception, words: str, status: int
) -> None:
    told = oidc.refusal(failure, "SSO", ISSUER)
    assert words in str(told)
    assert told.status == status


def test_a_bug_is_not_passed_off_as_a_sign_in_failure() -> None:
    with pytest.raises(ZeroDivisionError):
        oidc.refusal(ZeroDivisionError(), "SSO", ISSUER)


def test_the_client_secret_is_not_shown(tmp_path: pathlib.Path) -> None:
    settings = load(
        tmp_path, 'issuer = "https://a.example"\nclient_id = "c"\nclient_secret = "s3cret-value"\n'
    )
    assert "s3cret-value" not in repr(settings)
    assert settings.oidc is not None
    assert settings.oidc.client_secret.get_secret_value() == "s3cret-value"
