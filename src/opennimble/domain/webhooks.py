"""Webhooks' rules: the event types, what a webhook may name, the signature, the retries.

A delivery is signed like this (docs/events.md says how a receiver checks it)::

    X-Opennimble-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>." + body)>
"""

from __future__ import annotations

import fnmatch
import hashlib
import hmac
import secrets
import urllib.parse

from opennimble import clock

SESSION_STATES = (
    "CREATE_IN_PROGRESS",
    "READY",
    "CREATE_FAILED",
    "STOP_IN_PROGRESS",
    "STOPPED",
    "STOP_FAILED",
    "START_IN_PROGRESS",
    "START_FAILED",
    "DELETE_IN_PROGRESS",
    "DELETED",
    "DELETE_FAILED",
)
BACKUP_STATES = ("READY", "CREATE_FAILED", "DELETE_IN_PROGRESS", "DELETED")
EVENT_TYPES = (
    *(f"session.{s.lower()}" for s in SESSION_STATES),
    "stream.created",
    *(f"backup.{s.lower()}" for s in BACKUP_STATES),
)

SIGNATURE_HEADER = "X-Opennimble-Signature"
MIN_SECRET = 16  # characters of a secret given by the operator
FIRST_RETRY = 1 * clock.SECOND  # then doubling ...
MAX_RETRY = 5 * clock.MINUTE  # ... up to this
GIVE_UP_AFTER = 24 * clock.HOUR  # a delivery still failing this long after its event: FAILED


class Invalid(ValueError):
    """A webhook's setting is wrong; the message names it and says why."""


def event_patterns(text: str) -> list[str]:
    """``session.ready,stream.*``: the patterns, each matching at least one event type."""
    patterns = [p.strip() for p in text.split(",") if p.strip()]
    if not patterns:
        raise Invalid("--events: give one or more event types, comma-separated (or '*')")
    for pattern in patterns:
        if not any(fnmatch.fnmatchcase(t, pattern) for t in EVENT_TYPES):
            raise Invalid(
                f"--events: {pattern!r} matches no event type; the types are "
                + ", ".join(EVENT_TYPES)
                + " (patterns like 'session.*' work too)"
            )
    return patterns


def url(text: str) -> str:
    """An absolute http(s) URL with a host, without credentials in it."""
    parts = urllib.parse.urlsplit(text)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise Invalid(f"--url: {text!r} is not an absolute http:// or https:// URL")
    if parts.username or parts.password:
        raise Invalid("--url must not carry credentials: the deliveries are signed instead")
    return text


def secret(given: str | None) -> str:
    """The operator's secret (at least :data:`MIN_SECRET` characters), or a new random one."""
    if given is None:
        return secrets.token_urlsafe(32)
    given = given.strip()
    if len(given) < MIN_SECRET:
        raise Invalid(f"--secret-file: the secret must have at least {MIN_SECRET} characters")
    return given


def signature(secret_: str, timestamp: int, body: bytes) -> str:
    """The value of :data:`SIGNATURE_HEADER` for ``body`` sent at ``timestamp`` (seconds)."""
    mac = hmac.new(secret_.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return f"t={timestamp},v1={mac.hexdigest()}"


def retry_delay(attempts: int) -> int:
    """Microseconds to wait after the ``attempts``-th failed attempt."""
    return int(min(FIRST_RETRY * 2 ** max(attempts - 1, 0), MAX_RETRY))
