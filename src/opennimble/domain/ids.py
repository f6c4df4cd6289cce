"""Identifiers and ARNs in the forms AWS Nimble Studio used."""

from __future__ import annotations

import secrets
import string
import uuid

_LOWER_ALNUM = string.ascii_lowercase + string.digits
_UPPER_ALNUM = string.ascii_uppercase + "234567"


def resource_id() -> str:
    """22 characters of URL-safe base64 (launch profiles, images, components, sessions...)."""
    return secrets.token_urlsafe(16)


def studio_id(region: str) -> str:
    return f"{region}:stid-" + "".join(secrets.choice(_LOWER_ALNUM) for _ in range(12))


def user_id() -> str:
    return str(uuid.uuid4())


def identity_store_id() -> str:
    return "d-" + secrets.token_hex(5)


def access_key_id() -> str:
    return "AKIA" + "".join(secrets.choice(_UPPER_ALNUM) for _ in range(16))


def secret_access_key() -> str:
    return secrets.token_urlsafe(30)[:40]


def arn(region: str, account_id: str, resource_type: str, resource: str) -> str:
    return f"arn:aws:nimble:{region}:{account_id}:{resource_type}/{resource}"
