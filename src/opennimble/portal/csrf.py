"""CSRF protection: a random token kept in the signed portal session, required in every form."""

from __future__ import annotations

import hmac
import secrets
from typing import Any

KEY = "csrf"
FIELD = "csrf_token"


def token(session: dict[str, Any]) -> str:
    """The session's token, created on first use."""
    if KEY not in session:
        session[KEY] = secrets.token_urlsafe(32)
    return str(session[KEY])


def valid(session: dict[str, Any], form: Any) -> bool:
    expected = session.get(KEY)
    given = form.get(FIELD)
    return bool(expected and isinstance(given, str) and hmac.compare_digest(expected, given))
