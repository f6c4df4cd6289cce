"""Identifiers and ARNs in the forms AWS Nimble Studio used."""

from __future__ import annotations

import secrets
import string
import uuid

_LOWER_ALNUM = string.ascii_lowercase + string.digits
_UPPER_ALNUM = string.ascii_uppercase + "234567"


def resource_id() -> str:
    """22 characters of URL-safe base64 (launch profiles, images, components, sessions...)."""
    return _token(16)


def _token(nbytes: int, length: int | None = None) -> str:
    """URL-safe base64 of ``nbytes`` random bytes (cut to ``length``) that does not begin with
    '-': a command line takes such a word for an option (``opennimble sessions delete STUDIO
    -n8w...`` failed with "No such option '-n'")."""
    while True:
        value = secrets.token_urlsafe(nbytes)[:length]
        if not value.startswith("-"):
            return value


def studio_id(region: str) -> str:
    return f"{region}:stid-" + "".join(secrets.choice(_LOWER_ALNUM) for _ in range(12))


def user_id() -> str:
    return str(uuid.uuid4())


def identity_store_id() -> str:
    return "d-" + secrets.token_hex(5)


def access_key_id() -> str:
    return "AKIA" + "".join(secrets.choice(_UPPER_ALNUM) for _ in range(16))


def secret_access_key() -> str:
    return _token(30, 40)


def arn(region: str, account_id: str, resource_type: str, resource: str) -> str:
    return f"arn:aws:nimble:{region}:{account_id}:{resource_type}/{resource}"
