"""The per-caller token bucket and the settings of quotas and the EULA catalogue."""

from __future__ import annotations

import pathlib

import pydantic
import pytest

from opennimble import config, errors
from opennimble.api import throttle
from opennimble.domain import tags
from opennimble.domain.identity import Caller

ALICE = Caller("u-alice", "alice", False)
BOB = Caller("u-bob", "bob", False)


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_a_bucket_allows_bursts_then_the_rate_per_caller() -> None:
    clock = Clock()
    limiter = throttle.Throttle(rate=2, burst=3, monotonic=clock)
    for _ in range(3):
        limiter.admit(ALICE)
    with pytest.raises(errors.ThrottlingException) as info:
        limiter.admit(ALICE)
    assert "2 requests per second" in info.value.message
    assert info.value.context["retryAfterMs"] == "500"
    limiter.admit(BOB)  # every caller has a bucket of its own
    clock.now += 0.5  # one token back
    limiter.admit(ALICE)
    with pytest.raises(errors.ThrottlingException):
        limiter.admit(ALICE)
    clock.now += 60  # a full bucket holds no more than the burst
    for _ in range(3):
        limiter.admit(ALICE)
    with pytest.raises(errors.ThrottlingException):
        limiter.admit(ALICE)


def test_a_rate_of_zero_means_no_limit() -> None:
    limiter = throttle.Throttle(rate=0, burst=1, monotonic=Clock())
    for _ in range(100):
        limiter.admit(ALICE)


def test_eula_settings_are_checked(tmp_path: pathlib.Path) -> None:
    text = tmp_path / "terms.txt"
    text.write_text("the terms")
    settings = config.Settings.model_validate(
        {"eulas": {"maya-2024": {"name": "Maya", "file": str(text), "images": ["ami-0abc"]}}}
    )
    assert settings.eulas["maya-2024"].text() == "the terms"
    for bad, words in (
        ({"bad id!": {"name": "x", "content": "y"}}, "EULA id"),
        ({"ok": {"name": "x"}}, "either `content` or `file`"),
        ({"ok": {"name": "x", "content": "y", "file": str(text)}}, "either"),
        ({"ok": {"name": "x", "content": "y", "images": ["windows"]}}, "ec2ImageId"),
        ({"ok": {"name": "", "content": "y"}}, "name"),
    ):
        with pytest.raises(pydantic.ValidationError) as info:
            config.Settings.model_validate({"eulas": bad})
        assert words in str(info.value)


def test_tag_limits() -> None:
    assert tags.problems({"team": "fx"}) == []
    found = dict(tags.problems({"aws:x": "1", "": "2", "k": "v" * 257}))
    assert set(found) == {"tags.key", "tags.k"}
    assert len(tags.problems({f"k{i}": "v" for i in range(51)})) == 1
