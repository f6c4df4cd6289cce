"""What ``serve`` hands granian (http_servers): its header deadline is in milliseconds, at
most a minute."""

from __future__ import annotations

import logging

import pytest

from opennimble import http_servers


def test_the_header_timeout_is_given_in_milliseconds() -> None:
    assert http_servers.granian_header_timeout_ms(10) == 10_000
    assert http_servers.granian_header_timeout_ms(2.5) == 2_500


def test_a_header_timeout_over_a_minute_is_cut_to_a_minute_saying_so(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.WARNING, logger="opennimble.connections"):
        assert http_servers.granian_header_timeout_ms(90) == 60_000
    assert "header_timeout = 90: granian allows at most 60 s" in caplog.text
