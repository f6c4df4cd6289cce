"""A busy server's descriptors pass 1023 (its connections): waiting on one must still work."""

from __future__ import annotations

import contextlib
import os
import resource
from collections.abc import Iterator

import pytest

from opennimble.providers import desktop_job

HIGH = 1500


@pytest.fixture
def high_pipe() -> Iterator[tuple[int, int]]:
    """A pipe whose reading end is descriptor HIGH."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard <= HIGH:
        pytest.skip(f"descriptors are limited to {hard} here")
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, HIGH + 1), hard))
    read_fd, write_fd = os.pipe()
    os.dup2(read_fd, HIGH)
    os.close(read_fd)
    try:
        yield HIGH, write_fd
    finally:
        for fd in (HIGH, write_fd):
            with contextlib.suppress(OSError):  # read_display closes its descriptor
                os.close(fd)
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def test_waiting_on_a_descriptor_past_1023(high_pipe: tuple[int, int]) -> None:
    read_fd, write_fd = high_pipe
    assert not desktop_job.wait_readable(read_fd, 0.01)
    os.write(write_fd, b"x")
    assert desktop_job.wait_readable(read_fd, 1.0)


def test_the_display_xvnc_reports_is_read_from_a_descriptor_past_1023(
    high_pipe: tuple[int, int],
) -> None:
    read_fd, write_fd = high_pipe
    os.write(write_fd, b"42\n")
    assert desktop_job.read_display(read_fd, timeout=1.0) == 42
