"""Webhooks' rules: event type patterns, URLs, secrets, the signature and the back-off."""

from __future__ import annotations

import hashlib
import hmac

import pytest

from opennimble import clock
from opennimble.domain import webhooks as rules


def test_patterns_must_match_some_event_type() -> None:
    assert rules.event_patterns(" session.ready, stream.* ") == ["session.ready", "stream.*"]
    assert rules.event_patterns("*") == ["*"]
    with pytest.raises(rules.Invalid, match=r"'session\.redy' matches no event type"):
        rules.event_patterns("session.ready,session.redy")
    with pytest.raises(rules.Invalid, match="one or more"):
        rules.event_patterns(" , ")


@pytest.mark.parametrize(
    "url", ["ftp://host/x", "/relative", "http://", "https://user:pw@host/hook", "host:80"]
)
def test_urls_are_absolute_http_without_credentials(url: str) -> None:
    with pytest.raises(rules.Invalid, match="--url"):
        rules.url(url)


def test_secrets() -> None:
    assert len(rules.secret(None)) >= 32 and rules.secret(None) != rules.secret(None)
    assert rules.secret("  sixteen-chars-at-least\n") == "sixteen-chars-at-least"
    with pytest.raises(rules.Invalid, match="at least 16"):
        rules.secret("short")


def test_the_signature_is_hmac_sha256_over_timestamp_and_body() -> None:
    body = b'{"id": "1"}'
    header = rules.signature("s3cret-s3cret-s3cret", 1_700_000_000, body)
    expected = hmac.new(b"s3cret-s3cret-s3cret", b"1700000000." + body, hashlib.sha256)
    assert header == f"t=1700000000,v1={expected.hexdigest()}"


def test_back_off_doubles_up_to_its_maximum() -> None:
    delays = [rules.retry_delay(n) // clock.SECOND for n in range(1, 12)]
    assert delays[:5] == [1, 2, 4, 8, 16]
    assert max(delays) == rules.MAX_RETRY // clock.SECOND == 300
