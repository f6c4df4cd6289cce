"""The [oidc] settings (portal sign-in with an OpenID Connect provider) are checked when they
are read: each mistake names the setting and how to put it right."""

from __future__ import annotations

import pathlib

import pytest

from opennimble import config

GOOD = {"issuer": "https://sso.example.com/realms/studio/", "client_id": "portal"}


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
