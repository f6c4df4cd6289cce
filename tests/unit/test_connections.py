"""The open-file limit the server raises to fit its connection limit."""

from __future__ import annotations

import resource
import subprocess
import sys
from collections.abc import Iterator

import pytest

from opennimble import connections

RAISE_5000 = "from opennimble import connections as c; print(c.raise_file_limit(5000))"


@pytest.fixture
def file_limit() -> Iterator[tuple[int, int]]:
    before = resource.getrlimit(resource.RLIMIT_NOFILE)
    yield before
    resource.setrlimit(resource.RLIMIT_NOFILE, before)


def test_the_soft_limit_is_raised_to_fit_the_connections(file_limit: tuple[int, int]) -> None:
    _, hard = file_limit
    if hard != resource.RLIM_INFINITY and hard < 2048 + connections.RESERVED_FDS:
        pytest.skip("the hard open-file limit is too low to raise toward")
    resource.setrlimit(resource.RLIMIT_NOFILE, (512, hard))
    assert connections.raise_file_limit(2048) == 2048
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    assert soft >= 2048 + connections.RESERVED_FDS


def test_a_hard_limit_too_low_lowers_the_connections() -> None:
    """In a child whose hard limit is 600 (lowering it is for good in a process)."""
    low = 600

    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (low, low))

    out = subprocess.run(
        [sys.executable, "-c", RAISE_5000],
        preexec_fn=limit,
        capture_output=True,
        text=True,
        check=True,
    )
    assert int(out.stdout) == low - connections.RESERVED_FDS
    assert "allows 344 connections, not max_connections=5000" in out.stderr
